"""Crash safety: a writer killed mid-stream leaves every complete fragment readable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import ssb
from ssb.errors import TruncatedError
from ssb.format import open as ssb_open
from ssb.format import recover

WRITER = textwrap.dedent("""
    import sys
    from ssb.format import SequenceHeader, UnitType, Writer
    w = Writer(sys.argv[1], SequenceHeader(64, 64, metadata={"classes": {"1": "person"}}))
    i = 0
    while i < 100000:
        w.begin_frame(i, pts=i)
        w.add_unit(UnitType.BASE, bytes([i % 256]) * 200_000)  # large, so the kill often lands mid-fragment
        for k in range(5):
            w.add_unit(UnitType.OBJECT, bytes([k]) * 1000, object_id=k, class_id=1, bbox=(k, k, k + 1, k + 1))
        w.end_frame()
        print(i, flush=True)
        i += 1
""")


def test_sigkill_mid_stream_leaves_complete_fragments(tmp_path):
    path = tmp_path / "live.ssb"
    root = str(Path(ssb.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        reported = -1
        while reported < 5:
            line = proc.stdout.readline()
            assert line, f"the writer died early (exit {proc.poll()})"
            reported = int(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert not path.exists(), "a killed writer must not create the final file"
    part = Path(str(path) + ".part")
    with ssb_open(part) as bs:
        assert not bs.complete
        indices = [f.frame_index for f in bs.frames]
        assert indices == list(range(len(indices))) and len(indices) >= reported + 1
        assert all(isinstance(e, TruncatedError) for e in bs.errors)  # at most the cut tail
        assert bs.check() == []
        assert all(bytes(f.units[0].payload()[:1]) == bytes([f.frame_index % 256]) for f in bs.frames)
    recover(part)
    with ssb_open(path) as bs:
        assert bs.complete and bs.errors == [] and [f.frame_index for f in bs.frames] == indices


def test_every_cut_keeps_exactly_the_complete_fragments(ssb_cases):
    data = ssb_cases.basic_stream()
    with ssb_open(data) as bs:
        ends = [(f.frame_index, f.offset + f.length) for f in bs.frames]
        header_end = bs.units[0].span[1]
    for cut in range(header_end, len(data) + 1):
        with ssb_open(data[:cut]) as bs:
            assert [f.frame_index for f in bs.frames] == [i for i, end in ends if end <= cut]
            assert bs.complete == (cut == len(data))
            assert all(isinstance(e, TruncatedError) for e in bs.errors)
