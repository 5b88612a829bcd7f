"""Pixels for people: a small synthesis network from decoded split features to RGB.

The machine path never runs this.  It maps the stride-8 split features (what the BASE unit
decodes to) to the teacher's 300x300 input picture, which :func:`render` resizes back to
the frame's original size.  It is deliberately small (a preview-quality decoder): the bits
were spent on what machines need, so fine texture is not in the stream to begin with.

The checkpoint records the codec it was trained behind (``ssb.codec.zoo``); another codec's
features are refused (:class:`~ssb.errors.ModelMismatchError`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ssb.codec.transforms import ResBlock, conv



def _up(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(conv(in_ch, out_ch * 4), nn.PixelShuffle(2), nn.LeakyReLU(0.1, inplace=True))


class PixelSynthesis(nn.Module):
    """Split features ``[B, C, h, w]`` -> RGB in ``[0, 1]``, ``[B, 3, 8h, 8w]``."""

    def __init__(self, in_channels: int = 32, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            conv(in_channels, width), nn.LeakyReLU(0.1, inplace=True), ResBlock(width), ResBlock(width),
            _up(width, width), ResBlock(width),
            _up(width, width // 2),
            _up(width // 2, width // 4),
            conv(width // 4, 3),
        )

    def forward(self, split: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(split))


def build(config: dict) -> PixelSynthesis:
    """A pixel decoder from a checkpoint's config (the zoo's builder)."""
    return PixelSynthesis(**config)


@torch.no_grad()
def render(model: PixelSynthesis, split: torch.Tensor, image_size: tuple[int, int], input_size: int = 300) -> np.ndarray:
    """RGB uint8 ``HxWx3`` at the frame's original size from decoded split features ``[1, C, h, w]``."""
    import cv2

    rgb = model(split)[0, :, :input_size, :input_size].clamp(0, 1).mul(255).round().byte()
    img = rgb.permute(1, 2, 0).contiguous().numpy()
    h, w = image_size
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
