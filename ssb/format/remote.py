"""Remote byte sources: HTTP(S) range requests (standard library only) and any fsspec filesystem.

``ssb.open`` dispatches on the string it is given (:func:`ssb.format.source.source_for`)::

    with ssb.open("https://host/clip.ssb") as bs:   # a HEAD, then about one small GET per fragment
        sel = bs.select(classes=[1], frames=range(100))
        bs._src.prefetch(sel.byte_ranges)             # the selection, coalesced, in few requests
        payloads = [p for _, p in sel.payloads()]     # from the cache: no request
        print(bs._src.requests, bs._src.bytes_transferred, bs.bytes_read)
    ssb.open("s3://bucket/clip.ssb")                   # any fsspec URL (pip install fsspec s3fs)
    ssb.open(HTTPRangeSource(url, headers={"Authorization": "..."}, timeout=10))  # not closed by bs

Fetches land in a cache of non-overlapping byte extents (least recently used evicted past
``max_cache_bytes``, 32 MiB).  A miss fetches what it needs or a read-ahead: the length of
the previous sequential run of reads or of the current one so far, whichever is larger,
rounded up to a power of two, at least :data:`MIN_READAHEAD` (512 B), at most ``block_size``
(1 MiB).  Opening a stream reads each fragment's FRAME_HEADER and INDEX (contiguous), then
jumps: about one request of about the index size per fragment.  ``prefetch(ranges)`` fetches
the ranges minus the cached bytes, one request per run of pieces with gaps under ``gap``
(16 KiB, gap bytes included), stopping before the cache bound.  ``bytes_transferred`` counts
body bytes received, ``requests`` requests sent (HEAD, redirects, retries), ``bytes_read``
bytes handed to the reader.  Failures are :class:`~ssb.errors.SSBError` subclasses naming the
URL and offset: :class:`RemoteError` (connection, DNS, status, timeout, Range ignored),
``TruncatedError`` (short body), ``MalformedFieldError`` (wrong Content-Range or
Content-Length, a body longer than asked).  Only 5xx answers and reset connections are
retried, at most ``retries`` times.
"""

from __future__ import annotations

import bisect
import http.client
import re
import socket
import ssl  # http.client imports it anyway
import threading
import time
from collections import OrderedDict
from typing import Callable, Iterable, TypeVar
from urllib.parse import SplitResult, urljoin, urlsplit

from ssb.errors import MalformedFieldError, MissingDependencyError, SSBError, TruncatedError
from ssb.format.source import Source

__all__ = ["RemoteError", "CachedRangeSource", "HTTPRangeSource", "FsspecSource", "MIN_READAHEAD"]

MIN_READAHEAD = 512  #: smallest fetch of a cache miss (bytes)
DEFAULT_BLOCK_SIZE = 1 << 20  # largest read-ahead of one miss
DEFAULT_CACHE_BYTES = 32 << 20
DEFAULT_GAP = 16 << 10  # prefetch merges pieces closer than this
_MAX_REDIRECTS = 5
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)$")
_TRANSIENT = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)  # RemoteDisconnected too
_T = TypeVar("_T")


class RemoteError(SSBError):
    """A remote source failed (connection, status, timeout, a server it cannot use); ``url``, ``status``."""

    url: str = ""
    status: int | None = None


def _err(cls: type[SSBError], url: str, message: str, offset: int | None, field: str, status=None):
    exc = cls(f"{url}: {message}", offset=offset, field=field)
    exc.url, exc.status = url, status
    return exc


class _Transient(Exception):
    """Internal: a failure worth retrying; carries the error raised when retries run out."""

    def __init__(self, error: SSBError):
        self.error = error


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


class HTTPRangeSource(CachedRangeSource):
    """An ``http://`` or ``https://`` URL read with ``Range`` requests over one kept-alive connection.

    The size comes from a HEAD (``Content-Length``) or, when HEAD is refused, from the
    ``Content-Range`` of a ``bytes=0-0`` GET.  ``timeout`` bounds each connect and each socket
    read; ``retries`` bounds the retries of 5xx answers and reset connections (``backoff``
    seconds, doubling, between them).  Redirects are followed (at most 5) and remembered.
    """

    def __init__(self, url: str, *, timeout: float = 30.0, block_size: int = DEFAULT_BLOCK_SIZE,
                 max_cache_bytes: int = DEFAULT_CACHE_BYTES, headers: dict[str, str] | None = None,
                 gap: int = DEFAULT_GAP, retries: int = 2, backoff: float = 0.1):
        super().__init__(block_size=block_size, max_cache_bytes=max_cache_bytes, gap=gap)
        self.url = self._target = url
        self.timeout, self.retries, self.backoff = float(timeout), max(int(retries), 0), float(backoff)
        self._headers = {"User-Agent": "ssb-format", "Accept-Encoding": "identity", **(headers or {})}
        self._conn: http.client.HTTPConnection | None = None
        self._conn_key: tuple | None = None
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise _err(RemoteError, url, "not an http:// or https:// URL", None, "url")
        self.size = self._retrying(self._probe, 0)

    def __repr__(self) -> str:
        return f"<HTTPRangeSource {self.url} {self.size} bytes>"

    def _fail(self, cls: type[SSBError], message: str, offset: int | None, field: str, status=None):
        self._drop()  # an answer we refuse is never read to its end: the connection goes
        return _err(cls, self.url, message, offset, field, status)

    def _status_error(self, resp: http.client.HTTPResponse, offset: int) -> SSBError:
        return self._fail(RemoteError, f"HTTP {resp.status} {resp.reason}".rstrip(), offset, "http.status",
                          resp.status)

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = self._conn_key = None

    def _connection(self, parts: SplitResult) -> http.client.HTTPConnection:
        key = (parts.scheme.lower(), parts.hostname, parts.port)
        if self._conn is None or self._conn_key != key:
            self._drop()
            https = {"context": ssl.create_default_context()} if key[0] == "https" else None
            conn_cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
            self._conn = conn_cls(parts.hostname, parts.port, timeout=self.timeout, **(https or {}))
            self._conn_key = key
        return self._conn

    def _os_error(self, exc: Exception, offset: int) -> tuple[SSBError, bool]:
        """(the SSBError for a socket or protocol failure, whether it is worth a retry)."""
        cls, field, what = RemoteError, "http.connection", f"connection failed: {exc!r}"
        if isinstance(exc, (TimeoutError, socket.timeout)):
            what = f"timed out after {self.timeout:g} s"
        elif isinstance(exc, socket.gaierror):
            what = f"cannot resolve the host: {exc}"
        elif isinstance(exc, http.client.IncompleteRead):
            cls, field, what = TruncatedError, "http.body", "the body ended early"
        elif isinstance(exc, http.client.HTTPException) and not isinstance(exc, _TRANSIENT):
            cls, field, what = MalformedFieldError, "http.status", f"bad HTTP response: {exc!r}"
        return self._fail(cls, what, offset, field), isinstance(exc, _TRANSIENT)

    def _retrying(self, attempt: Callable[[], _T], offset: int) -> _T:
        """Run ``attempt``, retrying transient failures at most ``retries`` times."""
        for i in range(self.retries + 1):
            try:
                return attempt()
            except _Transient as exc:
                err, again = exc.error, True
            except (OSError, http.client.HTTPException) as exc:
                err, again = self._os_error(exc, offset)
            if not again or i == self.retries:
                raise err
            time.sleep(self.backoff * 2**i)
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(self, method: str, span: tuple[int, int] | None, offset: int) -> http.client.HTTPResponse:
        """Send one request, following redirects; the response (a retryable 5xx raises ``_Transient``)."""
        headers = dict(self._headers, **({"Range": f"bytes={span[0]}-{span[1] - 1}"} if span else {}))
        for _ in range(_MAX_REDIRECTS + 1):
            parts = urlsplit(self._target)
            conn = self._connection(parts)
            self.requests += 1
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request(method, path, headers=headers)
            resp = conn.getresponse()
            location = resp.getheader("Location")
            if resp.status in (301, 302, 303, 307, 308) and location:
                self._drop()
                self._target = urljoin(self._target, location)
                if urlsplit(self._target).scheme.lower() not in ("http", "https"):
                    raise self._fail(RemoteError, f"redirected to {self._target!r}", offset, "http.status")
                continue
            if resp.status >= 500 and resp.status not in (501, 505):  # 501: e.g. HEAD not implemented
                raise _Transient(self._status_error(resp, offset))
            return resp
        raise self._fail(RemoteError, f"more than {_MAX_REDIRECTS} redirects", offset, "http.status")

    def _probe(self) -> int:
        """The size: a HEAD's Content-Length, else the total of a ``bytes=0-0`` GET's Content-Range."""
        resp = self._exchange("HEAD", None, 0)
        resp.read()
        if resp.will_close:
            self._drop()
        length = (resp.getheader("Content-Length") or "").strip()
        if resp.status in (404, 410):
            raise self._status_error(resp, 0)
        if (resp.getheader("Accept-Ranges") or "").strip().lower() == "none":
            raise self._fail(RemoteError, "the server refuses range requests", 0, "http.range", resp.status)
        if 200 <= resp.status < 300 and length.isdigit():
            return int(length)
        resp = self._exchange("GET", (0, 1), 0)  # HEAD refused, or no length
        if resp.status == 200:
            raise self._ignored_range(0)
        if resp.status >= 400 and resp.status != 416:
            raise self._status_error(resp, 0)
        total = self._content_range(resp, 0, 1)
        if total is None:
            raise self._fail(RemoteError, "no size in Content-Range", 0, "http.content_range", resp.status)
        if resp.status == 206:
            self._body(resp, 0, 1)
        else:
            self._drop()
        return total

    def _ignored_range(self, offset: int) -> SSBError:
        msg = "the server ignored the Range header (HTTP 200, whole file): refusing to download it"
        return self._fail(RemoteError, msg, offset, "http.range", 200)

    def _content_range(self, resp: http.client.HTTPResponse, start: int, stop: int) -> int | None:
        """Check that Content-Range answers ``start..stop`` of a resource of the known size; its total."""
        value = (resp.getheader("Content-Range") or "").strip()
        m = _CONTENT_RANGE.match(value)
        total = int(m.group(3)) if m and m.group(3) != "*" else None
        if resp.status == 416:
            return total
        if m is None or m.group(1) is None or (int(m.group(1)), int(m.group(2)) + 1) != (start, stop):
            msg = f"Content-Range {value!r} does not answer bytes {start}-{stop - 1}"
            raise self._fail(MalformedFieldError, msg, start, "http.content_range")
        if total is not None and self.size and total != self.size:
            msg = f"the resource changed size: {total} bytes, was {self.size}"
            raise self._fail(MalformedFieldError, msg, start, "http.content_range")
        return total

    def _body(self, resp: http.client.HTTPResponse, start: int, stop: int) -> memoryview:
        """Exactly ``stop - start`` body bytes: never more is buffered, fewer is an error."""
        n, length = stop - start, resp.getheader("Content-Length")
        encoding = (resp.getheader("Content-Encoding") or "identity").strip().lower()
        if (length is not None and length.strip() != str(n)) or encoding != "identity":
            msg = f"answered {n} bytes asked with Content-Length {length}, Content-Encoding {encoding}"
            raise self._fail(MalformedFieldError, msg, start, "http.content_length")
        view, got = memoryview(bytearray(n)), 0
        while got < n:
            k = resp.readinto(view[got:])
            if not k:
                break
            got += k
            self.bytes_transferred += k
        if got < n:
            raise self._fail(TruncatedError, f"body ended after {got} of {n} bytes", start + got, "http.body")
        if length is None and resp.read(1):  # chunked: the body must end here
            self.bytes_transferred += 1
            raise self._fail(MalformedFieldError, f"body longer than the {n} bytes asked", stop, "http.body")
        if resp.will_close:
            self._drop()
        return view.toreadonly()

    def _fetch(self, start: int, stop: int) -> memoryview:
        def attempt() -> memoryview:
            resp = self._exchange("GET", (start, stop), start)
            if resp.status == 206:
                self._content_range(resp, start, stop)
                return self._body(resp, start, stop)
            if resp.status == 200:  # acceptable only as the whole file for a whole-file request
                if (start, stop) == (0, self.size) and resp.getheader("Content-Length") == str(self.size):
                    return self._body(resp, start, stop)
                raise self._ignored_range(start)
            raise self._status_error(resp, start)

        return self._retrying(attempt, start)

    def close(self) -> None:
        with self._lock:
            super().close()
            self._drop()


class FsspecSource(CachedRangeSource):
    """Any fsspec URL (``s3://``, ``gs://``, ``memory://``, ``file://``, chained ``a::b://``...).

    fsspec is imported on first use (``pip install fsspec`` and the filesystem's package, e.g.
    ``s3fs``).  Reads use ``fs.cat_file`` through the same cache and read-ahead as
    :class:`HTTPRangeSource` (not fsspec file objects, whose default read-ahead can be
    megabytes); :meth:`prefetch` uses ``fs.cat_ranges`` (concurrent on async filesystems).
    ``storage_options`` go to the filesystem.
    """

    def __init__(self, url: str, *, block_size: int = DEFAULT_BLOCK_SIZE,
                 max_cache_bytes: int = DEFAULT_CACHE_BYTES, gap: int = DEFAULT_GAP, **storage_options):
        super().__init__(block_size=block_size, max_cache_bytes=max_cache_bytes, gap=gap)
        self.url = url
        try:
            import fsspec.core
        except ImportError as exc:
            msg = f"{url.split(':', 1)[0]}:// URLs need fsspec: pip install fsspec (and e.g. s3fs, gcsfs)"
            raise MissingDependencyError(msg) from exc
        try:
            self._fs, self._path = fsspec.core.url_to_fs(url, **storage_options)
            size = self._fs.size(self._path)
        except ImportError as exc:  # the filesystem's own package is missing
            raise MissingDependencyError(f"{url}: {exc}") from exc
        except Exception as exc:  # filesystems raise anything; here it is bad input
            raise self._wrap(exc, 0) from exc
        if size is None:
            raise _err(RemoteError, url, "the filesystem does not know the size", 0, "url")
        self.size = int(size)

    def __repr__(self) -> str:
        return f"<FsspecSource {self.url} {self.size} bytes>"

    def _wrap(self, exc: BaseException, offset: int) -> SSBError:
        what = "no such file" if isinstance(exc, FileNotFoundError) else repr(exc)
        return exc if isinstance(exc, SSBError) else _err(RemoteError, self.url, what, offset, "url")

    def _got(self, data, start: int, stop: int) -> memoryview:
        if isinstance(data, BaseException):
            raise self._wrap(data, start) from data
        self.bytes_transferred += len(data)
        if len(data) != stop - start:
            msg = f"got {len(data)} of {stop - start} bytes"
            raise _err(TruncatedError, self.url, msg, start + len(data), "body")
        return memoryview(data).toreadonly()

    def _fetch(self, start: int, stop: int) -> memoryview:
        self.requests += 1
        try:
            data = self._fs.cat_file(self._path, start=start, end=stop)
        except Exception as exc:  # any filesystem failure is reported as a RemoteError
            raise self._wrap(exc, start) from exc
        return self._got(data, start, stop)

    def _fetch_many(self, spans: list[tuple[int, int]]) -> list[memoryview]:
        self.requests += len(spans)
        starts, stops = [a for a, _ in spans], [b for _, b in spans]
        try:
            datas = self._fs.cat_ranges([self._path] * len(spans), starts, stops, on_error="return")
        except Exception as exc:  # any filesystem failure is reported as a RemoteError
            raise self._wrap(exc, starts[0]) from exc
        return [self._got(d, a, b) for d, a, b in zip(datas, starts, stops)]
