"""Pixels for people: a small synthesis network from decoded split features to RGB.

The machine path never runs this.  It maps the stride-8 split features (what the BASE unit
decodes to) to the teacher's 300x300 input picture, which :func:`render` resizes back to
the frame's original size.  It is deliberately small (a preview-quality decoder): the bits
were spent on what machines need, so fine texture is not in the stream to begin with.

The checkpoint records the codec it was trained behind (``ssb.codec.zoo``); another codec's
features are refused (:class:`~ssb.errors.ModelMismatchError`).  :func:`render` refuses frame
sizes over :data:`MAX_RENDER_PIXELS` before allocating anything: the container allows pictures of
up to ``Limits.max_width`` x ``max_height`` (32768 x 32768, 3 GiB of RGB), far more than a preview
upscaled from the 300 x 300 synthesis needs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ssb.codec.transforms import ResBlock, conv
from ssb.errors import LimitExceededError, MalformedFieldError

#: Largest picture :func:`render` makes (8192 x 8192: 192 MiB of RGB, upscaled from 300 x 300).
MAX_RENDER_PIXELS = 1 << 26


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


def check_render_size(image_size) -> tuple[int, int]:
    """``(height, width)`` of a picture :func:`render` can make, or an :class:`~ssb.errors.SSBError`."""
    try:
        h, w = image_size
    except (TypeError, ValueError):
        raise MalformedFieldError(f"a frame size is (height, width), got {image_size!r}", field="image_size") from None
    for name, v in (("height", h), ("width", w)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise MalformedFieldError(f"frame {name} must be a positive integer, got {v!r}", field=f"image_size.{name}")
    if int(h) * int(w) > MAX_RENDER_PIXELS:
        raise LimitExceededError(f"a {h}x{w} frame is over the pixel decoder's limit of {MAX_RENDER_PIXELS} pixels",
                                 field="image_size")
    return int(h), int(w)


@torch.no_grad()
def render(model: PixelSynthesis, split: torch.Tensor, image_size: tuple[int, int], input_size: int = 300) -> np.ndarray:
    """RGB uint8 ``HxWx3`` at the frame's original size from decoded split features ``[1, C, h, w]``.

    The size is checked first: positive integers (:class:`MalformedFieldError`), at most
    :data:`MAX_RENDER_PIXELS` pixels (:class:`LimitExceededError`)."""
    import cv2

    check_render_size(image_size)
    rgb = model(split)[0, :, :input_size, :input_size].clamp(0, 1).mul(255).round().byte()
    img = rgb.permute(1, 2, 0).contiguous().numpy()
    h, w = image_size
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
