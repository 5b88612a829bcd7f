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
from torch import nn

from ssb.errors import MalformedFieldError

__all__ = ["ActionHead", "ActionNet", "TrackWindows", "motion_features", "flow_features", "box_features",
           "band_pool", "per_track", "build_net", "DEFAULT_CONFIG", "MOTION_FEATURES", "BOX_FEATURES", "BANDS"]

#: rows x columns of the box grid the motion is pooled over
BANDS = (3, 2)
#: numbers per frame from the motion (per band: dx, dy, moving share; whole box: dx, dy, share)
MOTION_FEATURES = 3 * BANDS[0] * BANDS[1] + 3
#: numbers per frame from the index boxes (centre velocity x, y, log-height rate, log aspect)
BOX_FEATURES = 4
#: frame rate assumed when the stream says none
DEFAULT_FPS = 10.0
DEFAULT_CONFIG = {"in_features": MOTION_FEATURES + BOX_FEATURES, "num_classes": 5, "width": 48, "window": 16,
                  "min_frames": 8, "dropout": 0.1, "source": "motion",
                  "labels": ["standing", "walking_left", "walking_right", "walking_toward", "walking_away"]}


# -- per-frame features ---------------------------------------------------------------------------


def _overlaps(a: np.ndarray, b: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``[len(a), len(edges) - 1]``: length of each interval ``[a_i, b_i]`` inside each cell of ``edges``."""
    return np.clip(np.minimum(b[:, None], edges[None, 1:]) - np.maximum(a[:, None], edges[None, :-1]), 0.0, None)


def band_pool(values: np.ndarray, moving: np.ndarray, y_edges: np.ndarray, x_edges: np.ndarray, box,
              bands: tuple[int, int] = BANDS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-weighted pooling of a field over a box cut in ``bands`` (rows, columns).

    ``values`` ``[2, R, K]`` (dx, dy per cell), ``moving`` ``[R, K]`` bool, cell ``(i, j)`` spanning
    ``y_edges[i]..y_edges[i+1]`` x ``x_edges[j]..x_edges[j+1]`` (frame pixels).  Returns the per-band
    mean ``[2, rows, cols]`` and moving share ``[rows, cols]`` (zero where a band covers no cell),
    and the whole box's mean over its moving cells and their share ``[3]``.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    rows, cols = bands
    ya = y0 + (y1 - y0) * np.arange(rows) / rows
    xa = x0 + (x1 - x0) * np.arange(cols) / cols
    wy = _overlaps(ya, ya + (y1 - y0) / rows, y_edges)  # [rows, R]
    wx = _overlaps(xa, xa + (x1 - x0) / cols, x_edges)  # [cols, K]
    area = wy.sum(1)[:, None] * wx.sum(1)[None, :]
    m = moving.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.einsum("ar,crk,bk->cab", wy, values, wx) / area
        share = np.einsum("ar,rk,bk->ab", wy, m, wx) / area
    mean, share = np.nan_to_num(mean), np.nan_to_num(share)
    w = np.outer(wy.sum(0), wx.sum(0)) * m  # whole-box weights of the moving cells
    total = w.sum()
    whole = np.zeros(3)
    if total > 0:
        whole[:2] = np.einsum("rk,crk->c", w, values) / total
        whole[2] = total / max(float(np.outer(wy.sum(0), wx.sum(0)).sum()), 1e-12)
    return mean, share, whole


def _flatten(mean: np.ndarray, share: np.ndarray, whole: np.ndarray, height: float, rate: float) -> np.ndarray:
    scale = rate / max(height, 1.0)
    per_band = np.concatenate([mean * scale, share[None]], axis=0)  # [3, rows, cols]
    return np.concatenate([per_band.transpose(1, 2, 0).reshape(-1), [whole[0] * scale, whole[1] * scale, whole[2]]]
                          ).astype(np.float32)


def motion_features(motion, box, fps: float | None = None) -> np.ndarray:
    """The motion part (:data:`MOTION_FEATURES` numbers) of a box from a decoded
    :class:`~ssb.codec.video.MotionField` (``None``: zeros)."""
    if motion is None:
        return np.zeros(MOTION_FEATURES, dtype=np.float32)
    h, w = motion.frame_size
    rows, cols = motion.vectors.shape[1:]
    ch, cw = h * motion.stride / motion.input_size, w * motion.stride / motion.input_size
    y_edges = (motion.row0 + np.arange(rows + 1)) * ch
    x_edges = (motion.col0 + np.arange(cols + 1)) * cw
    forward = -motion.pixels()  # the content's motion from the reference to this frame
    mean, share, whole = band_pool(forward, motion.moving, y_edges, x_edges, box)
    return _flatten(mean, share, whole, float(box[3]) - float(box[1]), fps or DEFAULT_FPS)


def flow_features(flow: np.ndarray, box, fps: float | None = None, *, input_size: int = 300) -> np.ndarray:
    """The same numbers as :func:`motion_features` from a dense backward optical flow ``[H, W, 2]``
    (OpenCV's ``calc(current, previous)``, frame pixels): the upper reference on the pixels."""
    h, w = flow.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    ia, ib = int(np.clip(np.floor(y0), 0, h - 1)), int(np.clip(np.ceil(y1), 1, h))
    ja, jb = int(np.clip(np.floor(x0), 0, w - 1)), int(np.clip(np.ceil(x1), 1, w))
    ib, jb = max(ib, ia + 1), max(jb, ja + 1)
    crop = -flow[ia:ib, ja:jb].astype(np.float64).transpose(2, 0, 1)
    # the MOTION units' stillness rule, per pixel: both components under half a teacher-input pixel
    moving = (np.abs(crop[0]) >= 0.5 * w / input_size) | (np.abs(crop[1]) >= 0.5 * h / input_size)
    mean, share, whole = band_pool(crop, moving, np.arange(ia, ib + 1, dtype=np.float64),
                                   np.arange(ja, jb + 1, dtype=np.float64), box)
    return _flatten(mean, share, whole, y1 - y0, fps or DEFAULT_FPS)


def box_features(box, prev_box, gap: int, fps: float | None = None) -> np.ndarray:
    """The index part (:data:`BOX_FEATURES` numbers): centre velocity and log-height rate since
    ``prev_box`` (``gap`` frames before; zeros when there is none), log aspect."""
    x0, y0, x1, y1 = (float(v) for v in box)
    h, w = max(y1 - y0, 1.0), max(x1 - x0, 1.0)
    out = np.zeros(BOX_FEATURES, dtype=np.float32)
    out[3] = np.log(w / h)
    if prev_box is not None and gap >= 1:
        px0, py0, px1, py1 = (float(v) for v in prev_box)
        rate = (fps or DEFAULT_FPS) / gap
        out[0] = ((x0 + x1) - (px0 + px1)) / 2 / h * rate
        out[1] = ((y0 + y1) - (py0 + py1)) / 2 / h * rate
        out[2] = np.log(h / max(py1 - py0, 1.0)) * rate
    return out


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


# -- the classifier -------------------------------------------------------------------------------


class ActionNet(nn.Module):
    """Windows ``[B, T, F]`` with masks ``[B, T]`` -> label logits ``[B, C]``.

    Inputs are standardized with the training set's statistics (buffers ``mean``, ``std``), masked,
    stacked with the mask, and go through two temporal convolutions (kernel 3, the second dilated
    by 2), a masked mean and a masked max over time, dropout and a linear layer.
    """

    def __init__(self, in_features: int = DEFAULT_CONFIG["in_features"], num_classes: int = 5, width: int = 48,
                 dropout: float = 0.1, **_: object):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        self.conv1 = nn.Conv1d(in_features + 1, width, 3, padding=1)
        self.conv2 = nn.Conv1d(width, width, 3, padding=2, dilation=2)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(x.dtype)[..., None]
        z = (x - self.mean) / self.std * m
        h = torch.cat([z, m], dim=-1).transpose(1, 2)
        h = torch.relu(self.conv2(torch.relu(self.conv1(h))))
        mt = m.transpose(1, 2)
        avg = (h * mt).sum(-1) / mt.sum(-1).clamp(min=1.0)
        mx = (h - (1.0 - mt) * 1e4).amax(-1)
        return self.fc(self.drop(torch.cat([avg, mx], dim=1)))


def build_net(config: dict) -> nn.Module:
    """The classifier from a checkpoint's config (the zoo's builder for ``action`` models)."""
    return ActionNet(**{**DEFAULT_CONFIG, **config})


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
