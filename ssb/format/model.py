"""The objects a reader hands out: sequence header, frames and units."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ssb.errors import SSBError
from ssb.format.layout import UNIT_HEADER_SIZE, type_name

if TYPE_CHECKING:  # pragma: no cover
    from ssb.format.layout import UnitType
    from ssb.format.reader import Bitstream

__all__ = ["SequenceHeader", "UnitEntry", "FrameEntry"]


@dataclass
class SequenceHeader:
    """Stream-wide parameters, stored in the SEQUENCE_HEADER unit.

    ``metadata`` is a small JSON object (model ids, ``classes`` as {id: name}, ...).
    JSON object keys are strings, so ``{1: "person"}`` reads back as ``{"1": "person"}``.
    """

    width: int
    height: int
    fps_num: int = 0
    fps_den: int = 1
    codec: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class UnitEntry:
    """One unit as the index (or the walk over the stream) describes it; no payload read yet.

    ``offset``/``length`` are the payload's byte range in the stream; the unit's
    16-byte header sits just before ``offset``.  ``frame`` is the frame index of
    the fragment holding the unit (``None`` for units outside fragments).
    ``number`` is the unit's position in :attr:`Bitstream.units` (stream order).
    """

    number: int
    type: UnitType | int
    flags: int
    frame: int | None
    object_id: int | None
    class_id: int | None
    group_id: int | None
    bbox: tuple[float, float, float, float] | None
    score: float | None
    offset: int
    length: int
    _bs: Bitstream | None = field(default=None, repr=False)
    _checked: bool = field(default=False, repr=False)

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    @property
    def span(self) -> tuple[int, int]:
        """(start, stop) of the whole unit, header included: what a partial reader fetches."""
        return self.offset - UNIT_HEADER_SIZE, self.offset + self.length

    @property
    def size(self) -> int:
        """Bytes of the whole unit, header included."""
        return self.length + UNIT_HEADER_SIZE

    @property
    def attributed(self) -> bool:
        """True when the unit carries an object, class, group or box (it belongs to an object)."""
        return (
            self.object_id is not None
            or self.class_id is not None
            or self.group_id is not None
            or self.bbox is not None
        )

    def payload(self) -> memoryview:
        """The payload bytes: a zero-copy view of the mapped file or buffer.

        On first access the unit header is read and checked against the index, and
        (when the bitstream was opened with ``verify=True``) the payload CRC-32 is
        verified; a mismatch raises :class:`~ssb.errors.ChecksumError` naming the unit.
        """
        if self._bs is None:
            raise SSBError("the bitstream of this unit is closed", field=f"unit[{self.number}]")
        return self._bs._payload(self)


@dataclass(eq=False)
class FrameEntry:
    """One fragment: a frame header, its index and its content units."""

    frame_index: int
    pts: int | None
    metadata: dict[str, Any]
    units: list[UnitEntry]
    offset: int
    length: int
    header_unit: UnitEntry = field(repr=False)
    index_unit: UnitEntry = field(repr=False)

    @property
    def nbytes(self) -> int:
        return self.length
