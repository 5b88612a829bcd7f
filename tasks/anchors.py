"""SSD anchors (TF Object Detection API ``multiple_grid_anchor_generator``) and box coding.

Anchors are normalized ``(cx, cy, w, h)`` in ``[0, 1]`` image units, ordered like the
teacher's predictions: feature map by feature map, then row, column, and anchor within a cell.
The defaults reproduce the teacher's ``PriorBox`` layers in its ``.pbtxt`` exactly: scales
evenly spaced from 0.2 to 0.95 over the six maps, aspect ratios ``1, 2, 1/2, 3, 0.333``, one
extra box per cell at scale ``sqrt(s_i * s_{i+1})``, and only three boxes (0.1 @ 1, 0.2 @ 2,
0.2 @ 1/2) on the lowest layer (``reduce_boxes_in_lowest_layer``).  The teacher's text graph
was generated with aspect ratio 0.333 (its ``pipeline.config`` says 0.3333); ``cv2.dnn`` uses
the text graph, so 0.333 is the default here.

Box codes follow TF's ``FasterRcnnBoxCoder`` / Caffe's ``CENTER_SIZE`` with scale factors
``(10, 10, 5, 5)`` (cv2 ``variance`` 0.1, 0.1, 0.2, 0.2), in ``(x, y, w, h)`` order (``cv2.dnn``
swaps TF's ``(y, x, h, w)`` predictor channels on import, ``loc_pred_transposed``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = [
    "ASPECT_RATIOS",
    "SCALE_FACTORS",
    "anchor_specs",
    "decode_boxes",
    "encode_boxes",
    "multiple_grid_anchors",
]

#: Aspect ratios (width / height) of the teacher's anchors; see the module docstring for 0.333.
ASPECT_RATIOS: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.333)
#: Box-code scale factors (x, y, w, h): the inverse of cv2's variances (0.1, 0.1, 0.2, 0.2).
SCALE_FACTORS: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)


def anchor_specs(
    num_layers: int = 6,
    *,
    min_scale: float = 0.2,
    max_scale: float = 0.95,
    aspect_ratios: Sequence[float] = ASPECT_RATIOS,
    reduce_boxes_in_lowest_layer: bool = True,
) -> list[list[tuple[float, float]]]:
    """Per layer, the ``(width, height)`` of each anchor of a cell, normalized to the image."""
    scales = [min_scale + (max_scale - min_scale) * i / (num_layers - 1) for i in range(num_layers)] + [1.0]
    specs = []
    for i in range(num_layers):
        if i == 0 and reduce_boxes_in_lowest_layer:
            pairs = [(0.1, 1.0), (min_scale, 2.0), (min_scale, 0.5)]
        else:
            pairs = [(scales[i], ar) for ar in aspect_ratios] + [(math.sqrt(scales[i] * scales[i + 1]), 1.0)]
        specs.append([(s * math.sqrt(ar), s / math.sqrt(ar)) for s, ar in pairs])
    return specs


def multiple_grid_anchors(feature_shapes: Sequence[tuple[int, int]], **spec_kwargs) -> torch.Tensor:
    """Anchors ``[N, 4]`` (normalized cx, cy, w, h) for feature maps of the given ``(h, w)``.

    ``spec_kwargs`` go to :func:`anchor_specs`. Cell centers are ``((j + 0.5) / w, (i + 0.5) / h)``.
    """
    specs = anchor_specs(len(feature_shapes), **spec_kwargs)
    out = []
    for (fh, fw), wh in zip(feature_shapes, specs):
        cy = (torch.arange(fh, dtype=torch.float64) + 0.5) / fh
        cx = (torch.arange(fw, dtype=torch.float64) + 0.5) / fw
        cy, cx = torch.meshgrid(cy, cx, indexing="ij")
        sizes = torch.tensor(wh, dtype=torch.float64)  # [A, 2]
        a = sizes.shape[0]
        centers = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2).expand(-1, a, 2)
        out.append(torch.cat([centers, sizes.expand(fh * fw, a, 2)], dim=-1).reshape(-1, 4))
    return torch.cat(out).float()


def decode_boxes(codes: torch.Tensor, anchors: torch.Tensor, scale_factors=SCALE_FACTORS) -> torch.Tensor:
    """Box codes ``[..., N, 4]`` (x, y, w, h) on anchors ``[N, 4]`` to normalized ``x1, y1, x2, y2``."""
    sx, sy, sw, sh = scale_factors
    cx = codes[..., 0] / sx * anchors[:, 2] + anchors[:, 0]
    cy = codes[..., 1] / sy * anchors[:, 3] + anchors[:, 1]
    half_w = torch.exp(codes[..., 2] / sw) * anchors[:, 2] / 2
    half_h = torch.exp(codes[..., 3] / sh) * anchors[:, 3] / 2
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)


def encode_boxes(boxes: torch.Tensor, anchors: torch.Tensor, scale_factors=SCALE_FACTORS) -> torch.Tensor:
    """Inverse of :func:`decode_boxes`: normalized ``x1, y1, x2, y2`` boxes to codes."""
    sx, sy, sw, sh = scale_factors
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    cx = boxes[..., 0] + w / 2
    cy = boxes[..., 1] + h / 2
    return torch.stack(
        [
            (cx - anchors[:, 0]) / anchors[:, 2] * sx,
            (cy - anchors[:, 1]) / anchors[:, 3] * sy,
            torch.log(w / anchors[:, 2]) * sw,
            torch.log(h / anchors[:, 3]) * sh,
        ],
        dim=-1,
    )
