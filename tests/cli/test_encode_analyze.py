"""`ssb encode` / `ssb analyze` / `ssb decode` end to end on a real clip, with the shipped weights.

Runs the command line in subprocesses (as a user would), on vtest.avi frames 0 and 1, with the
real SSD-MobileNetV2 teacher.  Skipped, with the reason, when the teacher package, the clip or the
shipped weights are absent.
"""

from __future__ import annotations

import json

import pytest
from cli_run import ssb_cli as _ssb

import ssb

pytestmark = [pytest.mark.teacher, pytest.mark.media]

PERSON = 1




@pytest.fixture(scope="module")
def encoded(vtest, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "clip.ssb"
    run = _ssb("encode", vtest, "--frames", "0:2", "--codec", "ssb.image", "-o", out)
    assert run.returncode == 0, run.stderr
    return out, run


@pytest.fixture(scope="module")
def analyzed(encoded):
    path, _ = encoded
    out = path.with_suffix(".json")
    run = _ssb("analyze", path, "--task", "detection", "--json", out)
    assert run.returncode == 0, run.stderr
    return json.loads(out.read_text()), run


def test_encode_writes_two_frames_with_people_in_the_index(encoded):
    path, run = encoded
    assert "2 frame(s)" in run.stdout and "Traceback" not in run.stderr
    with ssb.open(path) as bs:
        assert bs.complete and [f.frame_index for f in bs.frames] == [0, 1]
        assert (bs.header.width, bs.header.height) == (768, 576)
        people = [d for d in bs.select(classes={PERSON}, frames=[0]).descriptors if d.class_id == PERSON]
        assert len(people) >= 3  # three walkers in frame 0


def test_analyze_writes_coco_results(analyzed):
    results, run = analyzed
    assert isinstance(results, list) and results
    for r in results:
        assert set(r) >= {"image_id", "category_id", "bbox", "score"}
        assert r["image_id"] in (0, 1) and len(r["bbox"]) == 4 and r["bbox"][2] > 0 and r["bbox"][3] > 0
        assert 0.0 < r["score"] <= 1.0 and 1 <= r["category_id"] <= 90
    assert {r["image_id"] for r in results} == {0, 1}
    assert any(r["image_id"] == 0 and r["category_id"] == PERSON and r["score"] > 0.5 for r in results)
    assert "frame 0 detection:" in run.stdout and "person" in run.stdout


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_analyze_finds_every_confident_teacher_person(analyzed, vtest):
    """Tolerance: each teacher person with score > 0.7 on the ORIGINAL frame 0 is matched by an
    SSB person detection (from the bitstream, no pixels) with IoU > 0.5."""
    import torch
    from ssb.tasks import create

    from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front, preprocess
    from ssb.resources import read_video_frames

    results, _ = analyzed
    [(_, frame)] = read_video_frames(vtest, [0])
    with torch.no_grad():
        split = SSDMobileNetV2Front(pretrained=True)(preprocess([frame]))
        teacher = create("detection")(split, image_sizes=[frame.shape[:2]])[0]
    triples = zip(teacher["boxes"].tolist(), teacher["labels"].tolist(), teacher["scores"].tolist())
    confident = [box for box, label, score in triples if label == PERSON and score > 0.7]
    assert len(confident) >= 2, teacher  # the test must compare something
    ours = [[x, y, x + w, y + h] for r in results if r["image_id"] == 0 and r["category_id"] == PERSON
            for x, y, w, h in [r["bbox"]]]
    for box in confident:
        best = max((_iou(box, o) for o in ours), default=0.0)
        assert best > 0.5, (box, best, ours)


# -- refusals: in-process (torch is already imported), same dispatcher as the console script ----------
def _main(*args) -> int:
    """``ssb.cli.main`` in this process; restores the autograd mode the commands switch off."""
    import torch

    from ssb.cli import main

    grad = torch.is_grad_enabled()
    try:
        return main([str(a) for a in args])
    finally:
        torch.set_grad_enabled(grad)


def _refused(capsys, *args) -> str:
    """``ssb ARGS`` exits 2 with exactly one line on stderr and no traceback; returns that line."""
    capsys.readouterr()
    assert _main(*args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"ssb {args[0]}: ")
    return lines[0]


def test_decode_of_a_frame_not_in_the_stream_is_refused(encoded, tmp_path, capsys):
    path, _ = encoded
    _refused(capsys, "decode", path, "--frames", "5", "-o", tmp_path / "out.png")
    assert not list(tmp_path.iterdir())


def test_decode_of_frame_zero(encoded, tmp_path, capsys):
    """Pixels for people: a PNG of the original size, or a one-line refusal naming the recipe."""
    path, _ = encoded
    out = tmp_path / "frame0.png"
    from PIL import Image

    assert _main("decode", path, "-o", out) == 0
    with Image.open(out) as im:
        assert im.size == (768, 576) and im.mode == "RGB"


def test_analyze_of_garbage_is_refused(tmp_path, capsys, vtest):
    bad = tmp_path / "garbage.ssb"
    bad.write_bytes(b"definitely not an SSB stream " * 20)
    assert "byte offset 0" in _refused(capsys, "analyze", bad, "--task", "detection")


def test_analyze_of_unknown_task_is_refused(encoded, capsys):
    path, _ = encoded
    _refused(capsys, "analyze", path, "--task", "no-such-task")


def test_encode_of_missing_file_is_refused(vtest, tmp_path, capsys):
    missing = tmp_path / "missing.png"
    assert str(missing) in _refused(capsys, "encode", missing, "-o", tmp_path / "out.ssb")
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def bad_quality(vtest, tmp_path_factory):
    """``ssb encode IMAGE -q 99 -o OUT``: (exit status, stderr, the output folder afterwards)."""
    import contextlib
    import io

    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("bad_quality")
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(folder / "in.png")
    out = folder / "out"
    out.mkdir()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = _main("encode", folder / "in.png", "-q", "99", "-o", out / "out.ssb")
    return status, err.getvalue(), sorted(p.name for p in out.iterdir())


def test_encode_of_unknown_quality_is_refused(bad_quality):
    status, err, files = bad_quality
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("ssb encode: error:") and "level" in err
    assert "out.ssb" not in files


def test_encode_of_unknown_quality_leaves_no_file(bad_quality):
    assert bad_quality[2] == []


def test_background_quality_needs_groups_and_a_real_level(vtest, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(tmp_path / "in.png")
    out = tmp_path / "out.ssb"
    assert "--groups" in _refused(capsys, "encode", tmp_path / "in.png", "--background-quality", "0", "-o", out)
    assert "level" in _refused(capsys, "encode", tmp_path / "in.png", "--groups", "auto", "--background-quality",
                               "9", "-o", out)
    assert not out.exists()


def test_task_eval_refuses_unknown_codecs_and_qualities(capsys, tmp_path):
    assert "--codecs" in _refused(capsys, "eval", "--task", "pose", "--codecs", "jpeg,bmp", "-o", tmp_path)
    assert "--qualities" in _refused(capsys, "eval", "--task", "segmentation", "--qualities", "5,x", "-o", tmp_path)
    assert "--task" in _refused(capsys, "eval", "--task", "dance", "-o", tmp_path)
