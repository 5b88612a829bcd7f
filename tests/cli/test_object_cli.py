"""Object-scale units from the command line: `ssb encode --object-scale`, `ssb info`, and a pose /
mask query that reads the person units and the index only, with the shipped weights, on real frames."""

from __future__ import annotations

import json
import re

import pytest
from cli_run import ssb_cli as _ssb

import ssb
from ssb.format import UnitType

pytestmark = [pytest.mark.teacher, pytest.mark.media]




@pytest.fixture(scope="module")
def stream(vtest, tmp_path_factory):
    out = tmp_path_factory.mktemp("objects") / "people.ssb"
    run = _ssb("encode", vtest, "--codec", "ssb.image", "--frames", "640:642", "-q", "0", "--object-scale",
               "--object-quality", "1", "-o", out)
    assert run.returncode == 0, run.stderr
    assert "OBJECT_SCALE" in run.stdout
    return out


def test_info_lists_the_object_units(stream):
    run = _ssb("info", stream)
    assert run.returncode == 0, run.stderr
    assert re.search(r"OBJECT_SCALE\s+\d+ units", run.stdout)
    with ssb.open(stream) as bs:
        assert bs.header.metadata["object_scale"] == [1]
        units = [u for u in bs.units if u.type == UnitType.OBJECT_SCALE]
        assert units and all(u.class_id == 1 and u.score >= 0.5 for u in units)


def test_pose_and_masks_read_the_person_units_only(stream, tmp_path):
    run = _ssb("analyze", stream, "--task", "pose,segmentation", "--json", tmp_path / "r.json")
    assert run.returncode == 0, run.stderr
    with ssb.open(stream) as bs:
        opened = bs.bytes_read
        people = sum(u.length for u in bs.units if u.type == UnitType.OBJECT_SCALE)
        n_units = sum(1 for u in bs.units if u.type == UnitType.OBJECT_SCALE)
        size = bs.size
    m = re.search(r"read (\d+) of (\d+) bytes", run.stderr)
    assert m and int(m[1]) == opened + people and int(m[2]) == size  # no BASE byte
    pose = json.loads((tmp_path / "r.pose.json").read_text())  # one COCO results file per task
    masks = json.loads((tmp_path / "r.segmentation.json").read_text())
    assert len(pose) == len(masks) == n_units
    assert all(len(r["keypoints"]) == 51 for r in pose)


@pytest.mark.parametrize("args, message", [
    (["--codec", "ssb.video", "--object-scale"], "ssb.image"),
    (["--codec", "ssb.image", "--object-quality", "1"], "needs --object-scale"),
    (["--codec", "ssb.image", "--object-scale", "unicorn"], "unknown class"),
    (["--codec", "ssb.image", "--object-scale", "--no-index-objects"], "index objects"),
    (["--codec", "ssb.image", "--object-scale", "--object-quality", "9"], "quality level"),
    (["--codec", "ssb.image", "--object-scale", "--object-size", "100x96"], "multiples of 8"),
    (["--codec", "ssb.image", "--object-size", "small"], "needs --object-scale"),
    (["--codec", "ssb.image", "--object-scale", "999"], "no COCO class"),
])
def test_bad_object_options_are_refused_before_models_load(vtest, tmp_path, args, message):
    run = _ssb("encode", vtest, "--frames", "0:1", "-o", tmp_path / "x.ssb", *args)
    assert run.returncode != 0 and message in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "x.ssb").exists()


@pytest.mark.parametrize("args, message", [
    (["--task", "pose", "--object-levels", "9"], "--object-levels"),
    (["--task", "pose", "--object-sizes", "small"], "need --object-levels"),
    (["--video", "--object-levels", "0"], "not --video"),
])
def test_bad_eval_object_options_are_refused_before_models_load(tmp_path, args, message):
    run = _ssb("eval", "-o", tmp_path / "ev", *args)
    assert run.returncode != 0 and message in run.stderr and "Traceback" not in run.stderr
