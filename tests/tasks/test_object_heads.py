"""The pose and mask heads on object-scale units: the input they pick for a stream, outputs placed in
each unit's window, and (shipped weights, real frames) keypoints that agree with MoveNet."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from ssb.codec import zoo
from ssb.codec.object_scale import ObjectView
from ssb.tasks import create
from ssb.tasks.plan import plan_heads
from ssb.tasks.pose import KeypointNet
from ssb.tasks.segmentation import MaskNet, paste_windows

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Untrained object-scale nets saved as checkpoints behind the shipped codec's id."""
    d = tmp_path_factory.mktemp("objw")
    torch.manual_seed(0)
    pose = KeypointNet(in_channels=32, width=16, depth=2, upsample=2)
    mask = MaskNet(in_channels=32, width=16, depth=2)
    behind = zoo.DEFAULTS["codec"]
    p = zoo.save(d / "p.pt", pose, kind="pose_object", name="pose-object-test", version=1,
                 config={"width": 16, "depth": 2, "upsample": 2}, behind=behind)
    m = zoo.save(d / "m.pt", mask, kind="segmentation_object", name="mask-object-test", version=1,
                 config={"width": 16, "depth": 2}, behind=behind)
    return p, m


def _views():
    torch.manual_seed(1)
    return [ObjectView(3, 1, 0.9, (20.0, 30.0, 60.0, 130.0), (10, 20, 60, 120), torch.randn(1, 32, 16, 12)),
            ObjectView(4, 1, 0.3, (200.0, 30.0, 240.0, 130.0), (190, 20, 60, 120), torch.randn(1, 32, 16, 12)),
            ObjectView(5, 3, 0.8, (100.0, 100.0, 140.0, 130.0), (-20, 90, 60, 80), torch.randn(1, 32, 16, 12))]


def test_the_head_picks_object_units_when_the_stream_has_them(weights):
    pose = create("pose", object_weights=weights[0])
    from ssb.backbones.features import SSD_MBV2_S8

    info = SSD_MBV2_S8.feature_info
    plan = plan_heads(["pose"], heads={"pose": pose}, provides={"features", "objects"}, feature_info=info,
                      model_id=zoo.DEFAULTS["codec"])
    assert [p.name for p in plan] == ["pose"] and pose.needs == ("objects",)  # no detection head, no BASE
    assert pose.behind == zoo.DEFAULTS["codec"]
    plan = plan_heads(["pose"], heads={"pose": pose}, provides={"features"}, feature_info=info,
                      model_id=zoo.DEFAULTS["codec"])
    assert [p.name for p in plan] == ["detection", "pose"] and pose.needs == ("features",)  # a plain stream


def test_without_object_weights_the_head_stays_on_split_features(monkeypatch, tmp_path):
    monkeypatch.setitem(zoo.DEFAULTS, "pose_object", str(tmp_path / "not-trained.pt"))  # no such file
    pose = create("pose")
    pose.adapt({"features", "objects"})
    assert pose.needs == ("features",)


def test_the_head_reads_the_units_of_its_classes_only(weights):
    pose = create("pose", object_weights=weights[0])
    pose.adapt({"features", "objects", "objects:1", "objects:3"})
    assert pose.needs == ("objects:1",)
    pose.adapt({"features", "objects", "objects:3"})  # only cars carry units: people come from the base
    assert pose.needs == ("features",) and "detection" in pose.consumes
    seg = create("segmentation", object_weights=weights[1])  # every class
    seg.adapt({"features", "objects", "objects:1", "objects:3"})
    assert seg.needs == ("objects:1", "objects:3")


def test_units_of_several_sizes_in_one_frame(weights):
    views = _views()
    views[1] = ObjectView(4, 1, 0.9, (200.0, 30.0, 240.0, 130.0), (190, 20, 60, 120), torch.randn(1, 32, 8, 6))
    pose = create("pose", object_weights=weights[0], score_thresh=0.5)
    pose.adapt({"objects"})
    [out] = pose({"objects": views}, image_sizes=[(240, 320)])
    assert out["keypoints"].shape == (2, 17, 3) and (out["keypoints"][1, :, 0] >= 190).all()
    seg = create("segmentation", object_weights=weights[1], score_thresh=0.5)
    seg.adapt({"objects"})
    [out] = seg({"objects": views}, image_sizes=[(240, 320)])
    assert out["masks"].shape == (3, 1, 240, 320) and out["masks"][1, 0, :, :190].max() == 0


def test_pose_on_views_is_in_each_window(weights):
    pose = create("pose", object_weights=weights[0], score_thresh=0.5)
    pose.adapt({"objects"})
    [out] = pose({"objects": _views()}, image_sizes=[(240, 320)])
    assert out["labels"].tolist() == [1] and out["boxes"].tolist() == [[20.0, 30.0, 60.0, 130.0]]  # class, score
    kp = out["keypoints"]
    assert kp.shape == (1, 17, 3) and out["keypoints_scores"].shape == (1, 17)
    assert (kp[0, :, 0] >= 10).all() and (kp[0, :, 0] <= 70).all() and (kp[0, :, 1] >= 20).all() \
        and (kp[0, :, 1] <= 140).all()
    [none] = pose({"objects": []}, image_sizes=[(240, 320)])
    assert none["keypoints"].shape == (0, 17, 3)


def test_masks_on_views_are_pasted_in_their_windows(weights):
    seg = create("segmentation", object_weights=weights[1], score_thresh=0.5)
    seg.adapt({"objects"})
    [out] = seg({"objects": _views()}, image_sizes=[(240, 320)])
    assert out["labels"].tolist() == [1, 3] and out["masks"].shape == (2, 1, 240, 320)
    m = out["masks"][1, 0]
    assert m[90:170, 0:40].min() > 0 and m[:90].max() == 0 and m[:, 40:].max() == 0  # clipped at the left edge


def test_paste_windows_places_probabilities():
    probs = torch.ones(1, 1, 4, 3)
    out = paste_windows(probs, [(5, 6, 3, 4)], (12, 10))
    assert out[0, 0].sum() == 12 and out[0, 0, 6:10, 5:8].min() == 1


@pytest.mark.teacher
@pytest.mark.media
def test_shipped_object_pose_agrees_with_movenet_on_held_out_frames():
    """Frames 700 and 760 (held out): keypoints from the person units only against MoveNet on the
    original pixels; the median error must stay under 10% of the person's height."""
    from ssb.pipeline import Models, analyze, encode
    from ssb.recipes.teachers import KEYPOINT_SCORE, MoveNetTeacher
    from ssb.resources import read_video_frames, vtest_path

    frames = [img for _, img in read_video_frames(vtest_path(), [700, 760])]
    models = Models()
    buf = io.BytesIO()
    from ssb.media import Frame

    encode((Frame(i, f) for i, f in enumerate(frames)), buf, codec="ssb.image", quality=0, models=models,
           object_scale=[1], object_quality=2)
    res = analyze(buf.getvalue(), tasks=["pose"], models=models)
    teacher = MoveNetTeacher()
    errs = []
    for fr, img in zip(res.frames, frames):
        p = fr.predictions["pose"]
        ref = teacher(img, p["boxes"].numpy())
        for k in range(len(ref)):
            ok = ref[k, :, 2] >= KEYPOINT_SCORE
            h = float(p["boxes"][k, 3] - p["boxes"][k, 1])
            d = np.linalg.norm(p["keypoints"][k, :, :2].numpy() - ref[k, :, :2], axis=1)[ok] / h
            errs.extend(d.tolist())
    assert len(errs) > 40
    assert float(np.median(errs)) < 0.10, np.median(errs)
