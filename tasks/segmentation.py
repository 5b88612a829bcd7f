"""Instance segmentation (one mask per detected object) on the stride-8 split features.

Mask R-CNN's mask branch on SSB features: each detected box is pooled from the split features
with RoIAlign (``14 x 14``), a small convolutional net (:class:`MaskNet`) predicts a
class-agnostic ``28 x 28`` mask logit map, and the probabilities are pasted into the box at the
original image size (:func:`torchvision.models.detection.roi_heads.paste_masks_in_image`).

Weights (``ssb/weights/seg_s8.pt``) are distilled from a real segmenter on the original pixels:
the foreground of OpenCV's MOG2 background model on the static-camera ``vtest.avi`` clip, inside
the teacher's person boxes, with the codec frozen
(``python -m ssb.recipes.train_heads --task segmentation``).  The head runs on every detected
object, but its teacher only ever showed it people.

Output per image, torchvision's Mask R-CNN convention: ``boxes``, ``labels``, ``scores`` and
``masks`` ``[N, 1, H, W]`` float probabilities at the original size.
"""

from __future__ import annotations

import torch
from torch import nn

from ssb.tasks.roi import RoIHead, conv_block, pool, rois_in_input

__all__ = ["MaskNet", "SegmentationHead", "paste_masks"]

DEFAULT_CONFIG = {"in_channels": 32, "width": 64, "depth": 4, "roi": 14}


class MaskNet(nn.Module):
    """Pooled features ``[K, C, r, r]`` -> mask logits ``[K, 1, 2r, 2r]``."""

    def __init__(self, in_channels: int = 32, width: int = 64, depth: int = 4, **_: object):
        super().__init__()
        layers = [conv_block(in_channels, width)] + [conv_block(width, width) for _ in range(depth - 1)]
        self.body = nn.Sequential(*layers)
        self.up = nn.Sequential(nn.ConvTranspose2d(width, width, 2, stride=2), nn.ReLU(inplace=True))
        self.logits = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.up(self.body(x)))


def paste_masks(probs: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """``[N, 1, H, W]`` image-size masks from per-box masks ``[N, 1, M, M]`` (torchvision's pasting)."""
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    h, w = image_size
    if len(probs) == 0:
        return probs.new_zeros(0, 1, h, w)
    return paste_masks_in_image(probs, boxes, (h, w), padding=1)


class SegmentationHead(RoIHead):
    """Split features -> one mask per detected object (see the module docstring).

    Keyword configuration: those of :class:`~ssb.tasks.roi.RoIHead` (``weights``,
    ``pretrained``, ``behind``, ``score_thresh``, ``classes`` (default: all), ``max_objects``).
    """

    kind = "segmentation"

    def build(self, config: dict) -> nn.Module:
        cfg = {**DEFAULT_CONFIG, **config}
        self.config = cfg
        return MaskNet(**cfg)

    @property
    def roi_size(self) -> tuple[int, int]:
        r = int(self.config["roi"])
        return r, r

    def raw(self, split: torch.Tensor, boxes: list[torch.Tensor], image_sizes: list[tuple[int, int]]) -> torch.Tensor:
        """Mask logits ``[K, 1, 28, 28]`` of every box (boxes in original pixels)."""
        return self.net(pool(split, rois_in_input(boxes, image_sizes), self.roi_size))

    def predict(self, split, boxes, image_sizes):
        probs = torch.sigmoid(self.raw(split, boxes, image_sizes).float())
        out, start = [], 0
        for b, size in zip(boxes, image_sizes):
            n = len(b)
            out.append({"masks": paste_masks(probs[start : start + n], b, size)})
            start += n
        return out


def build_net(config: dict) -> nn.Module:
    """The per-RoI net from a checkpoint's config (the zoo's builder for ``segmentation`` models)."""
    return MaskNet(**{**DEFAULT_CONFIG, **config})
