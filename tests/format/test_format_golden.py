"""Golden files: the writer's bytes and the reader's view of them must not drift.

``golden/*.ssb`` are what today's writer (2.x) produces; ``golden/v1/*.ssb`` were written by the
0.1 release (format 1.0) and ``golden/v2_0/*.ssb`` by release 0.2.0 (format 2.0); both are frozen:
the reader must keep reading them exactly so.
Regenerate (after a deliberate, versioned format change only) with ``SSB_REGEN_GOLDEN=1``; that
rewrites the 2.x files and the reader's descriptions, never the frozen 1.0 bytes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ssb.format import open as ssb_open

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("SSB_REGEN_GOLDEN") == "1"
NAMES = ["basic", "empty", "future_minor", "truncated"]


@pytest.mark.parametrize("name", NAMES)
def test_golden_bytes_and_reading(name, ssb_cases):
    data = ssb_cases.golden[name]()
    ssb_path, json_path = GOLDEN / f"{name}.ssb", GOLDEN / f"{name}.json"
    if REGEN:
        GOLDEN.mkdir(exist_ok=True)
        ssb_path.write_bytes(data)
        with ssb_open(ssb_path) as bs:
            json_path.write_text(json.dumps(ssb_cases.describe(bs), indent=1, sort_keys=True) + "\n")
    assert ssb_path.read_bytes() == data, f"the writer no longer produces {ssb_path.name} byte for byte"
    expected = json.loads(json_path.read_text())
    with ssb_open(ssb_path) as bs:
        assert json.loads(json.dumps(ssb_cases.describe(bs))) == expected
    # the same answer through a file object and through bytes
    with open(ssb_path, "rb") as f, ssb_open(f) as bs:
        assert json.loads(json.dumps(ssb_cases.describe(bs))) == expected
    with ssb_open(data) as bs:
        assert json.loads(json.dumps(ssb_cases.describe(bs))) == expected


def test_golden_files_are_all_checked(ssb_cases):
    on_disk = {p.stem for p in GOLDEN.glob("*.ssb")}
    assert on_disk == set(NAMES)
    assert {p.stem for p in (GOLDEN / "v1").glob("*.ssb")} == set(ssb_cases.v1_names)


@pytest.mark.parametrize("name", ["basic", "empty", "future_minor", "truncated"])
def test_frozen_v1_streams_still_read(name, ssb_cases):
    """Streams of format 1.0 (written by release 0.1) read as they always did."""
    json_path = GOLDEN / "v1" / f"{name}.json"
    data = ssb_cases.v1_stream(name)
    with ssb_open(data) as bs:
        assert bs.version[0] == 1
        got = json.loads(json.dumps(ssb_cases.describe(bs)))
    if REGEN:
        json_path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    assert got == json.loads(json_path.read_text())


def test_future_minor_is_read_with_unknown_parts_skipped(ssb_cases):
    with ssb_open(ssb_cases.future_minor_stream()) as bs:
        assert bs.version == (2, 3)
        assert bs.errors == [] and not bs.complete
        assert [f.frame_index for f in bs.frames] == [5, 9]
        kinds = [u.type for u in bs.frames[0].units]
        assert kinds[1] == 0x1234 and isinstance(kinds[1], int)
        assert bytes(bs.frames[0].units[1].payload()) == b"future content"
        assert bs.units[1].type == 0x0100 and bs.units[1].frame is None
        assert bs.header.codec == "future" and bs.header.fps_den == 1001
        assert bs.check() == []


@pytest.mark.parametrize("name", ["basic", "empty", "truncated"])
def test_frozen_v2_0_streams_still_read(name, ssb_cases):
    """Streams of format 2.0 (release 0.2.0) read as they did when they were written."""
    path = GOLDEN / "v2_0" / f"{name}.ssb"
    with ssb_open(path) as bs:
        assert bs.version == (2, 0)
        got = json.loads(json.dumps(ssb_cases.describe(bs)))
    assert got == json.loads((GOLDEN / "v2_0" / f"{name}.json").read_text())
