"""GaussianConditional: training path, exact table selection, coding, escapes."""

from __future__ import annotations

import io

import pytest
import torch

from ssb.entropy import GaussianConditional, TablesNotReadyError, default_scale_table
from ssb.errors import LimitExceededError, MalformedFieldError, SSBError


@pytest.fixture
def gc() -> GaussianConditional:
    return GaussianConditional()


def _sample(shape=(2, 8, 16, 16), seed=0):
    g = torch.Generator().manual_seed(seed)
    scales = torch.exp(torch.empty(shape).uniform_(-2.5, 5.0, generator=g))
    return torch.randn(shape, generator=g) * scales, scales


def test_forward_and_modes(gc):
    y, scales = _sample()
    y.requires_grad_()
    y_hat, lik = gc(y, scales, quant_mode="ste")
    assert torch.equal(y_hat, torch.round(y)) and lik.shape == y.shape
    assert lik.min() >= gc.likelihood_bound and lik.max() <= 1
    means = torch.full_like(y, 0.3)
    y_hat, _ = gc(y, scales, means, quant_mode="hard")
    assert torch.equal(y_hat, torch.round(y - 0.3) + 0.3)
    y_noise, _ = gc(y, scales)  # training default: noise
    assert (y_noise - y).abs().max() <= 0.5
    gc.eval()
    assert torch.equal(gc(y, scales)[0], torch.round(y))


def test_default_scale_table():
    table = default_scale_table()
    assert len(table) == 64 and table[0] == pytest.approx(0.11) and table[-1] == pytest.approx(256)
    with pytest.raises(SSBError):
        GaussianConditional([1.0, 0.5])


def test_build_indexes_is_integer_and_picks_the_nearest_table_in_log_scale(gc):
    with pytest.raises(TablesNotReadyError):
        gc.build_indexes(torch.tensor([3]))
    gc.update()
    table = gc.scale_table
    thr = gc._scale_thresholds
    assert thr.dtype == torch.int64
    codes = torch.arange(0, 256 * 300, dtype=torch.int64)
    idx = gc.build_indexes(codes)
    assert idx.dtype == torch.int64 and int(idx.min()) == 0 and int(idx.max()) == len(table) - 1
    assert torch.all(idx[1:] >= idx[:-1])
    # each threshold code switches to the next table, one code below does not
    assert torch.equal(gc.build_indexes(thr), torch.arange(1, len(table)))
    assert torch.equal(gc.build_indexes(thr - 1), torch.arange(0, len(table) - 1))
    scale = codes[1:].double() / 256
    nearest = torch.argmin((torch.log(scale)[:, None] - torch.log(table)[None, :]).abs(), dim=1)
    assert (idx[1:] - nearest).abs().max() <= 1 and (idx[1:] == nearest).float().mean() > 0.99
    with pytest.raises(SSBError):
        gc.build_indexes(torch.tensor([1.5]))


def test_round_trip_with_means_and_outliers(gc):
    gc.update()
    y, scales = _sample()
    y.view(-1)[:5] = torch.tensor([1e4, -1e4, 3e6, -(2.0**29), 40.0])
    means = torch.round(torch.randn_like(y) * 8) / 4  # exact dyadic means
    idx = gc.build_indexes(gc.quantize_scales(scales))
    data = gc.compress(y, idx, means)
    y_hat = gc.decompress(data, idx, means)
    assert torch.equal(y_hat, torch.round(y - means) + means)


def test_update_idempotent_and_state_dict(gc):
    assert gc.update() and not gc.update()
    pmf = gc._pmf.clone()
    assert gc.update(force=True) and torch.equal(gc._pmf, pmf)
    y, scales = _sample(seed=3)
    idx = gc.build_indexes(gc.quantize_scales(scales))
    data = gc.compress(y, idx)
    buf = io.BytesIO()
    torch.save(gc.state_dict(), buf)
    buf.seek(0)
    fresh = GaussianConditional([0.5, 1.0])  # other table length: buffers are resized on load
    fresh.load_state_dict(torch.load(buf))
    assert torch.equal(fresh.build_indexes(gc.quantize_scales(scales)), idx)
    assert torch.equal(fresh.decompress(data, idx), torch.round(y))


def test_bad_input_is_refused(gc):
    with pytest.raises(TablesNotReadyError):
        gc.compress(torch.zeros(3), torch.zeros(3, dtype=torch.int64))
    gc.update()
    y, scales = _sample((1, 4, 4, 4))
    idx = gc.build_indexes(gc.quantize_scales(scales))
    data = gc.compress(y, idx)
    with pytest.raises(MalformedFieldError):
        gc.compress(y, idx[..., :2])
    with pytest.raises(MalformedFieldError):
        gc.decompress(data, idx + 64)
    with pytest.raises(MalformedFieldError):
        gc.decompress(data, idx.float())
    with pytest.raises(LimitExceededError):
        gc.decompress(data, idx, max_symbols=10)
    with pytest.raises(SSBError):
        gc.decompress(data[:-1], idx)
    with pytest.raises(SSBError):
        gc.decompress(data + data, idx)


def test_rate_matches_ideal_code_length(gc):
    gc.update()
    y, scales = _sample((1, 16, 32, 32), seed=5)
    _, lik = gc(y, scales, quant_mode="hard")
    ideal = float(-torch.log2(lik.detach().double()).sum())
    bits = 8 * len(gc.compress(y, gc.build_indexes(gc.quantize_scales(scales))))
    assert abs(bits / ideal - 1) < 0.03, (bits, ideal)
