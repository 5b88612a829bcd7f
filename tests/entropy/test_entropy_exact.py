"""Integer convolutions: exact against a numpy int64 reference, order- and thread-independent."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from ssb.entropy import ExactSequential, IntegerConv2d, IntegerConvTranspose2d
from ssb.errors import LimitExceededError, SSBError


def _ref_conv2d(x, w, stride, padding, dilation, groups):
    """Direct int64 convolution (one kernel tap at a time, einsum over channels)."""
    b, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (wd + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    out = np.zeros((b, o, ho, wo), dtype=np.int64)
    og = o // groups
    for ky in range(kh):
        for kx in range(kw):
            patch = xp[:, :, ky * dilation: ky * dilation + stride * (ho - 1) + 1: stride,
                       kx * dilation: kx * dilation + stride * (wo - 1) + 1: stride]
            for g in range(groups):
                out[:, g * og:(g + 1) * og] += np.einsum(
                    "bchw,oc->bohw", patch[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og, :, ky, kx])
    return out


def _ref_conv_transpose2d(x, w, stride, padding, output_padding, dilation):
    b, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    full = np.zeros((b, o, (h - 1) * stride + dilation * (kh - 1) + 1 + output_padding,
                     (wd - 1) * stride + dilation * (kw - 1) + 1 + output_padding), dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            full[:, :, ky * dilation: ky * dilation + stride * (h - 1) + 1: stride,
                 kx * dilation: kx * dilation + stride * (wd - 1) + 1: stride] += np.einsum(
                "bchw,co->bohw", x, w[:, :, ky, kx])
    ho = (h - 1) * stride - 2 * padding + dilation * (kh - 1) + output_padding + 1
    wo = (wd - 1) * stride - 2 * padding + dilation * (kw - 1) + output_padding + 1
    return full[:, :, padding:padding + ho, padding:padding + wo]


def _ref_layer(layer, codes: np.ndarray) -> np.ndarray:
    x = np.clip(codes, -layer.in_max, layer.in_max).astype(np.int64)
    w = layer.int_weight.numpy().astype(np.int64)
    if isinstance(layer, IntegerConv2d):
        acc = _ref_conv2d(x, w, layer.stride[0], layer.padding[0], layer.dilation[0], layer.groups)
    else:
        acc = _ref_conv_transpose2d(x, w, layer.stride[0], layer.padding[0], layer.output_padding[0],
                                    layer.dilation[0])
    acc = acc.astype(object) + layer.int_bias.numpy().astype(object)[None, :, None, None]
    shift = [int(e) - layer.in_frac_bits + layer.out_frac_bits for e in layer.weight_exp]
    y = np.empty_like(acc)
    for c, s in enumerate(shift):  # Python integers: floor(acc * 2**s + 1/2)
        y[:, c] = acc[:, c] * (1 << s) if s >= 0 else (acc[:, c] + (1 << (-s - 1))) >> -s
    y = y.astype(np.int64)
    if layer.relu:
        y = np.maximum(y, 0)
    return np.clip(y, layer.out_min, layer.out_max)


def _network(seed: int = 0) -> ExactSequential:
    torch.manual_seed(seed)
    net = ExactSequential(
        IntegerConvTranspose2d(8, 8, 5, 2, 2, 1, relu=True, out_frac_bits=4),
        IntegerConv2d(8, 8, 3, 2, 1, dilation=2, groups=2, relu=False, out_frac_bits=6, out_bits=20),
        IntegerConv2d(8, 6, 3, 1, 1, relu=True, out_frac_bits=8),
        in_frac_bits=0, in_bits=12,
    )
    with torch.no_grad():  # spread the per-channel magnitudes over many powers of two
        for layer in net.layers:
            axis = layer._out_axis
            gains = 2.0 ** torch.randint(-6, 6, (layer.weight.shape[axis],)).double()
            layer.weight.mul_(layer._view(gains).float())
            layer.bias.uniform_(-3, 3)
    return net


def _codes_input(seed: int, shape=(2, 8, 9, 7)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-300, 300, shape, generator=g).float()
    x.view(-1)[:4] = torch.tensor([4000.0, -4000.0, 2047.0, -2047.0])  # at and beyond the in_bits clamp
    return x


def test_frozen_network_matches_numpy_int64_reference():
    net = _network()
    net.freeze()
    x = _codes_input(0)
    ref = x.numpy().astype(np.int64)
    for layer in net.layers:
        ref = _ref_layer(layer, ref)
    assert np.array_equal(net.codes(x).numpy(), ref)


def test_summation_order_and_threads_do_not_matter():
    net = _network(1)
    net.freeze()
    x = _codes_input(1, (1, 8, 40, 40))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = net.codes(x)
        torch.set_num_threads(2)
        two = net.codes(x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    # shuffled summation: permute the input channels and the matching weight rows
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(2))
    first = net.layers[0]
    shuffled = IntegerConvTranspose2d(8, 8, 5, 2, 2, 1, relu=True, out_frac_bits=4, in_bits=12)
    shuffled.load_state_dict(first.state_dict())
    shuffled.int_weight.copy_(first.int_weight[perm])
    a = first.forward_codes(x.double())
    b = shuffled.forward_codes(x[:, perm].double())
    assert torch.equal(a, b)


def test_training_path_simulates_the_frozen_arithmetic():
    net = _network(2)
    x = _codes_input(2)
    train = net(x)
    net.freeze()
    frozen = net(x)
    assert train.shape == frozen.shape
    step = 2.0**-net.out_frac_bits
    assert (train - frozen).abs().max() <= 2 * step
    assert (train == frozen).float().mean() > 0.95


def test_fake_quant_gradients_flow():
    net = _network(3)
    x = _codes_input(3).requires_grad_()
    net(x).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert any(p.grad.abs().sum() > 0 for p in net.parameters())


def test_freeze_state_dict_and_errors():
    net = _network(4)
    x = _codes_input(4)
    with pytest.raises(SSBError, match="freeze"):
        net.codes(x)
    assert net.update() is True and net.update() is False and net.frozen
    codes = net.codes(x)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    fresh = _network(99)
    fresh.load_state_dict(torch.load(buf))
    assert fresh.frozen and torch.equal(fresh.codes(x), codes)
    net.unfreeze()
    assert not net.frozen and net(x).requires_grad
    too_wide = IntegerConv2d(256, 1, 3, in_bits=31)
    with pytest.raises(LimitExceededError, match="accumulator"):
        too_wide.freeze()


def test_dead_channel_with_a_bias_stays_within_bounds():
    torch.manual_seed(5)
    layer = IntegerConv2d(4, 3, 3, padding=1, out_frac_bits=8, in_bits=12)
    with torch.no_grad():
        layer.weight[0].fill_(1e-15)  # would put the bias at ~2**55 on the accumulator grid
        layer.bias[0] = 5.0
    layer.freeze()
    assert int(layer.int_bias.abs().max()) <= 2**40
    x = _codes_input(5, (1, 4, 6, 6))
    out = layer.forward_codes(x.double())
    assert np.array_equal(out.numpy().astype(np.int64), _ref_layer(layer, x.numpy().astype(np.int64)))
    assert torch.all(out[:, 0] == 5 * 256)
