"""Golden files: the writer's bytes and the reader's view of them must not drift.

Regenerate (after a deliberate, versioned format change only) with ``SSB_REGEN_GOLDEN=1``.
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


def test_golden_files_are_all_checked():
    on_disk = {p.stem for p in GOLDEN.glob("*.ssb")}
    assert on_disk == set(NAMES)


def test_future_minor_is_read_with_unknown_parts_skipped(ssb_cases):
    with ssb_open(ssb_cases.future_minor_stream()) as bs:
        assert bs.version == (1, 3)
        assert bs.errors == [] and not bs.complete
        assert [f.frame_index for f in bs.frames] == [5, 9]
        kinds = [u.type for u in bs.frames[0].units]
        assert kinds[1] == 0x1234 and isinstance(kinds[1], int)
        assert bytes(bs.frames[0].units[1].payload()) == b"future content"
        assert bs.units[1].type == 0x0100 and bs.units[1].frame is None
        assert bs.header.codec == "future" and bs.header.fps_den == 1001
        assert bs.check() == []
