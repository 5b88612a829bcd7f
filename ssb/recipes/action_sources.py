"""Where the action classifier's labelled windows come from (:mod:`ssb.recipes.train_action`).

(a) the reference: vtest.avi frames coded as one ``ssb.video`` stream, every window the head
classifies, labelled by the teacher on the original pixels (:func:`reference_data`); (b) a user's
labelled clips, a ``DIR/<label>/*.<video>`` folder or a CSV of ``clip,label[,x0,y0,x1,y1]``
(:func:`folder_clips`), each clip's windows those of its actor's track (:func:`clip_windows`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ssb.recipes.action_fit import ActionTrainConfig

__all__ = ["reference_data", "folder_clips", "clip_windows", "TRAIN_FRAMES"]

TRAIN_FRAMES = range(0, 600)


def reference_data(cfg: ActionTrainConfig, models, *, frames: range = TRAIN_FRAMES, source: str = "motion",
                   progress: bool = True):
    """``(windows, teacher labels)`` of vtest ``frames`` from ``source`` (level ``cfg.level`` stream)."""
    from ssb.recipes.action_data import encode_clip, stream_windows, teacher_targets
    from ssb.recipes.action_teacher import label_windows, run_teacher
    from ssb.resources import vtest_path

    run = run_teacher(progress=progress)
    labels = label_windows(run)
    stream = encode_clip(vtest_path(), frames, cfg.level, models)
    win = stream_windows(stream, models, source=source, video=vtest_path(), window=cfg.window,
                         min_frames=cfg.min_frames, progress=progress)
    return win, teacher_targets(win.frames, win.boxes, run, labels)


def folder_clips(data) -> list[tuple[Path, str, tuple | None]]:
    """``(clip, label, box or None)`` of a labelled folder (``DIR/<label>/*.<video>``) or a CSV file."""
    from ssb.errors import MalformedFieldError
    from ssb.media import VIDEO_SUFFIXES

    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(2, "No such file or directory", str(data))
    out: list[tuple[Path, str, tuple | None]] = []
    if data.is_file():
        with open(data, newline="", encoding="utf-8") as f:
            for n, row in enumerate(csv.reader(f)):
                row = [c.strip() for c in row]
                if not row or not any(row) or row[0].startswith("#"):
                    continue
                if n == 0 and row[0].lower() in ("clip", "path", "video", "file"):
                    continue
                if len(row) not in (2, 6):
                    raise MalformedFieldError(f"{data} line {n + 1}: expected clip,label[,x0,y0,x1,y1], got {row}",
                                              field="data")
                box = None
                if len(row) == 6:
                    try:
                        box = tuple(float(v) for v in row[2:])
                    except ValueError:
                        raise MalformedFieldError(f"{data} line {n + 1}: the box must be 4 numbers", field="data"
                                                  ) from None
                    if not (box[0] < box[2] and box[1] < box[3]):
                        raise MalformedFieldError(f"{data} line {n + 1}: the box needs x0 < x1 and y0 < y1",
                                                  field="data")
                clip = Path(row[0]) if Path(row[0]).is_absolute() else data.parent / row[0]
                if not clip.is_file():
                    raise FileNotFoundError(2, "No such file or directory", str(clip))
                if not row[1]:
                    raise MalformedFieldError(f"{data} line {n + 1}: empty label", field="data")
                out.append((clip, row[1], box))
    else:
        for sub in sorted(p for p in data.iterdir() if p.is_dir()):
            for clip in sorted(p for p in sub.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()):
                out.append((clip, sub.name, None))
    labels = sorted({lab for _, lab, _ in out})
    if len(labels) < 2:
        raise MalformedFieldError(f"{data}: need clips of at least 2 labels, found {labels or 'none'} "
                                  "(layout DIR/<label>/*.mp4, or a CSV of clip,label)", field="data")
    return out


def _actor(windows, box) -> int | None:
    """The track id of a clip's actor among its windows' tracks (see the module doc)."""
    if len(windows) == 0:
        return None
    ids = np.unique(windows.track_ids)
    if box is not None:
        from ssb.codec.tracking import iou_matrix

        best, best_iou = None, 0.0
        for tid in ids:
            sel = windows.track_ids == tid
            first = np.argmin(windows.frames[sel])
            iou = float(iou_matrix(np.asarray([box], np.float64), windows.boxes[sel][first][None].astype(np.float64))[0, 0])
            if iou > best_iou:
                best, best_iou = int(tid), iou
        if best is not None:
            return best
    area = lambda t: float(np.mean(np.prod(windows.boxes[windows.track_ids == t][:, 2:] -  # noqa: E731
                                          windows.boxes[windows.track_ids == t][:, :2], axis=1)))
    return int(max(ids, key=lambda t: (int((windows.track_ids == t).sum()), area(t))))


def clip_windows(clip, box, cfg: ActionTrainConfig, models, *, index_objects: bool = True):
    """``(windows of the clip's actor, whole_frame)`` from the clip's MOTION units."""
    from ssb.recipes.action_data import encode_clip, stream_windows

    stream = encode_clip(clip, None, cfg.level, models, index_objects=index_objects)
    win = stream_windows(stream, models, source="motion", window=cfg.window, min_frames=cfg.min_frames)
    actor = _actor(win, box)
    if actor is not None:
        return win.subset(win.track_ids == actor), False
    return stream_windows(stream, models, source="motion", window=cfg.window, min_frames=cfg.min_frames,
                          whole_frame=True), True
