"""Evaluation with detectron2's ``DatasetEvaluator`` interface: COCO mAP through pycocotools.

``reset() / process(inputs, outputs) / evaluate()``, and :class:`DatasetEvaluators` to run
several evaluators in one loop (detection, masks, keypoints on the same predictions), as
detectron2's ``inference_on_dataset`` does.  pycocotools is imported only when evaluating.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from typing import Any, Mapping, Sequence

import numpy as np

from ssb.errors import MalformedFieldError

from ._arrays import Instances, instances
from .coco import _image_record, _teacher_instances, predictions_to_coco_gt, to_coco_results
from .detectron2 import _annotations_as_instances

__all__ = ["METRIC_NAMES", "IOU_TYPES", "coco_evaluate", "COCOEvaluator", "DatasetEvaluators"]

log = logging.getLogger(__name__)

IOU_TYPES = ("bbox", "segm", "keypoints")

#: Summary metrics per IoU type, in the order of ``COCOeval.stats`` (detectron2's names).
METRIC_NAMES = {
    "bbox": ("AP", "AP50", "AP75", "APs", "APm", "APl"),
    "segm": ("AP", "AP50", "AP75", "APs", "APm", "APl"),
    "keypoints": ("AP", "AP50", "AP75", "APm", "APl"),
}


def _pycocotools(submodule: str):
    from ssb._optional import require

    return require(f"pycocotools.{submodule}", "COCO evaluation")


def _nan_metrics(iou_type: str) -> dict[str, float]:
    return {name: math.nan for name in METRIC_NAMES[iou_type]}


def coco_evaluate(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    iou_type: str = "bbox",
    *,
    kpt_oks_sigmas: Sequence[float] | None = None,
    per_category: bool = False,
) -> tuple[dict[str, float], str | None]:
    """Run pycocotools' ``COCOeval`` on a ground-truth dict and a results list.

    Returns ``(metrics, reason)``: ``metrics`` maps :data:`METRIC_NAMES` (and
    ``"AP-<category name>"`` when ``per_category``) to percent; COCOeval's ``-1``
    (no ground truth in that bucket) becomes NaN.  ``reason`` is ``None``, or says why
    every metric is NaN (no images, no ground-truth objects).  Empty ``results`` with
    ground truth present give AP 0 (every object missed), not NaN.
    ``kpt_oks_sigmas`` (one per keypoint) is required when K is not COCO's 17.
    """
    if iou_type not in IOU_TYPES:
        raise MalformedFieldError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}", field="iou_type")
    coco_mod = _pycocotools("coco")
    cocoeval_mod = _pycocotools("cocoeval")
    metrics = _nan_metrics(iou_type)
    if not gt.get("images"):
        return metrics, "no images were evaluated"
    anns = gt.get("annotations", [])
    need = {"segm": "segmentation", "keypoints": "keypoints"}.get(iou_type)
    if need and any(need not in a for a in anns):
        raise MalformedFieldError(f"{iou_type} evaluation needs '{need}' in every ground-truth annotation", field="gt.annotations")
    if need and any(need not in r for r in results):
        raise MalformedFieldError(f"{iou_type} evaluation needs '{need}' in every result", field="results")
    if not any(not a.get("iscrowd", 0) and (iou_type != "keypoints" or a.get("num_keypoints", 0) > 0) for a in anns):
        return metrics, "the ground truth holds no (non-crowd) objects, so AP is undefined"
    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_gt = coco_mod.COCO()
        coco_gt.dataset = {k: (list(v) if isinstance(v, list) else v) for k, v in gt.items()}
        coco_gt.dataset.setdefault("info", {})
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes([dict(r) for r in results])  # loadRes writes ids/areas into its input
        else:
            coco_dt = coco_mod.COCO()
            coco_dt.dataset = {"images": list(gt["images"]), "categories": list(gt["categories"]), "annotations": []}
            coco_dt.createIndex()
        ev = cocoeval_mod.COCOeval(coco_gt, coco_dt, iou_type)
        if iou_type == "keypoints":
            k = len(anns[0]["keypoints"]) // 3
            if kpt_oks_sigmas is not None:
                sigmas = np.asarray(kpt_oks_sigmas, dtype=np.float64)
                if sigmas.shape != (k,):
                    raise MalformedFieldError(f"{sigmas.size} OKS sigmas for {k} keypoints", field="kpt_oks_sigmas")
                ev.params.kpt_oks_sigmas = sigmas
            elif k != len(ev.params.kpt_oks_sigmas):
                raise MalformedFieldError(f"{k} keypoints per object: pass kpt_oks_sigmas (COCO's are for 17)", field="kpt_oks_sigmas")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for name, value in zip(METRIC_NAMES[iou_type], ev.stats):
        metrics[name] = float(value) * 100.0 if value >= 0 else math.nan
    if per_category:
        precision = ev.eval["precision"]  # [T, R, K, A, M]
        for k_idx, cat_id in enumerate(ev.params.catIds):
            p = precision[:, :, k_idx, 0, -1]
            p = p[p > -1]
            metrics[f"AP-{coco_gt.cats[cat_id]['name']}"] = float(p.mean() * 100.0) if p.size else math.nan
    return metrics, None


class COCOEvaluator:
    """COCO mAP with detectron2's ``DatasetEvaluator`` interface, against teacher ground truth.

    ``process(inputs, outputs)`` takes, per image, an input dict with ``image_id``,
    ``height``, ``width`` and the reference objects under ``instances`` or ``targets``
    (teacher predictions: torchvision- or detectron2-style; scored detections below
    ``score_thresh`` are dropped) or ``annotations`` (detectron2 dataset-dict
    annotations), and an output dict (the prediction on the compressed input,
    torchvision-style, or detectron2's ``{"instances": ...}``).  ``evaluate()``
    returns ``{iou_type: {"AP": ..., "AP50": ..., ...}}`` in percent; when
    AP is undefined every value is NaN and :attr:`reason` says why (also logged).

    ``categories`` are COCO category dicts or ``{id: name}`` (``None``: one per label
    seen in the ground truth).  Labels are COCO category ids.

    ``key``: evaluate one task of multi-task inputs and outputs: the reference is ``inputs[i][key]``
    and the prediction ``outputs[i][key]``; an image whose reference is ``None`` is not evaluated
    by this evaluator (so several evaluators with different references share one loop).
    """

    def __init__(
        self,
        iou_type: str = "bbox",
        categories: Sequence[Mapping[str, Any]] | Mapping[int, str] | None = None,
        *,
        score_thresh: float = 0.5,
        mask_threshold: float = 0.5,
        kpt_oks_sigmas: Sequence[float] | None = None,
        per_category: bool = False,
        key: str | None = None,
    ):
        if iou_type not in IOU_TYPES:
            raise MalformedFieldError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}", field="iou_type")
        self.iou_type = iou_type
        self.categories = categories
        self.score_thresh = float(score_thresh)
        self.mask_threshold = float(mask_threshold)
        self.kpt_oks_sigmas = kpt_oks_sigmas
        self.per_category = per_category
        self.key = key
        self.reason: str | None = None
        self.reset()

    def reset(self) -> None:
        """Forget every processed image."""
        self._images: list[dict] = []
        self._gt: list[Instances] = []
        self._preds: list[Instances] = []
        self._seen: set[int] = set()
        self.reason = None

    def process(self, inputs: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]]) -> None:
        """Record one batch: ``inputs[i]`` holds image i's reference, ``outputs[i]`` its prediction."""
        inputs, outputs = list(inputs), list(outputs)
        if len(inputs) != len(outputs):
            raise MalformedFieldError(f"{len(inputs)} inputs but {len(outputs)} outputs", field="outputs")
        for i, (inp, out) in enumerate(zip(inputs, outputs)):
            field = f"inputs[{i}]"
            if not isinstance(inp, Mapping) or "image_id" not in inp:
                raise MalformedFieldError("an input needs image_id, height and width", field=field)
            if self.key is not None:
                if inp.get(self.key) is None:
                    continue
                inp = {**inp, "instances": inp[self.key]}
                out = (out or {}).get(self.key)
                if out is None:
                    raise MalformedFieldError(f"no {self.key!r} prediction for image {inp['image_id']}",
                                              field=f"outputs[{i}].{self.key}")
            rec = _image_record(inp, field)
            if rec["id"] in self._seen:
                raise MalformedFieldError(f"image_id {rec['id']} was already processed", field=f"{field}.image_id")
            ref = next((inp[k] for k in ("instances", "targets") if inp.get(k) is not None), None)
            if ref is not None:
                gt = _teacher_instances(ref, field, self.score_thresh, self.mask_threshold)
            elif inp.get("annotations") is not None:
                gt = _annotations_as_instances(inp["annotations"], rec["height"], rec["width"], f"{field}.annotations")
            else:
                raise MalformedFieldError("an input needs the reference objects as instances, targets or annotations", field=field)
            pred = instances(out, f"outputs[{i}]", mask_threshold=self.mask_threshold)
            if pred.scores is None:
                raise MalformedFieldError("predictions need scores", field=f"outputs[{i}].scores")
            self._seen.add(rec["id"])
            self._images.append(rec)
            self._gt.append(gt)
            self._preds.append(pred)

    def ground_truth(self) -> dict:
        """The COCO ground-truth dict of everything processed so far."""
        as_pred = [{"boxes": g.boxes, "labels": g.labels, "masks": g.masks, "keypoints": g.keypoints} for g in self._gt]
        return predictions_to_coco_gt(as_pred, self._images, self.categories, score_thresh=0.0)

    def results(self) -> list[dict]:
        """The COCO results JSON of everything processed so far."""
        as_pred = [{"boxes": p.boxes, "labels": p.labels, "scores": p.scores, "masks": p.masks, "keypoints": p.keypoints}
                   for p in self._preds]
        return to_coco_results(as_pred, [r["id"] for r in self._images])

    @property
    def images(self) -> int:
        """Images processed (evaluated) so far."""
        return len(self._images)

    @property
    def objects(self) -> int:
        """Reference objects of the images processed so far."""
        return sum(len(g) for g in self._gt)

    def evaluate(self) -> dict[str, dict[str, float]]:
        """``{iou_type: metrics}`` (``{key: ...}`` with ``key``) in percent (NaN with :attr:`reason` when undefined)."""
        metrics, self.reason = coco_evaluate(
            self.ground_truth(), self.results(), self.iou_type,
            kpt_oks_sigmas=self.kpt_oks_sigmas, per_category=self.per_category,
        )
        if self.reason:
            log.warning("COCO %s evaluation: %s", self.iou_type, self.reason)
        return {self.key or self.iou_type: metrics}


class DatasetEvaluators:
    """Several evaluators fed by one loop (detectron2's ``DatasetEvaluators``): ``evaluate()`` merges
    their result dicts (a key two evaluators share is refused)."""

    def __init__(self, evaluators: Sequence[Any]):
        self.evaluators = list(evaluators)

    def reset(self) -> None:
        for e in self.evaluators:
            e.reset()

    def process(self, inputs: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]]) -> None:
        for e in self.evaluators:
            e.process(inputs, outputs)

    def evaluate(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for e in self.evaluators:
            for key, value in (e.evaluate() or {}).items():
                if key in out:
                    raise MalformedFieldError(f"two evaluators both report {key!r}", field="evaluators")
                out[key] = value
        return out
