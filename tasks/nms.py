"""Non-maximum suppression in plain PyTorch/numpy (what ``torchvision.ops.batched_nms`` computes).

The detection head needs only this from torchvision; importing torchvision pulls in
``torch._dynamo`` (seconds at every cold start of ``ssb analyze``).  Same semantics: boxes xyxy,
per-class suppression (classes never suppress each other), greedy in descending score order, a
box is dropped when its IoU with a kept box is *above* ``iou_threshold``; returns the kept
indices sorted by descending score.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["nms", "batched_nms"]


def _iou(boxes: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1) * (y2 - y1)
    lt_x, lt_y = np.maximum(x1[:, None], x1[None]), np.maximum(y1[:, None], y1[None])
    rb_x, rb_y = np.minimum(x2[:, None], x2[None]), np.minimum(y2[:, None], y2[None])
    inter = np.clip(rb_x - lt_x, 0, None) * np.clip(rb_y - lt_y, 0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area[:, None] + area[None] - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices (int64) of the boxes kept by greedy NMS, by descending score."""
    n = int(boxes.shape[0])
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    order = torch.argsort(scores, descending=True, stable=True)
    b = boxes[order].detach().cpu().numpy()
    iou = _iou(b)
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.as_tensor(keep, dtype=torch.int64)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Per-class NMS (``idxs``: the class of each box): boxes of different classes never interact."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    # offset each class's boxes so that boxes of two classes cannot overlap (torchvision's trick)
    offsets = idxs.to(boxes) * (boxes.max() - boxes.min() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)
