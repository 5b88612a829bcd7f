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

On a stream with object-scale units the head reads each object's OBJECT_SCALE unit and the index
instead (:meth:`~ssb.tasks.roi.RoIHead.adapt`; weights ``segmentation_object``, ``python -m
ssb.recipes.train_objects``): the mask logits cover the object's window, at the window's
feature resolution times four.  It then returns masks of the objects that carry units (the classes
asked for that the stream codes at object scale); ``--runtime onnxruntime`` keeps this net in torch.

Output per image, torchvision's Mask R-CNN convention: ``boxes``, ``labels``, ``scores`` and
``masks`` ``[N, 1, H, W]`` float probabilities at the original size.
"""

from __future__ import annotations

import torch
from torch import nn

from ssb.tasks.roi import RoIHead, conv_block, pool, rois_in_input, view_groups

__all__ = ["MaskNet", "SegmentationHead", "paste_masks", "paste_windows"]

DEFAULT_CONFIG = {"in_channels": 32, "width": 64, "depth": 4, "roi": 14}


class MaskNet(nn.Module):
    """Pooled features ``[K, C, r, r]`` -> mask logits ``[K, 1, u*r, u*r]`` (``upsample`` u = 2 or 4)."""

    def __init__(self, in_channels: int = 32, width: int = 64, depth: int = 4, upsample: int = 2, **_: object):
        super().__init__()
        layers = [conv_block(in_channels, width)] + [conv_block(width, width) for _ in range(depth - 1)]
        self.body = nn.Sequential(*layers)
        up = [nn.ConvTranspose2d(width, width, 2, stride=2), nn.ReLU(inplace=True)]
        if int(upsample) == 4:  # object-scale masks: two steps, the second with a 3x3 refinement
            up += [nn.ConvTranspose2d(width, width // 2, 2, stride=2), nn.ReLU(inplace=True),
                   conv_block(width // 2, width // 2)]
            width //= 2
        elif int(upsample) != 2:
            raise ValueError(f"MaskNet upsample must be 2 or 4, got {upsample}")
        self.up = nn.Sequential(*up)
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
    object_kind = "segmentation_object"

    default_config = DEFAULT_CONFIG

    def build(self, config: dict) -> nn.Module:
        return build_net(config)

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


    def predict_views(self, views, image_size):
        """Masks of object-scale units: mask logits over each unit's window, pasted at the image size."""
        h, w = image_size
        out = torch.zeros(len(views), 1, h, w)
        for idx, feats in view_groups(views):  # one batch per coded grid size
            probs = torch.sigmoid(self.object_net(feats).float())
            out[idx] = paste_windows(probs, [views[i].window for i in idx], image_size)
        return {"masks": out}


def paste_windows(probs: torch.Tensor, windows, image_size: tuple[int, int]) -> torch.Tensor:
    """``[N, 1, H, W]`` masks: each ``probs[i]`` (``[1, m, n]`` over window ``(x0, y0, w, h)``) resized
    to its window and placed in the image (clipped to it)."""
    h, w = image_size
    out = probs.new_zeros(len(windows), 1, h, w)
    for i, (x0, y0, ww, wh) in enumerate(windows):
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + ww, w), min(y0 + wh, h)
        if xb <= xa or yb <= ya:
            continue
        full = nn.functional.interpolate(probs[i: i + 1], size=(wh, ww), mode="bilinear", align_corners=False)
        out[i, :, ya:yb, xa:xb] = full[0, :, ya - y0: yb - y0, xa - x0: xb - x0]
    return out


def build_net(config: dict) -> nn.Module:
    """The per-RoI net from a checkpoint's config (the zoo's builder for ``segmentation`` models)."""
    return MaskNet(**{**DEFAULT_CONFIG, **config})
