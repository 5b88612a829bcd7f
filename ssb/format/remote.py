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

# The cache and its base class are ssb.format.remote_cache, the HTTP source ssb.format.remote_http,
# the fsspec source ssb.format.remote_fsspec; every name stays importable from here.
from ssb.format.remote_cache import DEFAULT_BLOCK_SIZE as DEFAULT_BLOCK_SIZE
from ssb.format.remote_cache import DEFAULT_CACHE_BYTES as DEFAULT_CACHE_BYTES
from ssb.format.remote_cache import DEFAULT_GAP as DEFAULT_GAP
from ssb.format.remote_cache import MIN_READAHEAD, CachedRangeSource, RemoteError
from ssb.format.remote_fsspec import FsspecSource
from ssb.format.remote_http import HTTPRangeSource

__all__ = ["RemoteError", "CachedRangeSource", "HTTPRangeSource", "FsspecSource", "MIN_READAHEAD"]
