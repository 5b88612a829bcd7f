"""COCO conventions without pycocotools at write time: results JSON and teacher ground truth.

SSB heads return torchvision-style dicts per image: ``boxes`` (xyxy, absolute pixels),
``labels`` (COCO category ids), ``scores``, optional ``masks`` ([N, H, W] or [N, 1, H, W],
boolean or probabilities) and ``keypoints`` ([N, K, 3]: x, y, visibility).  This module turns
them into COCO results JSON (:func:`to_coco_results`, masks as compressed RLE) and a COCO
ground-truth dict built from a *teacher's* predictions on the original pixels
(:func:`predictions_to_coco_gt`), so accuracy after compression is measured "against the
teacher".  Evaluation (pycocotools) is :mod:`ssb.adapters.evaluation`; detectron2's field names
and dataset dicts are :mod:`ssb.adapters.detectron2`.  Nothing here imports torch or pycocotools.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ssb.errors import MalformedFieldError

from ._arrays import Instances, instances
from .rle import mask_to_rle

__all__ = ["to_coco_results", "predictions_to_coco_gt", "mask_to_rle"]


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
