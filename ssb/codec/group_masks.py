"""Where group masks come from: a caller's label image, or detections intersected with a foreground mask.

A *label image* is the encoder's whole grouping of a frame: an integer ``H x W`` array where 0 is
the background group and ``k >= 1`` is group ``k``; every pixel belongs to exactly one group.

* :func:`read_label_image` reads one from a PNG (8- or 16-bit, one channel), as
  ``ssb encode --groups MASKS.png`` does.
* :func:`labels_from_detections` builds one from encoder-side detections: each detection with
  score ``>= min_score`` becomes a group whose mask is its box intersected with a foreground mask
  (pixels that are not background scenery).  Where there is no foreground mask (a still image,
  no motion history) or the foreground covers too little of the box (an object standing still is
  absorbed by the background model), the box itself is the mask: a documented fallback, not an
  instance segmentation.
* :class:`ForegroundModel` gives foreground masks for a static camera: OpenCV's MOG2 background
  subtraction over the preceding frames, shadows excluded, small specks opened away and holes
  closed, then dilated by a few pixels so the mask includes the object's outline.

:func:`describe_groups` attaches a class, score and box to each group of a label image, from
the detections that overlap it most.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssb._optional import require
from ssb.errors import LimitExceededError, MalformedFieldError

__all__ = [
    "MAX_GROUPS",
    "GroupInfo",
    "ForegroundModel",
    "read_label_image",
    "check_labels",
    "labels_from_detections",
    "describe_groups",
]

#: Most groups (objects) in one frame; ids are 1..MAX_GROUPS (16-bit label images).
MAX_GROUPS = 4096


@dataclass(frozen=True)
class GroupInfo:
    """What the index says about one group: its id (label value) and, if known, class and score."""

    group_id: int
    class_id: int | None = None
    score: float | None = None


class ForegroundModel:
    """Foreground masks of a static-camera video: MOG2 over the frames it has seen.

    Feed every frame in order with :meth:`apply`; masks are meaningful once the model has seen
    some history (the pipeline feeds ``warmup`` frames before the first frame it encodes).
    """

    def __init__(self, *, history: int = 200, var_threshold: float = 16.0, dilate: int = 3):
        cv2 = require("cv2", "foreground masks (background subtraction)")
        self._cv2 = cv2
        self._mog = cv2.createBackgroundSubtractorMOG2(history=history, varThreshold=var_threshold,
                                                       detectShadows=True)
        self._open = np.ones((3, 3), np.uint8)
        self._close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
        self._dilate = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1,) * 2) if dilate else None

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """Update the model with an RGB uint8 frame and return its boolean foreground mask."""
        cv2 = self._cv2
        fg = (self._mog.apply(np.ascontiguousarray(rgb[..., ::-1])) == 255).astype(np.uint8)  # 127 = shadow
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self._open)
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, self._close)
        if self._dilate is not None:
            fg = cv2.dilate(fg, self._dilate)
        return fg.astype(bool)


def check_labels(labels: np.ndarray, shape: tuple[int, int], field: str = "groups") -> np.ndarray:
    """Validate a label image for a frame of ``shape`` (height, width); returns it as ``uint16``."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape != tuple(shape):
        raise MalformedFieldError(f"label image of shape {labels.shape} does not match the {shape[0]}x{shape[1]} "
                                  "frame", field=field)
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and int(labels.min()) < 0):
        raise MalformedFieldError("a label image holds non-negative integers (0 = background)", field=field)
    if labels.size and int(labels.max()) > MAX_GROUPS:
        raise LimitExceededError(f"label {int(labels.max())} exceeds the {MAX_GROUPS} groups a frame may hold",
                                 field=field)
    return labels.astype(np.uint16, copy=False)


def read_label_image(path: str | Path) -> np.ndarray:
    """A label image from a one-channel PNG (8 or 16 bit): 0 = background, k = group k."""
    cv2 = require("cv2", "reading label images")
    p = Path(path)
    if not p.is_file():
        raise MalformedFieldError(f"no label image at {p}", field="groups")
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise MalformedFieldError(f"{p} is not an image OpenCV can read", field="groups")
    if img.ndim == 3:
        if not (np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])):
            raise MalformedFieldError(f"{p} is a colour image; a label image has one channel (0 = background, "
                                      "k = group k)", field="groups")
        img = img[..., 0]
    if img.dtype not in (np.uint8, np.uint16):
        raise MalformedFieldError(f"{p} has {img.dtype} pixels; expected 8- or 16-bit labels", field="groups")
    return img


def _box_pixels(box, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel rows/columns ``(x0, y0, x1, y1)`` (exclusive ends) covered by a float box, clipped."""
    h, w = shape
    x0, y0, x1, y1 = (float(v) for v in box)
    return (min(max(int(np.floor(x0)), 0), w), min(max(int(np.floor(y0)), 0), h),
            min(max(int(np.ceil(x1)), 0), w), min(max(int(np.ceil(y1)), 0), h))


def labels_from_detections(detections: dict, shape: tuple[int, int], foreground: np.ndarray | None = None, *,
                           min_score: float = 0.5, min_fg_fraction: float = 0.15
                           ) -> tuple[np.ndarray, list[GroupInfo]]:
    """Label image and group descriptions from one frame's detections (boxes in frame pixels).

    Detections are taken best score first; a pixel already claimed by a better detection stays
    with it.  Each group's mask is its box AND ``foreground``, or the whole box when there is no
    foreground mask or it covers less than ``min_fg_fraction`` of the box.  Detections whose
    mask ends up empty make no group.
    """
    h, w = shape
    labels = np.zeros((h, w), dtype=np.uint16)
    infos: list[GroupInfo] = []
    scores = [float(s) for s in detections["scores"].tolist()]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    boxes, classes = detections["boxes"].tolist(), detections["labels"].tolist()
    for i in order:
        if scores[i] < min_score or len(infos) >= MAX_GROUPS:
            continue
        x0, y0, x1, y1 = _box_pixels(boxes[i], shape)
        if x1 <= x0 or y1 <= y0:
            continue
        free = labels[y0:y1, x0:x1] == 0
        region = free
        if foreground is not None:
            fg = foreground[y0:y1, x0:x1] & free
            if fg.sum() >= min_fg_fraction * fg.size:
                region = fg
        if not region.any():
            continue
        gid = len(infos) + 1
        labels[y0:y1, x0:x1][region] = gid
        infos.append(GroupInfo(gid, int(classes[i]), scores[i]))
    return labels, infos


def describe_groups(labels: np.ndarray, detections: dict | None = None, *, min_overlap: float = 0.5
                    ) -> list[GroupInfo]:
    """Class and score of each group of a caller's label image, from the detections it overlaps.

    A group takes the class of the best-scoring detection whose box holds at least
    ``min_overlap`` of the group's pixels; without one (or without detections) it has no class.
    """
    ids = [int(v) for v in np.unique(labels) if v != 0]
    if not ids:
        return []
    boxes = [] if detections is None else detections["boxes"].tolist()
    classes = [] if detections is None else detections["labels"].tolist()
    scores = [] if detections is None else [float(s) for s in detections["scores"].tolist()]
    out = []
    for gid in ids:
        ys, xs = np.nonzero(labels == gid)
        best = None
        for box, cls, score in zip(boxes, classes, scores):
            x0, y0, x1, y1 = box
            inside = np.count_nonzero((xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1))
            if inside >= min_overlap * xs.size and (best is None or score > best[1]):
                best = (int(cls), score)
        out.append(GroupInfo(gid, *best) if best else GroupInfo(gid))
    return out
