"""torchvision bridges (ssb.adapters.torchvision): training targets, outputs, BackboneAdapter."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ssb.errors import MalformedFieldError, ModelMismatchError

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from ssb.adapters import torchvision as tv  # noqa: E402
from ssb.adapters.coco import to_coco_results  # noqa: E402


def _teacher(n=4, seed=0, size=96):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, size / 2, (n, 2))
    return {"boxes": np.concatenate([xy, xy + rng.uniform(8, size / 2, (n, 2))], 1).astype(np.float32),
            "labels": rng.integers(1, 3, n), "scores": np.linspace(0.95, 0.2, n)}


def test_adapters_import_nothing_heavy():
    code = ("import sys, ssb.adapters.coco, ssb.adapters.pixel_codecs, ssb.adapters.torchvision, ssb.metrics; "
            "heavy = {'torch', 'torchvision', 'PIL', 'pycocotools', 'cv2'} & {m.split('.')[0] for m in sys.modules}; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_to_torchvision_targets():
    pred = _teacher()
    pred["boxes"][1, 3] = pred["boxes"][1, 1]  # degenerate: dropped
    pred["masks"] = np.zeros((4, 1, 96, 96), np.float32)
    pred["masks"][:, :, 10:20, 10:30] = 0.8
    (target,) = tv.to_torchvision_targets([pred], score_thresh=0.4)
    keep = [0, 2]  # scores .95, .7, .45, .2: the last is below .4 and box 1 is degenerate
    assert set(target) == {"boxes", "labels", "masks"}
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert target["masks"].dtype == torch.uint8 and target["masks"].shape == (2, 96, 96) and int(target["masks"].sum()) == 400
    np.testing.assert_allclose(target["boxes"].numpy(), pred["boxes"][keep])
    assert target["labels"].tolist() == pred["labels"][keep].tolist()
    with pytest.raises(MalformedFieldError):
        tv.to_torchvision_targets([{"boxes": np.zeros((2, 3)), "labels": [1, 2]}])


def test_backbone_adapter_out_channels():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4, padding=1), torch.nn.ReLU())
    assert tv.BackboneAdapter(conv).out_channels == 8  # probed
    assert tv.BackboneAdapter(conv, 8).out_channels == 8
    conv.out_channels = 8
    assert tv.BackboneAdapter(conv).out_channels == 8

    class Multi(torch.nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.a = torch.nn.Conv2d(3, channels[0], 3, stride=2, padding=1)
            self.b = torch.nn.Conv2d(channels[0], channels[1], 3, stride=2, padding=1)

        def forward(self, x):
            y = self.a(x)
            return [y, self.b(y)]

    same = tv.BackboneAdapter(Multi((6, 6)))
    out = same(torch.zeros(1, 3, 32, 32))
    assert same.out_channels == 6 and list(out) == ["0", "1"] and out["1"].shape == (1, 6, 8, 8)
    with pytest.raises(ModelMismatchError, match="FPN"):
        tv.BackboneAdapter(Multi((6, 12)))
    with pytest.raises(ModelMismatchError):
        tv.BackboneAdapter(lambda x: x)
    with pytest.raises(MalformedFieldError):
        tv.BackboneAdapter(conv, out_channels=0)


def test_backbone_adapter_trains_a_torchvision_detector():
    """A torchvision FasterRCNN accepts the adapter and the targets; one step runs, eval outputs convert to COCO."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=4, padding=1), torch.nn.ReLU())
    model = FasterRCNN(
        tv.BackboneAdapter(body), num_classes=3, min_size=96, max_size=96,
        rpn_anchor_generator=AnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2), box_detections_per_img=10,
    )
    images = [torch.rand(3, 96, 96) for _ in range(2)]
    targets = tv.to_torchvision_targets([_teacher(seed=1), _teacher(seed=2)], score_thresh=0.3)
    model.train()
    losses = model(images, targets)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert body[0].weight.grad is not None
    model.eval()
    with torch.no_grad():
        preds = tv.from_torchvision_outputs(model(images))
    assert all(isinstance(p["boxes"], np.ndarray) and set(p) == {"boxes", "labels", "scores"} for p in preds)
    results = to_coco_results(preds, [0, 1])
    assert len(results) == sum(len(p["scores"]) for p in preds)
