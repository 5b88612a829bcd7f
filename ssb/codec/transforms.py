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
