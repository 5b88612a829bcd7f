"""Bridges between SSB and mmaction2 (installed with ``pip install --no-deps -r requirements/action.txt``).

Skeletons (numpy only, no mmaction2 needed):

* :func:`to_skeleton_annotation`: per-person tracks of the SSB pose head's keypoints
  (``[len(frames), 17, 3]``: x, y in pixels, score) -> one annotation in mmaction2's skeleton
  format (``keypoint`` float32 ``[M, T, V, 2]``, ``keypoint_score`` ``[M, T, V]``, ...), what
  ``PoseDataset`` and the ST-GCN / PoseC3D test pipelines consume;
* :func:`skeleton_pickle`: annotations -> the ``{"split": ..., "annotations": [...]}`` dict
  ``PoseDataset`` reads from a ``.pkl`` file (write it with ``mmengine.dump``).

Features (mmaction2 loaded, and SSB's classes registered, on first use):

* ``SSBFeatureBackbone`` (``MODELS``): decoded split features ``[N*T, C, H, W]`` (32 channels,
  stride 8 for the reference codec) through a small conv stack, for ``Recognizer2D`` + ``TSNHead``;
* ``SSBFeatureDataset`` (``DATASETS``) and ``LoadSSBFeatures`` (``TRANSFORMS``): samples
  ``(features [T, C, H, W] | path to .pt / .npy, label)`` packed by ``PackActionInputs``, so
  mmengine's ``Runner`` trains and tests on them; :func:`feature_recognizer_cfg` is a matching model;
* :func:`to_action_data_samples`: SSB action-head results -> mmaction2 ``ActionDataSample``;
  :func:`action_data_samples`: the same from one frame's output of the ``action`` head
  (:class:`ssb.tasks.action.ActionHead`), one sample per track, with the label names.

Importing this module imports neither torch nor mmaction2; see
:mod:`ssb.adapters._mmaction_compat` for what loading mmaction2 patches.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Mapping, Sequence

import numpy as np

from ssb.errors import MalformedFieldError

from . import _mmaction_compat
from ._arrays import as_numpy, numeric

__all__ = [
    "to_skeleton_annotation", "skeleton_pickle", "to_action_data_samples", "action_data_samples",
    "feature_recognizer_cfg",
    "load_mmaction", "mmaction_config_path", "SSBFeatureBackbone", "SSBFeatureDataset", "LoadSSBFeatures",
]

#: the keys mmaction2's skeleton pipelines read from an annotation
ANNOTATION_KEYS = ("frame_dir", "label", "img_shape", "original_shape", "total_frames", "keypoint",
                   "keypoint_score")


# ---------------------------------------------------------------------------------------------
# Skeletons
# ---------------------------------------------------------------------------------------------


def _int(value: Any, field: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise MalformedFieldError(f"expected an integer, got {value!r}", field=field)
    if minimum is not None and value < minimum:
        raise MalformedFieldError(f"must be at least {minimum}, got {value}", field=field)
    return int(value)


def _shape(img_shape: Any, field: str) -> tuple[int, int]:
    if not isinstance(img_shape, (tuple, list)) or len(img_shape) != 2:
        raise MalformedFieldError(f"expected (height, width), got {img_shape!r}", field=field)
    return _int(img_shape[0], f"{field}[0]", minimum=1), _int(img_shape[1], f"{field}[1]", minimum=1)


def to_skeleton_annotation(
    tracks: Sequence[Mapping[str, Any]],
    *,
    img_shape: tuple[int, int],
    total_frames: int,
    label: int = -1,
    frame_dir: str = "clip",
    num_keypoints: int = 17,
) -> dict:
    """One clip's person tracks as an mmaction2 skeleton annotation.

    ``tracks[m]`` holds ``track_id``, ``frames`` (increasing integer frame indices in
    ``[0, total_frames)``) and ``keypoints`` ``[len(frames), num_keypoints, 3]`` (x, y in pixels of
    ``img_shape`` = ``(height, width)``, score), numpy arrays or torch tensors.  Frames a track
    misses get zero coordinates and score 0.  Person ``m`` is ``tracks[m]``: sort the tracks
    first where it matters (``FormatGCNInput`` keeps the first ``num_person``).

    Returns ``frame_dir``, ``label``, ``img_shape``, ``original_shape``, ``total_frames``,
    ``keypoint`` float32 ``[M, T, V, 2]``, ``keypoint_score`` float32 ``[M, T, V]`` and
    ``track_ids`` (list, the tracks' ids in person order; mmaction2 ignores it).
    Raises :class:`MalformedFieldError` naming the track and field for anything malformed.
    mmaction2's skeleton transforms (``PreNormalize2D``, ...) change the arrays in place: give a
    pipeline ``copy.deepcopy(annotation)`` to keep the annotation.
    """
    h, w = _shape(img_shape, "img_shape")
    t = _int(total_frames, "total_frames", minimum=1)
    v = _int(num_keypoints, "num_keypoints", minimum=1)
    label = _int(label, "label", minimum=-1)
    if not isinstance(frame_dir, str):
        raise MalformedFieldError(f"frame_dir must be a str, got {type(frame_dir).__name__}", field="frame_dir")
    if isinstance(tracks, Mapping) or not isinstance(tracks, Sequence):
        raise MalformedFieldError("tracks must be a sequence of track mappings", field="tracks")
    keypoint = np.zeros((len(tracks), t, v, 2), dtype=np.float32)
    score = np.zeros((len(tracks), t, v), dtype=np.float32)
    ids: list = []
    for m, track in enumerate(tracks):
        field = f"tracks[{m}]"
        if not isinstance(track, Mapping):
            raise MalformedFieldError(f"a track must be a mapping, got {type(track).__name__}", field=field)
        absent = [k for k in ("track_id", "frames", "keypoints") if k not in track]
        if absent:
            raise MalformedFieldError(f"track is missing {absent}", field=field)
        tid = track["track_id"]
        if getattr(tid, "ndim", None) == 0 and hasattr(tid, "item"):
            tid = tid.item()  # numpy / torch scalars
        if isinstance(tid, bool) or not isinstance(tid, (int, str)):
            raise MalformedFieldError(f"track_id must be an int or a str, got {tid!r}", field=f"{field}.track_id")
        who = f"track {tid!r}"
        if tid in ids:
            raise MalformedFieldError(f"{who} appears twice", field=f"{field}.track_id")
        frames = as_numpy(track["frames"])
        if frames.ndim != 1 or frames.size == 0 or not np.issubdtype(frames.dtype, np.integer):
            raise MalformedFieldError(f"{who}: frames must be a non-empty 1-D integer array, got "
                                      f"shape {frames.shape} dtype {frames.dtype}", field=f"{field}.frames")
        if frames.min() < 0 or frames.max() >= t:
            raise MalformedFieldError(f"{who}: frames must lie in [0, {t}), got [{frames.min()}, {frames.max()}]",
                                      field=f"{field}.frames")
        if np.any(np.diff(frames) <= 0):
            bad = int(np.argmax(np.diff(frames) <= 0))
            raise MalformedFieldError(f"{who}: frames must increase strictly, got {frames[bad]} then "
                                      f"{frames[bad + 1]}", field=f"{field}.frames")
        kps = numeric(track["keypoints"], f"{field}.keypoints")
        if kps.shape != (frames.size, v, 3):
            raise MalformedFieldError(f"{who}: keypoints must be [{frames.size}, {v}, 3] (x, y, score) for "
                                      f"{frames.size} frames, got {list(kps.shape)}", field=f"{field}.keypoints")
        if not np.all(np.isfinite(kps)):
            raise MalformedFieldError(f"{who}: keypoints hold NaN or infinite values", field=f"{field}.keypoints")
        ids.append(tid)
        keypoint[m, frames] = kps[..., :2]
        score[m, frames] = kps[..., 2]
    return {"frame_dir": frame_dir, "label": label, "img_shape": (h, w), "original_shape": (h, w),
            "total_frames": t, "keypoint": keypoint, "keypoint_score": score, "track_ids": ids}


def _check_annotation(ann: Any, field: str) -> str:
    if not isinstance(ann, Mapping):
        raise MalformedFieldError(f"an annotation must be a mapping, got {type(ann).__name__}", field=field)
    absent = [k for k in ANNOTATION_KEYS if k not in ann]
    if absent:
        raise MalformedFieldError(f"annotation is missing {absent}", field=field)
    kp, sc = np.asarray(ann["keypoint"]), np.asarray(ann["keypoint_score"])
    t = _int(ann["total_frames"], f"{field}.total_frames", minimum=1)
    if kp.ndim != 4 or kp.shape[1] != t or kp.shape[-1] != 2 or sc.shape != kp.shape[:3]:
        raise MalformedFieldError(f"keypoint {list(kp.shape)} / keypoint_score {list(sc.shape)} are not "
                                  f"[M, {t}, V, 2] / [M, {t}, V]", field=f"{field}.keypoint")
    if not isinstance(ann["frame_dir"], str):
        raise MalformedFieldError("frame_dir must be a str", field=f"{field}.frame_dir")
    return ann["frame_dir"]


def skeleton_pickle(annotations: Sequence[Mapping[str, Any]],
                    split: Mapping[str, Sequence[str]] | None = None) -> dict:
    """The dict mmaction2's ``PoseDataset`` reads from its ``ann_file`` (``mmengine.dump(d, "x.pkl")``).

    ``split`` maps split names (``PoseDataset(split=...)``) to ``frame_dir`` values; ``None``
    puts every annotation in one split named ``"all"``.  ``frame_dir`` values must be unique
    (``PoseDataset`` selects a split's samples by them).
    """
    if isinstance(annotations, Mapping) or not isinstance(annotations, Sequence):
        raise MalformedFieldError("annotations must be a sequence of annotation dicts", field="annotations")
    names: dict[str, int] = {}
    for i, ann in enumerate(annotations):
        name = _check_annotation(ann, f"annotations[{i}]")
        if name in names:
            raise MalformedFieldError(f"frame_dir {name!r} is used twice", field=f"annotations[{i}].frame_dir")
        names[name] = i
    if split is None:
        split = {"all": list(names)}
    if not isinstance(split, Mapping):
        raise MalformedFieldError("split must map split names to frame_dir lists", field="split")
    out_split = {}
    for key, members in split.items():
        if not isinstance(key, str) or isinstance(members, str) or not isinstance(members, Sequence):
            raise MalformedFieldError("a split is a str name -> list of frame_dir", field=f"split.{key}")
        unknown = [m for m in members if m not in names]
        if unknown:
            raise MalformedFieldError(f"no annotation has frame_dir {unknown[:3]}", field=f"split.{key}")
        out_split[key] = list(members)
    return {"split": out_split, "annotations": [dict(a) for a in annotations]}


# ---------------------------------------------------------------------------------------------
# mmaction2 side: loading, registered components, results
# ---------------------------------------------------------------------------------------------


def load_mmaction() -> ModuleType:
    """Import mmaction2 (with the workarounds of :mod:`ssb.adapters._mmaction_compat`) and register
    ``SSBFeatureBackbone``, ``SSBFeatureDataset`` and ``LoadSSBFeatures``; returns ``mmaction``."""
    return _mmaction_compat.load_mmaction()


def mmaction_config_path(name: str) -> Path:
    """Path of a config shipped inside the installed mmaction2 package, e.g.
    ``"skeleton/stgcn/stgcn_8xb16-joint-u100-80e_ntu60-xsub-keypoint-2d.py"``."""
    mmaction = load_mmaction()
    path = Path(mmaction.__file__).parent / ".mim" / "configs" / name
    if not path.is_file():
        raise MalformedFieldError(f"mmaction2 ships no config {name!r} (looked in {path.parent})", field="name")
    return path


def feature_recognizer_cfg(num_classes: int, *, in_channels: int = 32, channels: Sequence[int] = (64,),
                           dropout: float = 0.0, average_clips: str = "prob") -> dict:
    """An mmaction2 model config: ``Recognizer2D`` + ``SSBFeatureBackbone`` + ``TSNHead`` over SSB features.

    ``channels`` are the backbone's conv widths (``()``: identity); the head's ``in_channels``
    follows the last one.  The data preprocessor only stacks (no normalisation).
    """
    num_classes = _int(num_classes, "num_classes", minimum=1)
    in_channels = _int(in_channels, "in_channels", minimum=1)
    widths = [_int(c, f"channels[{i}]", minimum=1) for i, c in enumerate(channels)]
    return dict(
        type="Recognizer2D",
        backbone=dict(type="SSBFeatureBackbone", in_channels=in_channels, channels=widths),
        cls_head=dict(type="TSNHead", num_classes=num_classes, in_channels=widths[-1] if widths else in_channels,
                      spatial_type="avg", consensus=dict(type="AvgConsensus", dim=1), dropout_ratio=float(dropout),
                      average_clips=average_clips),
        data_preprocessor=dict(type="ActionDataPreprocessor", mean=None, std=None, format_shape="NCHW"),
    )


def _result_fields(res: Any, field: str, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    if not isinstance(res, Mapping):
        raise MalformedFieldError(f"a result must be a mapping, got {type(res).__name__}", field=field)
    absent = [k for k in ("track_id", "labels", "scores", "frames") if k not in res]
    if absent:
        raise MalformedFieldError(f"result is missing {absent}", field=field)
    labels, scores = as_numpy(res["labels"]).reshape(-1), numeric(res["scores"], f"{field}.scores").reshape(-1)
    if labels.size == 0 or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise MalformedFieldError(f"labels must be non-empty non-negative integers, got {labels!r}",
                                  field=f"{field}.labels")
    if len(set(labels.tolist())) != labels.size:
        raise MalformedFieldError(f"labels repeat: {labels.tolist()}", field=f"{field}.labels")
    if num_classes is not None and labels.max() >= num_classes:
        raise MalformedFieldError(f"label {labels.max()} is not below num_classes {num_classes}",
                                  field=f"{field}.labels")
    if scores.shape != labels.shape or not np.all(np.isfinite(scores)):
        raise MalformedFieldError(f"scores must be {labels.size} finite numbers, got {scores!r}",
                                  field=f"{field}.scores")
    frames = as_numpy(res["frames"])
    if (frames.shape != (2,) or not np.issubdtype(frames.dtype, np.integer)
            or frames[0] < 0 or frames[1] < frames[0]):
        raise MalformedFieldError(f"frames must be (first, last) with 0 <= first <= last, got {res['frames']!r}",
                                  field=f"{field}.frames")
    first, last = int(frames[0]), int(frames[1])
    return labels.astype(np.int64), scores.astype(np.float32), (first, last)


def to_action_data_samples(results: Sequence[Mapping[str, Any]], *, num_classes: int | None = None) -> list:
    """mmaction2 ``ActionDataSample`` objects from SSB action-head results.

    ``results[i]`` is one track and window: ``track_id``, ``labels`` ``[K]`` (class indices),
    ``scores`` ``[K]`` and ``frames`` ``(first, last)``.  Each sample gets ``pred_score``
    (float32 ``[num_classes]``: the given scores at their labels, 0 elsewhere), ``pred_label``
    (the best-scoring label, shape ``[1]``) and metainfo ``track_id``, ``frames`` and
    ``num_classes``.  ``num_classes`` defaults to 1 + the largest label in ``results``.
    """
    load_mmaction()
    import torch
    from mmaction.structures import ActionDataSample

    if isinstance(results, Mapping) or not isinstance(results, Sequence):
        raise MalformedFieldError("results must be a sequence of result dicts", field="results")
    if num_classes is not None:
        num_classes = _int(num_classes, "num_classes", minimum=1)
    parsed = [_result_fields(r, f"results[{i}]", num_classes) for i, r in enumerate(results)]
    if num_classes is None:
        num_classes = 1 + max((int(lab.max()) for lab, _, _ in parsed), default=0)
    samples = []
    for res, (labels, scores, frames) in zip(results, parsed):
        full = np.zeros(num_classes, dtype=np.float32)
        full[labels] = scores
        sample = ActionDataSample(metainfo={"track_id": res["track_id"], "frames": frames})
        sample.set_pred_score(torch.from_numpy(full))
        sample.set_pred_label(int(labels[int(np.argmax(scores))]))
        samples.append(sample)
    return samples


def action_data_samples(pred: Mapping[str, Any]) -> list:
    """One frame's ``action`` head output (``track_ids``, ``action_scores`` [N, C], ``frames`` [N, 2],
    ``label_names``) as mmaction2 ``ActionDataSample`` objects, one per track: ``pred_score`` every
    class's probability, ``pred_label`` the best, metainfo ``track_id``, ``frames`` and ``label_names``."""
    if not isinstance(pred, Mapping):
        raise MalformedFieldError(f"an action result must be a mapping, got {type(pred).__name__}", field="pred")
    absent = [k for k in ("track_ids", "action_scores", "frames", "label_names") if k not in pred]
    if absent:
        raise MalformedFieldError(f"not an action-head result: missing {absent}", field="pred")
    probs = numeric(pred["action_scores"], "pred.action_scores")
    names = [str(n) for n in pred["label_names"]]
    if probs.ndim != 2 or probs.shape[1] != len(names):
        raise MalformedFieldError(f"action_scores must be [N, {len(names)}], got {list(probs.shape)}",
                                  field="pred.action_scores")
    ids, spans = as_numpy(pred["track_ids"]).reshape(-1), as_numpy(pred["frames"]).reshape(-1, 2)
    if len(ids) != len(probs) or len(spans) != len(probs):
        raise MalformedFieldError(f"{len(ids)} track ids and {len(spans)} spans for {len(probs)} score rows",
                                  field="pred.track_ids")
    results = [{"track_id": int(t), "labels": np.arange(len(names)), "scores": p, "frames": np.asarray(f, np.int64)}
               for t, p, f in zip(ids, probs, spans)]
    samples = to_action_data_samples(results, num_classes=len(names))
    for s in samples:
        s.set_metainfo({"label_names": names})
    return samples


def __getattr__(name: str):
    if name in _mmaction_compat.COMPONENTS:
        return _mmaction_compat.component(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
