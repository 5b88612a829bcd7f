"""Pixels for people: a small synthesis network from decoded split features to RGB.

The machine path never runs this.  It maps the stride-8 split features (what the BASE unit
decodes to) to the teacher's 300x300 input picture, which :func:`render` resizes back to
the frame's original size.  It is deliberately small (a preview-quality decoder): the bits
were spent on what machines need, so fine texture is not in the stream to begin with.

The weights record the SHA-256 of the feature-codec weights they were trained behind; a
mismatch is refused (:class:`~ssb.errors.ModelMismatchError`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ssb.codec.transforms import ResBlock, conv
from ssb.errors import ModelMismatchError
from ssb.resources import file_sha256  # noqa: F401  (re-exported: weights provenance)

PIXEL_MODEL_ID = "pixel-synthesis.s8"
PIXEL_WEIGHTS_FILE = "pixel_s8.pt"


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


def default_pixel_weights() -> Path:
    return Path(__file__).resolve().parent.parent / "weights" / PIXEL_WEIGHTS_FILE


def load_pixel_synthesis(codec, path=None) -> PixelSynthesis:
    """Load the pixel decoder trained behind ``codec`` (refuses weights made for other codec weights)."""
    path = Path(path) if path else default_pixel_weights()
    if not path.is_file():
        raise ModelMismatchError(f"no pixel-decoder weights at {path}: train them with `ssb train --pixels`",
                                 field="pixel_weights")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("model_id") != PIXEL_MODEL_ID:
        raise ModelMismatchError(f"{path} is not a pixel decoder ({ckpt.get('model_id')!r})", field="pixel_weights")
    expected = ckpt.get("codec_sha256")
    actual = file_sha256(codec.weights_path) if getattr(codec, "weights_path", None) else None
    if expected != actual:
        raise ModelMismatchError(
            f"pixel decoder {path.name} was trained behind codec weights {str(expected)[:12]}, "
            f"loaded codec weights are {str(actual)[:12]}", field="pixel_weights.codec_sha256")
    model = PixelSynthesis(**ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


@torch.no_grad()
def render(model: PixelSynthesis, split: torch.Tensor, image_size: tuple[int, int], input_size: int = 300) -> np.ndarray:
    """RGB uint8 ``HxWx3`` at the frame's original size from decoded split features ``[1, C, h, w]``."""
    import cv2

    rgb = model(split)[0, :, :input_size, :input_size].clamp(0, 1).mul(255).round().byte()
    img = rgb.permute(1, 2, 0).contiguous().numpy()
    h, w = image_size
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
