"""The lazy reader: parses the preamble, headers and indexes, never a content payload.

Opening a stream walks it fragment by fragment: for each fragment it reads the
FRAME_HEADER unit and the INDEX unit that follows it, and jumps over the
content units using the fragment length.  Payloads are read only by
:meth:`UnitEntry.payload`.  Damage is contained: a bad fragment is recorded in
:attr:`Bitstream.errors` and skipped (using its length when its header is
intact, else by scanning for the next valid FRAME_HEADER), a file cut short is
readable up to its last complete fragment.
"""

from __future__ import annotations

import contextlib
import gc
import re
import zlib
from typing import Iterable, Iterator


from ssb.errors import (
    ChecksumError,
    LimitExceededError,
    MalformedFieldError,
    SSBError,
    TruncatedError,
    UnsupportedVersionError,
)
from ssb.format.layout import (
    END,
    MAGIC,
    PREAMBLE,
    PREAMBLE_SIZE,
    SEQUENCE_HEADER,
    UNIT_HEADER,
    UNIT_HEADER_SIZE,
    READ_MAJORS,
    UnitType,
    as_unit_type,
    type_name,
)
from ssb.format.limits import DEFAULT_LIMITS, Limits
from ssb.format.model import FrameEntry, SequenceHeader, UnitEntry
from ssb.format.fragment import Skip, StreamLimit, parse_fragment
from ssb.format.select import Selection, dependency_closure, select_units
from ssb.format.source import Source, source_for

__all__ = ["Bitstream", "open_bitstream"]

_FH = int(UnitType.FRAME_HEADER)
_END = int(UnitType.END)
# Resynchronisation looks for the little-endian type id of a FRAME_HEADER or END unit header.
_RESYNC = re.compile(re.escape(_FH.to_bytes(2, "little")) + b"|" + re.escape(_END.to_bytes(2, "little")))
_TYPE_BY_ID = {int(t): t for t in UnitType}
_TOP_LEVEL_FORBIDDEN = {int(UnitType.SEQUENCE_HEADER), int(UnitType.INDEX)}


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while the index objects are built.

    Opening allocates one object per unit and none of them is garbage; without this,
    collections triggered by those allocations take about half of the open time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Bitstream:
    """An open SSB stream. Use :func:`ssb.format.open` to create one.

    Attributes
    ----------
    header: SequenceHeader
    version: (major, minor) read from the preamble
    frames: list[FrameEntry], in stream order
    units: list[UnitEntry], every unit in stream order (structural units included)
    errors: recoverable problems found while opening (damaged fragments, a cut tail)
    complete: True when the stream ends with a valid END unit (the writer closed it)
    size: stream size in bytes
    """

    def __init__(
        self,
        source: Source,
        *,
        limits: Limits | None = None,
        verify: bool = True,
        strict: bool = False,
        owned: bool = False,
    ):
        self._src = source
        self._owned = owned
        self._closed = False
        self.limits = limits or DEFAULT_LIMITS
        self.verify = verify
        self.strict = strict
        self.size = source.size
        self.frames: list[FrameEntry] = []
        self.units: list[UnitEntry] = []
        self.errors: list[SSBError] = []
        self.complete = False
        self._data_end = 0  # end of the last fully parsed element before END (where an appender resumes)
        try:
            with _gc_paused():
                self._parse()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ public API
    @property
    def bytes_read(self) -> int:
        """Bytes read from the source so far (headers, indexes and payloads)."""
        return self._src.bytes_read

    def __iter__(self) -> Iterator[UnitEntry]:
        return iter(self.units)

    def __len__(self) -> int:
        return len(self.units)

    def frame(self, frame_index: int) -> FrameEntry | None:
        """The fragment of ``frame_index``, or ``None``."""
        if not hasattr(self, "_frame_map"):
            self._frame_map = {f.frame_index: f for f in self.frames}
        return self._frame_map.get(frame_index)

    def select(
        self,
        classes=None,
        objects: Iterable[int] | None = None,
        groups: Iterable[int] | None = None,
        frames: Iterable[int] | None = None,
        region: tuple[float, float, float, float] | None = None,
        types: Iterable[UnitType | int] | None = None,
        include_shared: bool = True,
        follow_refs: bool = True,
    ) -> Selection:
        """The units a query needs and their merged byte ranges, from the index alone.

        ``classes`` are ids or names of the stream's label set. See
        :func:`ssb.format.select.select_units` for the exact rules.
        """
        return select_units(
            self,
            classes=classes,
            objects=objects,
            groups=groups,
            frames=frames,
            region=region,
            types=types,
            include_shared=include_shared,
            follow_refs=follow_refs,
        )

    def prefetch(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Hint that the byte ``ranges`` (``(start, stop)``, e.g. a selection's or a step's unit spans)
        are read next: a remote source fetches them, merged and coalesced, in as few requests as it can;
        a local one does nothing.  Returns the bytes fetched."""
        from ssb.format.select import merge_ranges

        return self._src.prefetch(merge_ranges(ranges))

    def dependencies(self, frames: Iterable[int]) -> list[FrameEntry]:
        """The fragments needed to decode ``frames``: themselves and every frame they predict from,
        transitively, in stream order (a referenced frame the stream lacks raises)."""
        found, missing = dependency_closure(self, frames)
        if missing:
            raise MalformedFieldError(
                f"frames {missing[:5]} are referenced but not in the stream (lost or cut)", field="frames"
            )
        return found

    def check(self) -> list[SSBError]:
        """Read and verify every unit's header and payload; returns the problems found.

        Structural units already verified while opening (``verify=True``) are not read again.
        """
        problems = []
        for u in self.units:
            if u._checked and self.verify:
                continue
            try:
                self._payload(u, force_verify=True)
            except SSBError as exc:
                problems.append(exc)
        return problems

    def close(self) -> None:
        """Release the source (unmap a path). Units stay listed but their payloads are gone."""
        if not self._closed:
            self._closed = True
            for u in self.units:  # break the unit -> bitstream cycles so memory is freed at once
                u._bs = None
            if self._owned:
                self._src.close()

    def __enter__(self) -> Bitstream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        h = getattr(self, "header", None)
        dims = f"{h.width}x{h.height}" if h else "?"
        version = ".".join(map(str, getattr(self, "version", ("?", "?"))))
        return (
            f"<ssb Bitstream v{version} {dims}, {len(self.frames)} frames, {len(self.units)} units, "
            f"{self.size} bytes{', complete' if self.complete else ''}>"
        )

    # ------------------------------------------------------------------ payload access
    def _payload(self, u: UnitEntry, force_verify: bool = False) -> memoryview:
        if self._closed:
            raise SSBError("the bitstream is closed", field=f"unit[{u.number}]")
        if u._checked and not force_verify:
            return self._src.read(u.offset, u.length, f"unit[{u.number}].payload")
        if u.header_size == 0:  # a 2.x content unit: the index holds its type, length and CRC
            return self._checked_payload(u, u.crc, force_verify)
        hstart = u.offset - UNIT_HEADER_SIZE
        hdr = self._read_header(hstart, u.number)
        path = f"unit[{u.number}].header"
        for name, want in (("type", int(u.type)), ("length", u.length), ("flags", u.flags)):
            if hdr[name] != want:
                raise MalformedFieldError(
                    f"unit header {name} {hdr[name]} disagrees with the index ({want})",
                    offset=hstart + UNIT_HEADER.offsets[name],
                    field=f"{path}.{name}",
                )
        return self._checked_payload(u, hdr["payload_crc"], force_verify)

    def _checked_payload(self, u: UnitEntry, crc: int, force_verify: bool) -> memoryview:
        view = self._src.read(u.offset, u.length, f"unit[{u.number}].payload")
        if (self.verify or force_verify) and zlib.crc32(view) != crc:
            raise ChecksumError(
                f"unit {u.number} ({type_name(u.type)}, frame {u.frame}) payload checksum mismatch",
                offset=u.offset,
                field=f"unit[{u.number}].payload",
            )
        u._checked = True
        return view

    # ------------------------------------------------------------------ parsing
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

def open_bitstream(
    source, limits: Limits | None = None, verify: bool = True, strict: bool = False
) -> Bitstream:
    """Open an SSB stream lazily: only the preamble, unit headers of structural units and indexes are read.

    Parameters
    ----------
    source:
        A path (memory-mapped read-only), ``bytes``/``bytearray``/``memoryview``, or a
        seekable binary file object (read from its current position).
    limits:
        Reader limits, checked before anything is allocated (default :class:`Limits`).
    verify:
        Check CRC-32 checksums of the headers and indexes read while opening, and of
        each payload on its first :meth:`UnitEntry.payload` call.
    strict:
        Raise the first recoverable problem instead of collecting it in ``errors``.

    Raises
    ------
    SSBError subclasses: the stream is not SSB, its preamble or sequence header is
    damaged, its major version is unknown, or a stream-wide limit is exceeded.
    """
    src, owned = source_for(source)
    return Bitstream(src, limits=limits, verify=verify, strict=strict, owned=owned)
