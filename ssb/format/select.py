"""Semantic selection: which units (and which bytes) a query needs, decided from the index alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Iterator

from ssb.errors import LimitExceededError, MalformedFieldError
from ssb.format.labels import class_id, label_names
from ssb.format.layout import UnitType
from ssb.format.model import Descriptor, FrameEntry, UnitEntry

if TYPE_CHECKING:  # pragma: no cover
    from ssb.format.reader import Bitstream

__all__ = ["Selection", "select_units", "merge_ranges", "dependency_closure", "shared_types", "SHARED_TYPES"]

#: Per-frame units every decode of a selected 1.x frame needs (with ``include_shared=True``).
SHARED_TYPES = frozenset({UnitType.FRAME_HEADER, UnitType.BASE, UnitType.METADATA})
#: 2.x adds the frame-level motion and residual of predicted frames.
SHARED_TYPES_V2 = SHARED_TYPES | {UnitType.MOTION, UnitType.RESIDUAL}


def shared_types(version: tuple[int, int]) -> frozenset:
    """The unit types that are *shared* (section 10.1, rule 4) in a stream of ``version``."""
    return SHARED_TYPES if version[0] < 2 else SHARED_TYPES_V2


@dataclass
class Selection:
    """The answer to a query: units in stream order and the bytes a partial reader must fetch.

    ``byte_ranges`` are merged, sorted ``(start, stop)`` ranges covering each selected unit whole
    (its header, if it has one, and its payload), so a reader fetching only them can still verify
    every unit; ``nbytes`` is their total.  ``descriptors`` are the matching objects the index
    describes without a unit; ``targets`` the frames asked for that matched, and ``missing`` the
    reference frames a matched frame depends on that the stream does not hold.
    """

    units: list[UnitEntry]
    byte_ranges: list[tuple[int, int]]
    nbytes: int
    descriptors: list[Descriptor] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)

    @property
    def frames(self) -> list[int]:
        """Frame indices touched by the selection (targets and their dependencies), ascending."""
        return sorted({u.frame for u in self.units if u.frame is not None} | set(self.targets))

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


def _classes(bs: Bitstream, classes) -> set[int] | None:
    """Class ids from ids or names of the stream's label set (``["person"]`` works like ``[1]``)."""
    if classes is None:
        return None
    if isinstance(classes, (str, int)):
        classes = [classes]
    names = label_names(bs.header.metadata)
    return {class_id(c, names, "classes") for c in classes}


def _intersects(bbox, region) -> bool:
    if bbox is None:
        return False
    x0, y0, x1, y1 = region
    return bbox[0] <= x1 and x0 <= bbox[2] and bbox[1] <= y1 and y0 <= bbox[3]


def dependency_closure(bs: Bitstream, frames: Iterable[int]) -> tuple[list[FrameEntry], list[int]]:
    """The fragments ``frames`` need (themselves and, transitively, every frame they predict from),
    in stream order, and the referenced frame indices the stream lacks.

    The walk is bounded by ``Limits.max_dependency_depth`` frames per query.
    """
    seen: dict[int, FrameEntry] = {}
    missing: set[int] = set()
    todo = list(frames)
    limit = bs.limits.max_dependency_depth + len(todo)
    while todo:
        fi = todo.pop()
        if fi in seen or fi in missing:
            continue
        fr = bs.frame(fi)
        if fr is None:
            missing.add(fi)
            continue
        seen[fi] = fr
        if len(seen) > limit:
            raise LimitExceededError(f"frame {fi}: the dependency chain is longer than "
                                     f"Limits.max_dependency_depth={bs.limits.max_dependency_depth}",
                                     field="frames")
        todo.extend(fr.refs)
    return sorted(seen.values(), key=lambda f: f.offset), sorted(missing)


def select_units(bs: Bitstream, *, classes=None, objects=None, groups=None, frames=None, region=None, types=None,
                 include_shared: bool = True, follow_refs: bool = True) -> Selection:
    """Select units by frame, object, class, group, region and type.

    Rules (normative, see docs/format.md, "Selection"):

    1. Frames: ``frames`` (a range or iterable of frame indices) limits the candidate
       fragments; ``None`` means all.
    2. A content unit (or a described object) is *attributed* when its index entry carries an
       object id, class id, group id or box.  When any of ``classes`` (ids, or names of the
       stream's label set), ``objects``, ``groups``, ``region`` is given, an attributed unit
       matches when it satisfies every one given (a missing attribute never matches) and its
       type is in ``types`` (if given); an unattributed unit matches only when ``types`` names
       its type.  A candidate frame with a match (a unit or a described object) is a *target*.
    3. With no such criterion, every content unit of the candidate frames whose type is in
       ``types`` (or any type when ``types`` is None) matches, and every candidate is a target.
    4. ``include_shared`` adds the SEQUENCE_HEADER, sequence-level METADATA units, and the
       FRAME_HEADER and the unattributed shared units (:func:`shared_types`) of every frame
       selected.  An attributed unit of a shared type is content: only rules 2-3 select it.
    5. ``follow_refs`` (2.x): the frames every target depends on (its references, transitively)
       are selected too, with the units that match rules 2-3 there and their shared units, so
       the selection holds every byte a decoder of the targets needs, and nothing of any other
       frame.
    """
    cls, obj, grp = _classes(bs, classes), _as_set(objects), _as_set(groups)
    typ = _as_set(types)
    frame_set = frames if frames is None or isinstance(frames, range) else _as_set(frames)
    semantic = cls is not None or obj is not None or grp is not None or region is not None
    if region is not None:
        region = tuple(float(v) for v in region)
        if len(region) != 4:
            raise MalformedFieldError("region must be (x0, y0, x1, y1)", field="region")

    def matches(u) -> bool:
        if cls is not None and u.class_id not in cls:
            return False
        if obj is not None and u.object_id not in obj:
            return False
        if grp is not None and u.group_id not in grp:
            return False
        return region is None or _intersects(u.bbox, region)

    def content(fr: FrameEntry) -> tuple[list[UnitEntry], list[Descriptor], bool]:
        units, descs, hit = [], [], not semantic
        for u in fr.units:
            if typ is not None and int(u.type) not in typ:
                continue
            if semantic:
                if not u.attributed:
                    if typ is None:
                        continue
                elif not matches(u):
                    continue
                else:
                    hit = True
            units.append(u)
        if semantic:
            descs = [d for d in fr.descriptors if (typ is None or int(d.type) in typ) and matches(d)]
            hit = hit or bool(descs)
        return units, descs, hit

    chosen: dict[int, UnitEntry] = {}
    descriptors: list[Descriptor] = []
    targets: list[FrameEntry] = []
    for fr in bs.frames:
        if frame_set is not None and fr.frame_index not in frame_set:
            continue
        units, descs, hit = content(fr)
        chosen.update((u.number, u) for u in units)
        descriptors += descs
        if hit:
            targets.append(fr)
    selected, missing = list(targets), []
    if follow_refs and any(fr.refs for fr in targets):
        selected, missing = dependency_closure(bs, [fr.frame_index for fr in targets])
        target_ids = {fr.frame_index for fr in targets}
        for fr in selected:
            if fr.frame_index not in target_ids:
                chosen.update((u.number, u) for u in content(fr)[0])
    if include_shared and selected:
        shared = shared_types(bs.version)
        for u in bs.units:
            if u.frame is None and u.type in (UnitType.SEQUENCE_HEADER, UnitType.METADATA):
                chosen[u.number] = u
        for fr in selected:
            chosen[fr.header_unit.number] = fr.header_unit
            for u in fr.units:
                if u.type in shared and not u.attributed:
                    chosen[u.number] = u
    units = [chosen[k] for k in sorted(chosen)]
    ranges = merge_ranges(u.span for u in units)
    return Selection(units, ranges, sum(b - a for a, b in ranges), descriptors,
                     [fr.frame_index for fr in targets], missing)
