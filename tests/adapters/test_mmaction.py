"""ssb.adapters.mmaction: skeleton annotations, the mmaction2 import shim, features and results.

Tests marked ``optional`` need mmaction2 (``pip install --no-deps -r requirements/action.txt``).
They skip with the install hint when it is missing; under ``SSB_REQUIRE_ALL=1`` (CI, which installs
it) the suite's conftest turns such a skip into a failure.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ssb.adapters import mmaction as mma
from ssb.errors import MalformedFieldError, MissingDependencyError, ModelMismatchError, SSBError

STGCN = "skeleton/stgcn/stgcn_8xb16-joint-u100-80e_ntu60-xsub-keypoint-2d.py"
HEAVY = ("mmaction", "mmengine", "mmcv", "importlib_metadata")


def require_or_skip(load):
    """``load()``, or skip on :class:`MissingDependencyError` (a failure under ``SSB_REQUIRE_ALL=1``)."""
    try:
        return load()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def mmaction():
    return require_or_skip(mma.load_mmaction)


def _tracks(rng, specs, v=17, size=(576, 768)):
    """Tracks from ``(track_id, frames)`` specs, with random in-image keypoints and scores."""
    out = []
    for tid, frames in specs:
        frames = np.asarray(frames, dtype=np.int64)
        xy = rng.uniform(0, 1, (len(frames), v, 2)) * np.array([size[1], size[0]])
        out.append({"track_id": tid, "frames": frames,
                    "keypoints": np.concatenate([xy, rng.uniform(0.05, 1, (len(frames), v, 1))], axis=-1)})
    return out


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_loads_no_mmaction():
    res = _run("import sys, ssb, ssb.adapters, ssb.tasks, ssb.adapters.mmaction\n"
               f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def _load_in_fresh_python(prelude: str) -> str:
    """What a fresh interpreter prints after ``prelude`` and loading mmaction2 through the adapter
    (the shim's patches are process-wide, so each case needs its own process)."""
    res = _run(prelude + "\nfrom ssb.adapters import mmaction as m, _mmaction_compat as c\ntry:\n"
               "    m.SSBFeatureBackbone\n    print('loaded', c.patches_applied())\nexcept Exception as e:\n"
               "    print(type(e).__name__, isinstance(e, ImportError), e)\n")
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize("blocked", ["mmaction", "mmengine"])
def test_missing_package_names_the_extra(blocked):
    out = _load_in_fresh_python(f"import sys; sys.modules[{blocked!r}] = None")
    assert out.startswith("MissingDependencyError True") and blocked in out and "requirements/action.txt" in out


def test_skeleton_annotation_layout():
    rng = np.random.default_rng(0)
    tracks = _tracks(rng, [(7, [0, 1, 2, 5]), ("b", np.arange(3, 10))])
    ann = mma.to_skeleton_annotation(tracks, img_shape=(576, 768), total_frames=12, label=3, frame_dir="v/0")
    assert set(mma.ANNOTATION_KEYS) <= set(ann)
    assert ann["keypoint"].dtype == ann["keypoint_score"].dtype == np.float32
    assert ann["keypoint"].shape == (2, 12, 17, 2) and ann["keypoint_score"].shape == (2, 12, 17)
    assert ann["img_shape"] == ann["original_shape"] == (576, 768)
    assert (ann["total_frames"], ann["label"], ann["frame_dir"], ann["track_ids"]) == (12, 3, "v/0", [7, "b"])
    for m, track in enumerate(tracks):
        np.testing.assert_allclose(ann["keypoint"][m, track["frames"]], track["keypoints"][..., :2], rtol=1e-6)
        np.testing.assert_allclose(ann["keypoint_score"][m, track["frames"]], track["keypoints"][..., 2], rtol=1e-6)
        missed = np.setdiff1d(np.arange(12), track["frames"])
        assert not ann["keypoint"][m, missed].any() and not ann["keypoint_score"][m, missed].any()
    empty = mma.to_skeleton_annotation([], img_shape=(10, 20), total_frames=4)
    assert empty["keypoint"].shape == (0, 4, 17, 2) and empty["label"] == -1


def test_skeleton_annotation_takes_tensors():
    torch = pytest.importorskip("torch")
    track = _tracks(np.random.default_rng(1), [(0, [1, 2])])[0]
    ann = mma.to_skeleton_annotation(
        [{"track_id": 0, "frames": torch.tensor([1, 2]), "keypoints": torch.as_tensor(track["keypoints"])}],
        img_shape=(576, 768), total_frames=3)
    np.testing.assert_allclose(ann["keypoint"][0, 1:], track["keypoints"][..., :2], rtol=1e-6)
    ann = mma.to_skeleton_annotation([dict(track, track_id=np.int64(5))], img_shape=(576, 768), total_frames=3)
    assert ann["track_ids"] == [5] and type(ann["track_ids"][0]) is int


def _set(key, value):
    return lambda track: track.__setitem__(key, value)


#: (how to break track_id 4, the field the error must name)
BREAKS = {
    "nan": (lambda t: t["keypoints"].__setitem__((1, 5, 0), np.nan), "tracks[1].keypoints"),
    "no_score": (lambda t: t.__setitem__("keypoints", t["keypoints"][..., :2]), "tracks[1].keypoints"),
    "too_few": (lambda t: t.__setitem__("keypoints", t["keypoints"][:2]), "tracks[1].keypoints"),
    "past_end": (_set("frames", np.array([0, 2, 8])), "tracks[1].frames"),
    "negative": (_set("frames", np.array([-1, 2, 3])), "tracks[1].frames"),
    "unordered": (_set("frames", np.array([0, 3, 2])), "tracks[1].frames"),
    "repeated": (_set("frames", np.array([0, 2, 2])), "tracks[1].frames"),
    "float_frames": (_set("frames", np.array([0.0, 2.0, 3.0])), "tracks[1].frames"),
    "same_id": (_set("track_id", 9), "tracks[1].track_id"),
    "list_id": (_set("track_id", [4]), "tracks[1].track_id"),
    "missing": (lambda t: t.pop("keypoints"), "tracks[1]"),
}


@pytest.mark.parametrize("kind", sorted(BREAKS))
def test_skeleton_annotation_refuses(kind):
    good, bad = _tracks(np.random.default_rng(3), [(9, [0, 1]), (4, [0, 2, 3])])
    breaker, field = BREAKS[kind]
    breaker(bad)
    with pytest.raises(MalformedFieldError) as info:
        mma.to_skeleton_annotation([good, bad], img_shape=(576, 768), total_frames=6)
    assert info.value.field == field
    if kind not in ("missing", "list_id"):
        assert f"track {bad['track_id']}" in info.value.message


@pytest.mark.parametrize("kwargs,field", [
    ({"img_shape": (0, 10)}, "img_shape[0]"), ({"img_shape": (10,)}, "img_shape"),
    ({"total_frames": 0}, "total_frames"), ({"label": 1.5}, "label"), ({"frame_dir": 3}, "frame_dir"),
])
def test_skeleton_annotation_refuses_arguments(kwargs, field):
    with pytest.raises(SSBError) as info:
        mma.to_skeleton_annotation([], **{"img_shape": (4, 4), "total_frames": 2, **kwargs})
    assert info.value.field == field


def test_skeleton_pickle_layout():
    rng = np.random.default_rng(5)
    anns = [mma.to_skeleton_annotation(_tracks(rng, [(0, [0, 1])]), img_shape=(576, 768), total_frames=3,
                                       label=i, frame_dir=f"clip{i}") for i in range(3)]
    whole = mma.skeleton_pickle(anns)
    assert whole["split"] == {"all": ["clip0", "clip1", "clip2"]}
    assert [a["label"] for a in whole["annotations"]] == [0, 1, 2]
    parts = mma.skeleton_pickle(anns, split={"train": ["clip0", "clip2"], "val": ["clip1"]})
    assert parts["split"] == {"train": ["clip0", "clip2"], "val": ["clip1"]}
    with pytest.raises(MalformedFieldError) as info:
        mma.skeleton_pickle(anns, split={"val": ["clip9"]})
    assert info.value.field == "split.val"
    with pytest.raises(MalformedFieldError) as info:
        mma.skeleton_pickle(anns + [anns[0]])
    assert info.value.field == "annotations[3].frame_dir"
    broken = dict(anns[1], keypoint_score=np.zeros((1, 2, 17), np.float32))
    with pytest.raises(MalformedFieldError) as info:
        mma.skeleton_pickle([anns[0], broken])
    assert info.value.field == "annotations[1].keypoint"


# With mmaction2 (marked optional)


@pytest.mark.optional
def test_shim_patches_only_what_is_missing_and_checks_versions(mmaction):
    from mmaction.registry import DATASETS, MODELS, TRANSFORMS

    from ssb.adapters import _mmaction_compat as compat

    shipped = os.path.isdir(os.path.join(os.path.dirname(mmaction.__file__), "models", "localizers", "drn"))
    placeholder = getattr(sys.modules["mmaction.models.localizers.drn"], "__ssb_placeholder__", False)
    assert placeholder == (not shipped) == any("placeholder" in p for p in compat.patches_applied())
    assert mma.load_mmaction() is mmaction  # idempotent
    assert MODELS.get("SSBFeatureBackbone") is mma.SSBFeatureBackbone
    assert DATASETS.get("SSBFeatureDataset") is mma.SSBFeatureDataset
    assert TRANSFORMS.get("LoadSSBFeatures") is mma.LoadSSBFeatures
    if placeholder:
        with pytest.raises(Exception, match="issue 2714"):
            MODELS.build(dict(type="DRN"))
    out = _load_in_fresh_python("import mmcv; mmcv.__version__ = '2.2.0'")
    assert out.startswith("MissingDependencyError") and "mmcv-lite==2.1.0" in out
    out = _load_in_fresh_python("import sys; sys.modules['importlib_metadata'] = None")  # backport absent
    assert out.startswith("loaded") and "importlib_metadata -> importlib.metadata" in out


@pytest.mark.optional
def test_stgcn_from_shipped_config_consumes_annotations(mmaction, tmp_path):
    import mmengine
    import torch
    from mmaction.apis import init_recognizer
    from mmaction.datasets import PoseDataset
    from mmengine.dataset import Compose, pseudo_collate

    cfg = mmengine.Config.fromfile(str(mma.mmaction_config_path(STGCN)))
    model = init_recognizer(cfg, None, device="cpu")  # no weights: random init
    num_classes = cfg.model.cls_head.num_classes
    rng = np.random.default_rng(6)
    anns = [mma.to_skeleton_annotation(_tracks(rng, [(0, np.arange(2, 30)), (1, np.arange(0, 36, 2)), (2, [5, 6])]),
                                       img_shape=(576, 768), total_frames=36, label=4, frame_dir="walk"),
            mma.to_skeleton_annotation(_tracks(rng, [(3, np.arange(0, 20))]), img_shape=(576, 768), total_frames=20,
                                       label=1, frame_dir="wave")]

    def scores(batch):
        with torch.no_grad():
            out = model.test_step(pseudo_collate(batch))
        assert len(out) == len(batch)
        for sample in out:
            assert sample.pred_score.shape == (num_classes,) and torch.isfinite(sample.pred_score).all()
        return torch.stack([s.pred_score for s in out])

    pipeline = Compose(cfg.test_pipeline)
    direct = [pipeline(copy.deepcopy(a)) for a in anns]  # the pipeline normalises keypoints in place
    assert direct[0]["inputs"].shape == (10, 2, 100, 17, 3)  # [clips, persons, frames, joints, x/y/score]
    assert direct[0]["data_samples"].gt_label.tolist() == [4]
    by_hand = scores(direct)
    assert not torch.allclose(by_hand[0], by_hand[1])  # the network sees the keypoints

    path = tmp_path / "ssb_skeletons.pkl"
    mmengine.dump(mma.skeleton_pickle(anns, split={"test": ["wave", "walk"]}), str(path))
    dataset = PoseDataset(ann_file=str(path), pipeline=cfg.test_pipeline, split="test", test_mode=True)
    assert len(dataset) == 2
    from_pickle = scores([dataset[0], dataset[1]])
    torch.testing.assert_close(from_pickle, by_hand, rtol=1e-4, atol=1e-5)


def _clips(tmp_path, n=12, classes=3, c=32, t=4, hw=6, seed=7):
    """(samples, ann-file entries of the files): ``n`` clips whose label shifts one channel group's mean,
    a third in memory, a third in .pt files (path strings), a third in .npy files (``Path`` in dicts)."""
    import torch

    rng = np.random.default_rng(seed)
    samples, on_disk = [], []
    for i in range(n):
        label = i % classes
        feats = rng.normal(0, 1, (t, c, hw, hw)).astype(np.float32)
        feats[:, label * (c // classes):(label + 1) * (c // classes)] += 1.5
        if i % 3 == 1:
            torch.save(torch.from_numpy(feats), tmp_path / f"clip{i}.pt")
            samples.append((str(tmp_path / f"clip{i}.pt"), label))
        elif i % 3 == 2:
            np.save(tmp_path / f"clip{i}.npy", feats)
            samples.append({"features": tmp_path / f"clip{i}.npy", "label": label})
        else:
            samples.append((torch.from_numpy(feats), label))
        if i % 3:
            on_disk.append({"features": f"clip{i}.{'pt' if i % 3 == 1 else 'npy'}", "label": label})
    return samples, on_disk


def _keep_process_settings() -> dict:
    """The Runner's ``mp_cfg`` that leaves this process's start method and OpenCV thread count as they are."""
    import multiprocessing

    cv2 = sys.modules.get("cv2")  # mmcv imports it
    return {"mp_start_method": multiprocessing.get_start_method(allow_none=True) or "fork",
            "opencv_num_threads": cv2.getNumThreads() if cv2 is not None else 0}


@pytest.mark.optional
def test_runner_trains_tsn_head_on_ssb_features(mmaction, tmp_path):
    import torch
    from mmaction.registry import DATASETS
    from mmaction.structures import ActionDataSample
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    class LossLog(Hook):
        losses: dict = {}

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.losses.setdefault(runner.epoch, []).append(outputs["loss"].item())

    samples, on_disk = _clips(tmp_path)
    model_cfg = dict(
        type="Recognizer2D",
        backbone=dict(type="SSBFeatureBackbone", in_channels=32, channels=[16]),
        cls_head=dict(type="TSNHead", num_classes=3, in_channels=16, average_clips="prob"),
        data_preprocessor=dict(type="ActionDataPreprocessor", format_shape="NCHW"),
    )
    train_set = DATASETS.build(dict(type="SSBFeatureDataset", samples=samples, pipeline=[
        dict(type="LoadSSBFeatures", num_segments=3, in_channels=32), dict(type="PackActionInputs")]))
    (tmp_path / "test.json").write_text(json.dumps(on_disk))
    test_set = dict(type="SSBFeatureDataset", ann_file=str(tmp_path / "test.json"), test_mode=True,
                    data_prefix=dict(features=str(tmp_path)),
                    pipeline=[dict(type="LoadSSBFeatures", num_segments=3, test_mode=True),
                              dict(type="PackActionInputs")])  # built by the Runner, from strings only
    log = LossLog()
    loader = dict(batch_size=4, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=True),
                  collate_fn=dict(type="pseudo_collate"))
    runner = Runner(
        model=model_cfg, work_dir=str(tmp_path / "work"), default_scope="mmaction",
        train_dataloader=dict(loader, dataset=train_set),
        train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=2, val_interval=10),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1, momentum=0.9)),
        test_dataloader=dict(loader, dataset=test_set, sampler=dict(type="DefaultSampler", shuffle=False)),
        test_cfg=dict(type="TestLoop"), test_evaluator=dict(type="AccMetric"),
        custom_hooks=[log], default_hooks=dict(checkpoint=None, logger=dict(type="LoggerHook", interval=50)),
        randomness=dict(seed=0), env_cfg=dict(dist_cfg=dict(backend="gloo"), mp_cfg=_keep_process_settings()),
        visualizer=None,
    )
    before = {k: v.detach().clone() for k, v in runner.model.state_dict().items()}
    runner.train()
    assert sorted(log.losses) == [0, 1] and all(len(v) == 3 for v in log.losses.values())
    assert all(np.isfinite(v).all() for v in log.losses.values())
    assert np.mean(log.losses[1]) < np.mean(log.losses[0])
    after = runner.model.state_dict()
    assert not torch.equal(before["backbone.layers.0.conv.weight"], after["backbone.layers.0.conv.weight"])
    assert not torch.equal(before["cls_head.fc_cls.weight"], after["cls_head.fc_cls.weight"])

    metrics = runner.test()
    assert 0.0 <= metrics["acc/top1"] <= 1.0
    batch = next(iter(runner.test_dataloader))
    assert batch["inputs"][0].shape == (3, 32, 6, 6)
    runner.model.eval()
    with torch.no_grad():
        out = runner.model.test_step(batch)
    assert all(isinstance(s, ActionDataSample) for s in out) and len(out) == 4
    for sample in out:
        assert sample.pred_score.shape == (3,)
        torch.testing.assert_close(sample.pred_score.sum(), torch.tensor(1.0))


@pytest.mark.optional
@pytest.mark.parametrize("channels", [(), (8,), (24, 8)])
def test_feature_recognizer_cfg_builds(mmaction, channels):
    import torch
    from mmaction.registry import MODELS
    from mmaction.structures import ActionDataSample
    from mmengine.registry import init_default_scope

    init_default_scope("mmaction")
    model = MODELS.build(mma.feature_recognizer_cfg(5, in_channels=32, channels=channels)).eval()
    assert model.backbone.out_channels == (channels[-1] if channels else 32)
    feats = torch.randn(2, 3, 32, 38, 38)  # [N, T, C, H, W]: the reference model's 38x38 stride-8 grid
    assert model.backbone(feats.flatten(0, 1)).shape == (6, model.backbone.out_channels, 38, 38)
    with torch.no_grad():
        out = model(feats, [ActionDataSample() for _ in range(2)], mode="predict")
    assert [tuple(s.pred_score.shape) for s in out] == [(5,), (5,)]
    with pytest.raises(ModelMismatchError):
        model.backbone(torch.randn(2, 16, 8, 8))


@pytest.mark.optional
def test_load_ssb_features_and_dataset_checks(mmaction, tmp_path):
    from mmaction.registry import DATASETS

    feats = np.random.default_rng(8).normal(size=(10, 4, 3, 3)).astype(np.float32)
    out = mma.LoadSSBFeatures(num_segments=5, test_mode=True)({"features": feats})
    assert out["frame_inds"].tolist() == [1, 3, 5, 7, 9] and out["imgs"].shape == (5, 4, 3, 3)
    np.testing.assert_array_equal(out["imgs"], feats[[1, 3, 5, 7, 9]])
    train = mma.LoadSSBFeatures(num_segments=5)({"features": feats})["frame_inds"]
    assert all(2 * k <= i < 2 * k + 2 for k, i in enumerate(train))
    assert mma.LoadSSBFeatures(num_segments=4)({"features": feats[:2]})["imgs"].shape[0] == 4
    assert mma.LoadSSBFeatures()({"features": feats})["imgs"].shape == feats.shape
    bad = feats.copy()
    bad[0, 0, 0, 0] = np.nan
    for value in [bad, feats[0], str(tmp_path / "x.txt"), str(tmp_path / "no.npy")]:
        with pytest.raises(MalformedFieldError):
            mma.LoadSSBFeatures()({"features": value})
    with pytest.raises(ModelMismatchError):
        mma.LoadSSBFeatures(in_channels=32)({"features": feats})
    np.save(tmp_path / "a.npy", feats)
    (tmp_path / "ann.json").write_text(json.dumps([{"features": "a.npy", "label": 2}]))
    ds = DATASETS.build(dict(type="SSBFeatureDataset", ann_file=str(tmp_path / "ann.json"),
                             data_prefix=dict(features=str(tmp_path))))
    item = ds[0]
    assert item["inputs"].shape == feats.shape and item["data_samples"].gt_label.tolist() == [2]
    for samples, field in [([(feats, -1)], "samples[0].label"), ([(feats[0], 1)], "samples[0].features"),
                           ([("missing.pt", 0)], "samples[0].features"), ([feats], "samples[0]")]:
        with pytest.raises(MalformedFieldError) as info:
            mma.SSBFeatureDataset(samples=samples)
        assert info.value.field == field


@pytest.mark.optional
def test_to_action_data_samples(mmaction):
    import torch
    from mmaction.structures import ActionDataSample

    results = [{"track_id": 3, "labels": np.array([4, 1]), "scores": np.array([0.2, 0.7]), "frames": (0, 15)},
               {"track_id": "p9", "labels": torch.tensor([2]), "scores": torch.tensor([0.9]), "frames": (8, 23)}]
    samples = mma.to_action_data_samples(results)
    assert all(isinstance(s, ActionDataSample) for s in samples)
    torch.testing.assert_close(samples[0].pred_score, torch.tensor([0, 0.7, 0, 0, 0.2]))
    torch.testing.assert_close(samples[1].pred_score, torch.tensor([0, 0, 0.9, 0, 0]))
    assert samples[0].pred_label.tolist() == [1] and samples[1].pred_label.tolist() == [2]
    assert (samples[1].track_id, samples[1].frames, samples[1].num_classes) == ("p9", (8, 23), 5)
    assert mma.to_action_data_samples([{**results[1], "frames": torch.tensor([8, 23])}])[0].frames == (8, 23)
    assert mma.to_action_data_samples(results, num_classes=60)[0].pred_score.shape == (60,)
    assert mma.to_action_data_samples([]) == []
    for change, field in [({"labels": np.array([1, 1])}, "labels"), ({"labels": np.array([0.5, 1.0])}, "labels"),
                          ({"labels": np.array([], np.int64), "scores": np.array([])}, "labels"),
                          ({"scores": np.array([0.1])}, "scores"), ({"scores": np.array([np.nan, 0.1])}, "scores"),
                          ({"frames": (5, 2)}, "frames"), ({"frames": 5}, "frames"), ({"frames": (-1, 2)}, "frames"),
                          ({"frames": (0.0, 2.0)}, "frames")]:
        with pytest.raises(MalformedFieldError) as info:
            mma.to_action_data_samples([{**results[0], **change}])
        assert info.value.field == f"results[0].{field}"
    with pytest.raises(MalformedFieldError):
        mma.to_action_data_samples(results, num_classes=3)


def test_requirements_file_pins_what_the_shim_supports():
    from pathlib import Path

    from ssb.adapters._mmaction_compat import INSTALL_HINT, SUPPORTED

    req = Path(__file__).parents[2] / "requirements" / "action.txt"
    pins = dict(line.split("==") for line in req.read_text().splitlines() if "==" in line and not line.startswith("#"))
    assert pins == SUPPORTED
    assert all(f"{k}=={v}" in INSTALL_HINT for k, v in SUPPORTED.items())
