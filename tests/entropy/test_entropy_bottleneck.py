"""EntropyBottleneck: training proxies, integer tables, coding, bad input."""

from __future__ import annotations

import io

import pytest
import torch

from ssb.entropy import MAX_ABS_VALUE, EntropyBottleneck, TablesNotReadyError
from ssb.errors import LimitExceededError, MalformedFieldError, ModelMismatchError, SSBError


@pytest.fixture
def eb() -> EntropyBottleneck:
    torch.manual_seed(0)
    return EntropyBottleneck(6)


def test_forward_modes_and_gradients(eb):
    z = (torch.randn(2, 6, 5, 7) * 4).requires_grad_()
    z_noise, lik = eb(z, quant_mode="noise")
    assert z_noise.shape == lik.shape == z.shape
    assert (z_noise - z).abs().max() <= 0.5 and not torch.equal(z_noise, torch.round(z_noise))
    assert lik.min() >= eb.likelihood_bound and lik.max() <= 1

    z_ste, lik = eb(z, quant_mode="ste")
    assert torch.equal(z_ste, torch.round(z))
    (grad,) = torch.autograd.grad(z_ste.sum(), z)
    assert torch.equal(grad, torch.ones_like(z))
    lik.log().sum().backward()
    assert all(p.grad is not None for p in eb.parameters())

    z_hard, _ = eb(z, quant_mode="hard")
    (grad,) = torch.autograd.grad(z_hard.sum(), z)
    assert torch.equal(grad, torch.zeros_like(z))

    eb.eval()
    assert torch.equal(eb(z)[0], torch.round(z))  # eval default: hard
    eb.train()
    eb.quant_mode = "ste"
    assert torch.equal(eb(z)[0], torch.round(z))
    with pytest.raises(SSBError):
        eb.quant_mode = "soft"


def test_likelihoods_sum_to_one_over_integers(eb):
    values = torch.arange(-400, 401, dtype=torch.float32).reshape(1, 1, -1, 1).expand(1, 6, -1, 1)
    _, lik = eb(values, quant_mode="hard")
    assert torch.allclose(lik.sum(dim=2), torch.ones(1, 6, 1), atol=1e-4)


def test_compress_before_update_raises(eb):
    with pytest.raises(TablesNotReadyError, match="update"):
        eb.compress(torch.zeros(1, 6, 2, 2))
    with pytest.raises(TablesNotReadyError):
        eb.decompress(b"", (1, 6, 2, 2))


def test_update_is_idempotent_and_deterministic(eb):
    assert eb.update() is True
    pmf = eb._pmf.clone()
    assert eb.update() is False and torch.equal(eb._pmf, pmf)
    assert eb.update(force=True) is True
    assert torch.equal(eb._pmf, pmf)
    assert torch.equal(eb._pmf.sum(dim=1), torch.full((6,), 1 << 24, dtype=torch.int64))


@pytest.mark.parametrize("shape", [(2, 6, 9, 11), (6, 4, 3), (1, 6, 1, 1)])
def test_round_trip_with_outliers(eb, shape):
    eb.update()
    z = torch.randn(shape) * 5
    z.view(-1)[0] = 3e5
    z.view(-1)[-1] = -(2.0**29)
    z.view(-1)[len(z.view(-1)) // 2] = float(MAX_ABS_VALUE - 63)  # representable in float32
    data = eb.compress(z)
    assert torch.equal(eb.decompress(data, shape), torch.round(z))
    assert eb.decompress(data, torch.Size(shape), dtype=torch.float64).dtype == torch.float64


def test_state_dict_carries_the_tables(eb):
    eb.update()
    z = torch.randn(1, 6, 8, 8) * 3
    data = eb.compress(z)
    buf = io.BytesIO()
    torch.save(eb.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(123)
    fresh = EntropyBottleneck(6)  # other float weights, empty tables
    fresh.load_state_dict(torch.load(buf))
    assert fresh.updated
    assert torch.equal(fresh.decompress(data, z.shape), torch.round(z))
    assert fresh.compress(z) == data


def test_bad_input_is_refused(eb):
    eb.update()
    data = eb.compress(torch.randn(1, 6, 4, 4) * 3)
    with pytest.raises(ModelMismatchError):
        eb.compress(torch.zeros(1, 5, 4, 4))
    with pytest.raises(ModelMismatchError):
        eb.decompress(data, (1, 5, 4, 4))
    with pytest.raises(SSBError):
        eb.compress(torch.zeros(6, 4))
    with pytest.raises(MalformedFieldError):
        eb.compress(torch.full((1, 6, 1, 1), float("nan")))
    with pytest.raises(LimitExceededError):
        eb.compress(torch.full((1, 6, 1, 1), 2.0**31))
    with pytest.raises(LimitExceededError):
        eb.decompress(data, (10**6, 6, 10**4, 10**4))  # refused before allocating
    with pytest.raises(MalformedFieldError):
        eb.decompress(data, (1, 6, -4, 4))
    with pytest.raises(MalformedFieldError):
        eb.decompress(data, (1, 6, "x", 4))
    with pytest.raises(SSBError):
        eb.decompress(data[:-2], (1, 6, 4, 4))
    with pytest.raises(SSBError):
        eb.decompress(data, (1, 6, 4, 3))  # fewer elements than encoded: coder not exhausted


def test_rate_matches_ideal_code_length(eb):
    eb.update()
    torch.manual_seed(1)
    z = torch.distributions.Laplace(0.0, 4.0).sample((1, 6, 64, 64))
    z[0, :, 0, :3] = 5000.0  # a few escapes
    _, lik = eb(z, quant_mode="hard")
    ideal = float(-torch.log2(lik.detach().double()).sum())
    bits = 8 * len(eb.compress(z))
    assert abs(bits / ideal - 1) < 0.03, (bits, ideal)
