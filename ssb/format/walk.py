"""Opening a stream: the walk over its units, fragment by fragment, and the containment of damage.

:class:`StreamWalk` is the parsing half of :class:`ssb.format.reader.Bitstream` (a mixin: the
fragment parser, :func:`ssb.format.fragment.parse_fragment`, calls back into these methods).  It
reads the preamble and the SEQUENCE_HEADER, then each unit header: a FRAME_HEADER hands its
fragment to the fragment parser, an END unit closes the stream, any other top-level unit is listed.
A damaged unit header is recorded in ``errors`` and skipped by scanning for the next valid
FRAME_HEADER or END unit header (:meth:`StreamWalk._resync`); a unit cut short ends the walk.
"""

from __future__ import annotations

import re
import zlib
from typing import TYPE_CHECKING

from ssb.errors import (
    ChecksumError,
    LimitExceededError,
    MalformedFieldError,
    SSBError,
    TruncatedError,
    UnsupportedVersionError,
)
from ssb.format.fragment import Skip, StreamLimit, parse_fragment
from ssb.format.layout import (
    END,
    MAGIC,
    PREAMBLE,
    PREAMBLE_SIZE,
    READ_MAJORS,
    SEQUENCE_HEADER,
    UNIT_HEADER,
    UNIT_HEADER_SIZE,
    UnitType,
    as_unit_type,
    type_name,
)
from ssb.format.model import SequenceHeader, UnitEntry

if TYPE_CHECKING:
    from ssb.format.limits import Limits
    from ssb.format.source import Source

__all__ = ["StreamWalk"]

_FH = int(UnitType.FRAME_HEADER)
_END = int(UnitType.END)
# Resynchronisation looks for the little-endian type id of a FRAME_HEADER or END unit header.
_RESYNC = re.compile(re.escape(_FH.to_bytes(2, "little")) + b"|" + re.escape(_END.to_bytes(2, "little")))
_TOP_LEVEL_FORBIDDEN = {int(UnitType.SEQUENCE_HEADER), int(UnitType.INDEX)}


class StreamWalk:
    """The open-time parse of a :class:`~ssb.format.reader.Bitstream` (which sets the attributes below)."""

    _src: Source
    limits: Limits
    verify: bool
    strict: bool
    size: int

    def _record(self, err: SSBError) -> None:
        if self.strict:
            raise err
        self.errors.append(err)

    def _read_header(self, pos: int, number: int) -> dict:
        """Read a unit header at ``pos``, check its CRC, then its fields."""
        path = f"unit[{number}].header"
        raw = self._src.read(pos, UNIT_HEADER_SIZE, path)
        values, _ = UNIT_HEADER.decode(raw, base=pos, path=path)
        if zlib.crc32(raw[:12]) != values["header_crc"]:
            raise ChecksumError("unit header checksum mismatch", offset=pos + 12, field=f"{path}.header_crc")
        UNIT_HEADER.validate(values, base=pos, path=path, limits=self.limits)
        return values

    def _read_payload(self, pos: int, hdr: dict, number: int, end: int | None = None) -> memoryview:
        """Read (and CRC-check) the payload of a structural unit whose header is at ``pos``."""
        path = f"unit[{number}].payload"
        start = pos + UNIT_HEADER_SIZE
        if end is not None and start + hdr["length"] > end:
            raise MalformedFieldError(
                "unit runs past the end of its fragment",
                offset=pos + 4,
                field=f"unit[{number}].header.length",
            )
        view = self._src.read(start, hdr["length"], path)
        if self.verify and zlib.crc32(view) != hdr["payload_crc"]:
            raise ChecksumError(
                f"unit {number} ({type_name(hdr['type'])}) payload checksum mismatch",
                offset=start,
                field=path,
            )
        return view

    def _entry(self, hdr: dict, pos: int, frame: int | None) -> UnitEntry:
        return UnitEntry(
            len(self.units),
            as_unit_type(hdr["type"]),
            hdr["flags"],
            frame,
            None,
            None,
            None,
            None,
            None,
            pos + UNIT_HEADER_SIZE,
            hdr["length"],
            self,
            False,
        )

    def _count_units(self, extra: int, pos: int) -> None:
        """Refuse, before allocating them, units beyond ``Limits.max_units`` (fatal: a stream-wide limit)."""
        if len(self.units) + extra > self.limits.max_units:
            raise StreamLimit(
                LimitExceededError(
                    f"more than Limits.max_units={self.limits.max_units} units",
                    offset=pos,
                    field=f"unit[{len(self.units)}]",
                )
            )

    def _parse(self) -> None:
        raw = self._src.read(0, PREAMBLE_SIZE, "preamble")
        if bytes(raw[:8]) != MAGIC:
            raise MalformedFieldError(
                "not an SSB stream (its first 8 bytes are not the SSB signature)",
                offset=0,
                field="preamble.magic",
            )
        pre, _ = PREAMBLE.unpack(raw, path="preamble")  # the magic first: "not an SSB file"
        if zlib.crc32(raw[:12]) != pre["crc"]:
            raise ChecksumError("preamble checksum mismatch", offset=12, field="preamble.crc")
        if pre["major"] not in READ_MAJORS:
            raise UnsupportedVersionError(
                f"SSB version {pre['major']}.{pre['minor']} is not supported; this reader "
                f"implements major versions {', '.join(map(str, READ_MAJORS))}",
                offset=8,
                field="preamble.major",
            )
        self.version = (pre["major"], pre["minor"])

        pos = PREAMBLE_SIZE
        hdr = self._read_header(pos, 0)
        if hdr["type"] != int(UnitType.SEQUENCE_HEADER):
            raise MalformedFieldError(
                f"the first unit must be a SEQUENCE_HEADER, found {type_name(hdr['type'])}",
                offset=pos,
                field="unit[0].header.type",
            )
        payload = self._read_payload(pos, hdr, 0)
        seq, _ = SEQUENCE_HEADER.unpack(
            payload, base=pos + UNIT_HEADER_SIZE, path="unit[0].payload", limits=self.limits
        )
        self.header = SequenceHeader(
            seq["width"], seq["height"], seq["fps_num"], seq["fps_den"], seq["codec"], seq["metadata"]
        )
        entry = self._entry(hdr, pos, None)
        entry._checked = True
        self.units.append(entry)
        pos += UNIT_HEADER_SIZE + hdr["length"]
        self._data_end = pos
        self._walk(pos)

    def _walk(self, pos: int) -> None:
        size = self.size
        while pos < size:
            number = len(self.units)
            try:
                hdr = self._read_header(pos, number)
            except TruncatedError as exc:
                self._record(exc)
                return
            except SSBError as exc:  # damaged header, or one declaring an oversized unit
                self._record(exc)
                pos = self._resync(pos + 1)
                continue
            kind = hdr["type"]
            if kind == _FH:
                try:
                    frame = parse_fragment(self, pos, hdr)
                    pos = frame.offset + frame.length
                    self._data_end = pos
                except Skip as skip:
                    self._record(skip.error)
                    if skip.resume is None:
                        return
                    pos = skip.resume
            elif kind == _END:
                self._end(pos, hdr)
                return
            else:
                end = pos + UNIT_HEADER_SIZE + hdr["length"]
                if end > size:
                    self._record(
                        TruncatedError(
                            f"unit {number} ({type_name(kind)}) is cut short",
                            offset=pos,
                            field=f"unit[{number}]",
                        )
                    )
                    return
                if kind in _TOP_LEVEL_FORBIDDEN:
                    self._record(
                        MalformedFieldError(
                            f"{type_name(kind)} unit outside a fragment",
                            offset=pos,
                            field=f"unit[{number}].header.type",
                        )
                    )
                else:
                    try:
                        self._count_units(1, pos)
                    except StreamLimit as exc:
                        raise exc.error from None
                    self.units.append(self._entry(hdr, pos, None))
                    self._data_end = end
                pos = end

    def _resync(self, start: int) -> int:
        """Offset of the next valid FRAME_HEADER or END unit header at or after ``start`` (or EOF)."""
        for cand in self._src.finditer(_RESYNC, start, overlap=1):
            if cand + UNIT_HEADER_SIZE > self.size:
                break
            raw = self._src.read(cand, UNIT_HEADER_SIZE)
            if zlib.crc32(raw[:12]) == int.from_bytes(raw[12:16], "little"):
                return cand
        return self.size

    def _end(self, pos: int, hdr: dict) -> None:
        number = len(self.units)
        try:
            payload = self._read_payload(pos, hdr, number)
            end, _ = END.unpack(
                payload, base=pos + UNIT_HEADER_SIZE, path=f"unit[{number}].payload", limits=self.limits
            )
        except SSBError as exc:
            self._record(exc)
            return
        stop = pos + UNIT_HEADER_SIZE + hdr["length"]
        self.units.append(self._entry(hdr, pos, None))
        self.units[-1]._checked = True
        self.complete = True
        if end["frame_count"] != len(self.frames) or end["unit_count"] != number:
            self._record(
                MalformedFieldError(
                    f"END counts {end['frame_count']} frames / {end['unit_count']} units, read "
                    f"{len(self.frames)} / {number}: fragments were lost",
                    offset=pos + UNIT_HEADER_SIZE,
                    field=f"unit[{number}].payload.frame_count",
                )
            )
        if stop != self.size:
            self._record(
                MalformedFieldError(
                    f"{self.size - stop} bytes after the END unit", offset=stop, field=f"unit[{number + 1}]"
                )
            )
