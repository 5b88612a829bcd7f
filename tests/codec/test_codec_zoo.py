"""Weights files: save_codec -> load_codec round trip, refusals, and the shipped default weights."""

from __future__ import annotations

import pytest
import torch
from tiny_codec import TINY, split_features, tiny_codec

from ssb.codec import zoo
from ssb.errors import MissingDependencyError, ModelMismatchError
from ssb.recipes.train import save_codec

FINGERPRINT = "fedcba9876543210"


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def fake_teacher(monkeypatch):
    """A fixed teacher fingerprint (these tests are about the weights file, not the teacher)."""
    monkeypatch.setattr(zoo, "teacher_fingerprint", lambda: FINGERPRINT)


@pytest.fixture()
def saved(tmp_path, fake_teacher):
    codec = tiny_codec()
    path = tmp_path / "tiny.pt"
    save_codec(codec, path, extra={"note": "unit test"})
    return codec, path


def test_round_trip_codes_identically(saved):
    codec, path = saved
    loaded = zoo.load_codec(path)
    assert loaded.config == TINY and not loaded.training
    assert loaded.weights_path == str(path) and loaded.weights_meta == {"note": "unit test"}
    x = split_features(seed=8)
    for level in range(TINY.num_levels):
        [a], [b] = codec.compress(x, level), loaded.compress(x, level)
        assert (a.y, a.z) == (b.y, b.z)
        assert torch.equal(codec.decompress(a), loaded.decompress(a))


def test_weights_for_another_teacher_are_refused(saved, monkeypatch):
    _, path = saved
    monkeypatch.setattr(zoo, "teacher_fingerprint", lambda: "0" * 16)
    with pytest.raises(ModelMismatchError) as exc:
        zoo.load_codec(path)
    assert exc.value.field == "weights.teacher"
    assert zoo.load_codec(path, check_teacher=False).config == TINY


def test_weights_of_another_model_are_refused(saved, tmp_path):
    _, path = saved
    ckpt = torch.load(path, weights_only=True)
    ckpt["model_id"] = "other-model"
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(ModelMismatchError) as exc:
        zoo.load_codec(tmp_path / "other.pt")
    assert exc.value.field == "weights.model_id"


@pytest.mark.parametrize("content", [None, b"not a torch file", b""])
def test_missing_or_unreadable_weights_are_refused(tmp_path, fake_teacher, content):
    path = tmp_path / "w.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelMismatchError) as exc:
        zoo.load_codec(path)
    assert exc.value.field == "weights"


def test_ssb_weights_environment_variable(saved, monkeypatch):
    _, path = saved
    monkeypatch.setenv("SSB_WEIGHTS", str(path))
    assert zoo.default_weights_path() == path
    assert zoo.load_codec().config == TINY


def test_shipped_weights_are_ready_to_code(monkeypatch):
    monkeypatch.delenv("SSB_WEIGHTS", raising=False)
    path = zoo.default_weights_path()
    if not path.is_file():
        pytest.skip(f"no shipped weights at {path} (built by `ssb train`)")
    codec = zoo.load_codec(path, check_teacher=False)
    assert codec.config.num_levels >= 4  # issue 3: at least 4 rate points
    assert codec.entropy_bottleneck.updated and codec.gaussian_conditional.updated and codec.h_s.net.frozen
    x = torch.randn(1, codec.config.in_channels, 38, 38, generator=torch.Generator().manual_seed(0))
    coarse, fine = (len(codec.compress(x, lv)[0].y) for lv in (0, codec.config.num_levels - 1))
    assert coarse < fine


@pytest.mark.teacher
def test_shipped_weights_match_the_installed_teacher(monkeypatch):
    monkeypatch.delenv("SSB_WEIGHTS", raising=False)
    if not zoo.default_weights_path().is_file():
        pytest.skip("no shipped weights")
    try:
        zoo.load_codec()  # check_teacher=True
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
