"""Action recognition per tracked object from the MOTION units and the index alone (no features, no pixels).

CoViAR-style: what each track is doing is read from the coded motion, not from decoded pictures.
:class:`ActionHead` (task ``action``, ``needs = ("motion",)``, so a plan reads MOTION units, frame
headers and indexes only: no BASE or RESIDUAL byte) keeps, for every track the index describes
(video streams: ``object_id`` is the track id), a sliding window of the last ``window`` frames.
Per frame and object the window gets one vector of 25 numbers (:func:`motion_features`,
:func:`box_features`):

* the object's box cut in ``3 x 2`` bands (head/torso/legs x left/right); per band the
  area-weighted mean forward displacement ``(dx, dy)`` of the decoded
  :class:`~ssb.codec.video.MotionField` cells it covers and the share of them moving (18);
* over the whole box: the mean displacement of its moving cells and their share (3), as
  :class:`~ssb.tasks.motion.MotionHead` reports it;
* from the index: the box centre's velocity and the rate of change of its log height since the
  track's previous box, and its log aspect (4).

Displacements are in *body heights per second* (divided by the box height, times the stream's
frame rate; 10 fps assumed when the stream has none), so near and far people read alike.  The
window ``[T, 25]`` and its presence mask go through :class:`ActionNet` (two temporal convolutions,
masked mean and max over time, a linear layer) to label scores.

**State.**  The head is stateful across frames: it accumulates each track's window as frames
arrive, so frames must come in increasing order (as :func:`ssb.pipeline.iter_analyze` feeds them);
a frame at or before the last one seen is refused (:class:`~ssb.errors.MalformedFieldError`)
until :meth:`ActionHead.reset` (call it before analysing another stream with the same head).
Frames skipped by a plan leave holes in the windows (the mask says so).

**Output** per frame (one dict, the pipeline's per-image form), one row per object of the wanted
classes whose window holds at least ``min_frames`` frames with motion: ``track_ids`` [N],
``labels`` [N] (the best action's index in :attr:`ActionHead.label_names`), ``scores`` [N] (its
probability), ``action_scores`` [N, C] (every class), ``frames`` [N, 2] (first and last frame of
the window's span), ``boxes`` [N, 4] (the object's box in this frame), ``object_labels`` [N] (its
COCO class), ``speed`` [N] (body heights per second) and ``direction`` [N] (degrees, image axes,
0 = rightwards, 90 = down) of the box centre over the window, and ``label_names``.  Note that
``labels`` are *action* indices: choose the objects with the head's ``classes`` option
(``head_options={"action": {"classes": [1]}}``), or filter its results by ``iter_analyze(classes=...)``,
which reads ``object_labels`` for this head (its :attr:`ActionHead.class_key`).
:func:`per_track` gives one dict per track (``track_id``, ``labels``, ``scores``, ``frames``) as
:func:`ssb.adapters.mmaction.to_action_data_samples` takes them;
:func:`ssb.adapters.mmaction.action_data_samples` makes ``ActionDataSample`` objects of a result.

**Weights.**  ``ssb/weights/action_s8.pt`` (zoo kind ``action``, behind the reference codec): trained
on vtest.avi frames 0..599 against a teacher on the ORIGINAL pixels (SSD tracks + MoveNet pose
dynamics; the rule is in :mod:`ssb.recipes.action_teacher`), classes ``standing``,
``walking_left``, ``walking_right``, ``walking_toward`` and ``walking_away`` (the camera);
``python -m ssb.recipes.train_action`` (docs/action.md).  Its scores are agreement with that
teacher, not a public benchmark result.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ssb.errors import MalformedFieldError
from ssb.tasks.action_features import (
    BANDS,
    BOX_FEATURES,
    DEFAULT_FPS,
    MOTION_FEATURES,
    band_pool,
    box_features,
    flow_features,
    motion_features,
)
from ssb.tasks.action_net import DEFAULT_CONFIG, ActionNet, build_net

__all__ = ["ActionHead", "ActionNet", "TrackWindows", "motion_features", "flow_features", "box_features",
           "band_pool", "per_track", "build_net", "DEFAULT_CONFIG", "MOTION_FEATURES", "BOX_FEATURES", "BANDS"]


# -- windows --------------------------------------------------------------------------------------


class TrackWindows:
    """Per-track sliding windows of per-frame vectors, fed frame by frame in increasing order.

    :meth:`update` takes one frame's objects (track ids, boxes) and the motion part of each, adds
    the index part (:func:`box_features`) and returns, for each object whose window holds at least
    ``min_frames`` frames, ``(track id, first frame, window [T, F] float32, mask [T] float32)``.
    Position ``T - 1`` is the current frame; frames without motion (a stream's first) are masked.
    """

    def __init__(self, window: int = 16, min_frames: int = 8):
        if int(window) < 2 or not 1 <= int(min_frames) <= int(window):
            raise MalformedFieldError(f"need window >= 2 and 1 <= min_frames <= window, got {window}, {min_frames}",
                                      field="window")
        self.window, self.min_frames = int(window), int(min_frames)
        self.reset()

    def reset(self) -> None:
        """Forget every track (a new stream, or a random access)."""
        self.last_frame: int | None = None
        self._tracks: dict[int, deque] = {}
        self._boxes: dict[int, tuple[int, tuple]] = {}

    def update(self, frame: int, track_ids: Sequence[int], boxes, motion_parts, *, fps: float | None = None,
               has_motion: bool = True) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
        frame = int(frame)
        if self.last_frame is not None and frame <= self.last_frame:
            raise MalformedFieldError(f"frame {frame} comes after frame {self.last_frame}: an action head takes a "
                                      "stream's frames in increasing order (reset() it for another stream)",
                                      field="frame.frame_index")
        self.last_frame = frame
        out = []
        for tid, box, part in zip(track_ids, boxes, motion_parts):
            tid = int(tid)
            box = tuple(float(v) for v in box)
            prev = self._boxes.get(tid)
            gap = frame - prev[0] if prev is not None else 0
            vec = np.concatenate([np.asarray(part, np.float32),
                                  box_features(box, prev[1] if prev and gap <= self.window else None, gap, fps)])
            self._boxes[tid] = (frame, box)
            q = self._tracks.setdefault(tid, deque())
            if has_motion:
                q.append((frame, vec, box))
            while q and q[0][0] <= frame - self.window:
                q.popleft()
            if len(q) < self.min_frames or q[-1][0] != frame:
                continue
            x = np.zeros((self.window, len(vec)), dtype=np.float32)
            mask = np.zeros(self.window, dtype=np.float32)
            for f, v, _ in q:
                x[self.window - 1 - (frame - f)] = v
                mask[self.window - 1 - (frame - f)] = 1.0
            out.append((tid, int(q[0][0]), x, mask))
        for tid in [t for t, (f, _) in self._boxes.items() if f <= frame - self.window]:
            self._boxes.pop(tid, None)
            self._tracks.pop(tid, None)
        return out

    def trajectory(self, track_id: int) -> tuple[float, float]:
        """``(speed in box heights per frame, direction in degrees)`` of the track's box centre over its window."""
        q = self._tracks.get(int(track_id))
        if not q or len(q) < 2:
            return 0.0, 0.0
        (fa, _, a), (fb, _, b) = q[0], q[-1]
        dx, dy = (b[0] + b[2] - a[0] - a[2]) / 2, (b[1] + b[3] - a[1] - a[3]) / 2
        h = max(np.median([e[2][3] - e[2][1] for e in q]), 1.0)
        return float(np.hypot(dx, dy) / h / max(fb - fa, 1)), float(np.degrees(np.arctan2(dy, dx)) % 360.0)


# -- the head -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WholeFrame:
    """The pseudo-object of a frame with no tracked object (``whole_frame``)."""

    object_id: int
    class_id: int | None
    bbox: tuple[float, float, float, float]
    score: float | None


class ActionHead:
    """``action`` task head: per tracked object, action label scores over a sliding window (module doc).

    Parameters
    ----------
    weights:
        A zoo id or a checkpoint path (default: the zoo's ``action`` model); ``pretrained=False``
        leaves the classifier randomly initialised with ``config`` (tests, training).
    behind:
        The codec id of the streams it will read (a checkpoint trained behind another is refused).
    classes:
        COCO ids of the objects to label (default: person); ``None``: every tracked object.
    min_score:
        Objects the index scores below this are ignored.
    window, min_frames:
        Override the checkpoint's window length and the frames with motion a window needs.
    whole_frame:
        Label a frame holding no tracked object of ``classes`` as one object, the whole frame (track
        id 0): for models trained on whole clips (default: the checkpoint's ``whole_frame``).
    """

    needs = ("motion",)
    required_features: dict = {}
    needs_group_masks = False
    kind = "action"
    #: where the objects' classes are (``labels`` are actions): what ``iter_analyze(classes=...)`` filters
    class_key = "object_labels"

    def __init__(self, *, weights: str | Path | None = None, pretrained: bool = True, behind: str | None = None,
                 classes: Sequence[int] | None = (1,), min_score: float = 0.0, window: int | None = None,
                 min_frames: int | None = None, whole_frame: bool | None = None, config: dict | None = None):
        if not 0.0 <= float(min_score) <= 1.0:
            raise MalformedFieldError(f"min_score must be in [0, 1], got {min_score}", field="min_score")
        self.classes = None if classes is None else {int(c) for c in classes}
        self.min_score = float(min_score)
        self.identity, self.meta = None, {}
        if pretrained:
            from ssb.codec import zoo

            ckpt = zoo.read(self.kind, weights, behind=behind)
            self.config = {**DEFAULT_CONFIG, **dict(ckpt["config"])}
            self.net = build_net(self.config)
            self.net.load_state_dict(ckpt["state_dict"])
            self.identity, self.meta = ckpt["identity"], dict(ckpt.get("meta") or {})
        else:
            self.config = {**DEFAULT_CONFIG, **dict(config or {})}
            self.net = build_net(self.config)
        if self.config.get("source", "motion") != "motion":
            raise MalformedFieldError(f"these weights classify {self.config['source']!r} windows; the action head "
                                      "reads motion units", field="weights.config.source")
        self.net.eval()
        self.label_names = tuple(str(n) for n in self.config["labels"])
        if len(self.label_names) != int(self.config["num_classes"]):
            raise MalformedFieldError(f"{len(self.label_names)} label names for {self.config['num_classes']} classes",
                                      field="weights.config.labels")
        self.windows = TrackWindows(int(window or self.config["window"]),
                                    int(min_frames or self.config["min_frames"]))
        self.whole_frame = bool(self.config.get("whole_frame", False) if whole_frame is None else whole_frame)

    @property
    def behind(self) -> str | None:
        """The codec id the weights were trained behind (``None``: untrained)."""
        return self.identity.behind if self.identity is not None else None

    def reset(self) -> None:
        """Forget every track's window: call it before feeding another stream (or a jump back)."""
        self.windows.reset()

    def objects(self, frame) -> list:
        """The frame's index objects this head labels: tracked (object id), boxed, wanted class and score
        (or the whole frame, with ``whole_frame``, when there is none)."""
        objs = [o for o in frame.objects if o.bbox is not None and o.object_id is not None
                and (self.classes is None or o.class_id in self.classes)
                and (o.score is None or o.score >= self.min_score)]
        if not objs and self.whole_frame:
            h, w = frame.image_size
            objs = [WholeFrame(object_id=0, class_id=None, bbox=(0.0, 0.0, float(w), float(h)), score=None)]
        return objs

    @torch.no_grad()
    def __call__(self, features=None, image_sizes=None, *, frame=None) -> list[dict]:
        if frame is None or not hasattr(frame, "objects") or not hasattr(frame, "frame_index"):
            raise MalformedFieldError("the action head needs the decoded frame (its motion and index objects), "
                                      "as iter_analyze passes it", field="frame")
        motion = frame.motion
        if motion is not None and not hasattr(motion, "pixels"):
            raise MalformedFieldError(f"frame.motion must be a MotionField, got {type(motion).__name__}",
                                      field="frame.motion")
        fps = float(getattr(frame, "fps", 0.0) or 0.0) or None
        objs = self.objects(frame)
        parts = [motion_features(motion, o.bbox, fps) for o in objs]
        ready = self.windows.update(frame.frame_index, [o.object_id for o in objs], [o.bbox for o in objs], parts,
                                    fps=fps, has_motion=motion is not None)
        return [self._result(ready, {o.object_id: o for o in objs}, fps, int(frame.frame_index))]

    @torch.no_grad()
    def _result(self, ready, by_id: dict, fps: float | None, frame_index: int) -> dict:
        """The output dict of windows ``ready`` (:meth:`TrackWindows.update`) ending at ``frame_index``."""
        n, c = len(ready), len(self.label_names)
        if n:
            x = torch.from_numpy(np.stack([r[2] for r in ready]))
            m = torch.from_numpy(np.stack([r[3] for r in ready]))
            probs = torch.softmax(self.net(x, m).float(), dim=1)
        else:
            probs = torch.zeros(0, c)
        scores, labels = probs.max(dim=1) if n else (torch.zeros(0), torch.zeros(0, dtype=torch.int64))
        traj = [self.windows.trajectory(r[0]) for r in ready]
        rate = fps or DEFAULT_FPS
        return {
            "track_ids": torch.tensor([r[0] for r in ready], dtype=torch.int64),
            "labels": labels.to(torch.int64),
            "scores": scores.float(),
            "action_scores": probs,
            "frames": torch.tensor([[r[1], frame_index] for r in ready], dtype=torch.int64).reshape(n, 2),
            "boxes": torch.tensor([list(by_id[r[0]].bbox) for r in ready], dtype=torch.float32).reshape(n, 4),
            "object_labels": torch.tensor([by_id[r[0]].class_id if by_id[r[0]].class_id is not None else 0
                                           for r in ready], dtype=torch.int64),
            "speed": torch.tensor([t[0] * rate for t in traj], dtype=torch.float32),
            "direction": torch.tensor([t[1] for t in traj], dtype=torch.float32),
            "label_names": self.label_names,
        }


def per_track(pred: dict, top_k: int | None = None) -> list[dict]:
    """One dict per track of an action result (``track_id``, ``labels`` [K] best first, ``scores`` [K],
    ``frames`` (first, last), ``label_names``): what ``to_action_data_samples`` takes."""
    out = []
    probs = pred["action_scores"]
    k = probs.shape[1] if top_k is None else min(int(top_k), probs.shape[1])
    for i, tid in enumerate(pred["track_ids"].tolist()):
        s, lab = torch.sort(probs[i], descending=True)
        first, last = (int(v) for v in pred["frames"][i])
        out.append({"track_id": int(tid), "labels": lab[:k].numpy(), "scores": s[:k].numpy(),
                    "frames": np.array([first, last], dtype=np.int64), "label_names": pred["label_names"]})
    return out
