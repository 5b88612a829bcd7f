"""Quantization proxies and the likelihood lower bound."""

from __future__ import annotations

import pytest
import torch

from ssb.entropy import QUANT_MODES, lower_bound, quantize
from ssb.errors import SSBError


def test_modes():
    assert QUANT_MODES == ("noise", "ste", "hard")
    x = torch.linspace(-3, 3, 101, requires_grad=True)
    means = torch.full_like(x, 0.25)
    assert torch.equal(quantize(x, "hard", means), torch.round(x - 0.25) + 0.25)
    (g,) = torch.autograd.grad(quantize(x, "ste", means).sum(), x)
    assert torch.equal(g, torch.ones_like(x))
    noisy = quantize(x, "noise")
    assert 0 < (noisy - x).abs().max() <= 0.5
    with pytest.raises(SSBError, match="quant_mode"):
        quantize(x, "round")


def test_lower_bound_gradient_pushes_up_only():
    x = torch.tensor([0.5, 2.0], requires_grad=True)
    y = lower_bound(x, 1.0)
    assert torch.equal(y, torch.tensor([1.0, 2.0]))
    (g_down,) = torch.autograd.grad(y.sum(), x)  # loss grows with y: would push x down below the bound
    assert torch.equal(g_down, torch.tensor([0.0, 1.0]))
    (g_up,) = torch.autograd.grad((-lower_bound(x, 1.0)).sum(), x)  # pushes x up: passes
    assert torch.equal(g_up, torch.tensor([-1.0, -1.0]))
