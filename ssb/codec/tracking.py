"""Object tracks for the index: encoder-side detections linked across frames (SORT-style).

Each track keeps its last box and a constant-velocity estimate of its centre and size; every new
frame's detections are matched to the tracks' predicted boxes of the same class by maximum IoU
(Hungarian assignment, ``scipy.optimize.linear_sum_assignment``), a match needing IoU >=
``iou_threshold``.  Matched tracks take the detection (and update their velocity, smoothed), the
others age and are dropped after ``max_age`` frames without a match, and unmatched detections
start new tracks.  Track ids increase and are never reused in a stream: the index's ``object_id``
of a video stream is its track id (sequence metadata ``"object_ids": "tracks"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Tracker", "Track", "iou_matrix"]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` [N, 4] with every box of ``b`` [M, 4] (xyxy)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass
class Track:
    id: int
    class_id: int
    box: np.ndarray  #: last matched box, xyxy
    velocity: np.ndarray  #: per frame: centre x, centre y, width, height
    age: int = 0  #: frames since the last match
    hits: int = 1

    def predicted(self, frames: int = 1) -> np.ndarray:
        cx, cy = (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2
        w, h = self.box[2] - self.box[0], self.box[3] - self.box[1]
        cx, cy = cx + self.velocity[0] * frames, cy + self.velocity[1] * frames
        w, h = max(w + self.velocity[2] * frames, 1.0), max(h + self.velocity[3] * frames, 1.0)
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


class Tracker:
    """Link per-frame detections into tracks; :meth:`update` returns each detection's track id."""

    def __init__(self, *, iou_threshold: float = 0.3, max_age: int = 10, smoothing: float = 0.5):
        self.iou_threshold = float(iou_threshold)
        self.max_age = int(max_age)
        self.smoothing = float(smoothing)
        self.tracks: list[Track] = []
        self.next_id = 1

    def update(self, boxes, labels, gap: int = 1) -> list[int]:
        """Track ids (one per detection, in order) for this frame's detections; ``gap``: frames since the
        previous update (2 when a frame was skipped)."""
        from scipy.optimize import linear_sum_assignment

        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        ids = [0] * len(boxes)
        pred = np.array([t.predicted(gap + t.age) for t in self.tracks]).reshape(-1, 4)
        iou = iou_matrix(pred, boxes)
        if len(self.tracks) and len(boxes):
            same = np.array([t.class_id for t in self.tracks])[:, None] == labels[None, :]
            cost = np.where(same, -iou, 1.0)
            rows, cols = linear_sum_assignment(cost)
            matched = [(r, c) for r, c in zip(rows, cols) if same[r, c] and iou[r, c] >= self.iou_threshold]
        else:
            matched = []
        used_t, used_d = set(), set()
        for r, c in matched:
            t = self._match(self.tracks[r], boxes[c], gap + self.tracks[r].age)
            ids[c] = t.id
            used_t.add(r)
            used_d.add(c)
        for r, t in enumerate(self.tracks):
            if r not in used_t:
                t.age += gap
        self.tracks = [t for t in self.tracks if t.age <= self.max_age]
        for c in range(len(boxes)):
            if c not in used_d:
                t = Track(self.next_id, int(labels[c]), boxes[c].copy(), np.zeros(4))
                self.next_id += 1
                self.tracks.append(t)
                ids[c] = t.id
        return ids

    def _match(self, t: Track, box: np.ndarray, frames: int) -> Track:
        def state(b):
            return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]])

        v = (state(box) - state(t.box)) / max(frames, 1)
        t.velocity = v if t.hits == 1 else self.smoothing * v + (1 - self.smoothing) * t.velocity
        t.box, t.age = box.copy(), 0
        t.hits += 1
        return t
