"""Remote reading: HTTP range requests against a local server on 127.0.0.1, and fsspec's memory://.

The server (a thread, port 0) honours ``Range: bytes=a-b``, counts the body bytes it sends and
the requests it serves, can be told to misbehave, and stops at the end of each test.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import ssb
from ssb.cli import main as cli_main
from ssb.errors import MalformedFieldError, MissingDependencyError, SSBError, TruncatedError
from ssb.format import SequenceHeader, UnitType, Writer
from ssb.format.layout import PREAMBLE_SIZE
from ssb.format.remote import MIN_READAHEAD, FsspecSource, HTTPRangeSource, RemoteError
from ssb.format.source import source_for

FRAMES = 50
PATH = "/clip.ssb"


def _stream() -> bytes:
    """50 frames of BASE + MOTION + 3 OBJECT units, 1-4 kB of random payload each."""
    rng = np.random.default_rng(7)
    buf = io.BytesIO()
    header = SequenceHeader(640, 480, 25, 1, codec="ssb-test", metadata={"classes": {"1": "person", "3": "car"}})
    with Writer(buf, header) as w:
        for f in range(FRAMES):
            w.begin_frame(f, pts=f * 40_000)
            w.add_unit(UnitType.BASE, rng.bytes(int(rng.integers(2000, 4000))))
            w.add_unit(UnitType.MOTION, rng.bytes(int(rng.integers(1000, 2000))))
            for k in range(3):
                box = (10.0 * k, 20.0, 10.0 * k + 50, 120.0)
                w.add_unit(UnitType.OBJECT, rng.bytes(int(rng.integers(2000, 4000))), object_id=k,
                           class_id=(1, 3, 1)[k], bbox=box, score=0.5)
            w.end_frame()
    return buf.getvalue()


DATA = _stream()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as object stores do
    timeout = 10  # an idle connection's thread ends by itself
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between headers and body

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, length: int | None = None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if body:
            self.server.sent += len(body)  # before the write: the client may act on it at once
            self.wfile.write(body)

    def _serve(self, head: bool) -> None:
        srv, mode = self.server, self.server.mode
        srv.requests += 1
        data = srv.files.get(self.path)
        if mode == "stall" or (mode == "reset" and not head and srv.resets > 0):
            if mode == "reset":
                srv.resets -= 1
            else:
                srv.release.wait(10)
            self.close_connection = True
            return
        if mode == "503":
            return self._send(503)
        if data is None:
            return self._send(404)
        if head:
            if mode == "no_head":
                return self._send(405)
            return self._send(200, headers={"Accept-Ranges": "bytes"}, length=len(data))
        rng = self.headers.get("Range", "")
        if not rng.startswith("bytes=") or mode == "ignore_range":
            return self._send(200, data)
        a, b = (int(v) for v in rng[6:].split("-"))
        if a >= len(data):
            return self._send(416, headers={"Content-Range": f"bytes */{len(data)}"})
        b = min(b, len(data) - 1)
        body, shift = data[a : b + 1], int(mode == "bad_range")
        headers = {"Content-Range": f"bytes {a + shift}-{b + shift}/{len(data)}"}
        if mode == "long":
            return self._send(206, body + b"x" * 100, headers)
        if mode in ("short", "stall_body"):
            self._send(206, body[: len(body) // 2], headers, length=len(body))
            self.wfile.flush()
            if mode == "stall_body":
                srv.release.wait(10)
            self.close_connection = True
            return
        self._send(206, body, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = {PATH: DATA}
        self.mode = "ok"
        self.sent = self.requests = self.resets = 0
        self.release = threading.Event()

    def url(self, path: str = PATH) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def handle_error(self, request, client_address) -> None:  # a client hanging up is expected here
        pass


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def _structure(bs) -> tuple:
    units = [(u.number, int(u.type), u.flags, u.frame, u.object_id, u.class_id, u.bbox, u.score, u.offset,
              u.length) for u in bs.units]
    frames = [(f.frame_index, f.pts, f.metadata, f.offset, f.length) for f in bs.frames]
    return bs.version, bs.header, bs.complete, [str(e) for e in bs.errors], frames, units


def _open_bound(bs) -> tuple[int, int]:
    """Bytes the headers and indexes occupy, and what opening may transfer at most.

    Each miss fetches what it needs or the read-ahead: at most twice the previous run (a
    fragment's FRAME_HEADER and index) rounded up, at least MIN_READAHEAD; about one per fragment.
    """
    heads = [[u.span for u in (fr.header_unit, fr.index_unit) if u is not None] for fr in bs.frames]
    per_frame = [spans[-1][1] - spans[0][0] for spans in heads]  # contiguous
    index_bytes = PREAMBLE_SIZE + bs.units[0].size + bs.units[-1].size + sum(per_frame)
    return index_bytes, (len(bs.frames) + 3) * max(MIN_READAHEAD, 2 * max(per_frame))


def test_open_over_http_matches_local_and_reads_only_the_index(server):
    local = ssb.open(DATA)
    with ssb.open(server.url()) as bs:
        src = bs._src
        assert isinstance(src, HTTPRangeSource) and bs.size == len(DATA)
        assert _structure(bs) == _structure(local)
        index_bytes, bound = _open_bound(bs)
        assert src.bytes_transferred == server.sent
        assert server.sent <= bound and server.sent <= 0.1 * len(DATA), (server.sent, index_bytes, bound)
        assert src.requests == server.requests <= len(bs.frames) + 4  # HEAD + about one per fragment
        assert bs.bytes_read >= index_bytes - bs.units[-1].size


def test_prefetch_fetches_the_selection_then_reads_make_no_request(server):
    local = ssb.open(DATA)
    with ssb.open(server.url()) as bs:
        src = bs._src
        sel = bs.select(frames=[17])
        sent, requests = server.sent, server.requests
        got = src.prefetch(sel.byte_ranges)
        assert got == server.sent - sent == src.bytes_transferred - sent
        # The selection minus what opening already cached (the FRAME_HEADER, at most one read-ahead).
        assert sel.nbytes - 2 * MIN_READAHEAD <= got <= sel.nbytes
        assert server.requests - requests <= len(sel.byte_ranges)
        requests = server.requests
        payloads = [bytes(p) for _, p in sel.payloads()]
        assert server.requests == requests and server.sent == sent + got
        assert payloads == [bytes(p) for _, p in local.select(frames=[17]).payloads()]
        assert src.prefetch(sel.byte_ranges) == 0 and server.requests == requests  # all cached


def test_prefetch_coalesces_small_gaps_only(server):
    src = HTTPRangeSource(server.url(), gap=1000)
    base = server.requests
    assert src.prefetch([(5000, 5100), (5600, 5700)]) == 700  # gap 500 < 1000: one request, gap included
    assert server.requests == base + 1
    assert src.prefetch([(100_000, 100_100), (200_000, 200_100)]) == 200  # far apart: two requests
    assert server.requests == base + 3 and server.sent == 900
    assert src.prefetch([(5050, 5650), (100_000, 100_050)]) == 0  # cached: nothing
    assert bytes(src.read(5000, 700)) == DATA[5000:5700] and server.requests == base + 3
    src.close()


def test_cache_is_bounded_and_sequential_reads_grow_the_read_ahead(server):
    src = HTTPRangeSource(server.url(), block_size=16 << 10, max_cache_bytes=64 << 10)
    chunks = [bytes(src.read(pos, min(4096, len(DATA) - pos))) for pos in range(0, len(DATA), 4096)]
    assert b"".join(chunks) == DATA
    assert src.cache_bytes <= 64 << 10
    assert src.bytes_transferred == len(DATA)  # every byte fetched once
    assert src.requests <= len(DATA) // (16 << 10) + 8  # read-ahead grew to block_size
    with ssb.open(src) as bs:  # a Source is used as given; check() reads every payload through it
        assert bs.check() == []
    src.close()


def test_head_refused_falls_back_to_a_one_byte_range(server):
    server.mode = "no_head"
    with ssb.open(server.url()) as bs:
        assert bs.size == len(DATA) and len(bs.frames) == FRAMES


def test_server_ignoring_range_is_refused_without_downloading(server):
    src = HTTPRangeSource(server.url())
    server.mode = "ignore_range"
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match="ignored the Range header") as info:
        src.read(0, 16)
    assert time.monotonic() - t0 < 2 and src.bytes_transferred == 0
    assert info.value.url == server.url() and info.value.offset == 0 and info.value.status == 200


@pytest.mark.parametrize(
    "mode, error, field",
    [("short", TruncatedError, "http.body"), ("bad_range", MalformedFieldError, "http.content_range"),
     ("long", MalformedFieldError, "http.content_length")],
)
def test_broken_range_answers_raise_clear_errors(server, mode, error, field):
    src = HTTPRangeSource(server.url())
    server.mode = mode
    with pytest.raises(error) as info:
        src.read(1000, 100)
    assert info.value.field == field and server.url() in str(info.value)
    assert info.value.offset == (1000 + MIN_READAHEAD // 2 if mode == "short" else 1000)
    assert src.bytes_transferred <= MIN_READAHEAD // 2  # never more than asked


@pytest.mark.parametrize("mode", ["stall", "stall_body"])
def test_stalling_server_times_out(server, mode):
    src = HTTPRangeSource(server.url(), timeout=1.0) if mode == "stall_body" else None
    server.mode = mode
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match="timed out after 1 s"):
        if src is None:  # no answer to the HEAD
            HTTPRangeSource(server.url(), timeout=1.0)
        else:  # half a body, then nothing
            src.read(0, 16)
    assert time.monotonic() - t0 < 3


def test_http_errors_name_the_status_and_4xx_is_not_retried(server):
    with pytest.raises(RemoteError, match="HTTP 404") as info:
        ssb.open(server.url("/missing.ssb"))
    assert info.value.status == 404 and server.requests == 1
    assert cli_main(["info", server.url("/missing.ssb")]) == 2


def test_5xx_retried_a_bounded_number_of_times(server):
    server.mode = "503"
    with pytest.raises(RemoteError, match="HTTP 503"):
        HTTPRangeSource(server.url(), retries=2, backoff=0.01)
    assert server.requests == 3


def test_reset_connection_is_retried(server):
    src = HTTPRangeSource(server.url(), retries=2, backoff=0.01)
    server.mode, server.resets = "reset", 1
    assert bytes(src.read(100, 50)) == DATA[100:150]
    server.resets = 5
    with pytest.raises(RemoteError, match="connection failed"):
        src.read(300_000, 10)


def test_connection_refused_is_an_ssb_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match="connection failed") as info:
        ssb.open(f"http://127.0.0.1:{port}/x.ssb")
    assert isinstance(info.value, SSBError) and time.monotonic() - t0 < 5


def test_cli_info_on_a_url_reads_only_headers_and_indexes(server, capsys):
    assert cli_main(["info", server.url()]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{server.url()}: SSB ") and "640x480" in out and f"{FRAMES} frames" in out
    assert f"of {len(DATA)} bytes" in out
    _, bound = _open_bound(ssb.open(DATA))
    assert server.sent <= bound and server.sent <= 0.1 * len(DATA)


def test_fsspec_memory_filesystem():
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    fs.pipe("/ssb-remote-test/clip.ssb", DATA)
    try:
        local = ssb.open(DATA)
        with ssb.open("memory://ssb-remote-test/clip.ssb") as bs:
            src = bs._src
            assert isinstance(src, FsspecSource) and _structure(bs) == _structure(local)
            assert src.bytes_transferred <= _open_bound(bs)[1] and src.bytes_transferred <= 0.1 * len(DATA)
            sel = bs.select(classes=[3], frames=range(10, 20))
            assert 0 < src.prefetch(sel.byte_ranges) <= sel.nbytes + src.gap * len(sel.byte_ranges)
            requests = src.requests
            got = [bytes(p) for _, p in sel.payloads()]
            assert src.requests == requests
            assert got == [bytes(p) for _, p in local.select(classes=[3], frames=range(10, 20)).payloads()]
        with pytest.raises(RemoteError, match="no such file"):
            ssb.open("memory://ssb-remote-test/missing.ssb")
    finally:
        fs.rm("/ssb-remote-test", recursive=True)


def test_fsspec_missing_is_a_missing_dependency_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)
    monkeypatch.setitem(sys.modules, "fsspec.core", None)
    with pytest.raises(MissingDependencyError, match="pip install fsspec"):
        ssb.open("s3://bucket/clip.ssb")


def test_dispatch_leaves_paths_alone():
    with pytest.raises(FileNotFoundError):
        source_for("C:/no/such/file.ssb")  # a drive letter is not a scheme
    with pytest.raises(FileNotFoundError):
        source_for("no-such-dir/x::y.ssb")


def test_remote_module_imports_only_stdlib_and_numpy():
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import ssb.format.remote\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(','.join(sorted(new - set(sys.stdlib_module_names) - {'ssb', 'numpy', '_distutils_hack'})))\n"
    )
    root = str(Path(ssb.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"ssb.format.remote imported {proc.stdout.strip()}"
