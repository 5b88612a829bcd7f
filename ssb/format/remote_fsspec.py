"""Any fsspec filesystem as a byte source: :class:`FsspecSource` (:mod:`ssb.format.remote`).

fsspec is imported when a source is made, never with this module.
"""

from __future__ import annotations

from ssb.errors import MissingDependencyError, SSBError, TruncatedError
from ssb.format.remote_cache import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_CACHE_BYTES,
    DEFAULT_GAP,
    CachedRangeSource,
    RemoteError,
    _err,
)

__all__ = ["FsspecSource"]


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
