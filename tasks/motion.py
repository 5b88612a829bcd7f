"""Per-object motion read from the MOTION units and the index alone (no feature, residual or pixel).

For each object the index describes in a frame (box, class, score and, in video streams, its
track id), :class:`MotionHead` averages the frame's decoded motion field over the cells the box
covers that move: how far the object moved since the previous frame (``displacement``, frame
pixels per frame), how fast (``speed``: pixels per second when the stream's frame rate is known,
else per frame) and which way (``direction``: degrees, image axes, 0 = rightwards, 90 = down).
``ssb analyze --task motion`` runs it on a plan that reads MOTION units only: the input of the
action-recognition head, and of any motion analytics a user writes on top.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["MotionHead"]


class MotionHead:
    """``motion`` task head: per object ``displacement`` [N, 2], ``speed`` [N], ``direction`` [N], ``moving`` [N]."""

    #: what the head reads from a stream: motion and the index, no features
    needs = ("motion",)
    required_features: dict = {}
    needs_group_masks = False

    def __init__(self, *, classes: Sequence[int] | None = None, min_score: float = 0.0, fps: float | None = None):
        self.classes = None if classes is None else {int(c) for c in classes}
        self.min_score = float(min_score)
        self.fps = fps

    def __call__(self, features, image_sizes=None, *, frame=None) -> list[dict]:
        if frame is None:
            from ssb.errors import MalformedFieldError

            raise MalformedFieldError("the motion head needs the decoded frame (its motion and index objects)",
                                      field="frame")
        objs = [o for o in frame.objects if o.bbox is not None and (self.classes is None or o.class_id in self.classes)
                and (o.score is None or o.score >= self.min_score)]
        n = len(objs)
        disp = np.zeros((n, 2), dtype=np.float32)
        moving = np.zeros(n, dtype=np.float32)
        if frame.motion is not None:
            for i, o in enumerate(objs):
                dx, dy, share = frame.motion.displacement(o.bbox)
                disp[i], moving[i] = (dx, dy), share
        per_frame = np.hypot(disp[:, 0], disp[:, 1])
        rate = self.fps or getattr(frame, "fps", None) or 0.0
        speed = per_frame * rate if rate else per_frame
        direction = np.degrees(np.arctan2(disp[:, 1], disp[:, 0])) % 360.0
        return [{
            "boxes": torch.tensor([list(o.bbox) for o in objs], dtype=torch.float32).reshape(n, 4),
            "labels": torch.tensor([o.class_id if o.class_id is not None else 0 for o in objs], dtype=torch.int64),
            "scores": torch.tensor([o.score if o.score is not None else 1.0 for o in objs], dtype=torch.float32),
            "track_ids": torch.tensor([o.object_id if o.object_id is not None else -1 for o in objs],
                                      dtype=torch.int64),
            "displacement": torch.from_numpy(disp), "speed": torch.from_numpy(speed.astype(np.float32)),
            "direction": torch.from_numpy(direction.astype(np.float32)), "moving": torch.from_numpy(moving),
            "per_second": bool(rate), "has_motion": frame.motion is not None,
        }]

