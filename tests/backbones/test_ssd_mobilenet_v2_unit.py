"""SSD-MobileNetV2 rebuild without the teacher: TF padding, shapes, preprocessing, weight mapping, cache."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from ssb.backbones import teacher_weights as tw  # noqa: E402
from ssb.backbones.ssd_mobilenet_v2 import (  # noqa: E402
    FEATURE_CHANNELS,
    SPLIT_CHANNELS,
    SPLIT_STRIDE,
    Conv2dSame,
    SSDMobileNetV2Front,
    SSDMobileNetV2Tail,
    fold_batchnorm,
    preprocess,
    tf_same_padding,
)
from ssb.errors import MalformedFieldError, ModelMismatchError  # noqa: E402


@pytest.mark.parametrize(
    "size, kernel, stride, pad",
    [(300, 3, 2, (0, 1)), (150, 3, 1, (1, 1)), (75, 3, 2, (1, 1)), (38, 3, 2, (0, 1)), (19, 3, 2, (1, 1)),
     (10, 3, 2, (0, 1)), (2, 3, 2, (0, 1)), (1, 3, 2, (1, 1)), (19, 1, 1, (0, 0))],
)
def test_tf_same_padding(size, kernel, stride, pad):
    assert tf_same_padding(size, kernel, stride) == pad
    before, after = pad
    assert (size + before + after - kernel) // stride + 1 == -(-size // stride)  # TF SAME output size


def test_conv2d_same_pads_bottom_right_like_tf():
    torch.manual_seed(0)
    conv = Conv2dSame(4, 5, 3, 2, bias=True)
    x = torch.randn(1, 4, 12, 11)
    ref = F.conv2d(F.pad(x, (1, 1, 0, 1)), conv.weight, conv.bias, 2)  # W 11 -> pad 1/1, H 12 -> 0/1
    torch.testing.assert_close(conv(x), ref)
    assert conv(x).shape == (1, 5, 6, 6)


@pytest.fixture(scope="module")
def random_parts():
    torch.manual_seed(0)
    return SSDMobileNetV2Front().eval(), SSDMobileNetV2Tail().eval()


def test_shapes_at_300(random_parts):
    front, tail = random_parts
    with torch.no_grad():
        split = front(torch.randn(2, 3, 300, 300))
        feats = tail(split)
    assert split.shape == (2, SPLIT_CHANNELS, 38, 38)
    assert [tuple(f.shape[1:]) for f in feats] == [
        (576, 19, 19), (1280, 10, 10), (512, 5, 5), (256, 3, 3), (256, 2, 2), (128, 1, 1)
    ]
    assert tuple(f.shape[1] for f in feats) == FEATURE_CHANNELS == tail.out_channels
    assert [i["num_chs"] for i in tail.feature_info] == list(FEATURE_CHANNELS)
    (last,) = front.feature_info
    assert (last.name, last.channels, last.reduction, last.module) == ("split", SPLIT_CHANNELS, SPLIT_STRIDE, "blocks.5")
    assert front.out_channels == tail.in_channels == SPLIT_CHANNELS


def test_fold_batchnorm_keeps_outputs():
    torch.manual_seed(0)
    front = SSDMobileNetV2Front()
    for m in front.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    front.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = front(x)
        out = fold_batchnorm(front)(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in front.modules())
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_front_feature_info_names_real_modules(random_parts):
    front, tail = random_parts
    shapes = {}
    hooks = [front.get_submodule(i.module).register_forward_hook(
        lambda m, a, out, name=i.module: shapes.__setitem__(name, out.shape)) for i in front.feature_info]
    with torch.no_grad():
        front(torch.randn(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    for info in front.feature_info:
        assert shapes[info.module][1] == info.channels
        assert shapes[info.module][-1] == 64 // info.reduction
    for info in tail.feature_info:
        tail.get_submodule(info["module"])  # raises if the name is wrong


def test_preprocess_range_and_layout():
    img = np.zeros((40, 60, 3), np.uint8)
    img[..., 0] = 255  # red
    x = preprocess([img, img[:10]])
    assert x.shape == (2, 3, 300, 300) and x.dtype == torch.float32
    assert torch.all(x[:, 0] == 1.0) and torch.all(x[:, 1:] == -1.0)


@pytest.mark.parametrize(
    "bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), np.float32),
            np.zeros((0, 10, 3), np.uint8)],
)
def test_preprocess_rejects_bad_images(bad):
    with pytest.raises(MalformedFieldError, match=r"images\[1\]"):
        preprocess([np.zeros((5, 5, 3), np.uint8), bad])
    with pytest.raises(MalformedFieldError):
        preprocess([])


@pytest.mark.parametrize(
    "scope, key",
    [
        ("FeatureExtractor/MobilenetV2/Conv", "front.stem"),
        ("FeatureExtractor/MobilenetV2/expanded_conv/depthwise", "front.blocks.0.depthwise"),
        ("FeatureExtractor/MobilenetV2/expanded_conv_5/project", "front.blocks.5.project"),
        ("FeatureExtractor/MobilenetV2/expanded_conv_6/expand", "tail.blocks.0.expand"),
        ("FeatureExtractor/MobilenetV2/expanded_conv_16/project", "tail.blocks.10.project"),
        ("FeatureExtractor/MobilenetV2/Conv_1", "tail.conv_1"),
        ("FeatureExtractor/MobilenetV2/layer_19_1_Conv2d_2_1x1_256", "tail.extras.0.reduce"),
        ("FeatureExtractor/MobilenetV2/layer_19_2_Conv2d_3_3x3_s2_256_depthwise", "tail.extras.1.depthwise"),
        ("FeatureExtractor/MobilenetV2/layer_19_2_Conv2d_5_3x3_s2_128", "tail.extras.3.pointwise"),
        ("BoxPredictor_4/ClassPredictor", "predictors.4.cls"),
        ("BoxPredictor_0/BoxEncodingPredictor", "predictors.0.box"),
    ],
)
def test_tf_scope_mapping(scope, key, random_parts):
    assert tw.tf_scope_to_module(scope) == key
    if key.startswith(("front.", "tail.")):
        part = random_parts[0] if key.startswith("front.") else random_parts[1]
        part.get_submodule(key.split(".", 1)[1])  # the module exists


def test_tf_scope_mapping_rejects_unknown():
    with pytest.raises(ModelMismatchError):
        tw.tf_scope_to_module("FeatureExtractor/MobilenetV2/mystery")
    with pytest.raises(ModelMismatchError):
        tw.tf_scope_to_module("Postprocessor/whatever")


class FakeNet:
    """The slice of the cv2.dnn.Net API the converter uses, with chosen layers and blobs."""

    def __init__(self, layers):
        self.layers = layers  # name -> list of numpy blobs

    def getLayerNames(self):
        return list(self.layers)

    def getLayerId(self, name):
        return list(self.layers).index(name) + 1

    def getParam(self, layer_id, i):
        blobs = list(self.layers.values())[layer_id - 1]
        if i >= len(blobs):
            raise RuntimeError("cv2.error: out of range")
        return blobs[i]


def test_convert_from_cv2_maps_blobs():
    rng = np.random.default_rng(0)
    dw = rng.standard_normal((384, 1, 3, 3)).astype(np.float32)
    bn = [rng.standard_normal((384, 1)).astype(np.float32) for _ in range(4)]
    cls_w = rng.standard_normal((546, 256, 3, 3)).astype(np.float32)
    cls_b = rng.standard_normal((546, 1)).astype(np.float32)
    net = FakeNet({
        "Preprocessor/mul": [],
        "FeatureExtractor/MobilenetV2/expanded_conv_7/depthwise/depthwise": [dw],
        "FeatureExtractor/MobilenetV2/expanded_conv_7/depthwise/BatchNorm/batchnorm/add_1": bn,
        "FeatureExtractor/MobilenetV2/expanded_conv_7/depthwise/Relu6": [],
        "BoxPredictor_3/ClassPredictor/Conv2D": [cls_w, cls_b],
    })
    state = tw.convert_from_cv2(net)
    assert set(state) == {
        "tail.blocks.1.depthwise.conv.weight", "predictors.3.cls.weight", "predictors.3.cls.bias",
        *(f"tail.blocks.1.depthwise.bn.{k}" for k in ("running_mean", "running_var", "weight", "bias",
                                                       "num_batches_tracked")),
    }
    np.testing.assert_array_equal(state["tail.blocks.1.depthwise.conv.weight"].numpy(), dw)
    for key, blob in zip(("running_mean", "running_var", "weight", "bias"), bn):
        np.testing.assert_array_equal(state[f"tail.blocks.1.depthwise.bn.{key}"].numpy(), blob[:, 0])
    np.testing.assert_array_equal(state["predictors.3.cls.bias"].numpy(), cls_b[:, 0])
    tail = SSDMobileNetV2Tail()
    missing, unexpected = tail.load_state_dict(tw.sub_state(state, "tail."), strict=False)
    assert not unexpected and "blocks.1.depthwise.conv.weight" not in missing


def test_convert_from_cv2_rejects_incomplete_layers():
    bn = "FeatureExtractor/MobilenetV2/Conv/BatchNorm/batchnorm/add_1"
    net = FakeNet({bn: [np.zeros((32, 1), np.float32)]})
    with pytest.raises(ModelMismatchError, match="batch-norm"):
        tw.convert_from_cv2(net)
    with pytest.raises(ModelMismatchError):
        tw.convert_from_cv2(FakeNet({"detection_out": []}))


def test_load_teacher_state_caches_by_sha256(tmp_path, monkeypatch):
    import ssb.resources

    pb, pbtxt = tmp_path / "graph.pb", tmp_path / "graph.pbtxt"
    pb.write_bytes(b"frozen graph v1")
    pbtxt.write_text("node {}")
    calls = []

    def fake_convert(p, t):
        calls.append(p.read_bytes())
        return {"front.stem.conv.weight": torch.full((2,), float(len(calls)))}

    monkeypatch.setattr(ssb.resources, "ssd_mobilenet_v2_files", lambda: (pb, pbtxt))
    monkeypatch.setattr(tw, "convert_files", fake_convert)
    monkeypatch.setenv("SSB_CACHE", str(tmp_path / "cache"))
    first = tw.load_teacher_state()
    again = tw.load_teacher_state()
    assert len(calls) == 1 and torch.equal(first["front.stem.conv.weight"], again["front.stem.conv.weight"])
    (cached,) = (tmp_path / "cache").glob("*.pt")
    assert tw.teacher_sha256(pb)[:16] in cached.name
    pb.write_bytes(b"frozen graph v2")  # other weights -> other key -> converted again
    assert tw.load_teacher_state()["front.stem.conv.weight"][0] == 2.0
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2
    tw.load_teacher_state(refresh=True)
    assert len(calls) == 3


def test_unwritable_cache_warns_but_returns_weights(tmp_path, monkeypatch):
    import ssb.resources

    pb = tmp_path / "graph.pb"
    pb.write_bytes(b"frozen graph")
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setattr(ssb.resources, "ssd_mobilenet_v2_files", lambda: (pb, pb))
    monkeypatch.setattr(tw, "convert_files", lambda p, t: {"w": torch.ones(1)})
    monkeypatch.setenv("SSB_CACHE", str(blocker / "sub"))
    with pytest.warns(UserWarning, match="could not cache"):
        assert torch.equal(tw.load_teacher_state()["w"], torch.ones(1))
