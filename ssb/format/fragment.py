"""Parsing one fragment (a frame's header, index and the layout of its content units), 1.x and 2.x.

The reader (:mod:`ssb.format.reader`) calls :func:`parse_fragment` at each FRAME_HEADER unit
header it meets.  A 1.x fragment is FRAME_HEADER + INDEX + content units with 16-byte headers;
a 2.x fragment is one FRAME_HEADER unit holding the frame fields and a compact index, followed
by bare content payloads whose type, length and CRC the index gives.  Either way the index
alone places every unit, and the content units must tile the rest of the fragment exactly.
"""

from __future__ import annotations

from itertools import repeat
from typing import TYPE_CHECKING

import numpy as np

from ssb.errors import LimitExceededError, MalformedFieldError, SSBError, TruncatedError
from ssb.format.layout import (
    FRAME_HAS_PTS,
    FRAME_HEADER,
    FRAME_V2,
    INDEX_ENTRY,
    INDEX_HEADER,
    PRESENT_BBOX,
    PRESENT_CLASS,
    PRESENT_GROUP,
    PRESENT_NO_UNIT,
    PRESENT_OBJECT,
    PRESENT_SAME,
    PRESENT_SCORE,
    SCORE_SCALE,
    UNIT_HEADER_SIZE,
    UnitType,
    as_unit_type,
    type_name,
)
from ssb.format.model import Descriptor, FrameEntry, UnitEntry

if TYPE_CHECKING:  # pragma: no cover
    from ssb.format.reader import Bitstream

__all__ = ["Skip", "StreamLimit", "parse_fragment", "check_frame_size"]

_TYPE_BY_ID = {int(t): t for t in UnitType}


class Skip(Exception):
    """A fragment failed; carries the error and where to resume (None: stop)."""

    def __init__(self, error: SSBError, resume: int | None):
        self.error = error
        self.resume = resume


class StreamLimit(Exception):
    """A stream-wide limit was hit inside a fragment; re-raised to the caller, not recorded."""

    def __init__(self, error: LimitExceededError):
        self.error = error


def parse_fragment(bs: Bitstream, pos: int, hdr: dict) -> FrameEntry:
    """Parse the fragment whose FRAME_HEADER unit header (already verified) is at ``pos`` and add
    it (its frame and units) to ``bs``.

    Raises :class:`Skip` (recorded by the reader, which resumes where it says) or
    :class:`~ssb.errors.LimitExceededError` for a stream-wide limit.
    """
    n0 = len(bs.units)
    v2 = bs.version[0] >= 2
    try:
        fh_payload = bs._read_payload(pos, hdr, n0)
    except TruncatedError as exc:
        raise Skip(exc, None) from None
    except SSBError as exc:
        raise Skip(exc, bs._resync(pos + 1)) from None
    base, path = pos + UNIT_HEADER_SIZE, f"unit[{n0}].payload"
    try:  # the checksum was right: the writer broke the syntax, so the length is unreliable
        if v2:
            fh, _ = FRAME_V2.unpack(fh_payload, base=base, path=path, limits=bs.limits)
        else:
            fh, _ = FRAME_HEADER.unpack(fh_payload, base=base, path=path, limits=bs.limits)
    except LimitExceededError as exc:
        frag_len = _peek_length(fh_payload, v2)
        raise Skip(exc, pos + frag_len if frag_len and pos + frag_len <= bs.size else bs._resync(pos + 1)) from None
    except SSBError as exc:
        raise Skip(exc, bs._resync(pos + 1)) from None
    frag_end = pos + fh["fragment_length"]
    if frag_end > bs.size:
        raise Skip(TruncatedError(f"fragment of frame {fh['frame_index']} is cut short: needs "
                                  f"{fh['fragment_length']} bytes, {bs.size - pos} left", offset=pos,
                                  field=f"{path}.fragment_length"), None)
    if len(bs.frames) >= bs.limits.max_frames:
        raise LimitExceededError(f"more than Limits.max_frames={bs.limits.max_frames} frames", offset=pos,
                                 field=f"unit[{n0}]")
    try:
        check_frame_size(fh.get("metadata"), bs.limits, path=f"{path}.metadata", offset=fh.offsets.get("metadata"))
        frame = (_body_v2 if v2 else _body_v1)(bs, pos, hdr, fh, frag_end)
    except StreamLimit as exc:
        raise exc.error from None
    except SSBError as exc:
        raise Skip(exc, frag_end) from None
    if bs.frames and frame.frame_index <= bs.frames[-1].frame_index:
        raise Skip(MalformedFieldError(f"frame index {frame.frame_index} does not increase (previous "
                                       f"{bs.frames[-1].frame_index})", offset=base, field=f"{path}.frame_index"),
                   frag_end)
    bs.frames.append(frame)
    bs.units.append(frame.header_unit)
    if frame.index_unit is not None:
        bs.units.append(frame.index_unit)
    bs.units.extend(frame.units)
    return frame


def _peek_length(payload, v2: bool) -> int | None:
    """``fragment_length`` of a frame header whose other fields failed a limit (to skip it whole)."""
    try:
        values, _ = (FRAME_V2 if v2 else FRAME_HEADER).decode(payload)
        return int(values["fragment_length"])
    except SSBError:
        return None


#: frame metadata keys giving a frame size that differs from the sequence's, and the limit bounding each
FRAME_SIZE_KEYS = (("height", "max_height"), ("width", "max_width"))


def check_frame_size(meta, limits, *, path: str, offset: int | None = None) -> None:
    """A frame size in frame metadata ``meta`` (``"height"``, ``"width"``) is an integer from 1 to the
    limit that bounds the sequence's (docs/format.md section 7.1): decoders size their outputs from
    it.  ``path`` names the metadata field (``unit[3].payload.metadata``), ``offset`` where it is."""
    if not isinstance(meta, dict):
        return
    for key, limit in FRAME_SIZE_KEYS:
        if key not in meta:
            continue
        v = meta[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise MalformedFieldError(f"frame metadata {key!r} must be a positive integer, found {v!r}",
                                      offset=offset, field=f"{path}.{key}")
        top = getattr(limits, limit)
        if v > top:
            raise LimitExceededError(f"frame {key} {v} exceeds Limits.{limit}={top}", offset=offset,
                                     field=f"{path}.{key}")


def _check_objects(bs: Bitstream, n_objects: int, frame_index: int, offset: int, field: str) -> None:
    if n_objects > bs.limits.max_objects:
        raise LimitExceededError(f"{n_objects} objects in frame {frame_index}, over Limits.max_objects="
                                 f"{bs.limits.max_objects}", offset=offset, field=field)


# ---------------------------------------------------------------------------------- 2.x
def _body_v2(bs: Bitstream, pos: int, hdr: dict, fh: dict, frag_end: int) -> FrameEntry:
    n0 = len(bs.units)
    frame_index = fh["frame_index"]
    entries = fh["entries"]
    path = f"unit[{n0}].payload.entries"
    bs._count_units(len(entries) + 1, pos)
    fh_unit = bs._entry(hdr, pos, frame_index)
    fh_unit._checked = True
    units: list[UnitEntry] = []
    descriptors: list[Descriptor] = []
    cursor = pos + UNIT_HEADER_SIZE + hdr["length"]
    prev = (None, None, None, None, None)
    n_objects = 0
    for i, e in enumerate(entries):
        p = e["present"]
        if p & PRESENT_SAME:
            if i == 0:
                raise MalformedFieldError("the first entry cannot repeat a previous one",
                                          offset=e.offsets["present"], field=f"{path}[0].present")
            attrs = prev
        else:
            box = (float(e["x0"]), float(e["y0"]), float(e["x1"]), float(e["y1"])) if p & PRESENT_BBOX else None
            attrs = (e["object_id"], e["class_id"], e["group_id"], box,
                     e["score"] / SCORE_SCALE if p & PRESENT_SCORE else None)
        prev = attrs
        n_objects += attrs[0] is not None
        kind = _TYPE_BY_ID.get(e["type"], e["type"])
        if p & PRESENT_NO_UNIT:
            descriptors.append(Descriptor(frame_index, kind, *attrs))
            continue
        if cursor + e["length"] > frag_end:
            raise MalformedFieldError(f"entry {i} ({type_name(e['type'])}) runs past the end of its fragment",
                                      offset=e.offsets["length"], field=f"{path}[{i}].length")
        units.append(UnitEntry(n0 + 1 + len(units), kind, e["flags"] or 0, frame_index, *attrs, cursor,
                               e["length"], bs, False, e["crc"], 0))
        cursor += e["length"]
    _check_objects(bs, n_objects, frame_index, pos + UNIT_HEADER_SIZE, path)
    if cursor != frag_end:
        raise MalformedFieldError(f"units end at fragment byte {cursor - pos}, fragment_length is "
                                  f"{frag_end - pos}", offset=pos + UNIT_HEADER_SIZE,
                                  field=f"unit[{n0}].payload.fragment_length")
    pts = fh["pts"] if fh["flags"] & FRAME_HAS_PTS else None
    refs = tuple(frame_index - d for d in fh["refs"])
    return FrameEntry(frame_index, pts, fh["metadata"] or {}, units, pos, frag_end - pos, fh_unit, None, refs,
                      descriptors)


# ---------------------------------------------------------------------------------- 1.x
def _body_v1(bs: Bitstream, pos: int, hdr: dict, fh: dict, frag_end: int) -> FrameEntry:
    n0 = len(bs.units)
    frame_index = fh["frame_index"]
    ipos = pos + UNIT_HEADER_SIZE + hdr["length"]
    if ipos + UNIT_HEADER_SIZE > frag_end:
        raise MalformedFieldError("fragment too short for its INDEX unit", offset=pos + UNIT_HEADER_SIZE + 16,
                                  field=f"unit[{n0}].payload.fragment_length")
    ihdr = bs._read_header(ipos, n0 + 1)
    if ihdr["type"] != int(UnitType.INDEX):
        raise MalformedFieldError(f"a FRAME_HEADER must be followed by an INDEX, found {type_name(ihdr['type'])}",
                                  offset=ipos, field=f"unit[{n0 + 1}].header.type")
    ipayload = bs._read_payload(ipos, ihdr, n0 + 1, end=frag_end)
    ibase = ipos + UNIT_HEADER_SIZE
    ipath = f"unit[{n0 + 1}].payload"
    ih, _ = INDEX_HEADER.unpack(ipayload, base=ibase, path=ipath, limits=bs.limits)
    count, stride = ih["entry_count"], ih["entry_size"]
    bs._count_units(count + 2, pos)
    table_start = INDEX_HEADER.fixed_size
    if table_start + count * stride > len(ipayload):
        raise MalformedFieldError(f"INDEX declares {count} entries of {stride} bytes, payload holds "
                                  f"{len(ipayload) - table_start}", offset=ibase + 4, field=f"{ipath}.entry_count")
    arr = INDEX_ENTRY.unpack_array(ipayload[table_start: table_start + count * stride], count, stride,
                                   base=ibase + table_start, path=f"{ipath}.entries", limits=bs.limits)
    _check_objects(bs, int(np.count_nonzero(arr["present"] & PRESENT_OBJECT)), frame_index, ibase,
                   f"{ipath}.entries")
    # The content units must tile the rest of the fragment exactly, in index order.
    content_start = ipos + UNIT_HEADER_SIZE + ihdr["length"] - pos
    offsets = arr["offset"].astype(np.int64)
    lengths = arr["length"].astype(np.int64)
    expected = content_start + np.concatenate(([0], np.cumsum(lengths + UNIT_HEADER_SIZE)))
    bad = np.flatnonzero(offsets != expected[:-1])
    if bad.size:
        i = int(bad[0])
        raise MalformedFieldError(f"entry {i} offset {int(offsets[i])} should be {int(expected[i])}",
                                  offset=ibase + table_start + i * stride + INDEX_ENTRY.offsets["offset"],
                                  field=f"{ipath}.entries[{i}].offset")
    if pos + int(expected[-1]) != frag_end:
        raise MalformedFieldError(f"units end at fragment byte {int(expected[-1])}, fragment_length is "
                                  f"{frag_end - pos}", offset=pos + UNIT_HEADER_SIZE + 16,
                                  field=f"unit[{n0}].payload.fragment_length")
    fh_unit = bs._entry(hdr, pos, frame_index)
    fh_unit._checked = True
    ix_unit = bs._entry(ihdr, ipos, frame_index)
    ix_unit.number, ix_unit._checked = n0 + 1, True
    units = _entries_v1(bs, arr, n0 + 2, frame_index, pos + UNIT_HEADER_SIZE)
    pts = fh["pts"] if fh["flags"] & FRAME_HAS_PTS else None
    return FrameEntry(frame_index, pts, fh["metadata"], units, pos, frag_end - pos, fh_unit, ix_unit)


def _entries_v1(bs: Bitstream, arr: np.ndarray, first_number: int, frame: int, payload_base: int
                ) -> list[UnitEntry]:
    """UnitEntry objects for a validated 1.x index table, built column-wise (the open's hot loop)."""
    present = arr["present"]

    def optional(name: str, bit: int) -> list:
        col = arr[name].astype(object)
        col[(present & bit) == 0] = None
        return col.tolist()

    boxes = list(zip(*(arr[k].tolist() for k in ("x0", "y0", "x1", "y1"))))
    for i in np.flatnonzero((present & PRESENT_BBOX) == 0).tolist():
        boxes[i] = None
    count = len(arr)
    return list(map(
        UnitEntry,
        range(first_number, first_number + count),
        [as_unit_type(t) for t in arr["type"].tolist()],
        arr["flags"].tolist(),
        repeat(frame, count),
        optional("object_id", PRESENT_OBJECT),
        optional("class_id", PRESENT_CLASS),
        optional("group_id", PRESENT_GROUP),
        boxes,
        optional("score", PRESENT_SCORE),
        (arr["offset"].astype(np.int64) + payload_base).tolist(),
        arr["length"].tolist(),
        repeat(bs, count),
        repeat(False, count),
    ))
