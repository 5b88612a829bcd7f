"""The video job from the command line: `ssb encode` of a real clip as ``ssb.video``, `ssb info`
with GOPs and tracks, `ssb analyze` of a frame range / one track (detections, MOT text, the
motion-only task), in subprocesses with the shipped weights, on vtest.avi frames 0..7.
"""

from __future__ import annotations

import json

import pytest
from cli_run import ssb_cli as _ssb
from ssb.adapters.mot import read_mot

import ssb
from ssb.format import UnitType

pytestmark = [pytest.mark.teacher, pytest.mark.media]




@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from ssb.errors import MissingDependencyError
    from ssb.resources import vtest_path

    try:
        vtest = vtest_path()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    out = tmp_path_factory.mktemp("video") / "clip.ssb"
    run = _ssb("encode", vtest, "--frames", "0:8", "--gop", "4", "-q", "2", "-o", out)
    assert run.returncode == 0, run.stderr
    return out, run


def test_a_video_is_coded_as_video_with_key_frames_every_gop(clip):
    path, run = clip
    assert "8 frame(s)" in run.stdout and "MOTION" in run.stdout and "RESIDUAL" in run.stdout
    with ssb.open(path) as bs:
        assert bs.header.codec == "ssb.video" and bs.complete
        keys = [f.frame_index for f in bs.frames if not f.refs]
        assert keys == [0, 4]
        for f in bs.frames:
            types = {u.type for u in f.units}
            assert (UnitType.BASE in types) == (f.frame_index in keys)
            assert (UnitType.RESIDUAL in types) == (f.frame_index not in keys)
            assert (UnitType.MOTION in types) == (f.frame_index > 0)
        # the dependency chain of frame 6 is 4, 5, 6: nothing of the first GOP
        assert [f.frame_index for f in bs.dependencies([6])] == [4, 5, 6]


def test_info_lists_gops_and_tracks_from_the_index(clip):
    path, _ = clip
    run = _ssb("info", path)
    assert run.returncode == 0, run.stderr
    assert "2 group(s) of pictures of 4..4 frames" in run.stdout
    assert "track     1 person: frames 0..7" in run.stdout
    rep = json.loads(_ssb("info", path, "--json").stdout)
    assert any(t["class_id"] == 1 and t["first"] == 0 and t["last"] == 7 for t in rep["tracks"])


def test_analyze_one_track_over_a_frame_range(clip, tmp_path):
    path, _ = clip
    mot = tmp_path / "tracks.txt"
    run = _ssb("analyze", path, "--frames", "5:8", "--objects", "1", "--mot", mot, "--json", tmp_path / "det.json")
    assert run.returncode == 0, run.stderr
    assert [ln.split(":")[0] for ln in run.stdout.splitlines() if ln.startswith("frame ")] == [
        "frame 5 detection", "frame 6 detection", "frame 7 detection"]
    rows = read_mot(mot.read_text())
    assert [r["frame_index"] for r in rows] == [5, 6, 7] and {r["track_id"] for r in rows} == {1}
    assert mot.read_text().startswith("6,1,")  # MOT frames count from 1
    # reads the payloads of frames 4..7 (the key frame of the GOP and the chain), none of the
    # first GOP's (its frame headers and indexes, yes: opening a stream reads every index)
    read, total = (int(v) for v in run.stderr.split("read ")[1].split(" bytes")[0].split(" of "))
    with ssb.open(path) as bs:
        first_gop = sum(u.size for f in bs.frames if f.frame_index < 4 for u in f.units)
        second = sum(u.size for f in bs.frames if f.frame_index >= 4 for u in f.units)
    assert second <= read <= total - first_gop


def test_motion_only_analysis_reads_no_features(clip):
    path, _ = clip
    run = _ssb("analyze", path, "--task", "motion", "--frames", "1:8", "--classes", "person")
    assert run.returncode == 0, run.stderr
    read = int(run.stderr.split("read ")[1].split(" of ")[0])
    with ssb.open(path) as bs:
        feature_bytes = sum(u.size for f in bs.frames for u in f.units
                            if u.type in (UnitType.BASE, UnitType.RESIDUAL))
        total = bs.size
    assert read <= total - feature_bytes  # every MOTION unit and index, no BASE or RESIDUAL byte
    assert "frame 1 motion:" in run.stdout and "track 1" in run.stdout


def test_gop_needs_the_video_codec(clip, tmp_path):
    from ssb.resources import vtest_path

    run = _ssb("encode", vtest_path(), "--frames", "0:2", "--codec", "ssb.image", "--gop", "4", "-o", tmp_path / "x.ssb")
    assert run.returncode == 2 and "--gop needs the video codec" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "x.ssb").exists()


def test_object_motion_units_serve_one_track_and_leave_the_prediction_alone(clip, tmp_path):
    from ssb.resources import vtest_path

    plain, _ = clip
    out = tmp_path / "objects.ssb"
    run = _ssb("encode", vtest_path(), "--frames", "0:8", "--gop", "4", "-q", "2", "--object-motion", "-o", out)
    assert run.returncode == 0, run.stderr
    with ssb.open(plain) as a, ssb.open(out) as b:
        assert b.header.metadata["video"]["object_motion"] is True
        # the same prediction: every BASE and RESIDUAL payload is byte-identical
        for fa, fb in zip(a.frames, b.frames):
            for t in (UnitType.BASE, UnitType.RESIDUAL):
                pa = [u.payload() for u in fa.units if u.type == t]
                pb = [u.payload() for u in fb.units if u.type == t]
                assert pa == pb
        own = [u for f in b.frames for u in f.units if u.type == UnitType.MOTION and u.object_id == 1]
        assert len(own) == 7 and all(u.class_id == 1 and u.bbox is not None for u in own)
    with ssb.open(out) as b:
        opened = b.bytes_read  # headers and indexes
    res = _ssb("analyze", out, "--task", "motion", "--frames", "1:8", "--objects", "1")
    assert res.returncode == 0, res.stderr
    read = int(res.stderr.split("read ")[1].split(" of ")[0])
    assert read == opened + sum(u.size for u in own)  # track 1's MOTION units and nothing else
    full = _ssb("analyze", plain, "--task", "motion", "--frames", "1:8", "--objects", "1")
    lines = [ln for ln in res.stdout.splitlines() if "track 1" in ln]
    assert lines and lines == [ln for ln in full.stdout.splitlines() if "track 1" in ln]  # same motion read


def test_object_motion_needs_the_video_codec(tmp_path):
    from ssb.resources import vtest_path

    run = _ssb("encode", vtest_path(), "--frames", "0:2", "--codec", "ssb.image", "--object-motion",
               "-o", tmp_path / "x.ssb")
    assert run.returncode == 2 and "--object-motion needs the video codec" in run.stderr
