"""The PyTorch rebuild of the SSD-MobileNetV2 teacher against cv2.dnn, on real frames and photos."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from ssb.backbones import teacher_weights  # noqa: E402
from ssb.backbones.ssd_mobilenet_v2 import (  # noqa: E402
    SPLIT_CHANNELS,
    SSDMobileNetV2Front,
    preprocess,
)

pytestmark = [pytest.mark.teacher, pytest.mark.media]

_FE = "FeatureExtractor/MobilenetV2/"
SPLIT_LAYER = _FE + "expanded_conv_5/add"
FEATURE_LAYERS = [_FE + "expanded_conv_13/expand/Relu6", _FE + "Conv_1/Relu6"] + [
    f"{_FE}layer_19_2_Conv2d_{j}_3x3_s2_{c}/Relu6" for j, c in ((2, 512), (3, 256), (4, 256), (5, 128))
]
RAW_LAYERS = ["BoxEncodingPredictor/concat", "ClassPredictor/concat", "PriorBox/concat", "detection_out"]
SCORE_THRESH = 0.3


@pytest.fixture(scope="module")
def models(teacher_cache, teacher_net):
    from ssb.tasks import create

    return SSDMobileNetV2Front(pretrained=True), create("detection", score_thresh=SCORE_THRESH)


@pytest.fixture(scope="module")
def runs(teacher_net, models, real_images):
    """Per image: cv2.dnn outputs by layer name, and the torch front / tail / head outputs."""
    import cv2

    front, head = models
    out = []
    for name, img in real_images:
        teacher_net.setInput(cv2.dnn.blobFromImage(img, size=(300, 300)))
        layers = [SPLIT_LAYER, *FEATURE_LAYERS, *RAW_LAYERS]
        ref = dict(zip(layers, teacher_net.forward(layers)))
        with torch.no_grad():
            split = front(preprocess([img]))
            feats = head.tail(split)
            codes, logits, anchors = head.raw_outputs(split)
            dets = head(split, image_sizes=[img.shape[:2]])[0]
        out.append(dict(name=name, img=img, ref=ref, split=split, feats=feats, codes=codes, logits=logits,
                        anchors=anchors, dets=dets))
    return out


def test_preprocess_equals_teacher_input(teacher_net, real_images):
    import cv2

    img = real_images[0][1]
    teacher_net.setInput(cv2.dnn.blobFromImage(img, size=(300, 300)))
    ref = teacher_net.forward("Preprocessor/sub")
    np.testing.assert_array_equal(preprocess([img]).numpy(), ref)


def test_split_features_match_cv2(runs):
    for run in runs:
        ref = run["ref"][SPLIT_LAYER]
        assert run["split"].shape == (1, SPLIT_CHANNELS, 38, 38) == ref.shape
        assert np.abs(run["split"].numpy() - ref).max() < 1e-3, run["name"]


def test_ssd_feature_maps_match_cv2(runs):
    for run in runs:
        for feat, layer in zip(run["feats"], FEATURE_LAYERS):
            ref = run["ref"][layer]
            assert feat.shape == ref.shape, layer
            assert np.abs(feat.numpy() - ref).max() < 1e-3, (run["name"], layer)


def test_raw_predictions_and_anchors_match_cv2(runs):
    run = runs[0]
    ref_codes = run["ref"]["BoxEncodingPredictor/concat"].reshape(1, -1, 4)
    ref_logits = run["ref"]["ClassPredictor/concat"].reshape(1, -1, 91)
    assert run["codes"].shape == ref_codes.shape and run["logits"].shape == ref_logits.shape
    assert np.abs(run["codes"].numpy() - ref_codes).max() < 1e-3
    assert np.abs(run["logits"].numpy() - ref_logits).max() < 1e-3
    priors, variances = run["ref"]["PriorBox/concat"][0].reshape(2, -1, 4)
    x1y1 = run["anchors"][:, :2] - run["anchors"][:, 2:] / 2
    x2y2 = run["anchors"][:, :2] + run["anchors"][:, 2:] / 2
    np.testing.assert_allclose(torch.cat([x1y1, x2y2], 1).numpy(), priors, atol=1e-6)
    np.testing.assert_allclose(variances, np.tile([0.1, 0.1, 0.2, 0.2], (len(priors), 1)), rtol=1e-6)


def _match(ref_boxes, ref_labels, boxes, labels):
    """Greedy one-to-one matching by IoU among detections of the same label: [(i_ref, j, iou)]."""
    from torchvision.ops import box_iou

    iou = box_iou(ref_boxes, boxes)
    iou[ref_labels[:, None] != labels[None, :]] = -1.0
    pairs = []
    while iou.numel() and iou.max() > 0:
        i, j = divmod(int(iou.argmax()), iou.shape[1])
        pairs.append((i, j, float(iou[i, j])))
        iou[i, :] = -1.0
        iou[:, j] = -1.0
    return pairs


def test_detections_match_cv2(runs):
    total, ious, score_diffs = 0, [], []
    for run in runs:
        h, w = run["img"].shape[:2]
        ref = run["ref"]["detection_out"][0, 0]
        ref = ref[ref[:, 2] > SCORE_THRESH]
        ref_boxes = torch.from_numpy(np.clip(ref[:, 3:7], 0, 1) * [w, h, w, h]).float()
        ref_labels = torch.from_numpy(ref[:, 1]).long()
        dets = run["dets"]
        assert len(dets["boxes"]) == len(ref), run["name"]
        pairs = _match(ref_boxes, ref_labels, dets["boxes"], dets["labels"])
        assert len(pairs) == len(ref), run["name"]
        for i, j, iou in pairs:
            assert iou > 0.95, (run["name"], i)
            assert abs(float(dets["scores"][j]) - float(ref[i, 2])) < 0.02, (run["name"], i)
            ious.append(iou)
            score_diffs.append(abs(float(dets["scores"][j]) - float(ref[i, 2])))
        total += len(ref)
    # vtest frames hold several pedestrians: the comparison must not be vacuous.
    assert total >= 10
    assert min(ious) > 0.95
    split_diff = max(float(np.abs(r["split"].numpy() - r["ref"][SPLIT_LAYER]).max()) for r in runs)
    print(f"\n[parity] {len(runs)} images, {total} matched detections, IoU mean {np.mean(ious):.6f} "
          f"min {min(ious):.6f}, max |score diff| {max(score_diffs):.2e}, max |split diff| {split_diff:.2e}")


def test_teacher_state_is_cached_and_reused(teacher_cache, models, monkeypatch):
    files = list(teacher_cache.glob("ssd_mobilenet_v2_coco-*.pt"))
    assert len(files) == 1
    first = teacher_weights.load_teacher_state()

    def no_conversion(pb, pbtxt):
        raise AssertionError("the cached state should have been used")

    monkeypatch.setattr(teacher_weights, "convert_files", no_conversion)
    again = teacher_weights.load_teacher_state()
    assert again.keys() == first.keys()
    assert all(torch.equal(again[k], first[k]) for k in first)
    # the state covers the whole teacher: 16.9 M parameters (BN running stats excluded)
    stats = ("running_mean", "running_var", "num_batches_tracked")
    params = sum(v.numel() for k, v in first.items() if not k.endswith(stats))
    assert 16_500_000 < params < 17_000_000


def test_corrupt_cache_is_rebuilt(teacher_cache, models):
    path = next(teacher_cache.glob("ssd_mobilenet_v2_coco-*.pt"))
    good = path.read_bytes()
    path.write_bytes(b"not a torch file")
    try:
        state = teacher_weights.load_teacher_state()
        assert "front.stem.conv.weight" in state
        assert path.read_bytes() != b"not a torch file"
    finally:
        path.write_bytes(good)
