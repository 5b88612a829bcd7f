"""Index entries as the writer builds them (2.x): attributes checked and quantized once, here.

Boxes are stored as integer pixels (rounded to the nearest) in ``0..65535``; scores as
``round(score * 65535)`` for a score in ``[0, 1]``.  A value that does not fit is refused, never
clipped: clipping would lose data silently.
"""

from __future__ import annotations

import math
import operator

from ssb.errors import MalformedFieldError
from ssb.format.layout import (
    PRESENT_BBOX,
    PRESENT_CLASS,
    PRESENT_FLAGS,
    PRESENT_GROUP,
    PRESENT_NO_UNIT,
    PRESENT_OBJECT,
    PRESENT_SCORE,
    SCORE_SCALE,
)

__all__ = ["as_int", "unit_entry", "descriptor_entry"]


def as_int(value, path: str) -> int:
    """``value`` as a Python int (numpy integers accepted), else MalformedFieldError."""
    if isinstance(value, bool):
        raise MalformedFieldError(f"must be an int, got {value!r}", field=path)
    try:
        return operator.index(value)
    except TypeError:
        raise MalformedFieldError(f"must be an int, got {value!r}", field=path) from None


def _number(value, path: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise MalformedFieldError(f"must be a number, got {value!r}", field=path) from None
    if not math.isfinite(v):
        raise MalformedFieldError(f"must be finite, got {value!r}", field=path)
    return v


def _attributes(object_id, class_id, group_id, bbox, score, where: str) -> dict:
    out: dict = {"present": 0}
    for bit, name, value in ((PRESENT_OBJECT, "object_id", object_id), (PRESENT_CLASS, "class_id", class_id),
                             (PRESENT_GROUP, "group_id", group_id)):
        if value is not None:
            v = as_int(value, f"{where}.{name}")
            if not 0 <= v <= 0xFFFF_FFFF:
                raise MalformedFieldError(f"{name} must be in 0..2**32-1, got {v}", field=f"{where}.{name}")
            out[name] = v
            out["present"] |= bit
    if bbox is not None:
        try:
            coords = [round(_number(v, f"{where}.bbox")) for v in bbox]
        except TypeError:
            coords = []
        if len(coords) != 4:
            raise MalformedFieldError(f"bbox must be 4 numbers (x0, y0, x1, y1), got {bbox!r}", field=f"{where}.bbox")
        if not all(0 <= c <= 0xFFFF for c in coords):
            raise MalformedFieldError(f"bbox {bbox!r} leaves the 0..65535 pixel range", field=f"{where}.bbox")
        out.update(zip(("x0", "y0", "x1", "y1"), coords))
        out["present"] |= PRESENT_BBOX
    if score is not None:
        s = _number(score, f"{where}.score")
        if not 0.0 <= s <= 1.0:
            raise MalformedFieldError(f"score must be in [0, 1], got {score!r}", field=f"{where}.score")
        out["score"] = round(s * SCORE_SCALE)
        out["present"] |= PRESENT_SCORE
    return out


def unit_entry(type_id: int, flags: int, data: bytes, crc: int, object_id, class_id, group_id, bbox, score,
               where: str) -> dict:
    """The 2.x index entry of a content unit holding ``data``."""
    e = _attributes(object_id, class_id, group_id, bbox, score, where)
    flags = as_int(flags, f"{where}.flags")
    if not 0 <= flags <= 0xFFFF:
        raise MalformedFieldError(f"flags must be a u16, got {flags}", field=f"{where}.flags")
    if flags:
        e["present"] |= PRESENT_FLAGS
        e["flags"] = flags
    e.update(type=type_id, length=len(data), crc=crc)
    return e


def descriptor_entry(type_id: int, object_id, class_id, group_id, bbox, score, where: str) -> dict:
    """The 2.x index entry of an object described with no unit."""
    e = _attributes(object_id, class_id, group_id, bbox, score, where)
    if not e["present"]:
        raise MalformedFieldError("an object descriptor needs at least one attribute", field=where)
    e["present"] |= PRESENT_NO_UNIT
    e["type"] = type_id
    return e
