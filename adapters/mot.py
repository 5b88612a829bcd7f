"""MOT-challenge text for object tracks (the MOT16/17/20 ``gt.txt`` / results layout).

One line per object per frame: ``frame, id, bb_left, bb_top, bb_width, bb_height, conf, x, y, z``
with **1-based** frame numbers (MOT's convention; SSB frame indices are 0-based, so frame index
``k`` is written as ``k + 1``) and ``-1`` for the unused world coordinates.  Objects without a
track id or a box are left out.  :func:`read_mot` reads the same text back (for evaluation tools).
"""

from __future__ import annotations

from typing import Iterable

from ssb.errors import MalformedFieldError

__all__ = ["mot_lines", "read_mot"]


def mot_lines(frame_index: int, objects: Iterable) -> list[str]:
    """The MOT lines of frame ``frame_index`` (0-based) for objects with ``object_id``, ``bbox`` (xyxy), ``score``."""
    out = []
    for o in objects:
        if o.object_id is None or o.bbox is None:
            continue
        x0, y0, x1, y1 = o.bbox
        conf = 1.0 if o.score is None else float(o.score)
        out.append(f"{int(frame_index) + 1},{int(o.object_id)},{x0:.1f},{y0:.1f},{x1 - x0:.1f},{y1 - y0:.1f},"
                   f"{conf:.3f},-1,-1,-1\n")
    return out


def read_mot(text: str) -> list[dict]:
    """Rows of MOT text as dicts ``{"frame_index" (0-based), "track_id", "bbox" xyxy, "score"}``."""
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) < 7:
            raise MalformedFieldError(f"MOT line {n} has {len(parts)} fields, expected 10", field=f"line {n}")
        try:
            f, tid = int(float(parts[0])), int(float(parts[1]))
            x, y, w, h, conf = (float(v) for v in parts[2:7])
        except ValueError as exc:
            raise MalformedFieldError(f"MOT line {n}: {exc}", field=f"line {n}") from None
        if f < 1:
            raise MalformedFieldError(f"MOT line {n}: frame {f} (MOT frames start at 1)", field=f"line {n}")
        rows.append({"frame_index": f - 1, "track_id": tid, "bbox": (x, y, x + w, y + h), "score": conf})
    return rows
