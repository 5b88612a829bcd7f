"""The ``action`` head: output form, bytes touched (MOTION units only), stateful windows, refusals.

Unit tests run on synthetic clips coded by the tiny codec of ``tests/codec/tiny_codec.py`` (with an
encoder-side "detector" that knows where the synthetic objects are); the CLI test and the shipped
model's test use the real weights and vtest.avi.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import ssb
from ssb.codec import registry
from ssb.codec.video.motion import MotionField
from ssb.errors import MalformedFieldError, MissingDependencyError, ModelMismatchError, SSBError
from ssb.format import UnitType, Writer
from ssb.media import Frame
from ssb.pipeline import Models, analyze
from ssb.tasks.action import (BOX_FEATURES, MOTION_FEATURES, ActionHead, ActionNet, TrackWindows, flow_features,
                              motion_features, per_track)

_spec = importlib.util.spec_from_file_location("tiny_codec", Path(__file__).parents[1] / "codec" / "tiny_codec.py")
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)

H, W = 120, 160
N = 14
WINDOW, MIN_FRAMES = 6, 3
MOVER, STILL = (20, 40, 50, 80), (110, 30, 140, 90)  # (x0, y0, x1, y1) at frame 0; the mover goes right 4 px a frame


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def clip(n: int = N, seed: int = 0) -> list[Frame]:
    """A textured static background, a red square moving right by 4 px a frame, a still blue one."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    bg = np.stack([xx * 255 / W, yy * 255 / H, 128 + 60 * np.sin(xx / 7.0)], -1) + rng.normal(0, 8, (H, W, 3))
    out = []
    for t in range(n):
        img = bg + rng.normal(0, 2, bg.shape)
        x0, y0, x1, y1 = MOVER
        img[y0:y1, x0 + 4 * t : x1 + 4 * t] = [250, 40, 40]
        x0, y0, x1, y1 = STILL
        img[y0:y1, x0:x1] = [40, 40, 250]
        out.append(Frame(t, np.clip(img, 0, 255).astype(np.uint8), pts=t * 100_000, fps=10.0, video=True))
    return out


def oracle_detector():
    """The encoder-side detector hook: both squares as persons (class 1), frame after frame."""
    calls = {"t": 0}

    def detect(split, sizes):
        t = calls["t"]
        calls["t"] += 1
        mover = [MOVER[0] + 4 * t, MOVER[1], MOVER[2] + 4 * t, MOVER[3]]
        return [{"boxes": torch.tensor([mover, list(STILL)], dtype=torch.float32),
                 "labels": torch.tensor([1, 1]), "scores": torch.tensor([0.9, 0.8])}]

    return detect


@pytest.fixture(scope="module")
def zoo():
    return tiny.TinyModels(extra={"video": tiny.tiny_video_coder()})


@pytest.fixture(scope="module")
def stream(zoo) -> bytes:
    enc = registry.encoder("ssb.video", zoo, quality=1, gop=5, detector=oracle_detector())
    frames = clip()
    buf = io.BytesIO()
    with Writer(buf, enc.header(frames[0])) as w:
        for f in frames:
            enc.encode(w, f)
    return buf.getvalue()


def head(**kw) -> ActionHead:
    torch.manual_seed(0)
    return ActionHead(pretrained=False, config={"window": WINDOW, "min_frames": MIN_FRAMES}, **kw)


def run(zoo, data, h=None, **kw):
    h = h or head()
    return analyze(data, tasks=["action"], models=Models(zoo=zoo, heads={"action": h}), **kw), h


# -- registration ---------------------------------------------------------------------------------


def test_registered_explicitly_and_motion_only():
    from ssb.tasks import registry as reg

    assert reg.BUILTIN["action"] == "ssb.tasks.action:ActionHead"
    cls = reg.resolve("action")
    assert cls is ActionHead and cls.needs == ("motion",) and cls.required_features == {}
    code = "import sys, ssb.tasks; ssb.tasks.list(); assert 'ssb.tasks.action' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0  # no import side effect


# -- output form ----------------------------------------------------------------------------------


def test_output_form_per_frame_and_track(zoo, stream):
    res, h = run(zoo, stream)
    assert [f.frame_index for f in res.frames] == list(range(N))
    names = h.label_names
    seen = 0
    for fr in res.frames:
        p = fr.predictions["action"]
        n = len(p["track_ids"])
        # frame 0 has no motion: a window is ready once it holds MIN_FRAMES frames with motion
        assert n == (2 if fr.frame_index >= MIN_FRAMES else 0), fr.frame_index
        assert p["labels"].dtype == torch.int64 and p["track_ids"].dtype == torch.int64
        assert p["scores"].shape == (n,) and p["action_scores"].shape == (n, len(names))
        assert p["frames"].shape == (n, 2) and p["boxes"].shape == (n, 4)
        assert p["speed"].shape == p["direction"].shape == p["object_labels"].shape == (n,)
        assert p["label_names"] == names
        if n:
            seen += n
            assert torch.allclose(p["action_scores"].sum(1), torch.ones(n))
            assert torch.equal(p["labels"], p["action_scores"].argmax(1))
            assert torch.allclose(p["scores"], p["action_scores"].max(1).values)
            assert (p["frames"][:, 1] == fr.frame_index).all()
            assert (p["frames"][:, 0] >= max(1, fr.frame_index - WINDOW + 1)).all()
            ids = {o.object_id: o for o in fr.objects}
            assert set(p["track_ids"].tolist()) <= set(ids) and (p["object_labels"] == 1).all()
            for tid, box in zip(p["track_ids"].tolist(), p["boxes"].tolist()):
                assert box == pytest.approx(list(ids[tid].bbox))
            mover = int(np.argmax(p["speed"].numpy()))  # the moving square: rightwards, about 4 px a frame
            assert p["direction"][mover] < 10 or p["direction"][mover] > 350
            assert float(p["speed"][mover]) == pytest.approx(4 * 10 / 40, rel=0.2)  # box heights per second
            assert float(p["speed"][1 - mover]) < 0.05
    assert seen == 2 * (N - MIN_FRAMES)
    tracks = per_track(res.frames[-1].predictions["action"])
    assert [sorted(t) for t in tracks] == [sorted(["track_id", "labels", "scores", "frames", "label_names"])] * 2
    assert all(len(t["labels"]) == len(names) and t["scores"][0] >= t["scores"][-1] for t in tracks)


def test_motion_features_see_the_mover(zoo, stream):
    """The classifier's per-frame input: the moving square's box moves right, the still one does not."""
    with ssb.open(stream) as bs:
        dec = registry.decoder(bs, zoo)
        for step in dec.plan(frames=[6], need={"motion"}):
            df = dec.decode(step)
    boxes = {o.object_id: o.bbox for o in df.objects}
    moving = [motion_features(df.motion, b, 10.0) for b in boxes.values()]
    whole_dx = sorted(m[MOTION_FEATURES - 3] for m in moving)
    assert whole_dx[0] == pytest.approx(0.0, abs=0.05) and whole_dx[1] > 0.5
    assert all(m.shape == (MOTION_FEATURES,) and m.dtype == np.float32 for m in moving)


# -- bytes touched --------------------------------------------------------------------------------


def test_reads_motion_units_and_indexes_only(zoo, stream):
    with ssb.open(stream) as bs:
        opened = bs.bytes_read  # headers and indexes
        units = [u for f in bs.frames for u in f.units]
        motion = sum(u.length for u in units if u.type == UnitType.MOTION)
        features = sum(u.size for u in units if u.type in (UnitType.BASE, UnitType.RESIDUAL))
        size = bs.size
    assert motion and features
    res, _ = run(zoo, stream)
    assert res.bytes_read == opened + motion  # every MOTION payload, nothing else
    assert res.bytes_read <= size - features
    assert res.file_size == size


# -- state ----------------------------------------------------------------------------------------


def test_track_windows_fill_slide_and_forget():
    tw = TrackWindows(window=4, min_frames=2)
    part = np.ones(MOTION_FEATURES, np.float32)
    box = (0.0, 0.0, 10.0, 20.0)
    assert tw.update(0, [7], [box], [part], has_motion=False) == []  # no motion: not counted
    assert tw.update(1, [7], [box], [part]) == []  # one frame < min_frames
    (tid, first, x, m), = tw.update(2, [7], [(2.0, 0.0, 12.0, 20.0)], [part * 2], fps=10.0)
    assert (tid, first) == (7, 1) and x.shape == (4, MOTION_FEATURES + BOX_FEATURES)
    assert m.tolist() == [0, 0, 1, 1] and x[-1, 0] == 2 and x[-2, 0] == 1
    assert x[-1, MOTION_FEATURES] == pytest.approx(1.0)  # centre moved 2 px = 0.1 box heights in 0.1 s
    (_, first, x, m), = tw.update(5, [7], [box], [part])  # frames 3 and 4 skipped: holes
    assert first == 2 and m.tolist() == [1, 0, 0, 1]
    assert tw.update(10, [8], [box], [part]) == []  # track 7 unseen for a window: forgotten
    assert 7 not in tw._tracks
    with pytest.raises(MalformedFieldError, match="increasing order"):
        tw.update(10, [8], [box], [part])
    tw.reset()
    assert tw.update(0, [8], [box], [part]) == [] and tw.last_frame == 0


def test_each_analysis_starts_the_stateful_head_afresh(zoo, stream):
    """The head keeps windows across frames; iter_analyze resets it at the start of every stream, so a
    second analysis with the same head gives the same results (fed by hand, a replay is refused)."""
    first, h = run(zoo, stream)
    again, _ = run(zoo, stream, h)
    for a, b in zip(first.frames, again.frames):
        pa, pb = a.predictions["action"], b.predictions["action"]
        assert torch.equal(pa["track_ids"], pb["track_ids"]) and torch.equal(pa["action_scores"], pb["action_scores"])


def test_a_later_frame_range_starts_a_fresh_window(zoo, stream):
    res, _ = run(zoo, stream, frames=range(8, N))
    counts = [len(f.predictions["action"]["track_ids"]) for f in res.frames]
    assert counts == [0] * (MIN_FRAMES - 1) + [2] * (N - 8 - MIN_FRAMES + 1)


def test_whole_frame_mode_labels_a_frame_without_tracks(zoo):
    enc = registry.encoder("ssb.video", zoo, quality=1, gop=5)
    frames = clip(8)
    buf = io.BytesIO()
    with Writer(buf, enc.header(frames[0])) as w:
        for f in frames:
            enc.encode(w, f)
    res, _ = run(zoo, buf.getvalue(), head(whole_frame=True))
    p = res.frames[-1].predictions["action"]
    assert p["track_ids"].tolist() == [0] and p["boxes"][0].tolist() == [0, 0, W, H]
    res, _ = run(zoo, buf.getvalue())
    assert len(res.frames[-1].predictions["action"]["track_ids"]) == 0


# -- features ------------------------------------------------------------------------------------


def test_flow_and_motion_features_agree_on_a_uniform_motion():
    """The DIS-flow reference and the MOTION units give the same numbers for the same motion."""
    h, w = 300, 300  # frame = teacher input: one cell is 8 x 8 pixels
    vec = np.zeros((2, 38, 38), np.int16)
    vec[0, 5:15, 10:20] = -12  # backward (-3, -2) px: content moved (+3, +2) px
    vec[1, 5:15, 10:20] = -8
    field = MotionField(vec, (h, w))
    flow = np.zeros((h, w, 2), np.float32)
    flow[40:120, 80:160] = (-3.0, -2.0)
    box = (80, 40, 160, 120)  # the moving block, on cell edges
    a, b = motion_features(field, box, 10.0), flow_features(flow, box, 10.0)
    np.testing.assert_allclose(a, b, atol=1e-5)
    dx, dy, share = field.displacement(box)  # the motion head's view of the same box
    assert a[MOTION_FEATURES - 3 :].tolist() == pytest.approx([dx / 80 * 10, dy / 80 * 10, share])
    c = motion_features(field, (60, 40, 140, 120), 10.0)  # a quarter of it still: share and means drop
    assert c[-1] == pytest.approx(0.75) and 0 < c[2] < a[2]


def test_mirroring_is_an_involution_and_swaps_left_and_right():
    from ssb.recipes.action_data import mirror
    from ssb.recipes.train_action import mirror_map

    x = np.random.default_rng(0).normal(size=(3, 5, MOTION_FEATURES + BOX_FEATURES)).astype(np.float32)
    np.testing.assert_array_equal(mirror(mirror(x, "motion"), "motion"), x)
    assert mirror(x, "motion")[..., 0].tolist() == (-x[..., 3]).tolist()  # band (0, 0) dx <- -band (0, 1) dx
    assert mirror_map(["standing", "walking_left", "walking_right", "x"]) == [0, 2, 1, 3]


# -- refusals -------------------------------------------------------------------------------------


def _frame(**kw):
    base = dict(frame_index=0, image_size=(H, W), objects=[], motion=None, fps=10.0)
    return SimpleNamespace(**{**base, **kw})


def test_refuses_bad_input():
    h = head()
    with pytest.raises(SSBError, match="decoded frame"):
        h({}, image_sizes=[(H, W)])
    with pytest.raises(SSBError, match="decoded frame"):
        h({}, image_sizes=[(H, W)], frame=object())
    with pytest.raises(MalformedFieldError, match="MotionField"):
        h({}, frame=_frame(motion=np.zeros((2, 38, 38))))
    with pytest.raises(MalformedFieldError, match="min_score"):
        head(min_score=1.5)
    with pytest.raises(MalformedFieldError, match="window"):
        head(window=1)
    with pytest.raises(MalformedFieldError, match="label names"):
        ActionHead(pretrained=False, config={"num_classes": 3})
    with pytest.raises(MalformedFieldError, match="reads motion units"):
        ActionHead(pretrained=False, config={"source": "flow"})
    with pytest.raises(ModelMismatchError, match="not a action model|holds a pose model"):
        ActionHead(weights=Path(ssb.__file__).parent / "weights" / "pose_s8.pt")
    with pytest.raises(ModelMismatchError, match="no action weights"):
        ActionHead(weights="/nonexistent/action.pt")
    out = h({}, frame=_frame())[0]  # an empty frame is fine: no rows
    assert len(out["track_ids"]) == 0 and out["action_scores"].shape == (0, len(h.label_names))


def test_plan_refuses_the_head_on_an_image_stream(zoo):
    enc = registry.encoder("ssb.image", zoo, quality=1)
    buf = io.BytesIO()
    frame = clip(1)[0]
    with Writer(buf, enc.header(frame)) as w:
        enc.encode(w, frame)
    with pytest.raises(ModelMismatchError, match="needs \\['motion'\\]"):
        run(zoo, buf.getvalue())


def test_classifier_masks_absent_frames():
    net = ActionNet(in_features=4, num_classes=3, width=8).eval()
    x = torch.randn(2, 6, 4)
    m = torch.tensor([[0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], dtype=torch.float32)
    x[1, :2] = 1e3  # masked frames do not count
    out = net(x, m)
    assert torch.allclose(out[0], net(x[:1].clone(), m[:1])[0])
    x2 = x.clone()
    x2[0, :2] = x[1, :2]
    assert torch.allclose(net(x2, m)[0], out[0])


# -- the shipped model ----------------------------------------------------------------------------


def test_shipped_reference_model_is_in_the_zoo():
    from ssb.codec import zoo

    card = zoo.card("action-motion.s8@1")
    assert (card.kind, card.file, card.behind) == ("action", "action_s8.pt", "omni-ssd-mbv2.s8@1")
    h = ActionHead()
    assert h.identity.id == "action-motion.s8@1" and h.behind == "omni-ssd-mbv2.s8@1"
    assert h.label_names == ("standing", "walking_left", "walking_right", "walking_toward", "walking_away")
    assert h.meta["windows"] > 1000 and "vtest" in h.meta["data"]
    assert (Path(ssb.__file__).parent / "weights" / "action_s8.pt").stat().st_size < 200_000


def test_action_data_samples_view():
    from ssb.adapters import mmaction as mma

    h = head()
    pred = h._result([(5, 10, np.zeros((WINDOW, MOTION_FEATURES + BOX_FEATURES), np.float32),
                       np.ones(WINDOW, np.float32))], {5: SimpleNamespace(bbox=(0, 0, 10, 20), class_id=1)}, 10.0, 15)
    try:
        samples = mma.action_data_samples(pred)
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    (s,) = samples
    assert s.metainfo["track_id"] == 5 and tuple(s.metainfo["frames"]) == (10, 15)
    assert int(s.pred_label) == int(pred["labels"][0])
    np.testing.assert_allclose(s.pred_score.numpy(), pred["action_scores"][0].numpy(), rtol=1e-6)
    assert s.metainfo["label_names"] == list(h.label_names)


# -- the command line, real weights ----------------------------------------------------------------


@pytest.mark.teacher
@pytest.mark.media
def test_cli_analyze_action_reads_no_residual_or_base(tmp_path):
    from ssb.pipeline import encode
    from ssb.resources import vtest_path

    try:
        clip_path = vtest_path()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    path = tmp_path / "v.ssb"
    encode(clip_path, path, codec="ssb.video", quality=2, frames=range(100, 112))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "ssb.cli", "analyze", str(path), "--task", "action", "--classes",
                          "person", "--json", str(tmp_path / "a.json")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    read = int(out.stderr.split("read ")[1].split(" of ")[0])
    with ssb.open(path) as bs:
        opened = bs.bytes_read
        units = [u for f in bs.frames for u in f.units]
        motion = sum(u.length for u in units if u.type == UnitType.MOTION)
        features = sum(u.size for u in units if u.type in (UnitType.BASE, UnitType.RESIDUAL))
        size = bs.size
    assert read == opened + motion and read <= size - features
    records = json.loads((tmp_path / "a.json").read_text())
    assert records and {r["label"] for r in records} <= set(ActionHead().label_names)
    assert all(r["frames"][1] == r["frame"] and r["frame"] >= 108 for r in records)
    assert "frame 111 action:" in out.stdout and "box heights/s" in out.stdout
