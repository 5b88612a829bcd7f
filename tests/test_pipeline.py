"""ssb.pipeline: reading inputs (images, folders, videos, bad paths) and encode -> analyze plumbing.

The plumbing tests use the tiny codec of ``tests/codec/tiny_codec.py``, a stride-8 convolution as
the front and a probe head, so they need neither the teacher nor the shipped weights.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from ssb.errors import MalformedFieldError
from ssb.media import frames, probe
from ssb.pipeline import Models, analyze, encode

PIL_Image = pytest.importorskip("PIL.Image")

_TINY_CODEC = Path(__file__).parent / "codec" / "tiny_codec.py"
_spec = importlib.util.spec_from_file_location("tiny_codec", _TINY_CODEC)
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)


def _png(path: Path, array: np.ndarray) -> np.ndarray:
    PIL_Image.fromarray(array).save(path)
    return array


@pytest.fixture()
def folder(tmp_path) -> tuple[Path, list[np.ndarray]]:
    """b.png and a.png (read in name order), plus a text file the reader must skip."""
    rng = np.random.default_rng(0)
    b = _png(tmp_path / "b.png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    a = _png(tmp_path / "a.png", rng.integers(0, 256, (16, 24, 3), dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path, [a, b]


def test_folder_images_in_name_order(folder):
    path, arrays = folder
    got = list(frames(path))
    assert [f.index for f in got] == [0, 1] and not any(f.video for f in got)
    for f, want in zip(got, arrays):
        assert f.image.dtype == np.uint8 and np.array_equal(f.image, want)
    [one] = list(frames(path, frames=range(1, 2)))
    assert one.index == 1 and np.array_equal(one.image, arrays[1])
    assert probe(path).kind == "folder" and probe(path).count == 2


def test_single_grayscale_image_becomes_rgb(tmp_path):
    gray = _png(tmp_path / "g.png", np.arange(12 * 10, dtype=np.uint8).reshape(12, 10))
    [f] = list(frames(tmp_path / "g.png"))
    assert f.index == 0 and f.image.shape == (12, 10, 3) and np.array_equal(f.image[..., 1], gray)


def test_missing_path_names_the_path(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError) as exc:
        list(frames(missing))
    assert exc.value.filename == str(missing)


@pytest.mark.parametrize("name", ["fake.png", "notes.txt"])
def test_non_image_file_is_refused(tmp_path, name):
    (tmp_path / name).write_bytes(b"this is not an image at all")
    with pytest.raises(MalformedFieldError) as exc:
        list(frames(tmp_path / name))
    assert exc.value.field.startswith("input") and name in str(exc.value)


def test_folder_without_images_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(MalformedFieldError) as exc:
        list(frames(tmp_path))
    assert exc.value.field == "input"


def test_unreadable_video_is_refused(tmp_path):
    pytest.importorskip("cv2")
    (tmp_path / "clip.avi").write_bytes(b"RIFF but not really a video" * 10)
    with pytest.raises(MalformedFieldError):
        list(frames(tmp_path / "clip.avi"))


@pytest.mark.media
def test_video_frames_stream_with_timestamps():
    pytest.importorskip("cv2")
    from ssb.resources import vtest_path

    path = vtest_path()
    got = list(frames(path, frames=range(3, 5), warmup=2))
    assert [(f.index, f.info.get("warmup", False)) for f in got] == [(1, True), (2, True), (3, False), (4, False)]
    assert [f.pts for f in got] == [100_000, 200_000, 300_000, 400_000] and all(f.video for f in got)
    assert all(f.image.shape == (576, 768, 3) and f.image.dtype == np.uint8 for f in got)
    assert not np.array_equal(got[2].image, got[3].image)
    assert probe(path).kind == "video" and probe(path).fps == 10.0


# -- encode -> analyze, without the teacher ------------------------------------------------------
def _probe(features, image_sizes):
    """A stand-in head: one 'person' (1) and one 'car' (3) per frame, scored from the features."""
    split = features["split"]
    assert split.shape[:2] == (1, tiny.TINY.in_channels) and len(image_sizes) == 1
    h, w = image_sizes[0]
    s = torch.sigmoid(split.mean())
    return [{"boxes": torch.tensor([[0.0, 0.0, w / 2, h / 2], [w / 2, h / 2, w, h]]),
             "labels": torch.tensor([1, 3]), "scores": torch.stack([s, 1 - s])}]


_probe.required_features = {"split": {"channels": tiny.TINY.in_channels, "stride": 8}}


@pytest.fixture()
def models():
    """Tiny codec, stride-8 convolution front, probe head; one torch thread; no teacher needed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Models(zoo=tiny.TinyModels(), heads={"probe": _probe})
    torch.set_num_threads(before)


def test_encode_then_analyze_without_pixels(folder, models, tmp_path):
    path, arrays = folder
    out = tmp_path / "out.ssb"
    stats = encode(path, out, quality=1, index_objects=False, models=models)
    assert stats.frames == 2 and stats.stream_bytes == out.stat().st_size > stats.payload_bytes > 0

    res = analyze(out, tasks=("probe",), models=models)
    assert [f.frame_index for f in res.frames] == [0, 1]
    assert [f.image_size for f in res.frames] == [a.shape[:2] for a in arrays]
    assert res.file_size == out.stat().st_size and 0 < res.bytes_read <= res.file_size
    assert res.seconds >= res.decode_seconds + res.head_seconds - 1e-6

    one = analyze(out, tasks=("probe",), frames=[1], classes=["car"], models=models)
    [frame] = one.frames
    pred = frame.predictions["probe"]
    assert frame.frame_index == 1 and pred["labels"].tolist() == [3] and len(pred["boxes"]) == 1
    assert one.bytes_read < res.bytes_read  # frame 0's BASE unit was not read


def test_encode_refuses_a_quality_the_model_lacks(folder, models, tmp_path_factory):
    path, _ = folder
    out_dir = tmp_path_factory.mktemp("out")
    with pytest.raises(MalformedFieldError) as exc:
        encode(path, out_dir / "out.ssb", quality=tiny.TINY.num_levels, index_objects=False, models=models)
    assert exc.value.field == "level"
    assert not (out_dir / "out.ssb").exists()  # nothing is written for a refused quality


def test_a_head_the_stream_cannot_feed_is_refused_before_decoding(folder, models, tmp_path):
    from ssb.errors import ModelMismatchError

    path, _ = folder
    out = tmp_path / "out.ssb"
    encode(path, out, quality=1, index_objects=False, models=models)

    def wide(features, image_sizes):  # pragma: no cover - never called
        raise AssertionError("a head refused at planning time ran")

    wide.required_features = {"split": {"channels": 32, "stride": 8}}
    models.heads["wide"] = wide
    with pytest.raises(ModelMismatchError) as exc:
        analyze(out, tasks=("wide",), models=models)
    assert "8 at 8" in str(exc.value) and exc.value.field == "task[wide].required_features.split"


def test_loading_models_leaves_autograd_alone(tmp_path, monkeypatch):
    from ssb.codec import zoo
    from ssb.recipes.train import save_codec

    monkeypatch.setattr(zoo, "teacher_fingerprint", lambda: "0" * 16)
    save_codec(tiny.tiny_codec(), tmp_path / "tiny.pt", name="tiny-test.s8", version=1)
    assert torch.is_grad_enabled()
    try:
        models = Models(tmp_path / "tiny.pt")
        assert models.zoo.codec().config == tiny.TINY
        assert torch.is_grad_enabled(), "loading models switched autograd off for the caller"
    finally:
        torch.set_grad_enabled(True)


def test_streaming_analysis_runs_without_autograd_and_leaves_the_callers_mode(tmp_path):
    """iter_analyze / iter_pixels are generators: every step runs under no_grad, the caller's mode is
    untouched between steps (a wrapper that only covered the generator's creation built autograd graphs)."""
    import torch

    from ssb import pipeline

    seen = []

    @pipeline._no_grad
    def gen():
        for i in range(3):
            seen.append(torch.is_grad_enabled())
            yield i

    assert torch.is_grad_enabled()
    for _ in gen():
        assert torch.is_grad_enabled()  # the caller's mode between steps
    assert seen == [False, False, False]
