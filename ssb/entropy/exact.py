"""Bit-exact integer convolutions for the hyper-synthesis that chooses the decoder's tables.

Why
---
The decoder picks each latent's probability table from scales computed on the decoded
hyper-latents.  Float convolutions differ in the last bit across thread counts, CPUs and
GPUs; a different bit can pick a different table and derail the entropy decoder.  These
modules train in float with fake quantization and, once frozen, compute with integers only.

Number formats
--------------
An activation with ``f`` fractional bits is an integer *code* ``X`` meaning ``X * 2**-f``.
A layer's weights are, per output channel ``c``, integers ``W`` (``|W| <= q = 2**(b-1) - 1``
for ``weight_bits = b``) times ``2**e[c]``; its bias is an integer ``B[c]`` on the
accumulator grid ``2**(e[c] - f_in)``, ``|B| <= 2**40`` (``e[c]`` is raised for a channel whose
weights are too small for its bias).  The frozen layer computes

    acc = sum(W * X) + B                      (float64 tensors holding integers)
    Y   = floor(acc * 2**(e[c] - f_in + f_out) + 1/2)   (power-of-two rescale, round half up)
    Y   = clamp(relu(Y) if relu else Y, out_min, out_max)

Bound argument (checked by :meth:`freeze`): with fan-in ``N`` (terms per output: ``C_in/groups
* kh * kw``, an upper bound for transposed convolutions too), ``|X| <= in_max`` (inputs are
clamped) and ``|W| <= q``, every product and every partial sum of ``acc`` in *any* order has
magnitude at most ``N * q * in_max + max|B| <= ACC_LIMIT = 2**48 < 2**53``, so every float64
operation of the convolution is exact and the result does not depend on the summation order,
the thread count, or CPU versus GPU.  The rescale multiplies by a power of two (exact), adds
``2**(k-1) < 2**52`` to an integer below ``2**48`` (exact) and floors (exact).  The 2**5 margin
below 2**53 is a safety net: should a backend ever use a transform-based (Winograd/FFT)
float64 convolution, whose results are not exact, ``torch.round(acc)`` restores the integer
as long as that error stays below 1/2.

Training (not frozen) runs the same arithmetic in float with straight-through fake
quantization of weights (per output channel, power-of-two scale), biases and activations
(clipped STE), so the frozen network computes what was trained, up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssb.errors import LimitExceededError, MalformedFieldError, SSBError

__all__ = ["ACC_LIMIT", "IntegerConv2d", "IntegerConvTranspose2d", "ExactSequential", "fake_quantize"]

ACC_LIMIT = 1 << 48
_MAX_DOWN_SHIFT = 52
_BIAS_BITS = 40  # |B| <= 2**40


def _ceil_log2(x: Tensor) -> Tensor:
    """Smallest integer ``e`` with ``x <= 2**e`` for ``x > 0`` (exact, via frexp); a very low value for 0."""
    mant, exp = torch.frexp(x)
    exp = (exp - (mant == 0.5).to(exp.dtype)).to(torch.int64)  # x = 2**(exp-1) exactly when mant is 1/2
    return torch.where(x > 0, exp, torch.full_like(exp, -(1 << 20)))


def _round_half_up(x: Tensor) -> Tensor:
    return torch.floor(x + 0.5)


def fake_quantize(x: Tensor, frac_bits: int, lo: int, hi: int) -> Tensor:
    """``clamp(floor(x * 2**f + 1/2), lo, hi) * 2**-f`` with a clipped straight-through gradient."""
    unit = 2.0**frac_bits
    clipped = torch.clamp(x, lo / unit, hi / unit)
    q = torch.clamp(_round_half_up(clipped * unit), lo, hi) / unit
    return clipped + (q - clipped).detach()


class _ExactConv(nn.Module):
    """Fake-quantized / frozen-integer behaviour shared by the two convolution classes.

    Subclasses are also ``nn.Conv2d`` / ``nn.ConvTranspose2d`` and define ``_out_axis`` (the
    output-channel axis of ``weight``), ``_fan_in()`` and ``_conv(x, weight, bias)``.
    """

    _out_axis: int

    def _setup_exact(self, *, relu: bool, weight_bits: int, out_frac_bits: int, out_bits: int,
                     in_frac_bits: int, in_bits: int) -> None:
        if self.padding_mode != "zeros":
            raise SSBError("exact convolutions support padding_mode='zeros' only", field="padding_mode")
        if not 2 <= weight_bits <= 16 or not 2 <= out_bits <= 31 or not 2 <= in_bits <= 31:
            raise SSBError("weight_bits must be in [2, 16], in_bits and out_bits in [2, 31]", field="bits")
        self.relu = bool(relu)
        self.weight_bits = int(weight_bits)
        self.out_frac_bits = int(out_frac_bits)
        self.out_bits = int(out_bits)
        #: output code range: unsigned after ReLU, symmetric signed otherwise
        self.out_min = 0 if self.relu else -((1 << (out_bits - 1)) - 1)
        self.out_max = (1 << out_bits) - 1 if self.relu else (1 << (out_bits - 1)) - 1
        self.set_input_format(in_frac_bits, (1 << (in_bits - 1)) - 1)
        n_out = self.weight.shape[self._out_axis]
        w_dtype = torch.int8 if weight_bits <= 8 else torch.int16
        self.register_buffer("int_weight", torch.zeros(self.weight.shape, dtype=w_dtype))
        self.register_buffer("int_bias", torch.zeros(n_out, dtype=torch.int64))
        self.register_buffer("weight_exp", torch.zeros(n_out, dtype=torch.int32))
        self.register_buffer("frozen_flag", torch.zeros((), dtype=torch.bool))

    def set_input_format(self, frac_bits: int, max_abs: int) -> None:
        """Input codes have ``frac_bits`` fractional bits and magnitude ``<= max_abs`` (clamped)."""
        if "frozen_flag" in self._buffers and self.frozen:
            raise SSBError("cannot change the input format of a frozen layer; unfreeze() first",
                           field="in_format")
        self.in_frac_bits = int(frac_bits)
        self.in_max = int(max_abs)

    @property
    def frozen(self) -> bool:
        return bool(self.frozen_flag)

    @property
    def _qmax(self) -> int:
        return (1 << (self.weight_bits - 1)) - 1

    def _view(self, t: Tensor) -> Tensor:
        """Per-output-channel vector shaped to broadcast over ``weight``."""
        shape = [1] * self.weight.dim()
        shape[self._out_axis] = -1
        return t.reshape(shape)

    def _weight_exponents(self, weight: Tensor, bias: Tensor | None) -> Tensor:
        """Per output channel, the smallest ``e`` with ``max|w| <= q * 2**e`` (int64).

        Raised where needed so that the integer bias stays below ``2**40`` (a dead channel with
        tiny weights and a real bias), and bounded below by ``f_in - f_out - 52`` so that every
        rescale is exact (see the module docstring).
        """
        dims = [d for d in range(weight.dim()) if d != self._out_axis]
        exp = _ceil_log2(weight.detach().to(torch.float64).abs().amax(dim=dims) / self._qmax)
        if bias is not None:
            exp = torch.maximum(exp, _ceil_log2(bias.detach().to(torch.float64).abs() * 2.0**(
                self.in_frac_bits - _BIAS_BITS)))
        return exp.clamp_min(self.in_frac_bits - self.out_frac_bits - _MAX_DOWN_SHIFT)

    # -- training path -------------------------------------------------------------------
    def _fake_forward(self, x: Tensor) -> Tensor:
        x = fake_quantize(x, self.in_frac_bits, -self.in_max, self.in_max)
        exp = self._weight_exponents(self.weight, self.bias)
        step = self._view(torch.pow(2.0, exp.to(self.weight.dtype)))
        w_clip = torch.maximum(torch.minimum(self.weight, self._qmax * step), -self._qmax * step)
        w = w_clip + (torch.round(w_clip / step) * step - w_clip).detach()
        b = self.bias
        if b is not None:
            grid = torch.pow(2.0, (exp - self.in_frac_bits).to(b.dtype))
            b = b + (_round_half_up(b / grid) * grid - b).detach()
        y = self._conv(x, w, b)
        if self.relu:
            y = F.relu(y)
        return fake_quantize(y, self.out_frac_bits, self.out_min, self.out_max)

    # -- frozen path ---------------------------------------------------------------------
    @torch.no_grad()
    def freeze(self) -> None:
        """Compute and store the integer weights, biases and exponents (see the module doc).

        Raises :class:`LimitExceededError` if the accumulator bound exceeds ``ACC_LIMIT``.
        """
        w = self.weight.detach().to(torch.float64)
        params = [w] if self.bias is None else [w, self.bias.detach()]
        if not all(bool(torch.isfinite(p).all()) for p in params):
            raise SSBError(f"{type(self).__name__} has non-finite parameters", field="weight")
        exp = self._weight_exponents(w, self.bias)
        step = self._view(torch.pow(2.0, exp.to(torch.float64)))
        int_w = torch.clamp(torch.round(w / step), -self._qmax, self._qmax)
        if self.bias is not None:
            grid = torch.pow(2.0, (exp - self.in_frac_bits).to(torch.float64))
            int_b = _round_half_up(self.bias.detach().to(torch.float64) / grid)
        else:
            int_b = torch.zeros_like(exp, dtype=torch.float64)
        max_bias = int(int_b.abs().max().item()) if int_b.numel() else 0
        bound = self._fan_in() * self._qmax * self.in_max + max_bias
        if bound > ACC_LIMIT:
            raise LimitExceededError(
                f"{type(self).__name__}: accumulator bound fan_in({self._fan_in()}) * max|W|({self._qmax}) * "
                f"max|X|({self.in_max}) + max|B|({max_bias}) = {bound} exceeds 2**48; "
                "lower in_bits / weight_bits or the bias",
                field="accumulator")
        self.int_weight.copy_(int_w.to(self.int_weight.dtype))
        self.int_bias.copy_(int_b.to(torch.int64))
        self.weight_exp.copy_(exp.to(torch.int32))
        self.frozen_flag.fill_(True)

    def unfreeze(self) -> None:
        """Return to float training with fake quantization (integer buffers are kept but unused)."""
        self.frozen_flag.fill_(False)

    def forward_codes(self, codes: Tensor) -> Tensor:
        """Exact integer forward on input codes (float64 tensor of integers); returns output codes."""
        if not self.frozen:
            raise SSBError(f"{type(self).__name__} is not frozen: call freeze() first", field="frozen")
        x = torch.clamp(codes.to(torch.float64), -self.in_max, self.in_max)
        acc = torch.round(self._conv(x, self.int_weight.to(x), None))
        c_shape = [1, -1] + [1] * (acc.dim() - 2)
        acc = acc + self.int_bias.to(acc).reshape(c_shape)
        shift = self.weight_exp.to(torch.int64) - self.in_frac_bits + self.out_frac_bits
        k = (-shift).clamp_min(0).to(torch.float64)
        up = torch.pow(2.0, shift.clamp_min(0).to(torch.float64))
        half = torch.where(k > 0, torch.pow(2.0, k - 1), torch.zeros_like(k))
        down = torch.pow(2.0, -k)
        up, half, down = (t.to(acc.device).reshape(c_shape) for t in (up, half, down))
        y = torch.floor((acc * up + half) * down)
        if self.relu:
            y = y.clamp_min(0)
        return y.clamp(self.out_min, self.out_max)

    def forward(self, x: Tensor) -> Tensor:
        """Float values in and out: fake-quantized when training, exact once frozen."""
        if not self.frozen:
            return self._fake_forward(x)
        codes = _round_half_up(x.detach().to(torch.float64) * 2.0**self.in_frac_bits)
        return (self.forward_codes(codes) * 2.0**-self.out_frac_bits).to(x.dtype)


class IntegerConv2d(_ExactConv, nn.Conv2d):
    """``nn.Conv2d`` that trains with fake quantization and runs bit-exact once frozen.

    Parameters beyond ``nn.Conv2d``'s: ``relu`` (fused exact ReLU), ``weight_bits`` (default 8,
    ``|W| <= 127``), ``out_frac_bits``/``out_bits`` (output codes: ``out_bits``-bit unsigned
    after ReLU, signed otherwise), ``in_frac_bits``/``in_bits`` (input format; set by
    :class:`ExactSequential` from the previous layer).  Bound argument: module docstring.
    """

    _out_axis = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, *, relu: bool = False, weight_bits: int = 8,
                 out_frac_bits: int = 8, out_bits: int = 16, in_frac_bits: int = 0, in_bits: int = 16):
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                           bias)
        self._setup_exact(relu=relu, weight_bits=weight_bits, out_frac_bits=out_frac_bits, out_bits=out_bits,
                          in_frac_bits=in_frac_bits, in_bits=in_bits)

    def _fan_in(self) -> int:
        return (self.in_channels // self.groups) * self.kernel_size[0] * self.kernel_size[1]

    def _conv(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class IntegerConvTranspose2d(_ExactConv, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with the behaviour of :class:`IntegerConv2d`; ``groups`` must be 1."""

    _out_axis = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1, *, relu: bool = False,
                 weight_bits: int = 8, out_frac_bits: int = 8, out_bits: int = 16, in_frac_bits: int = 0,
                 in_bits: int = 16):
        if groups != 1:
            raise SSBError("IntegerConvTranspose2d supports groups=1 only", field="groups")
        nn.ConvTranspose2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding,
                                    output_padding, 1, bias, dilation)
        self._setup_exact(relu=relu, weight_bits=weight_bits, out_frac_bits=out_frac_bits, out_bits=out_bits,
                          in_frac_bits=in_frac_bits, in_bits=in_bits)

    def _fan_in(self) -> int:
        return self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    def _conv(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.conv_transpose2d(x, weight, bias, self.stride, self.padding, self.output_padding, 1,
                                  self.dilation)


class ExactSequential(nn.Module):
    """A chain of exact convolutions whose frozen output is an exact integer code tensor.

    Each layer's input format is set to the previous layer's output format (the first
    layer's to ``in_frac_bits``/``in_bits``: e.g. 0 fractional bits for integer ``z_hat``;
    inputs are clamped to ``+-(2**(in_bits-1) - 1)``).  Typical hyper-synthesis for scales::

        hs = ExactSequential(
            IntegerConvTranspose2d(N, N, 5, 2, 2, 1, relu=True),
            IntegerConvTranspose2d(N, N, 5, 2, 2, 1, relu=True),
            IntegerConv2d(N, M, 3, 1, 1, relu=True, out_frac_bits=gc.scale_code_bits))
        scales = hs(z_hat)                       # training (fake quant)
        hs.freeze(); idx = gc.build_indexes(hs.codes(z_hat))   # coding (exact)
    """

    def __init__(self, *layers: _ExactConv, in_frac_bits: int = 0, in_bits: int = 16):
        super().__init__()
        if not layers or not all(isinstance(m, _ExactConv) for m in layers):
            raise SSBError("ExactSequential takes one or more IntegerConv2d / IntegerConvTranspose2d",
                           field="layers")
        self.layers = nn.ModuleList(layers)
        self.in_frac_bits = int(in_frac_bits)
        self.in_max = (1 << (in_bits - 1)) - 1
        frac, max_abs = self.in_frac_bits, self.in_max
        for layer in layers:
            layer.set_input_format(frac, max_abs)
            frac, max_abs = layer.out_frac_bits, max(-layer.out_min, layer.out_max)

    @property
    def out_frac_bits(self) -> int:
        """Fractional bits of the output codes."""
        return self.layers[-1].out_frac_bits

    @property
    def frozen(self) -> bool:
        return all(layer.frozen for layer in self.layers)

    def freeze(self) -> None:
        """Freeze every layer to integers (see :meth:`IntegerConv2d.freeze`)."""
        for layer in self.layers:
            layer.freeze()

    def update(self, force: bool = False) -> bool:
        """Freeze unless already frozen (or ``force``); same contract as the entropy models' ``update``."""
        if self.frozen and not force:
            return False
        self.unfreeze()
        self.freeze()
        return True

    def unfreeze(self) -> None:
        for layer in self.layers:
            layer.unfreeze()

    def codes(self, x: Tensor) -> Tensor:
        """Exact int64 output codes (value ``code * 2**-out_frac_bits``); requires :meth:`freeze`.

        ``x`` must lie on the input grid (e.g. integer ``z_hat`` for ``in_frac_bits = 0``).
        """
        if not self.frozen:
            raise SSBError("ExactSequential.codes needs freeze() (or update()) first", field="frozen")
        if not bool(torch.isfinite(x).all()):
            raise MalformedFieldError("input of the exact network holds NaN or infinite values",
                                      field="input")
        y = _round_half_up(x.detach().to(torch.float64) * 2.0**self.in_frac_bits)
        for layer in self.layers:
            y = layer.forward_codes(y)
        return y.to(torch.int64)

    def forward(self, x: Tensor) -> Tensor:
        """Float output: fake-quantized while training, exact ``codes(x) * 2**-f`` once frozen."""
        if self.frozen:
            return (self.codes(x).to(torch.float64) * 2.0**-self.out_frac_bits).to(x.dtype)
        for layer in self.layers:
            x = layer(x)
        return x
