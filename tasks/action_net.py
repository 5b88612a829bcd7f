"""The action head's classifier (:mod:`ssb.tasks.action`): :class:`ActionNet` and its checkpoint config."""

from __future__ import annotations

import torch
from torch import nn

from ssb.tasks.action_features import BOX_FEATURES, MOTION_FEATURES

__all__ = ["ActionNet", "build_net", "DEFAULT_CONFIG"]

DEFAULT_CONFIG = {"in_features": MOTION_FEATURES + BOX_FEATURES, "num_classes": 5, "width": 48, "window": 16,
                  "min_frames": 8, "dropout": 0.1, "source": "motion",
                  "labels": ["standing", "walking_left", "walking_right", "walking_toward", "walking_away"]}


class ActionNet(nn.Module):
    """Windows ``[B, T, F]`` with masks ``[B, T]`` -> label logits ``[B, C]``.

    Inputs are standardized with the training set's statistics (buffers ``mean``, ``std``), masked,
    stacked with the mask, and go through two temporal convolutions (kernel 3, the second dilated
    by 2), a masked mean and a masked max over time, dropout and a linear layer.
    """

    def __init__(self, in_features: int = DEFAULT_CONFIG["in_features"], num_classes: int = 5, width: int = 48,
                 dropout: float = 0.1, **_: object):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        self.conv1 = nn.Conv1d(in_features + 1, width, 3, padding=1)
        self.conv2 = nn.Conv1d(width, width, 3, padding=2, dilation=2)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(x.dtype)[..., None]
        z = (x - self.mean) / self.std * m
        h = torch.cat([z, m], dim=-1).transpose(1, 2)
        h = torch.relu(self.conv2(torch.relu(self.conv1(h))))
        mt = m.transpose(1, 2)
        avg = (h * mt).sum(-1) / mt.sum(-1).clamp(min=1.0)
        mx = (h - (1.0 - mt) * 1e4).amax(-1)
        return self.fc(self.drop(torch.cat([avg, mx], dim=1)))


def build_net(config: dict) -> nn.Module:
    """The classifier from a checkpoint's config (the zoo's builder for ``action`` models)."""
    return ActionNet(**{**DEFAULT_CONFIG, **config})
