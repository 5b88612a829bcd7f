"""The model zoo: identities stored in checkpoints, one loader, every published version addressable."""

from __future__ import annotations

import pytest
import torch
from tiny_codec import TINY, split_features, tiny_codec

from ssb.codec import zoo
from ssb.errors import MissingDependencyError, ModelMismatchError
from ssb.recipes.train import save_codec

FINGERPRINT = "fedcba9876543210"


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture()
def fake_teacher(monkeypatch):
    """A fixed teacher fingerprint (these tests are about the weights file, not the teacher)."""
    monkeypatch.setattr(zoo, "teacher_fingerprint", lambda: FINGERPRINT)


@pytest.fixture()
def saved(tmp_path, fake_teacher):
    codec = tiny_codec()
    path = tmp_path / "tiny.pt"
    save_codec(codec, path, extra={"note": "unit test"}, name="tiny-test.s8", version=3)
    return codec, path


def test_round_trip_codes_identically_and_keeps_its_identity(saved):
    codec, path = saved
    loaded = zoo.load("codec", path)
    assert loaded.config == TINY and not loaded.training
    assert loaded.identity == zoo.Identity("codec", "tiny-test.s8", 3) and loaded.identity.id == "tiny-test.s8@3"
    assert loaded.meta == {"note": "unit test"} and loaded.front_name == "ssd-mbv2.s8"
    x = split_features(seed=8)
    for level in range(TINY.num_levels):
        [a], [b] = codec.compress(x, level), loaded.compress(x, level)
        assert (a.y, a.z) == (b.y, b.z)
        assert torch.equal(codec.decompress(a), loaded.decompress(a))


def test_a_retrained_codec_is_a_new_version(tmp_path, fake_teacher):
    save_codec(tiny_codec(), tmp_path / "next.pt")
    ident = zoo.load("codec", tmp_path / "next.pt").identity
    assert ident.name == "omni-ssd-mbv2.s8" and ident.version == zoo.next_version("omni-ssd-mbv2.s8") >= 2
    assert ident.id not in zoo.ZOO  # never the id of a published model


def test_weights_for_another_teacher_are_refused(saved, monkeypatch):
    _, path = saved
    monkeypatch.setattr(zoo, "teacher_fingerprint", lambda: "0" * 16)
    with pytest.raises(ModelMismatchError) as exc:
        zoo.load("codec", path)
    assert exc.value.field == "weights.teacher"


def test_identity_is_read_from_the_checkpoint_not_the_path(saved, tmp_path):
    _, path = saved
    ckpt = torch.load(path, weights_only=True)
    ckpt["ssb"]["kind"] = "pose"
    torch.save(ckpt, tmp_path / "omni_ssd_s8.pt")  # a name that says nothing
    with pytest.raises(ModelMismatchError) as exc:
        zoo.load("codec", tmp_path / "omni_ssd_s8.pt")
    assert exc.value.field == "weights.kind"
    del ckpt["ssb"]
    torch.save(ckpt, tmp_path / "anonymous.pt")
    with pytest.raises(ModelMismatchError, match="no identity"):
        zoo.load("codec", tmp_path / "anonymous.pt")


@pytest.mark.parametrize("content", [None, b"not a torch file", b""])
def test_missing_or_unreadable_weights_are_refused(tmp_path, fake_teacher, content):
    path = tmp_path / "w.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelMismatchError) as exc:
        zoo.load("codec", path)
    assert exc.value.field == "weights"


def test_ssb_weights_environment_variable(saved, monkeypatch):
    _, path = saved
    monkeypatch.setenv("SSB_WEIGHTS", str(path))
    assert zoo.load("codec").identity.id == "tiny-test.s8@3"


def test_every_published_model_is_addressable_by_its_id_and_its_0_1_alias():
    for card in zoo.ZOO.values():
        assert zoo.card(card.id) is card
        for alias in card.aliases:
            assert zoo.card(alias) is card
        ckpt = zoo.read(card.kind, card.id)
        assert ckpt["identity"].id == card.id and ckpt["identity"].behind == card.behind
    with pytest.raises(ModelMismatchError, match="not in this release's zoo"):
        zoo.card("omni-ssd-mbv2.s8@99")


def test_release_0_1_checkpoints_are_recognised(tmp_path):
    """A 0.1 head checkpoint recorded the SHA-256 of the 0.1 codec file; the zoo maps it to that codec's id."""
    legacy = {"model_id": "pose-roi.s8", "config": {}, "state_dict": {},
              "codec_sha256": zoo.card("omni-ssd-mbv2.s8@1").legacy_sha256}
    torch.save(legacy, tmp_path / "old_pose.pt")
    ident = zoo.read("pose", tmp_path / "old_pose.pt")["identity"]
    assert (ident.kind, ident.id, ident.behind) == ("pose", "pose-roi.s8@1", "omni-ssd-mbv2.s8@1")
    legacy["codec_sha256"] = "0" * 64  # trained behind a codec this release does not know
    torch.save(legacy, tmp_path / "other_pose.pt")
    with pytest.raises(ModelMismatchError, match="trained behind"):
        zoo.read("pose", tmp_path / "other_pose.pt", behind="omni-ssd-mbv2.s8@1")


def test_shipped_weights_are_ready_to_code(monkeypatch):
    monkeypatch.delenv("SSB_WEIGHTS", raising=False)
    monkeypatch.setattr(zoo, "teacher_fingerprint", lambda: zoo.read("codec")["ssb"]["teacher"])
    codec = zoo.load("codec")
    assert codec.identity.id == zoo.MODEL_ID and codec.config.num_levels == zoo.card(zoo.MODEL_ID).levels
    assert codec.entropy_bottleneck.updated and codec.gaussian_conditional.updated and codec.h_s.net.frozen
    x = torch.randn(1, codec.config.in_channels, 38, 38, generator=torch.Generator().manual_seed(0))
    coarse, fine = (len(codec.compress(x, lv)[0].y) for lv in (0, codec.config.num_levels - 1))
    assert coarse < fine


@pytest.mark.teacher
def test_shipped_weights_match_the_installed_teacher(monkeypatch):
    monkeypatch.delenv("SSB_WEIGHTS", raising=False)
    try:
        zoo.load("codec")  # checks the teacher fingerprint
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
