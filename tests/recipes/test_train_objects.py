"""The object-scale heads' recipe on a tiny synthetic target set: it trains, augments consistently
(a flipped crop gets mirrored keypoints) and saves checkpoints the heads load behind the codec."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssb.codec import zoo
from ssb.codec.object_scale import DEFAULT_LAYOUT, object_window
from ssb.recipes.task_data import TaskTargets
from ssb.recipes.train_objects import ObjectSamples, ObjectTrainConfig, make_batch, train_objects
from ssb.tasks import create

pytestmark = [pytest.mark.usefixtures("torch_one_thread"), pytest.mark.teacher]


@pytest.fixture(scope="module")
def data() -> ObjectSamples:
    rng = np.random.default_rng(0)
    images = {f"vtest:{i:06d}": rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for i in range(2)}
    boxes = [torch.tensor([[40.0, 20.0, 70.0, 100.0]]), torch.tensor([[90.0, 10.0, 130.0, 110.0]])]
    kps = []
    for b in boxes:
        x = torch.linspace(float(b[0, 0]) + 2, float(b[0, 2]) - 2, 17)
        y = torch.linspace(float(b[0, 1]) + 2, float(b[0, 3]) - 2, 17)
        kps.append(torch.stack([x, y, torch.full((17,), 0.9)], dim=-1)[None])
    fg = np.zeros((120, 160), bool)
    fg[30:90, 45:65] = True
    fgs = [torch.from_numpy(np.packbits(fg.reshape(-1))), torch.zeros(0, dtype=torch.uint8)]
    targets = TaskTargets(list(images), [(120, 160)] * 2, torch.zeros(2, 32, 38, 38).half(), boxes,
                          [torch.ones(1), torch.ones(1)], kps, fgs)
    return ObjectSamples(targets, images)


def test_batches_are_crops_keypoints_and_masks_of_the_window(data):
    cfg = ObjectTrainConfig(shift=0.0, scale=0.0, flip=0.0, colour=0.0, low_res=0.0, truncate=0.0)
    crops, wins, kps, masks = make_batch(data, [0, 1], cfg, np.random.default_rng(0), DEFAULT_LAYOUT, (32, 24))
    x0, y0, w, h = object_window(data.targets.boxes[0][0].tolist())
    assert crops[0].shape == (128, 96, 3) and wins[0].tolist() == [x0, y0, x0 + w, y0 + h]
    assert torch.equal(kps[0], data.targets.keypoints[0][0])
    assert masks[0].shape == (1, 32, 24) and masks[0].sum() > 0 and masks[1] is None  # the photo: no foreground
    mirror = ObjectTrainConfig(shift=0.0, scale=0.0, flip=1.0, colour=0.0, low_res=0.0, truncate=0.0)
    flipped = make_batch(data, [0], mirror, np.random.default_rng(0), DEFAULT_LAYOUT, (32, 24))
    assert np.array_equal(flipped[0][0], crops[0][:, ::-1])
    left, right = flipped[2][0, 5], data.targets.keypoints[0][0, 6]  # left shoulder <- mirrored right shoulder
    assert float(left[0]) == pytest.approx(2 * x0 + w - float(right[0]))
    assert torch.equal(flipped[3][0], masks[0].flip(-1))


def test_it_trains_and_the_heads_load_the_result(data, tmp_path):
    from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front

    codec, front = zoo.load("codec"), SSDMobileNetV2Front(pretrained=True).eval()
    pose_path, seg_path = train_objects(ObjectTrainConfig(iterations=2, batch_size=2, threads=1, min_keypoints=1),
                                        codec, front, tmp_path, data=data, progress=False)
    head = create("pose", object_weights=pose_path)
    head.adapt({"objects"})
    assert head.on_objects and head.behind == codec.identity.id
    seg = create("segmentation", object_weights=seg_path)
    seg.adapt({"objects"})
    assert seg.on_objects and zoo.read("segmentation_object", seg_path)["meta"]["people"] == 2
