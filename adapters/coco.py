"""COCO and detectron2 conventions without detectron2: box modes, results JSON, mAP.

SSB detection heads return torchvision-style dicts per image: ``boxes`` (xyxy,
absolute pixels), ``labels`` (COCO category ids), ``scores``, optional
``masks`` ([N, H, W] or [N, 1, H, W], boolean or probabilities) and
``keypoints`` ([N, K, 3]: x, y, visibility).  This module turns them into

* COCO results JSON (:func:`to_coco_results`) for pycocotools or any leaderboard tool;
* a COCO ground-truth dict built from a *teacher's* predictions on the original
  pixels (:func:`predictions_to_coco_gt`), so accuracy after compression is
  measured "against the teacher";
* mAP through pycocotools' ``COCOeval`` behind detectron2's evaluator interface
  (:class:`COCOEvaluator`), results in percent like detectron2;
* detectron2 field names and dataset dicts (:func:`to_detectron2_instances_dict`,
  :func:`dataset_dict`), and detectron2's :class:`BoxMode` values.

Nothing here imports torch, and pycocotools is imported only when a function needs it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from enum import IntEnum
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ssb.errors import MalformedFieldError

from ._arrays import Instances, as_numpy, instances

__all__ = [
    "BoxMode",
    "mask_to_rle",
    "rle_to_mask",
    "to_coco_results",
    "predictions_to_coco_gt",
    "annotations_from_prediction",
    "coco_evaluate",
    "COCOEvaluator",
    "to_detectron2_instances_dict",
    "dataset_dict",
    "METRIC_NAMES",
]

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


# ---------------------------------------------------------------------------------------------
# Box modes
# ---------------------------------------------------------------------------------------------


class BoxMode(IntEnum):
    """How 4 numbers describe a box; values match detectron2's ``BoxMode``.

    ``XYXY``: corners (x0, y0, x1, y1); ``XYWH``: (x0, y0, width, height).
    ``ABS``: pixels; ``REL``: x divided by image width, y by image height.
    Like detectron2, width is ``x1 - x0`` (no +1).
    """

    XYXY_ABS = 0
    XYWH_ABS = 1
    XYXY_REL = 2
    XYWH_REL = 3

    @property
    def is_relative(self) -> bool:
        return self in (BoxMode.XYXY_REL, BoxMode.XYWH_REL)

    @property
    def is_xywh(self) -> bool:
        return self in (BoxMode.XYWH_ABS, BoxMode.XYWH_REL)

    @staticmethod
    def convert(boxes: Any, from_mode: "BoxMode | int", to_mode: "BoxMode | int", image_size: tuple[int, int] | None = None):
        """Convert ``boxes`` (last dimension 4) between modes, returning the input's type.

        ``boxes`` may be a numpy array, a torch tensor (any device; torch is never
        imported here), or a list/tuple holding one box or a list of boxes.
        ``image_size`` is ``(height, width)``, needed when either mode is relative.
        Integer inputs are promoted to floating point only when a relative mode is
        involved.  Like detectron2, the input itself is returned when the modes are equal.
        """
        try:
            src, dst = BoxMode(from_mode), BoxMode(to_mode)
        except ValueError as exc:
            raise MalformedFieldError(str(exc), field="box_mode") from exc
        if src == dst:
            return boxes
        relative = src.is_relative or dst.is_relative
        if relative:
            if image_size is None or len(image_size) != 2 or not all(
                isinstance(v, (int, np.integer)) and v > 0 for v in image_size
            ):
                raise MalformedFieldError(
                    f"relative box modes need image_size=(height, width) > 0, got {image_size!r}", field="image_size"
                )
            height, width = (int(v) for v in image_size)
        container = type(boxes) if isinstance(boxes, (list, tuple)) else None
        if hasattr(boxes, "clone") and hasattr(boxes, "is_floating_point"):  # torch.Tensor, duck-typed
            arr = boxes.clone() if boxes.is_floating_point() or not relative else boxes.float()
        else:
            arr = np.array(boxes)
            if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.number):
                raise MalformedFieldError(f"boxes must be numbers, got dtype {arr.dtype}", field="boxes")
            if not (np.issubdtype(arr.dtype, np.floating) or (np.issubdtype(arr.dtype, np.integer) and not relative)):
                arr = arr.astype(np.float64)
        if arr.ndim == 0 or arr.shape[-1] != 4:
            raise MalformedFieldError(f"boxes must have a last dimension of 4, got shape {tuple(arr.shape)}", field="boxes")
        if src.is_relative:
            arr[..., 0::2] *= width
            arr[..., 1::2] *= height
        if src.is_xywh:
            arr[..., 2:4] += arr[..., 0:2]
        if dst.is_xywh:
            arr[..., 2:4] -= arr[..., 0:2]
        if dst.is_relative:
            arr[..., 0::2] /= width
            arr[..., 1::2] /= height
        if container is not None:
            out = arr.tolist()
            return container(out) if arr.ndim == 1 else out
        return arr


# ---------------------------------------------------------------------------------------------
# Masks as COCO run-length encoding
# ---------------------------------------------------------------------------------------------


def mask_to_rle(mask: Any) -> dict:
    """COCO compressed RLE of one [H, W] mask (non-zero = inside), ``counts`` as a str (JSON-ready)."""
    mask_util = _pycocotools("mask")
    m = as_numpy(mask)
    if m.ndim != 2:
        raise MalformedFieldError(f"a mask must be [H, W], got shape {m.shape}", field="mask")
    rle = mask_util.encode(np.asfortranarray(m.astype(bool).astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode a COCO compressed RLE (``counts`` str or bytes) into a boolean [H, W] mask."""
    mask_util = _pycocotools("mask")
    try:
        size = [int(v) for v in rle["size"]]
        counts = rle["counts"]
        counts = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    except (KeyError, TypeError, ValueError, UnicodeEncodeError) as exc:
        raise MalformedFieldError(f"not a compressed COCO RLE: {exc}", field="segmentation") from exc
    if len(size) != 2 or min(size) < 0:
        raise MalformedFieldError(f"RLE size must be [height, width], got {size}", field="segmentation.size")
    with warnings.catch_warnings():  # pycocotools' own numpy-2 copy= deprecation, not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_util.decode({"size": size, "counts": counts}).astype(bool)


# ---------------------------------------------------------------------------------------------
# Predictions -> COCO results / ground truth
# ---------------------------------------------------------------------------------------------


def _xywh(box: np.ndarray) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def _category_mapper(label_to_category):
    if label_to_category is None:
        return int
    if callable(label_to_category):
        return lambda label: int(label_to_category(int(label)))

    def lookup(label):
        try:
            return int(label_to_category[int(label)])
        except (KeyError, IndexError) as exc:
            raise MalformedFieldError(f"label {int(label)} has no COCO category id", field="labels") from exc

    return lookup


def _check_ids(image_ids: Sequence[Any], count: int, what: str) -> list[int]:
    ids = list(image_ids)
    if len(ids) != count:
        raise MalformedFieldError(f"{count} {what} but {len(ids)} image ids", field="image_ids")
    out = []
    for i, v in enumerate(ids):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise MalformedFieldError(f"image ids must be integers, got {v!r}", field=f"image_ids[{i}]")
        out.append(int(v))
    if len(set(out)) != len(out):
        raise MalformedFieldError("image ids must be unique", field="image_ids")
    return out


def to_coco_results(
    predictions: Sequence[Mapping[str, Any]],
    image_ids: Sequence[int],
    *,
    label_to_category: Mapping[int, int] | Sequence[int] | Any = None,
    mask_threshold: float = 0.5,
) -> list[dict]:
    """COCO results JSON (a list of dicts) from per-image torchvision-style predictions.

    Each detection becomes ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``
    plus ``"keypoints"`` (flat ``[x1, y1, v1, ...]``) and ``"segmentation"`` (compressed
    RLE with str counts) when the prediction has keypoints / masks.  ``labels`` are COCO
    category ids unless ``label_to_category`` (mapping, sequence or callable) maps them.
    Predictions must carry ``scores``.
    """
    preds = list(predictions)
    ids = _check_ids(image_ids, len(preds), "predictions")
    to_cat = _category_mapper(label_to_category)
    out: list[dict] = []
    for i, (pred, image_id) in enumerate(zip(preds, ids)):
        inst = instances(pred, f"predictions[{i}]", mask_threshold=mask_threshold)
        if inst.scores is None:
            raise MalformedFieldError("COCO results need scores", field=f"predictions[{i}].scores")
        for j in range(len(inst)):
            det = {
                "image_id": image_id,
                "category_id": to_cat(inst.labels[j]),
                "bbox": _xywh(inst.boxes[j]),
                "score": float(inst.scores[j]),
            }
            if inst.keypoints is not None:
                det["keypoints"] = [float(v) for v in inst.keypoints[j].reshape(-1)]
            if inst.masks is not None:
                det["segmentation"] = mask_to_rle(inst.masks[j])
            out.append(det)
    return out


def _categories(categories, labels: Iterable[int]) -> list[dict]:
    """COCO ``categories`` from dicts / {id: name} / None (then one per label seen, named by id)."""
    if categories is None:
        return [{"id": int(c), "name": str(int(c))} for c in sorted(set(int(v) for v in labels))]
    if isinstance(categories, Mapping):
        return [{"id": int(k), "name": str(v)} for k, v in sorted(categories.items())]
    out = []
    for i, cat in enumerate(categories):
        if not isinstance(cat, Mapping) or "id" not in cat or "name" not in cat:
            raise MalformedFieldError("a category must be a dict with 'id' and 'name'", field=f"categories[{i}]")
        out.append(dict(cat, id=int(cat["id"])))
    return out


def _image_record(img: Mapping[str, Any], field: str) -> dict:
    if not isinstance(img, Mapping):
        raise MalformedFieldError(f"an image must be a dict, got {type(img).__name__}", field=field)
    image_id = img.get("id", img.get("image_id"))
    rec = {k: v for k, v in img.items() if k in ("file_name", "license", "coco_url", "date_captured")}
    try:
        rec.update(id=int(image_id), height=int(img["height"]), width=int(img["width"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedFieldError(f"an image needs integer id, height and width ({exc})", field=field) from exc
    if rec["height"] <= 0 or rec["width"] <= 0:
        raise MalformedFieldError("image height and width must be > 0", field=field)
    return rec


def _teacher_instances(pred, field: str, score_thresh: float, mask_threshold: float) -> Instances:
    """The teacher's confident, non-degenerate instances (score >= thresh, width and height > 0)."""
    return instances(pred, field, mask_threshold=mask_threshold).confident(score_thresh)


def _gt_annotation(inst: Instances, j: int, image_id: int, ann_id: int) -> dict:
    bbox = _xywh(inst.boxes[j])
    ann = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": int(inst.labels[j]),
        "bbox": bbox,
        "area": bbox[2] * bbox[3],
        "iscrowd": 0,
    }
    if inst.masks is not None:
        ann["segmentation"] = mask_to_rle(inst.masks[j])
        ann["area"] = float(inst.masks[j].sum())
    if inst.keypoints is not None:
        kp = inst.keypoints[j]
        ann["keypoints"] = [float(v) for v in kp.reshape(-1)]
        ann["num_keypoints"] = int(np.count_nonzero(kp[:, 2] > 0))
    return ann


def predictions_to_coco_gt(
    predictions: Sequence[Mapping[str, Any]],
    images: Sequence[Mapping[str, Any]],
    categories: Sequence[Mapping[str, Any]] | Mapping[int, str] | None,
    score_thresh: float = 0.5,
    *,
    mask_threshold: float = 0.5,
) -> dict:
    """A COCO ground-truth dict from a teacher's predictions on the original pixels.

    ``images[i]`` (``{"id", "height", "width"}``, or detectron2's ``image_id``) goes with
    ``predictions[i]``.  Detections scoring below ``score_thresh`` and boxes with zero
    width or height are left out.  Annotations get ids from 1 (pycocotools needs > 0),
    ``iscrowd`` 0 and ``area`` (mask pixels when masks exist, else box area); masks
    become RLE ``segmentation``; keypoints add ``keypoints`` and ``num_keypoints``.
    ``categories`` are COCO category dicts, ``{id: name}``, or ``None`` for one per
    label seen.  A label outside the given categories is refused.
    """
    preds, imgs = list(predictions), list(images)
    if len(preds) != len(imgs):
        raise MalformedFieldError(f"{len(preds)} predictions for {len(imgs)} images", field="images")
    image_recs = [_image_record(img, f"images[{i}]") for i, img in enumerate(imgs)]
    _check_ids([r["id"] for r in image_recs], len(image_recs), "images")
    kept = [_teacher_instances(p, f"predictions[{i}]", score_thresh, mask_threshold) for i, p in enumerate(preds)]
    cats = _categories(categories, (int(v) for inst in kept for v in inst.labels))
    known = {c["id"] for c in cats}
    annotations = []
    for i, (inst, rec) in enumerate(zip(kept, image_recs)):
        if inst.masks is not None and inst.masks.shape[1:] != (rec["height"], rec["width"]):
            raise MalformedFieldError(
                f"masks are {inst.masks.shape[1:]} but the image is {(rec['height'], rec['width'])}",
                field=f"predictions[{i}].masks",
            )
        for j in range(len(inst)):
            if int(inst.labels[j]) not in known:
                raise MalformedFieldError(f"label {int(inst.labels[j])} is not among the categories", field=f"predictions[{i}].labels")
            annotations.append(_gt_annotation(inst, j, rec["id"], len(annotations) + 1))
    return {"info": {"description": "teacher predictions as ground truth"}, "images": image_recs,
            "annotations": annotations, "categories": cats}


def annotations_from_prediction(pred: Mapping[str, Any], score_thresh: float = 0.0, *, mask_threshold: float = 0.5) -> list[dict]:
    """detectron2 dataset-dict annotations (``bbox`` XYXY_ABS, ``bbox_mode``, ``category_id``) from a prediction.

    Keeps detections with ``score >= score_thresh`` and positive width and height; adds
    RLE ``segmentation`` and flat ``keypoints`` when present.
    """
    inst = _teacher_instances(pred, "prediction", score_thresh, mask_threshold)
    out = []
    for j in range(len(inst)):
        ann = {"bbox": [float(v) for v in inst.boxes[j]], "bbox_mode": BoxMode.XYXY_ABS,
               "category_id": int(inst.labels[j]), "iscrowd": 0}
        if inst.masks is not None:
            ann["segmentation"] = mask_to_rle(inst.masks[j])
        if inst.keypoints is not None:
            ann["keypoints"] = [float(v) for v in inst.keypoints[j].reshape(-1)]
        out.append(ann)
    return out


# ---------------------------------------------------------------------------------------------
# detectron2 structures as plain dicts
# ---------------------------------------------------------------------------------------------


def _check_size(height, width, field: str) -> tuple[int, int]:
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in (height, width)):
        raise MalformedFieldError(f"height and width must be integers > 0, got {(height, width)!r}", field=field)
    return int(height), int(width)


def to_detectron2_instances_dict(pred: Mapping[str, Any], image_size: tuple[int, int], *, mask_threshold: float = 0.5) -> dict:
    """The fields of a detectron2 ``Instances`` for one torchvision-style prediction, as a plain dict.

    Returns ``{"image_size": (h, w), "pred_boxes": [N, 4] xyxy, "scores", "pred_classes"}``
    plus ``"pred_keypoints"`` [N, K, 3] and ``"pred_masks"`` (boolean [N, H, W]) when
    present.  Values keep the input's array type (torch stays torch); ``pred_classes``
    are the prediction's labels unchanged (COCO ids for SSB heads, whereas detectron2's
    own models use contiguous class indices).
    """
    if not (isinstance(image_size, (tuple, list)) and len(image_size) == 2):
        raise MalformedFieldError(f"image_size must be (height, width), got {image_size!r}", field="image_size")
    h, w = _check_size(*image_size, field="image_size")
    inst = instances(pred, "prediction", mask_threshold=mask_threshold)  # validates shapes
    if inst.masks is not None and inst.masks.shape[1:] != (h, w):
        raise MalformedFieldError(f"masks are {inst.masks.shape[1:]} but image_size is {(h, w)}", field="prediction.masks")
    out = {"image_size": (h, w), "pred_boxes": pred["boxes"], "pred_classes": pred["labels"]}
    if pred.get("scores") is not None:
        out["scores"] = pred["scores"]
    if pred.get("keypoints") is not None:
        out["pred_keypoints"] = pred["keypoints"]
    if pred.get("masks") is not None:
        masks = pred["masks"]
        if masks.ndim == 4:
            masks = masks[:, 0]
        out["pred_masks"] = masks if str(masks.dtype) in ("bool", "torch.bool") else masks > mask_threshold
    return out


def dataset_dict(file_name: str, image_id: int, height: int, width: int, annotations: Iterable[Mapping[str, Any]] = ()) -> dict:
    """A detectron2 dataset dict: ``{"file_name", "image_id", "height", "width", "annotations"}``.

    Each annotation needs ``bbox`` (4 numbers), ``bbox_mode`` (a :class:`BoxMode` or its
    int) and ``category_id``; ``iscrowd`` defaults to 0 and other keys (``segmentation``,
    ``keypoints``) are kept.  See :func:`annotations_from_prediction` to make them.
    """
    h, w = _check_size(height, width, field="height")
    if isinstance(image_id, bool) or not isinstance(image_id, (int, np.integer)):
        raise MalformedFieldError(f"image_id must be an integer, got {image_id!r}", field="image_id")
    anns = []
    for i, ann in enumerate(annotations):
        field = f"annotations[{i}]"
        if not isinstance(ann, Mapping) or not {"bbox", "bbox_mode", "category_id"} <= set(ann):
            raise MalformedFieldError("an annotation needs bbox, bbox_mode and category_id", field=field)
        bbox = np.asarray(ann["bbox"], dtype=np.float64)
        if bbox.shape != (4,) or not np.all(np.isfinite(bbox)):
            raise MalformedFieldError(f"bbox must be 4 finite numbers, got {ann['bbox']!r}", field=f"{field}.bbox")
        try:
            mode = BoxMode(ann["bbox_mode"])
        except ValueError as exc:
            raise MalformedFieldError(str(exc), field=f"{field}.bbox_mode") from exc
        anns.append(dict(ann, bbox=bbox.tolist(), bbox_mode=mode, category_id=int(ann["category_id"]),
                         iscrowd=int(ann.get("iscrowd", 0))))
    return {"file_name": str(file_name), "image_id": int(image_id), "height": h, "width": w, "annotations": anns}


def _annotations_as_instances(annotations: Sequence[Mapping[str, Any]], height: int, width: int, field: str) -> Instances:
    """Instances (no scores) from detectron2 dataset-dict annotations."""
    boxes, labels, masks, keypoints = [], [], [], []
    for i, ann in enumerate(annotations):
        if not isinstance(ann, Mapping) or not {"bbox", "category_id"} <= set(ann):
            raise MalformedFieldError("an annotation needs bbox and category_id", field=f"{field}[{i}]")
        mode = ann.get("bbox_mode", BoxMode.XYWH_ABS)  # COCO's own convention when unspecified
        boxes.append(BoxMode.convert(np.asarray(ann["bbox"], dtype=np.float64), mode, BoxMode.XYXY_ABS, (height, width)))
        labels.append(int(ann["category_id"]))
        if "segmentation" in ann and isinstance(ann["segmentation"], Mapping):
            masks.append(rle_to_mask(ann["segmentation"]))
        if "keypoints" in ann:
            keypoints.append(np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3))
    n = len(boxes)
    pred: dict[str, Any] = {"boxes": np.asarray(boxes).reshape(n, 4), "labels": np.asarray(labels, dtype=np.int64)}
    if masks and len(masks) == n:
        pred["masks"] = np.stack(masks)
    if keypoints and len(keypoints) == n:
        pred["keypoints"] = np.stack(keypoints)
    return instances(pred, field)


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


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
    ):
        if iou_type not in IOU_TYPES:
            raise MalformedFieldError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}", field="iou_type")
        self.iou_type = iou_type
        self.categories = categories
        self.score_thresh = float(score_thresh)
        self.mask_threshold = float(mask_threshold)
        self.kpt_oks_sigmas = kpt_oks_sigmas
        self.per_category = per_category
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

    def evaluate(self) -> dict[str, dict[str, float]]:
        """``{iou_type: metrics}`` in percent (NaN with :attr:`reason` when undefined)."""
        metrics, self.reason = coco_evaluate(
            self.ground_truth(), self.results(), self.iou_type,
            kpt_oks_sigmas=self.kpt_oks_sigmas, per_category=self.per_category,
        )
        if self.reason:
            log.warning("COCO %s evaluation: %s", self.iou_type, self.reason)
        return {self.iou_type: metrics}
