"""Framework-neutral views of prediction dicts (private to :mod:`ssb.adapters`).

SSB task heads return torchvision-style dicts (``boxes`` xyxy absolute pixels,
``labels``, ``scores``, optional ``masks`` and ``keypoints``), holding torch
tensors or numpy arrays.  Detectron2 names the same fields ``pred_boxes``,
``pred_classes``, ``scores``, ``pred_masks`` and ``pred_keypoints``.  This
module turns either into one validated numpy form without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ssb.errors import MalformedFieldError

#: detectron2 Instances field -> torchvision detection field
D2_TO_TV = {
    "pred_boxes": "boxes",
    "pred_classes": "labels",
    "scores": "scores",
    "pred_masks": "masks",
    "pred_keypoints": "keypoints",
}


def as_numpy(value: Any) -> np.ndarray:
    """A numpy view of a numpy array, torch tensor (any device) or nested sequence."""
    if not isinstance(value, np.ndarray) and hasattr(getattr(value, "tensor", None), "detach"):
        value = value.tensor  # detectron2 Boxes wraps its [N, 4] tensor
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def numeric(value: Any, field: str, dtype=np.float64) -> np.ndarray:
    """``as_numpy(value)`` cast to ``dtype``, refusing non-numeric content with a field-naming error."""
    arr = as_numpy(value)
    if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.number):
        raise MalformedFieldError(f"expected numbers, got dtype {arr.dtype}", field=field)
    return arr if dtype is None else arr.astype(dtype, copy=False)


@dataclass(frozen=True)
class Instances:
    """One image's instances as numpy arrays (``None`` where a field is absent).

    boxes: float64 [N, 4] xyxy absolute pixels; labels: int64 [N]; scores: float64 [N];
    masks: bool [N, H, W]; keypoints: float64 [N, K, 3] (x, y, visibility/score).
    """

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None = None
    masks: np.ndarray | None = None
    keypoints: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, keep: np.ndarray) -> "Instances":
        """The instances where boolean ``keep`` is true."""
        pick = (lambda a: None if a is None else a[keep])
        return Instances(self.boxes[keep], self.labels[keep], pick(self.scores), pick(self.masks), pick(self.keypoints))

    def confident(self, score_thresh: float) -> "Instances":
        """Instances scoring at least ``score_thresh`` (all, when unscored) with positive width and height."""
        keep = (self.boxes[:, 2] > self.boxes[:, 0]) & (self.boxes[:, 3] > self.boxes[:, 1])
        if self.scores is not None:
            keep &= self.scores >= score_thresh
        return self.select(keep)


def instances(pred: Mapping[str, Any], field: str = "prediction", *, mask_threshold: float = 0.5) -> Instances:
    """Validate a torchvision- or detectron2-style prediction dict into :class:`Instances`.

    Masks may be [N, H, W] or [N, 1, H, W], boolean or probabilities (thresholded at
    ``mask_threshold``).  Keypoints may be [N, K, 3] or [N, K, 2] (visibility 2 added).
    ``field`` names the dict in error messages (for example ``"outputs[3]"``).
    """
    if hasattr(pred, "get_fields"):  # a detectron2 Instances object
        pred = pred.get_fields()
    if not isinstance(pred, Mapping):
        raise MalformedFieldError(f"expected a dict of arrays, got {type(pred).__name__}", field=field)
    if "instances" in pred:  # a detectron2 model output: {"instances": Instances}
        return instances(pred["instances"], f"{field}.instances", mask_threshold=mask_threshold)
    data = {D2_TO_TV.get(k, k): v for k, v in pred.items() if k in D2_TO_TV or k in D2_TO_TV.values()}
    if "boxes" not in data or "labels" not in data:
        raise MalformedFieldError(
            f"a prediction needs 'boxes' and 'labels' (or detectron2 'pred_boxes' and 'pred_classes'); has {sorted(pred)}",
            field=field,
        )
    boxes = numeric(data["boxes"], f"{field}.boxes")
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise MalformedFieldError(f"boxes must be [N, 4], got shape {boxes.shape}", field=f"{field}.boxes")
    if not np.all(np.isfinite(boxes)):
        raise MalformedFieldError("boxes hold non-finite values", field=f"{field}.boxes")
    n = boxes.shape[0]
    labels = numeric(data["labels"], f"{field}.labels").reshape(-1)
    if labels.shape != (n,):
        raise MalformedFieldError(f"{labels.size} labels for {n} boxes", field=f"{field}.labels")
    if labels.size and not np.all(labels == np.round(labels)):
        raise MalformedFieldError("labels must be integers", field=f"{field}.labels")
    labels = labels.astype(np.int64)
    scores = None
    if data.get("scores") is not None:
        scores = numeric(data["scores"], f"{field}.scores").reshape(-1)
        if scores.shape != (n,) or not np.all(np.isfinite(scores)):
            raise MalformedFieldError(f"scores must be {n} finite values, got shape {scores.shape}", field=f"{field}.scores")
    masks = None
    if data.get("masks") is not None:
        masks = numeric(data["masks"], f"{field}.masks", dtype=None)
        if masks.ndim == 4 and masks.shape[1] == 1:
            masks = masks[:, 0]
        if masks.ndim != 3 or masks.shape[0] != n:
            raise MalformedFieldError(f"masks must be [N, H, W] or [N, 1, H, W] with N={n}, got {masks.shape}", field=f"{field}.masks")
        masks = masks if masks.dtype == np.bool_ else masks > mask_threshold
    keypoints = None
    if data.get("keypoints") is not None:
        keypoints = numeric(data["keypoints"], f"{field}.keypoints")
        if keypoints.size == 0 and n == 0:
            keypoints = keypoints.reshape(0, keypoints.shape[1] if keypoints.ndim == 3 else 0, 3)
        if keypoints.ndim != 3 or keypoints.shape[0] != n or keypoints.shape[2] not in (2, 3):
            raise MalformedFieldError(f"keypoints must be [N, K, 3] with N={n}, got {keypoints.shape}", field=f"{field}.keypoints")
        if keypoints.shape[2] == 2:
            keypoints = np.concatenate([keypoints, np.full(keypoints.shape[:2] + (1,), 2.0)], axis=2)
        if not np.all(np.isfinite(keypoints)):
            raise MalformedFieldError("keypoints hold non-finite values", field=f"{field}.keypoints")
    return Instances(boxes, labels, scores, masks, keypoints)
