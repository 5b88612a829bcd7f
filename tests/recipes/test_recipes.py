"""Recipes: the train / held-out split, deterministic augmentation, BD-rates of the eval table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ssb.recipes import data
from ssb.recipes.cache import augment
from ssb.recipes.data import Sample, vtest_indices
from ssb.recipes.evaluation import Point, bd_rates, pixel_sweeps, summarize

VTEST_FRAMES = 795  # vtest.avi of Debian's opencv-doc


@pytest.mark.parametrize("step", [None, 1, 2, 3, 7])
def test_vtest_splits_are_disjoint_with_the_documented_gap(step):
    train, val = vtest_indices("train", step=step), vtest_indices("val", step=step)
    assert train and val and not set(train) & set(val)
    assert max(train) <= data.TRAIN_LAST_FRAME < data.VAL_FIRST_FRAME <= min(val)
    assert max(val) < VTEST_FRAMES and min(train) == 0
    # "a gap of 20 frames keeps near-duplicate frames apart" (ssb/recipes/data.py)
    assert data.VAL_FIRST_FRAME - data.TRAIN_LAST_FRAME - 1 == 20
    assert min(val) - max(train) > 20
    assert train == sorted(set(train)) and val == sorted(set(val))


def test_vtest_default_steps():
    assert vtest_indices("train")[:3] == [0, data.TRAIN_FRAME_STEP, 2 * data.TRAIN_FRAME_STEP]
    assert vtest_indices("val")[:2] == [data.VAL_FIRST_FRAME, data.VAL_FIRST_FRAME + data.VAL_FRAME_STEP]


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="unknown split"):
        vtest_indices("test")


def test_photo_splits_are_disjoint():
    assert not set(data.TRAIN_PHOTOS) & set(data.VAL_PHOTOS)


def _samples() -> list[Sample]:
    rng = np.random.default_rng(0)
    return [Sample(f"vtest:{i:06d}", rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)) for i in range(4)] + [
        Sample("photo:p", rng.integers(0, 256, (120, 90, 3), dtype=np.uint8))]


def test_augment_is_deterministic_and_keeps_real_pixels():
    samples = _samples()
    a = augment(samples, crops_per_photo=3, flip_every=2, seed=5)
    b = augment(samples, crops_per_photo=3, flip_every=2, seed=5)
    assert [s.name for s in a] == [s.name for s in b]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert all(x is y for x, y in zip(a, samples))  # the originals come first, untouched
    extra = {s.name: s.image for s in a[len(samples):]}
    assert set(extra) == {"vtest:000000:flip", "vtest:000002:flip"} | {f"photo:p:crop{c}" for c in range(3)}
    assert np.array_equal(extra["vtest:000002:flip"], samples[2].image[:, ::-1])
    photo = samples[-1].image
    for c in range(3):
        crop = extra[f"photo:p:crop{c}"]
        assert 32 <= crop.shape[0] <= photo.shape[0] and 32 <= crop.shape[1] <= photo.shape[1]
        assert crop.flags["C_CONTIGUOUS"] and crop.dtype == np.uint8
    other = augment(samples, crops_per_photo=3, flip_every=2, seed=6)
    assert any(not np.array_equal(x.image, y.image) for x, y in zip(a, other))


def _curve(method: str, rates, aps, task: str = "detection") -> list[Point]:
    return [Point(task, method, q, r, ap, ap + 20.0, ap - 5.0, int(r * 1000), 10, 30)
            for q, (r, ap) in enumerate(zip(rates, aps))]


def test_bd_rate_is_negative_when_ssb_dominates():
    """SSB reaches the pixel codec's accuracies with a tenth of its bits: BD-rate -90 %."""
    aps = [20.0, 35.0, 45.0, 50.0]
    jpeg = [0.1, 0.2, 0.4, 0.8]
    points = (_curve("ssb", [r / 10 for r in jpeg], aps) + _curve("jpeg-input", jpeg, aps)
              + [Point("detection", "original", 0, 24.0, 60.0, 80.0, 55.0, 1, 10, 30)])
    bd = bd_rates(points)
    assert set(bd) == {"jpeg-input"}  # "ssb" is the candidate, "original" is only the ceiling
    row = bd["jpeg-input"]
    assert row["why_AP"] is None and row["why_AP50"] is None
    assert math.isfinite(row["bd_rate_AP"]) and row["bd_rate_AP"] == pytest.approx(-90.0, abs=0.01)
    assert row["bd_rate_AP50"] == pytest.approx(-90.0, abs=0.01)


def test_bd_rate_is_positive_when_ssb_needs_more_bits():
    aps = [20.0, 35.0, 45.0]
    bd = bd_rates(_curve("ssb", [0.2, 0.4, 0.8], aps) + _curve("webp-full", [0.1, 0.2, 0.4], aps))
    assert bd["webp-full"]["bd_rate_AP"] == pytest.approx(100.0, abs=0.01)


def test_bd_rate_of_disjoint_curves_is_nan_with_a_reason():
    ssb_pts = _curve("ssb", [0.01, 0.02], [60.0, 70.0])
    bd = bd_rates(ssb_pts + _curve("avif-input", [0.1, 0.2], [10.0, 20.0]))
    assert math.isnan(bd["avif-input"]["bd_rate_AP"]) and "overlap" in bd["avif-input"]["why_AP"]


def test_tasks_are_kept_apart_and_matched_at_equal_rate():
    points = (_curve("ssb", [0.1, 0.2, 0.4], [10.0, 20.0, 30.0], "pose")
              + _curve("jpeg-full", [0.1, 0.4], [5.0, 25.0], "pose")
              + _curve("jpeg-full", [0.1, 0.4], [50.0, 60.0], "detection"))
    s = summarize(points, "pose")
    assert [r["level"] for r in s["matched_bpp"]] == [0, 1, 2]
    assert s["matched_bpp"][1]["jpeg-full_AP_at_bpp"] == pytest.approx(15.0)  # halfway in log-rate
    assert summarize(points, "detection")["matched_bpp"] == []  # no SSB detection points


def test_one_pixel_point_serves_every_task_that_sweeps_it():
    sweeps = pixel_sweeps(["jpeg"], ("detection", "pose"), ("input", "full"), qualities=[10, 50])
    assert sorted(sweeps) == [("jpeg", "full", 10, ("detection", "pose")), ("jpeg", "full", 50, ("detection", "pose")),
                              ("jpeg", "input", 10, ("detection",)), ("jpeg", "input", 50, ("detection",))]


@pytest.mark.teacher
@pytest.mark.media
def test_fusion_recipe_tiny_run(tmp_path, monkeypatch):
    """Two real training frames, two steps: data built and cached, a loadable checkpoint bound to the codec."""
    from ssb.codec import zoo
    from ssb.errors import MissingDependencyError
    from ssb.recipes.train_fusion import FusionTrainConfig, train_fusion

    monkeypatch.setenv("SSB_CACHE", str(tmp_path / "cache"))
    cfg = FusionTrainConfig(iterations=2, batch_size=2, first_frame=30, last_frame=33, frame_step=3, width=8)
    try:
        out = train_fusion(cfg, tmp_path / "fusion.pt", progress=False)
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    cached = list((tmp_path / "cache").glob("fusion-data-*.pt"))
    assert len(cached) == 1
    data = torch.load(cached[0], weights_only=True)
    assert data["inputs"].shape[0] == 2 and data["inputs"].shape[1] == 3 * 32 + 1
    assert data["split"].shape[1:] == (32, 38, 38) and data["logits"].shape[-1] == 91
    assert all(0 <= lv < 6 for lv in data["levels"].tolist())
    model = zoo.load("fusion", out, behind=zoo.MODEL_ID)
    assert model.modes == ("whole", "query") and model.width == 8
    assert model.identity.behind == zoo.MODEL_ID and model.identity.version == zoo.next_version(model.identity.name)


@pytest.mark.teacher
@pytest.mark.media
def test_video_recipe_tiny_run(tmp_path, monkeypatch):
    """Six real training frames, three steps: the closed-loop residuals as the encoder makes them, a loadable
    video model bound to the codec that codes a residual and decodes it back exactly."""
    from ssb.codec import zoo
    from ssb.codec.video.encoder import deadzone_for
    from ssb.pipeline import Models
    from ssb.recipes.train_video import VideoTrainConfig, build_video_data, simulate_residuals, train_video

    monkeypatch.setenv("SSB_CACHE", str(tmp_path / "cache"))
    cfg = VideoTrainConfig(first_frame=40, last_frame=45, gop=3, iterations=3, batch_size=2)
    out = train_video(cfg, tmp_path / "video.pt", progress=False)
    assert len(list((tmp_path / "cache").glob("video-data-*.pt"))) == 1
    models = Models()
    codec = models.zoo.codec()
    data = build_video_data(cfg, models, progress=False)
    assert data["latents"].shape[0] == 6 and data["motion"].shape[1:] == (2, 38, 38)
    res, levels = simulate_residuals(data, codec, cfg)
    # per level and dead-zone factor: 6 frames in GOPs of 3 -> 4 predicted frames
    assert len(res) == 4 * codec.config.num_levels * len(cfg.deadzone_factors)
    big = res[levels == 0].abs()
    assert int(big.max()) >= 1 and float((res == 0).float().mean()) > 0.5  # the dead zone skips most elements
    assert deadzone_for(0) < deadzone_for(5)
    model = zoo.load("video", out, behind=codec.identity.id)
    assert model.identity.kind == "video" and model.identity.behind == codec.identity.id
    r = res[:1].float()
    z, y = model.compress(r)
    assert torch.equal(model.decompress(z, y, tuple(r.shape[-2:])), r)


@pytest.mark.teacher
@pytest.mark.media
def test_video_eval_tiny_run(tmp_path):
    """`ssb eval --video` on 3 held-out frames, one SSB point and one H.264 point: the table and its files."""
    import csv

    from ssb.recipes.evaluation.video import run_video_eval

    pts = run_video_eval(tmp_path, frames=range(620, 623), levels=[0], gops=(2,), intra=True, codecs=("h264",),
                         crfs={"h264": (40,)}, progress=False)
    assert [(p.method, p.param) for p in pts] == [("ssb-video-g2", 0), ("ssb-intra", 0), ("h264", 40)]
    video, intra, h264 = pts
    assert all(p.images == 3 and 0 < p.bpp < 1 and 0 <= p.AP <= 100 for p in pts)
    assert video.bytes < intra.bytes  # a predicted frame costs less than a key frame
    rows = list(csv.DictReader(open(tmp_path / "video_rate_accuracy.csv")))
    assert [r["method"] for r in rows] == ["ssb-video-g2", "ssb-intra", "h264"]
