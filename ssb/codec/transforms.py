"""Analysis / synthesis transforms of the split-feature codec.

The analysis transform is Omni-ICM's information-filtering (IF) stage: it maps the teacher's
split features to a compact latent from which the entropy model removes what the tasks do not
need.  All transforms are small convolutional stacks (the split features are already a
semantic representation: 32 channels at stride 8).
"""

from __future__ import annotations

from torch import nn


def conv(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)


def deconv(in_ch: int, out_ch: int) -> nn.ConvTranspose2d:
    """Stride-2 transposed convolution doubling the size exactly (``k=4, p=1``)."""
    return nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1)


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(conv(ch, ch), nn.LeakyReLU(0.1, inplace=True), conv(ch, ch))

    def forward(self, x):
        return x + self.body(x)


def analysis(in_ch: int, hidden: int, latent: int) -> nn.Sequential:
    """Split features ``[B, in_ch, h, w]`` -> latent ``[B, latent, ceil(h/2), ceil(w/2)]``."""
    return nn.Sequential(
        conv(in_ch, hidden),
        nn.LeakyReLU(0.1, inplace=True),
        ResBlock(hidden),
        conv(hidden, hidden, stride=2),
        nn.LeakyReLU(0.1, inplace=True),
        ResBlock(hidden),
        conv(hidden, latent),
    )


def synthesis(latent: int, hidden: int, out_ch: int) -> nn.Sequential:
    """Latent ``[B, latent, H, W]`` -> split features ``[B, out_ch, 2H, 2W]`` (cropped by the caller)."""
    return nn.Sequential(
        conv(latent, hidden),
        nn.LeakyReLU(0.1, inplace=True),
        ResBlock(hidden),
        deconv(hidden, hidden),
        nn.LeakyReLU(0.1, inplace=True),
        ResBlock(hidden),
        conv(hidden, out_ch),
    )


def hyper_analysis(latent: int, hidden: int, hyper: int) -> nn.Sequential:
    """Latent -> hyper-latent at a quarter of its size (two stride-2 convolutions)."""
    return nn.Sequential(
        conv(latent, hidden),
        nn.LeakyReLU(0.1, inplace=True),
        conv(hidden, hidden, stride=2),
        nn.LeakyReLU(0.1, inplace=True),
        conv(hidden, hyper, stride=2),
    )


class ExactHyperSynthesis(nn.Module):
    """Hyper-latent -> Gaussian scales, computed bit-exactly once frozen.

    Two stride-2 transposed convolutions and a 3x3 convolution, all
    :mod:`ssb.entropy.exact` integer layers: the decoder derives every table index from
    integer codes, so decoding cannot depend on thread counts or machines.  Outputs are
    cropped to the latent's size (the hyper-latent covers ``ceil(h/4)`` rows).
    """

    def __init__(self, hyper: int, hidden: int, latent: int, scale_code_bits: int = 8):
        super().__init__()
        from ssb.entropy import ExactSequential, IntegerConv2d, IntegerConvTranspose2d

        self.net = ExactSequential(
            IntegerConvTranspose2d(hyper, hidden, 4, 2, 1, relu=True),
            IntegerConvTranspose2d(hidden, hidden, 4, 2, 1, relu=True),
            IntegerConv2d(hidden, latent, 3, 1, 1, relu=True, out_frac_bits=scale_code_bits),
        )

    def forward(self, z_hat, out_hw):
        """Float scales (fake-quantized while training, exact once frozen), cropped to ``out_hw``."""
        return self.net(z_hat)[..., : out_hw[0], : out_hw[1]]

    def scale_codes(self, z_hat, out_hw):
        """Exact int64 scale codes for :meth:`GaussianConditional.build_indexes`."""
        return self.net.codes(z_hat)[..., : out_hw[0], : out_hw[1]].contiguous()

    def freeze(self, force: bool = False) -> bool:
        return self.net.update(force=force)
