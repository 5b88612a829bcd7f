"""`ssb info`: structure and analytics from headers and indexes alone, no torch, clean failures."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ssb
from ssb.cli import main
from ssb.format import SequenceHeader, UnitType, Writer, summarize
from ssb.format import open as ssb_open

ROOT = str(Path(ssb.__file__).resolve().parents[1])
STRUCTURAL = (UnitType.SEQUENCE_HEADER, UnitType.FRAME_HEADER, UnitType.INDEX, UnitType.END)


@pytest.fixture()
def clip(tmp_path) -> Path:
    """Four frames: people (class 1) and a car (class 3) with boxes; payloads dominate the file."""
    path = tmp_path / "clip.ssb"
    header = SequenceHeader(768, 576, 25, 1, "info-test", {"classes": {"1": "person", "3": "car"}})
    with Writer(path, header) as w:
        w.add_unit(UnitType.METADATA, b'{"source": "synthetic"}')
        for f in range(4):
            w.begin_frame(f, pts=f * 40_000)
            w.add_unit(UnitType.BASE, bytes(5000))
            w.add_unit(UnitType.BACKGROUND, bytes(2000))
            for k in range(3):
                w.add_unit(
                    UnitType.OBJECT,
                    bytes(800),
                    object_id=k,
                    class_id=1,
                    bbox=(10 * k, 0, 10 * k + 20, 40),
                    score=0.75,
                )
                w.add_unit(
                    UnitType.GROUP_MASK,
                    bytes(300),
                    object_id=k,
                    class_id=1,
                    bbox=(10 * k, 0, 10 * k + 20, 40),
                )
            if f % 2 == 0:
                w.add_unit(
                    UnitType.OBJECT, bytes(900), object_id=7, class_id=3, bbox=(100, 100, 200, 150), score=0.5
                )
            w.end_frame()
    return path


def _header_and_index_bytes(path) -> int:
    with ssb_open(path) as bs:
        return 16 + sum(
            u.size if u.type in STRUCTURAL else u.header_size
            for u in bs.units
            if u.frame is None or u.type in STRUCTURAL
        )


def test_json_report(clip, capsys):
    assert main(["info", str(clip), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["frames"] == 4 and report["complete"]
    person, car = report["classes"]["1"], report["classes"]["3"]
    assert (person["name"], person["detections"], person["tracks"], person["frames"]) == ("person", 12, 3, 4)
    assert (car["name"], car["detections"], car["tracks"], car["frames"]) == ("car", 2, 1, 2)
    assert person["box_area"] == {"min": 800.0, "mean": 800.0, "max": 800.0}
    assert len(report["boxes"]) == 14
    assert report["frames"][0]["classes"] == {"person": 3, "car": 1}
    assert report["frames"][1]["types"]["OBJECT"] == {"units": 3, "bytes": 3 * 800}  # 2.x: bare payloads
    assert abs(sum(t["share"] for t in report["types"].values()) + 16 / report["size"] - 1) < 1e-9
    # only headers and indexes were read, and much less than the file
    assert report["bytes_read"] == _header_and_index_bytes(clip)
    assert report["bytes_read_fraction"] < 0.1


def test_text_report(clip, capsys):
    assert main(["info", str(clip), "--max-frames", "2"]) == 0
    out = capsys.readouterr().out
    assert "768x576" in out and "4 frames" in out and "complete" in out
    assert "person (class 1): 12 detections in 4 frames, 3 object ids" in out
    assert "car (class 3): 2 detections" in out
    assert "... 2 more frames" in out
    assert out.strip().endswith("headers and indexes only")


def test_info_reads_no_payload_byte(clip):
    """Watch every read: none may touch a content payload or a sequence unit's payload."""
    reads = []

    class Recording(io.FileIO):
        def read(self, n=-1):
            reads.append((self.tell(), n))
            return super().read(n)

    with ssb_open(clip) as bs:
        payloads = [(u.offset, u.offset + u.length) for u in bs.units if u.type not in STRUCTURAL]
    with Recording(clip, "r") as f, ssb_open(f) as bs:
        summarize(bs)
    assert reads
    for start, n in reads:
        for a, b in payloads:
            assert start + n <= a or start >= b, f"read {start}..{start + n} touches payload {a}..{b}"


def test_verify_reads_everything_and_reports_damage(clip, capsys):
    assert main(["info", str(clip), "--verify"]) == 0
    assert "headers and indexes only" not in capsys.readouterr().out
    data = bytearray(clip.read_bytes())
    with ssb_open(bytes(data)) as bs:
        victim = next(u for u in bs.units if u.type == UnitType.BACKGROUND)
    data[victim.offset + 10] ^= 1
    clip.write_bytes(bytes(data))
    assert main(["info", str(clip)]) == 0  # an unread payload cannot be known to be damaged
    assert main(["info", str(clip), "--verify"]) == 1
    assert f"damaged: unit {victim.number} (BACKGROUND" in capsys.readouterr().out


def _run(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=60)


def test_info_never_imports_torch(clip):
    code = (
        "import sys, io, contextlib\n"
        "from ssb.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    rc = main(['info', {str(clip)!r}, '--json'])\n"
        "assert rc == 0, rc\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'cv2', 'constriction') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    proc = _run("-c", code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.parametrize("content", [b"", b"not an ssb file at all", None])
def test_bad_input_is_one_line_and_nonzero(tmp_path, clip, content):
    if content is None:
        bad = tmp_path / "cut.ssb"
        bad.write_bytes(clip.read_bytes()[:40])  # inside the sequence header: fatal
    else:
        bad = tmp_path / "bad.ssb"
        bad.write_bytes(content)
    proc = _run("-m", "ssb.cli", "info", str(bad))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("ssb info: error:") and "byte offset" in proc.stderr
    missing = _run("-m", "ssb.cli", "info", str(tmp_path / "missing.ssb"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_truncated_file_reports_what_survives(tmp_path, clip, capsys):
    data = clip.read_bytes()
    cut = tmp_path / "cut.ssb"
    cut.write_bytes(data[: len(data) - 3000])
    assert main(["info", str(cut), "--json"]) == 1  # readable, but damaged: non-zero
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["frames"] == 3 and not report["complete"]
    assert "cut short" in report["errors"][0]
