"""The lazy reader: parses the preamble, headers and indexes, never a content payload.

Opening a stream walks it fragment by fragment: for each fragment it reads the
FRAME_HEADER unit and the INDEX unit that follows it, and jumps over the
content units using the fragment length.  Payloads are read only by
:meth:`UnitEntry.payload`.  Damage is contained: a bad fragment is recorded in
:attr:`Bitstream.errors` and skipped (using its length when its header is
intact, else by scanning for the next valid FRAME_HEADER), a file cut short is
readable up to its last complete fragment.  The walk itself is :mod:`ssb.format.walk`.
"""

from __future__ import annotations

import contextlib
import gc
import zlib
from typing import Iterable, Iterator

from ssb.errors import ChecksumError, MalformedFieldError, SSBError
from ssb.format.layout import UNIT_HEADER, UNIT_HEADER_SIZE, UnitType, type_name
from ssb.format.limits import DEFAULT_LIMITS, Limits
from ssb.format.model import FrameEntry, UnitEntry
from ssb.format.select import Selection, dependency_closure, select_units
from ssb.format.source import Source, source_for
from ssb.format.walk import StreamWalk

__all__ = ["Bitstream", "open_bitstream"]

_TYPE_BY_ID = {int(t): t for t in UnitType}


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


class Bitstream(StreamWalk):
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
