"""Byte sources for the reader: memory (bytes, memoryview, mmap) and seekable file objects.

Every source counts the bytes it hands out in :attr:`Source.bytes_read`, which is
how ``ssb info`` and the benchmarks prove that a query touched only the bytes it
needed.  A read past the end raises :class:`~ssb.errors.TruncatedError` before any
buffer is allocated.
"""

from __future__ import annotations

import builtins
import mmap
import os
import re
import threading
from typing import BinaryIO, Iterable, Iterator

from ssb.errors import TruncatedError

__all__ = ["Source", "MemorySource", "FileSource", "source_for"]

_SCAN_CHUNK = 1 << 20
# "scheme://" (two or more letters: not a Windows drive), or fsspec's chained "a::b://".
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]+(::[A-Za-z][A-Za-z0-9+.\-]*)*://")


class Source:
    """Random access to ``size`` bytes."""

    size: int = 0

    def __init__(self) -> None:
        self.bytes_read = 0

    def read(self, offset: int, n: int, field: str = "") -> memoryview:
        """Exactly ``n`` bytes at ``offset`` (zero-copy where the source allows)."""
        if offset < 0 or n < 0 or offset + n > self.size:
            raise TruncatedError(
                f"stream ends at byte {self.size}, needs bytes {offset}..{offset + n}",
                offset=min(max(offset, 0), self.size),
                field=field or None,
            )
        self.bytes_read += n
        return self._read(offset, n)

    def _read(self, offset: int, n: int) -> memoryview:
        raise NotImplementedError

    def finditer(self, pattern: re.Pattern[bytes], start: int, overlap: int) -> Iterator[int]:
        """Absolute offsets ≥ ``start`` where ``pattern`` matches, scanning in bounded chunks."""
        pos = start
        while pos < self.size:
            n = min(_SCAN_CHUNK, self.size - pos)
            chunk = bytes(self.read(pos, n))
            for m in pattern.finditer(chunk):
                yield pos + m.start()
            if pos + n >= self.size:
                return
            pos += n - overlap

    def prefetch(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Hint that the sorted ``(start, stop)`` byte ``ranges`` are read next; the bytes fetched.

        Local sources ignore it (0); remote ones (:mod:`ssb.format.remote`) fetch the ranges,
        coalesced, into their cache so that reading them makes no further request.
        """
        return 0

    def close(self) -> None:
        pass


class MemorySource(Source):
    """Bytes already addressable in memory; reads are zero-copy slices."""

    def __init__(self, buffer, owner: mmap.mmap | None = None):
        super().__init__()
        view = memoryview(buffer)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        self._view = view
        self._owner = owner
        self.size = len(view)

    def _read(self, offset: int, n: int) -> memoryview:
        return self._view[offset : offset + n]

    def close(self) -> None:
        view, owner = self._view, self._owner
        self._view = memoryview(b"")
        self._owner = None
        try:
            view.release()
            if owner is not None:
                owner.close()
        except BufferError:
            # Payload views handed to the caller still point into the map; it is
            # unmapped when the last of them is garbage-collected.
            pass


class FileSource(Source):
    """A seekable binary file object; the stream starts at its position when opened."""

    def __init__(self, fileobj: BinaryIO):
        super().__init__()
        if not (hasattr(fileobj, "read") and hasattr(fileobj, "seek")):
            raise TypeError("a file source needs read() and seek()")
        self._f = fileobj
        self._base = fileobj.tell()
        self.size = fileobj.seek(0, os.SEEK_END) - self._base
        self._lock = threading.Lock()

    def _read(self, offset: int, n: int) -> memoryview:
        with self._lock:
            self._f.seek(self._base + offset)
            data = self._f.read(n)
        if len(data) != n:
            raise TruncatedError(f"file shrank: wanted {n} bytes at {offset}, got {len(data)}", offset=offset)
        return memoryview(data)


def source_for(obj) -> tuple[Source, bool]:
    """A :class:`Source` for a path, URL, bytes-like object or binary file object.

    Returns (source, owned): ``owned`` is true when closing the bitstream must
    release the source (paths are memory-mapped read-only).  An ``http(s)://`` URL is read
    with range requests, another ``scheme://`` URL through fsspec (:mod:`ssb.format.remote`);
    a :class:`Source` is used as given (and not owned).
    """
    if isinstance(obj, Source):
        return obj, False
    if isinstance(obj, str) and _URL.match(obj):
        from ssb.format import remote

        if obj[:8].lower().startswith(("http://", "https://")):
            return remote.HTTPRangeSource(obj), True
        return remote.FsspecSource(obj), True
    if isinstance(obj, (str, os.PathLike)):
        with builtins.open(obj, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return MemorySource(b""), True
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return MemorySource(mm, owner=mm), True
    if isinstance(obj, (bytes, bytearray, memoryview, mmap.mmap)):
        return MemorySource(obj), False
    if hasattr(obj, "read") and hasattr(obj, "seek"):
        return FileSource(obj), False
    raise TypeError(
        f"cannot read an SSB stream from {type(obj).__name__}: give a path, bytes or a binary file"
    )
