"""Data of the action recipes: clips coded as ``ssb.video``, per-track windows, teacher labels.

* :func:`encode_clip`: a clip (or a frame range of one) coded as an ``ssb.video`` stream with the
  session's codec, cached in ``$SSB_CACHE`` (keyed by the clip's SHA-256, the frames, the level
  and the models' ids);
* :func:`stream_windows`: every window the action head would classify, frame by frame in stream
  order, from one of three *sources*, all over the index's tracked boxes:

  ``motion``  the MOTION units (the head's own input, :func:`ssb.tasks.action.motion_features`);
  ``flow``    DIS optical flow (OpenCV, ``medium`` preset) of the ORIGINAL frames, pooled the same
              way (:func:`ssb.tasks.action.flow_features`): the upper reference;
  ``features`` the decoded split features (BASE + RESIDUAL + synthesis), RoI-pooled over the box in
              three bands (:func:`feature_features`): the "decode the features" baseline;

* :func:`teacher_targets`: each window's teacher label (:mod:`ssb.recipes.action_teacher`), from
  the teacher detection its box overlaps most (IoU >= 0.5) in the window's last frame.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Windows", "encode_clip", "stream_windows", "feature_features", "teacher_targets", "SOURCES",
           "FLOW_PRESET", "FEATURE_BANDS", "mirror"]

SOURCES = ("motion", "flow", "features")
#: DIS preset of the upper reference
FLOW_PRESET = "medium"
#: vertical bands the split features are pooled in (per box)
FEATURE_BANDS = 3
DATA_VERSION = 1
WINDOWS_VERSION = 2


@dataclass
class Windows:
    """Windows of one stream: ``x`` [N, T, F], ``mask`` [N, T], and per window its track, last
    frame, first frame and box (in the last frame)."""

    x: np.ndarray
    mask: np.ndarray
    track_ids: np.ndarray
    frames: np.ndarray
    first: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, keep) -> "Windows":
        return Windows(self.x[keep], self.mask[keep], self.track_ids[keep], self.frames[keep], self.first[keep],
                       self.boxes[keep])

    @staticmethod
    def concat(parts: list["Windows"]) -> "Windows":
        return Windows(*(np.concatenate([getattr(p, k) for p in parts]) for k in
                         ("x", "mask", "track_ids", "frames", "first", "boxes")))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **{k: getattr(self, k) for k in ("x", "mask", "track_ids", "frames", "first", "boxes")})
        tmp.replace(path)

    @staticmethod
    def load(path: Path) -> "Windows":
        d = np.load(path)
        return Windows(d["x"], d["mask"], d["track_ids"], d["frames"], d["first"], d["boxes"])


def _models_key(models) -> list:
    zoo = models.zoo
    codec = zoo.codec()
    key = [codec.identity.id, str(getattr(codec, "checkpoint_path", ""))]
    video = zoo.get("video", behind=codec.identity.id, missing_ok=True)
    if video is not None:
        key += [video.identity.id, str(getattr(video, "checkpoint_path", ""))]
        path = getattr(video, "checkpoint_path", None)
        if path and Path(path).is_file():
            from ssb.resources import file_sha256

            key.append(file_sha256(path)[:16])
    return key


def encode_clip(video, frames: range | None, level: int, models, *, index_objects: bool = True,
                cache_dir: Path | None = None, gop: int | None = None) -> Path:
    """``video`` (frames ``frames``, all when ``None``) coded as ``ssb.video`` at ``level``; the cached path."""
    from ssb.backbones.teacher_weights import cache_dir as default_cache
    from ssb.pipeline import encode
    from ssb.resources import file_sha256

    video = Path(video)
    span = None if frames is None else [frames.start, frames.stop, frames.step]
    key = json.dumps([file_sha256(video), span, int(level), bool(index_objects), gop, _models_key(models),
                      DATA_VERSION])
    path = Path(cache_dir or default_cache()) / "action-streams" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.ssb"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    opts = {} if gop is None else {"gop": int(gop)}
    encode(video, tmp, codec="ssb.video", quality=int(level), frames=frames, models=models,
           index_objects=index_objects, **opts)
    tmp.replace(path)
    return path


def feature_features(split, boxes, image_size: tuple[int, int], bands: int = FEATURE_BANDS) -> np.ndarray:
    """``[N, C * bands]``: the split features ``[1, C, h, w]`` RoI-pooled over each box in ``bands``
    horizontal bands (top to bottom)."""
    import torch

    from ssb.tasks.roi import pool, rois_in_input

    b = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4))
    if len(b) == 0:
        return np.zeros((0, split.shape[1] * bands), np.float32)
    pooled = pool(split.float(), rois_in_input([b], [image_size]), (bands, 1))  # [N, C, bands, 1]
    return pooled.flatten(1).numpy().astype(np.float32)


def _objects(df, classes, whole_frame: bool):
    objs = [o for o in df.objects if o.bbox is not None and o.object_id is not None
            and (classes is None or o.class_id in classes)]
    if not objs and whole_frame:
        from types import SimpleNamespace

        h, w = df.image_size
        objs = [SimpleNamespace(object_id=0, class_id=None, bbox=(0.0, 0.0, float(w), float(h)), score=None)]
    return objs


def stream_windows(stream, models, *, source: str = "motion", video=None, window: int = 16, min_frames: int = 8,
                   classes=(1,), whole_frame: bool = False, tracks=None, cache: bool = True,
                   progress: bool = False) -> Windows:
    """Every window an action head would classify in ``stream`` (module doc), in stream order.

    ``video``: the ORIGINAL clip (``source="flow"``: its frames, by frame index); ``tracks``: keep only
    these track ids; ``whole_frame``: a frame with no tracked object of ``classes`` gives one object,
    the whole frame (track id 0).
    """
    import torch

    import ssb
    from ssb.backbones.teacher_weights import cache_dir
    from ssb.codec import registry
    from ssb.errors import MalformedFieldError
    from ssb.resources import file_sha256
    from ssb.tasks.action import TrackWindows, flow_features, motion_features

    if source not in SOURCES:
        raise MalformedFieldError(f"source must be one of {', '.join(SOURCES)}, got {source!r}", field="source")
    if source == "flow" and video is None:
        raise MalformedFieldError("the flow source needs the original clip (video=...)", field="video")
    classes = None if classes is None else {int(c) for c in classes}
    wanted = None if tracks is None else {int(t) for t in tracks}
    path = None
    if cache and isinstance(stream, (str, Path)):
        key = json.dumps([file_sha256(stream), source, file_sha256(video) if source == "flow" else None, window,
                          min_frames, sorted(classes) if classes else None, whole_frame,
                          sorted(wanted) if wanted else None, FLOW_PRESET, FEATURE_BANDS, WINDOWS_VERSION])
        path = cache_dir() / "action-windows" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"
        if path.is_file():
            return Windows.load(path)
    need = {"features"} if source == "features" else {"motion"}
    tw = TrackWindows(window, min_frames)
    rows: dict[str, list] = {k: [] for k in ("x", "mask", "track_ids", "frames", "first", "boxes")}
    flow_state = None
    if source == "flow":
        import cv2

        from ssb.media import frames as media_frames

        originals = media_frames(video)
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        flow_state = {"it": originals, "prev": None, "cv2": cv2, "dis": dis}
    with torch.no_grad(), ssb.open(stream) as bs:
        dec = registry.decoder(bs, models.zoo)
        steps = dec.plan(need=need)
        if progress:
            from tqdm import tqdm

            steps = tqdm(steps, total=len(bs.frames), desc=f"windows ({source})", unit="frame", leave=False)
        for step in steps:
            df = dec.decode(step)
            if not step.output:
                continue
            objs = _objects(df, classes, whole_frame)
            if wanted is not None:
                objs = [o for o in objs if o.object_id in wanted]
            fps = df.fps or None
            has_motion = df.motion is not None
            if source == "motion":
                parts = [motion_features(df.motion, o.bbox, fps) for o in objs]
            elif source == "flow":
                flow = _next_flow(flow_state, df.frame_index)
                if df.motion is None:  # the stream's first frame: no motion, as for the MOTION units
                    flow = None
                has_motion = flow is not None
                parts = [flow_features(flow, o.bbox, fps) if flow is not None else None for o in objs]
                if flow is None:
                    parts = [motion_features(None, o.bbox) for o in objs]
            else:
                split = df.features["split"]
                parts = list(feature_features(split, [o.bbox for o in objs], df.image_size))
            for tid, first, x, m in tw.update(df.frame_index, [o.object_id for o in objs], [o.bbox for o in objs],
                                              parts, fps=fps, has_motion=has_motion):
                rows["x"].append(x)
                rows["mask"].append(m)
                rows["track_ids"].append(tid)
                rows["frames"].append(df.frame_index)
                rows["first"].append(first)
                rows["boxes"].append(next(o.bbox for o in objs if o.object_id == tid))
    if rows["x"]:
        out = Windows(np.stack(rows["x"]), np.stack(rows["mask"]), np.array(rows["track_ids"], np.int64),
                      np.array(rows["frames"], np.int64), np.array(rows["first"], np.int64),
                      np.array(rows["boxes"], np.float32).reshape(-1, 4))
    else:
        f = None
        from ssb.tasks.action import BOX_FEATURES, MOTION_FEATURES

        f = (32 * FEATURE_BANDS if source == "features" else MOTION_FEATURES) + BOX_FEATURES
        out = Windows(np.zeros((0, window, f), np.float32), np.zeros((0, window), np.float32), np.zeros(0, np.int64),
                      np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4), np.float32))
    if path is not None:
        out.save(path)
    return out


def _next_flow(state: dict, index: int):
    """The backward DIS flow of original frame ``index`` (from frame ``index - 1``), reading the clip
    forward; ``None`` for the first frame of the stream."""
    cv2 = state["cv2"]
    prev = state["prev"]
    for fr in state["it"]:
        gray = cv2.cvtColor(fr.image, cv2.COLOR_RGB2GRAY)
        if fr.index < index - 1:
            continue
        if fr.index == index - 1:
            prev = gray
            continue
        state["prev"] = gray
        if fr.index != index or prev is None:
            return None
        return state["dis"].calc(gray, prev, None)
    return None


def teacher_targets(frames: np.ndarray, boxes: np.ndarray, run, labels: dict[int, int], *, min_iou: float = 0.5
                    ) -> np.ndarray:
    """The teacher's label of each window, given its last frame and its box there (``-1``: no teacher
    person overlaps the box with IoU >= ``min_iou``, or that person's window has no label)."""
    from ssb.codec.tracking import iou_matrix

    frames = np.asarray(frames, np.int64).reshape(-1)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.full(len(frames), -1, dtype=np.int64)
    by_frame: dict[int, np.ndarray] = {}
    for f in np.unique(frames):
        by_frame[int(f)] = run.at(int(f))
    for i, (f, box) in enumerate(zip(frames, boxes)):
        rows = by_frame[int(f)]
        if not len(rows):
            continue
        iou = iou_matrix(box[None].astype(np.float64), run.boxes[rows].astype(np.float64))[0]
        j = int(np.argmax(iou))
        if iou[j] >= min_iou:
            out[i] = labels.get(int(rows[j]), -1)
    return out


def mirror(x: np.ndarray, source: str) -> np.ndarray:
    """Windows of the horizontally mirrored scene (an augmentation): x velocities negated, left and
    right bands swapped.  ``features`` windows cannot be mirrored this way: returned unchanged."""
    from ssb.tasks.action import BANDS, MOTION_FEATURES

    if source == "features":
        return x
    y = x.copy()
    rows, cols = BANDS
    band = y[..., : 3 * rows * cols].reshape(*y.shape[:-1], rows, cols, 3)
    band = band[..., ::-1, :].copy()
    band[..., 0] *= -1
    y[..., : 3 * rows * cols] = band.reshape(*y.shape[:-1], -1)
    y[..., 3 * rows * cols] *= -1  # whole-box dx
    y[..., MOTION_FEATURES] *= -1  # box centre vx
    return y
