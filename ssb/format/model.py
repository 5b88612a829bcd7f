"""The objects a reader hands out: sequence header, frames and units."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ssb.errors import SSBError
from ssb.format.layout import UNIT_HEADER_SIZE, type_name

if TYPE_CHECKING:  # pragma: no cover
    from ssb.format.layout import UnitType
    from ssb.format.reader import Bitstream

__all__ = ["SequenceHeader", "UnitEntry", "Descriptor", "FrameEntry"]


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
    ``header_size``-byte header sits just before ``offset`` (16 bytes; 0 for the content units
    of a 2.x fragment, whose type, length and ``crc`` the index holds).  ``frame`` is the frame
    index of the fragment holding the unit (``None`` for units outside fragments).
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
    crc: int | None = field(default=None, repr=False)
    header_size: int = field(default=UNIT_HEADER_SIZE, repr=False)

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    @property
    def span(self) -> tuple[int, int]:
        """(start, stop) of the whole unit, header included: what a partial reader fetches."""
        return self.offset - self.header_size, self.offset + self.length

    @property
    def size(self) -> int:
        """Bytes of the whole unit, header included."""
        return self.length + self.header_size

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


@dataclass(eq=False, slots=True)
class Descriptor:
    """An object the index describes with no unit of its own (2.x entries with ``present`` bit 6).

    Detections an encoder saw ("how many people, where") cost only their index entry.
    """

    frame: int
    type: UnitType | int
    object_id: int | None
    class_id: int | None
    group_id: int | None
    bbox: tuple[float, float, float, float] | None
    score: float | None

    @property
    def attributed(self) -> bool:
        return True


@dataclass(eq=False)
class FrameEntry:
    """One fragment: a frame header, its index and its content units.

    ``refs`` are the frame indices this frame is predicted from (empty: it decodes alone);
    ``descriptors`` the objects its index describes without a unit.  ``index_unit`` is the
    1.x INDEX unit (``None`` in 2.x, where the index is part of the FRAME_HEADER unit).
    """

    frame_index: int
    pts: int | None
    metadata: dict[str, Any]
    units: list[UnitEntry]
    offset: int
    length: int
    header_unit: UnitEntry = field(repr=False)
    index_unit: UnitEntry | None = field(default=None, repr=False)
    refs: tuple[int, ...] = ()
    descriptors: list[Descriptor] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return self.length

    @property
    def key(self) -> bool:
        """True when the frame decodes without any other frame (a random-access point)."""
        return not self.refs
