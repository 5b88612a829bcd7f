"""Quantization proxies shared by the entropy models.

Three modes, chosen per call or through a module's ``quant_mode`` attribute:

``"noise"``
    ``x + u`` with ``u ~ U(-0.5, 0.5)``: the differentiable proxy of Ballé et al. (2018).
``"ste"``
    ``round(x - m) + m`` in the forward pass, identity gradient to ``x`` (straight-through).
``"hard"``
    ``round(x - m) + m`` with no gradient to ``x`` (``round`` has zero derivative): true
    quantization, used at inference and in the second phase of soft-then-hard training
    (Guo et al., 2021) where the encoder is frozen.

Soft-then-hard training is thus ``quant_mode="noise"`` first, then ``"ste"`` (or ``"hard"``
with a frozen encoder).  ``m`` is an optional offset (the Gaussian means); rounding is
``torch.round`` (half to even), the same function :meth:`compress` uses.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ssb.errors import SSBError

QuantMode = Literal["noise", "ste", "hard"]
QUANT_MODES: tuple[str, ...] = ("noise", "ste", "hard")

__all__ = ["QuantMode", "QUANT_MODES", "check_quant_mode", "quantize", "lower_bound"]


def check_quant_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`QUANT_MODES`, else raise :class:`SSBError`."""
    if mode not in QUANT_MODES:
        raise SSBError(f"quant_mode must be one of {QUANT_MODES}, got {mode!r}", field="quant_mode")
    return mode


def quantize(x: Tensor, mode: str, means: Tensor | None = None) -> Tensor:
    """Quantize ``x`` (around ``means`` if given) with the proxy ``mode``; see the module docstring."""
    check_quant_mode(mode)
    if mode == "noise":
        return x + torch.empty_like(x).uniform_(-0.5, 0.5)
    centred = x if means is None else x - means
    rounded = torch.round(centred)
    if mode == "ste":
        rounded = centred + (rounded - centred).detach()
    return rounded if means is None else rounded + means


class _LowerBound(torch.autograd.Function):
    """``max(x, bound)`` whose gradient still flows where it would push ``x`` up past ``bound``."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return torch.clamp_min(x, bound)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad < 0)
        return grad * pass_through.to(grad.dtype), None


def lower_bound(x: Tensor, bound: float) -> Tensor:
    """``max(x, bound)`` with the gradient of CompressAI's ``LowerBound`` (no dead zone below ``bound``)."""
    return _LowerBound.apply(x, float(bound))
