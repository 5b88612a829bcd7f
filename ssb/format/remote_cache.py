"""The cache under every remote source: byte extents fetched once, with read-ahead (:mod:`ssb.format.remote`).

:class:`CachedRangeSource` keeps fetched bytes as non-overlapping extents (least recently used
evicted past ``max_cache_bytes``).  A miss fetches what it needs or a read-ahead: the length of
the previous sequential run of reads or of the current one so far, whichever is larger, rounded
up to a power of two, at least :data:`MIN_READAHEAD`, at most ``block_size``.  :meth:`~CachedRangeSource.prefetch`
fetches ranges minus the cached bytes, coalescing pieces closer than ``gap``.  Subclasses
(:class:`~ssb.format.remote_http.HTTPRangeSource`, :class:`~ssb.format.remote_fsspec.FsspecSource`)
say how bytes are fetched.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from typing import Iterable

from ssb.errors import SSBError
from ssb.format.source import Source

__all__ = ["RemoteError", "CachedRangeSource", "MIN_READAHEAD", "DEFAULT_BLOCK_SIZE", "DEFAULT_CACHE_BYTES",
           "DEFAULT_GAP"]

MIN_READAHEAD = 512  #: smallest fetch of a cache miss (bytes)
DEFAULT_BLOCK_SIZE = 1 << 20  # largest read-ahead of one miss
DEFAULT_CACHE_BYTES = 32 << 20
DEFAULT_GAP = 16 << 10  # prefetch merges pieces closer than this


class RemoteError(SSBError):
    """A remote source failed (connection, status, timeout, a server it cannot use); ``url``, ``status``."""

    url: str = ""
    status: int | None = None


def _err(cls: type[SSBError], url: str, message: str, offset: int | None, field: str, status=None):
    exc = cls(f"{url}: {message}", offset=offset, field=field)
    exc.url, exc.status = url, status
    return exc


class _ExtentCache:
    """Non-overlapping cached byte extents; least recently used evicted first past ``max_bytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.nbytes = max_bytes, 0
        self._starts: list[int] = []
        self._lru: OrderedDict[int, memoryview] = OrderedDict()

    def find(self, pos: int) -> tuple[int, memoryview] | None:
        """The extent holding byte ``pos`` (now most recently used), or ``None``."""
        i = bisect.bisect_right(self._starts, pos) - 1
        if i >= 0 and pos < self._starts[i] + len(self._lru[self._starts[i]]):
            self._lru.move_to_end(self._starts[i])
            return self._starts[i], self._lru[self._starts[i]]
        return None

    def next_start(self, pos: int) -> int | None:
        """Start of the first extent after ``pos``, or ``None``."""
        i = bisect.bisect_right(self._starts, pos)
        return self._starts[i] if i < len(self._starts) else None

    def add(self, start: int, data: memoryview) -> None:
        """Cache ``data`` at ``start``; the caller guarantees it overlaps no extent."""
        if not 0 < len(data) <= self.max_bytes:
            return
        while self.nbytes + len(data) > self.max_bytes:
            old, view = self._lru.popitem(last=False)
            del self._starts[bisect.bisect_left(self._starts, old)]
            self.nbytes -= len(view)
        bisect.insort(self._starts, start)
        self._lru[start] = data
        self.nbytes += len(data)


class CachedRangeSource(Source):
    """A source fetching byte ranges from far away, through an extent cache with read-ahead.

    Subclasses set ``size`` and implement :meth:`_fetch` (and may override :meth:`_fetch_many`).
    """

    def __init__(self, *, block_size: int, max_cache_bytes: int, gap: int):
        super().__init__()
        if block_size < 1 or max_cache_bytes < 1 or gap < 0:
            raise ValueError("block_size and max_cache_bytes must be ≥ 1 and gap ≥ 0")
        self.block_size, self.gap = int(block_size), int(gap)
        self.bytes_transferred = self.requests = 0
        self._cache = _ExtentCache(int(max_cache_bytes))
        self._lock = threading.RLock()
        self._run = (0, -1)  # (start, stop) of the current sequential run of reads
        self._last_run = 0  # length of the run before it
        self._closed = False

    @property
    def cache_bytes(self) -> int:
        """Bytes the cache holds now (at most ``max_cache_bytes``)."""
        return self._cache.nbytes

    def _fetch(self, start: int, stop: int) -> memoryview:
        """Exactly the bytes ``start..stop`` from the remote end, read-only."""
        raise NotImplementedError

    def _fetch_many(self, spans: list[tuple[int, int]]) -> list[memoryview]:
        return [self._fetch(a, b) for a, b in spans]

    def _read(self, offset: int, n: int) -> memoryview:
        with self._lock:
            if self._closed:
                raise SSBError("the source is closed", offset=offset)
            if offset != self._run[1]:  # a seek starts a new run
                self._last_run, self._run = max(self._run[1] - self._run[0], 0), (offset, offset)
            pieces, pos, stop = [], offset, offset + n
            while pos < stop:
                hit = self._cache.find(pos)
                if hit is not None:
                    take = min(stop, hit[0] + len(hit[1]))
                    pieces.append(hit[1][pos - hit[0] : take - hit[0]])
                    pos = take
                    continue
                nxt = self._cache.next_start(pos)
                limit = self.size if nxt is None else nxt
                need = min(stop, limit)
                run = max(self._last_run, pos - self._run[0])  # the last run, or this one so far
                ahead = min(self.block_size, max(MIN_READAHEAD, 1 << max(run - 1, 0).bit_length()))
                data = self._fetch(pos, min(limit, max(need, pos + ahead)))
                self._cache.add(pos, data)
                pieces.append(data[: need - pos])
                pos = need
            self._run = (self._run[0], stop)
        return pieces[0] if len(pieces) == 1 else memoryview(b"".join(pieces))

    def prefetch(self, ranges: Iterable[tuple[int, int]], gap: int | None = None) -> int:
        """Fetch the byte ``ranges`` into the cache, so reading them later makes no request.

        Cached bytes are skipped; missing pieces whose gap is under ``gap`` (default
        ``self.gap``) and holds no cached byte are fetched in one request; fetching stops
        before ``max_cache_bytes`` would be exceeded.  Returns the bytes fetched.
        """
        gap = self.gap if gap is None else int(gap)
        with self._lock:
            if self._closed:
                raise SSBError("the source is closed")
            plan: list[tuple[int, int]] = []
            for a, b in self._missing(ranges):
                if plan and a - plan[-1][1] < gap and self._uncached(plan[-1][1], a):
                    plan[-1] = (plan[-1][0], b)
                else:
                    plan.append((a, b))
            todo, total = [], 0
            for a, b in plan:
                if total + b - a > self._cache.max_bytes:
                    break
                todo.append((a, b))
                total += b - a
            for (a, _), data in zip(todo, self._fetch_many(todo) if todo else []):
                self._cache.add(a, data)
        return total

    def _uncached(self, a: int, b: int) -> bool:
        nxt = self._cache.next_start(a)
        return self._cache.find(a) is None and (nxt is None or nxt >= b)

    def _missing(self, ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """``ranges`` clipped to the stream and merged, minus the cached bytes, in order."""
        merged: list[list[int]] = []
        for a, b in sorted((max(int(a), 0), min(int(b), self.size)) for a, b in ranges):
            if a < b and merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            elif a < b:
                merged.append([a, b])
        out: list[tuple[int, int]] = []
        for a, b in merged:
            while a < b:
                hit = self._cache.find(a)
                if hit is None:
                    nxt = self._cache.next_start(a)
                    out.append((a, b if nxt is None else min(b, nxt)))
                a = out[-1][1] if hit is None else min(b, hit[0] + len(hit[1]))
        return out

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cache = _ExtentCache(self._cache.max_bytes)

