"""HTTP(S) byte ranges, standard library only: :class:`HTTPRangeSource` (:mod:`ssb.format.remote`).

One kept-alive connection; the size from a HEAD (or a ``bytes=0-0`` GET); ``Range`` GETs through
the cache of :class:`~ssb.format.remote_cache.CachedRangeSource`; redirects followed and
remembered; 5xx answers and reset connections retried with a doubling back-off.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl  # http.client imports it anyway
import time
from typing import Callable, TypeVar
from urllib.parse import SplitResult, urljoin, urlsplit

from ssb.errors import MalformedFieldError, SSBError, TruncatedError
from ssb.format.remote_cache import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_CACHE_BYTES,
    DEFAULT_GAP,
    CachedRangeSource,
    RemoteError,
    _err,
)

__all__ = ["HTTPRangeSource"]

_MAX_REDIRECTS = 5
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)$")
_TRANSIENT = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)  # RemoteDisconnected too
_T = TypeVar("_T")


class _Transient(Exception):
    """Internal: a failure worth retrying; carries the error raised when retries run out."""

    def __init__(self, error: SSBError):
        self.error = error


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

