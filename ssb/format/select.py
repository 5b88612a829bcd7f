"""Semantic selection: which units (and which bytes) a query needs, decided from the index alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator

from ssb.format.layout import UnitType
from ssb.format.model import UnitEntry

if TYPE_CHECKING:  # pragma: no cover
    from ssb.format.reader import Bitstream

__all__ = ["Selection", "select_units", "merge_ranges", "SHARED_TYPES"]

#: Per-frame units every decode of a selected frame needs (with ``include_shared=True``).
SHARED_TYPES = frozenset({UnitType.FRAME_HEADER, UnitType.BASE, UnitType.METADATA})


@dataclass
class Selection:
    """The answer to a query: units in stream order and the bytes a partial reader must fetch.

    ``byte_ranges`` are merged, sorted ``(start, stop)`` ranges covering each
    selected unit whole (16-byte header + payload), so a reader fetching only
    them can still verify every unit; ``nbytes`` is their total.
    """

    units: list[UnitEntry]
    byte_ranges: list[tuple[int, int]]
    nbytes: int

    @property
    def frames(self) -> list[int]:
        """Frame indices touched by the selection, ascending."""
        return sorted({u.frame for u in self.units if u.frame is not None})

    def payloads(self) -> Iterator[tuple[UnitEntry, memoryview]]:
        """(unit, payload view) for every selected unit, in stream order."""
        for u in self.units:
            yield u, u.payload()


def merge_ranges(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort and merge overlapping or touching ``(start, stop)`` ranges."""
    merged: list[list[int]] = []
    for start, stop in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return [(a, b) for a, b in merged]


def _as_set(values: Iterable[int] | int | None) -> set[int] | None:
    if values is None:
        return None
    if isinstance(values, int):
        return {values}
    return {int(v) for v in values}


def _intersects(
    bbox: tuple[float, float, float, float] | None, region: tuple[float, float, float, float]
) -> bool:
    if bbox is None:
        return False
    x0, y0, x1, y1 = region
    return bbox[0] <= x1 and x0 <= bbox[2] and bbox[1] <= y1 and y0 <= bbox[3]


def select_units(
    bs: Bitstream,
    *,
    classes=None,
    objects=None,
    groups=None,
    frames=None,
    region=None,
    types=None,
    include_shared: bool = True,
) -> Selection:
    """Select units by frame, object, class, group, region and type.

    Rules (normative, see docs/format.md, "Selection"):

    1. Frames: ``frames`` (a range or iterable of frame indices) limits the candidate
       fragments; ``None`` means all.
    2. A content unit is *attributed* when its index entry carries an object id, class id,
       group id or box.  When any of ``classes``, ``objects``, ``groups``, ``region`` is
       given, an attributed unit matches when it satisfies every one given (a missing
       attribute never matches) and its type is in ``types`` (if given); an unattributed
       unit (BASE, BACKGROUND, MOTION, ...) matches only when ``types`` names its type.
    3. With no such criterion, every content unit of the candidate frames whose type is in
       ``types`` (or any type when ``types`` is None) matches.
    4. ``include_shared`` adds the SEQUENCE_HEADER, sequence-level METADATA units, and the
       FRAME_HEADER and the unattributed BASE and METADATA units of every frame holding a
       match (every candidate frame when no criterion of rule 2 is given).  An attributed
       unit of a shared type is content: only rules 2-3 select it.
    """
    cls, obj, grp = _as_set(classes), _as_set(objects), _as_set(groups)
    typ = _as_set(types)
    frame_set = frames if frames is None or isinstance(frames, range) else _as_set(frames)
    semantic = cls is not None or obj is not None or grp is not None or region is not None
    if region is not None:
        region = tuple(float(v) for v in region)
        if len(region) != 4:
            raise ValueError("region must be (x0, y0, x1, y1)")

    chosen: dict[int, UnitEntry] = {}
    shared_frames = []
    for fr in bs.frames:
        if frame_set is not None and fr.frame_index not in frame_set:
            continue
        hit = not semantic
        for u in fr.units:
            t = int(u.type)
            if typ is not None and t not in typ:
                continue
            if semantic:
                if not u.attributed:
                    if typ is None:
                        continue
                else:
                    if cls is not None and u.class_id not in cls:
                        continue
                    if obj is not None and u.object_id not in obj:
                        continue
                    if grp is not None and u.group_id not in grp:
                        continue
                    if region is not None and not _intersects(u.bbox, region):
                        continue
                    hit = True
            chosen[u.number] = u
        if hit:
            shared_frames.append(fr)

    if include_shared and shared_frames:
        for u in bs.units:
            if u.frame is None and u.type in (UnitType.SEQUENCE_HEADER, UnitType.METADATA):
                chosen[u.number] = u
        for fr in shared_frames:
            chosen[fr.header_unit.number] = fr.header_unit
            for u in fr.units:
                if u.type in SHARED_TYPES and not u.attributed:
                    chosen[u.number] = u

    units = [chosen[k] for k in sorted(chosen)]
    ranges = merge_ranges(u.span for u in units)
    return Selection(units, ranges, sum(b - a for a, b in ranges))
