"""FeatureCodec on a tiny configuration and synthetic tensors: shapes, rates, exact coding, errors."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from tiny_codec import TINY, split_features, tiny_codec

from ssb.codec.feature_codec import CompressedFeatures, FeatureCodec, FeatureCodecConfig
from ssb.errors import MalformedFieldError, SSBError


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def codec() -> FeatureCodec:
    return tiny_codec()


def _rate(out: dict) -> torch.Tensor:
    """Estimated rate of a forward pass in bits (``-log2`` of every likelihood), differentiable."""
    return sum((-torch.log2(lik)).sum() for lik in out["likelihoods"].values())


def _bits(out: dict) -> float:
    return float(_rate(out).detach())


@pytest.mark.parametrize("training", [False, True])
def test_forward_shapes_and_likelihood_range(training):
    model = tiny_codec(update=False).train(training)
    x = split_features(batch=2, height=37, width=45)  # odd sizes: padding and cropping paths
    out = model(x, torch.tensor([0, 1]))  # per-sample levels
    assert out["x_hat"].shape == x.shape
    assert out["y"].shape == (2, TINY.latent, math.ceil(37 / 2), math.ceil(45 / 2))
    assert out["likelihoods"]["y"].shape == out["y"].shape
    assert out["likelihoods"]["z"].shape == (2, TINY.hyper, math.ceil(19 / 4), math.ceil(23 / 4))
    for lik in out["likelihoods"].values():
        assert torch.all(lik >= model.gaussian_conditional.likelihood_bound) and torch.all(lik <= 1.0)
        assert torch.isfinite(lik).all()


def test_training_step_reaches_every_part():
    """A rate + distortion loss back-propagates to the transforms, the gains and the priors."""
    model = tiny_codec(update=False).train()
    x = split_features(batch=2, height=16, width=16)
    with torch.enable_grad():
        out = model(x, 1)
        loss = _rate(out) / x[0, 0].numel() + TINY.lambdas[1] * torch.mean((out["x_hat"] - x) ** 2)
        loss.backward()
    for name in ("g_a.0.weight", "g_s.0.weight", "h_a.0.weight", "h_s.net.layers.0.weight", "log_gain"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.count_nonzero(grad) > 0, name
    eb_grads = [p.grad for p in model.entropy_bottleneck.parameters() if p.grad is not None]
    assert eb_grads and any(torch.count_nonzero(g) > 0 for g in eb_grads)
    assert model.log_gain.grad[0].abs().sum() == 0  # level 0 was not used


@pytest.mark.parametrize("level", [0, 1])
@pytest.mark.parametrize("size", [(38, 38), (37, 45)])
def test_decompress_equals_eval_forward_exactly(codec, level, size):
    x = split_features(1, *size, seed=level + size[1])
    [item] = codec.compress(x, level)
    assert (item.level, item.out_hw) == (level, size)
    assert item.latent_hw == tuple(math.ceil(s / 2) for s in size)
    assert item.hyper_hw == tuple(math.ceil(s / 4) for s in item.latent_hw)
    decoded = codec.decompress(item)
    assert decoded.shape == (1, TINY.in_channels, *size)
    assert torch.equal(decoded, codec(x, level)["x_hat"])


def test_batch_compress_gives_one_item_per_image(codec):
    x = split_features(batch=3, seed=7)
    items = codec.compress(x, 1)
    assert len(items) == 3 and all(isinstance(i, CompressedFeatures) for i in items)
    assert len({i.y for i in items}) == 3  # different inputs, different strings
    for i, item in enumerate(items):  # batched float convolutions may differ in the last bit only
        single = codec(x[i : i + 1], 1)["x_hat"]
        torch.testing.assert_close(codec.decompress(item), single, atol=1e-4, rtol=1e-4)


def test_coded_size_tracks_the_estimated_rate(codec):
    """The integer tables code close to the model's own rate estimate (within 10 % + 64 bytes)."""
    x = split_features(seed=3)
    for level in range(TINY.num_levels):
        [item] = codec.compress(x, level)
        coded = 8 * (len(item.y) + len(item.z))
        estimate = _bits(codec(x, level))
        assert 0.9 * estimate - 512 <= coded <= 1.1 * estimate + 512, (level, coded, estimate)


def test_higher_level_spends_more_bits(codec):
    gains = torch.exp(codec.log_gain.detach())
    assert torch.all(gains[1] > gains[0])  # finest level last
    x = split_features(seed=4)
    sizes = [len(codec.compress(x, lv)[0].y) for lv in range(TINY.num_levels)]
    estimates = [_bits(codec(x, lv)) for lv in range(TINY.num_levels)]
    assert sizes[1] > sizes[0] and estimates[1] > estimates[0]


@pytest.mark.parametrize("level", [-1, 2, 255, [0, 2], []])
def test_level_out_of_range_is_refused(codec, level):
    x = split_features(batch=1 if not isinstance(level, list) or len(level) < 2 else 2)
    with pytest.raises(MalformedFieldError) as exc:
        codec(x, level)
    assert exc.value.field == "level"
    if not isinstance(level, list):
        with pytest.raises(MalformedFieldError, match="quality level"):
            codec.compress(x, level)


def test_decompress_refuses_item_with_bad_level(codec):
    [item] = codec.compress(split_features(), 1)
    with pytest.raises(MalformedFieldError) as exc:
        codec.decompress(dataclasses.replace(item, level=TINY.num_levels))
    assert exc.value.field == "level"


def test_coding_before_update_is_refused():
    model = tiny_codec(update=False)
    x = split_features()
    with pytest.raises(SSBError, match="update"):
        model.compress(x, 0)
    [item] = tiny_codec().compress(x, 0)
    with pytest.raises(SSBError, match="update"):
        model.decompress(item)


DAMAGE = {
    "y_cut_to_odd_length": lambda it: dataclasses.replace(it, y=it.y[:-2]),
    "z_cut_to_odd_length": lambda it: dataclasses.replace(it, z=it.z[:-1]),
    "y_trailing_zero_word": lambda it: dataclasses.replace(it, y=it.y + bytes(4)),
    "latent_larger_than_hyper_covers": lambda it: dataclasses.replace(
        it, latent_hw=(4 * it.latent_hw[0], it.latent_hw[1])),
    "latent_smaller": lambda it: dataclasses.replace(it, latent_hw=(it.latent_hw[0] - 4, it.latent_hw[1])),
    "hyper_larger": lambda it: dataclasses.replace(it, hyper_hw=(it.hyper_hw[0] * 2, it.hyper_hw[1])),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_items_raise_ssb_errors(codec, damage):
    """Damage the encoder cannot produce is refused with an SSBError, never a crash or a silent decode."""
    [item] = codec.compress(split_features(seed=5), 1)
    with pytest.raises(SSBError):
        codec.decompress(DAMAGE[damage](item))


def test_inconsistent_geometry_is_refused(codec):
    [item] = codec.compress(split_features(seed=5), 1)
    with pytest.raises(MalformedFieldError):
        codec.decompress(dataclasses.replace(item, out_hw=(2 * item.out_hw[0], item.out_hw[1])))


def test_state_dict_round_trip_codes_identically(codec):
    """An updated state_dict carries everything coding needs (tables, integer weights, gains)."""
    other = tiny_codec(seed=123, update=False)
    other.load_state_dict(codec.state_dict())
    other.eval()
    x = split_features(seed=6)
    for level in range(TINY.num_levels):
        [a], [b] = codec.compress(x, level), other.compress(x, level)
        assert (a.y, a.z) == (b.y, b.z)
        assert torch.equal(codec.decompress(a), other.decompress(a))


def test_config_needs_one_lambda_per_level():
    with pytest.raises(MalformedFieldError) as exc:
        FeatureCodecConfig(num_levels=3, lambdas=(1.0, 2.0))
    assert exc.value.field == "lambdas"
