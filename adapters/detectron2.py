"""detectron2's conventions without detectron2: box modes, ``Instances`` fields, dataset dicts.

:class:`BoxMode` has detectron2's values; :func:`to_detectron2_instances_dict` gives the fields of
an ``Instances`` (``pred_boxes``, ``scores``, ``pred_classes``, ``pred_keypoints``,
``pred_masks``) for one prediction; :func:`dataset_dict` and :func:`annotations_from_prediction`
build detectron2 dataset dicts.  Nothing here imports torch or detectron2.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ssb.errors import MalformedFieldError

from ._arrays import Instances, instances
from .coco import _teacher_instances
from .rle import mask_to_rle, rle_to_mask

__all__ = ["BoxMode", "to_detectron2_instances_dict", "dataset_dict", "annotations_from_prediction"]


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
