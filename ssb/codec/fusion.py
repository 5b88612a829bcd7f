"""Learned composition of a grouped frame's decoded parts (decoder side, optional).

Each group of a grouped stream is coded from its own pixels alone (the rest of the picture
filled), so its features are those of an object on an empty scene, and the background's are
those of a scene with holes.  :func:`ssb.codec.groups.compose` pastes the parts together by
mask coverage; the detector then sees features it never saw in training, and loses accuracy
(``benchmarks/bench_groups.py``).  :class:`GroupFusion` is a small residual network over the
split grid that maps the pasted parts to what the teacher's front gives on the whole original
frame; it is trained on real frames by :mod:`ssb.recipes.train_fusion`.

It runs after entropy decoding, on decoded features only: it changes nothing in the
bitstream, and group independence (bits and decoded features of a group depend only on its
own pixels) is untouched.  It serves whole-frame decodes and, when trained for them (``modes``),
class queries, which never read the background.

The checkpoint records the codec it was trained behind (``ssb.codec.zoo``); a
mismatch is refused (:class:`~ssb.errors.ModelMismatchError`).
"""

from __future__ import annotations


import torch
from torch import nn

from ssb.codec.transforms import ResBlock, conv

__all__ = ["GroupFusion", "build"]

class GroupFusion(nn.Module):
    """``(pasted, background, groups, coverage) -> split features``, a residual over ``pasted``.

    * ``pasted``: :func:`~ssb.codec.groups.compose` of background and groups ``[B, C, h, w]``;
    * ``background``: the decoded background alone;
    * ``groups``: the groups pasted on zeros (zero where no group);
    * ``coverage``: ``[B, 1, h, w]``, the fraction of each cell the groups' masks cover.

    For a class query (no background) ``pasted`` is ``groups`` and ``background`` zeros; a
    fusion applies to queries only when ``"query"`` is among its ``modes``.

    The last convolution starts at zero, so an untrained fusion is the plain composition.
    """

    def __init__(self, channels: int = 32, width: int = 64, modes: tuple[str, ...] | list[str] = ("whole",)):
        super().__init__()
        self.channels, self.width = channels, width
        #: what it was trained for: "whole" frames (background decoded) and/or class "query" decodes
        self.modes = tuple(modes)
        last = conv(width, channels)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(conv(3 * channels + 1, width), nn.LeakyReLU(0.1, inplace=True),
                                 ResBlock(width), ResBlock(width), last)

    def forward(self, pasted: torch.Tensor, background: torch.Tensor, groups: torch.Tensor,
                coverage: torch.Tensor) -> torch.Tensor:
        return pasted + self.net(torch.cat([pasted, background, groups, coverage], dim=1))


def build(config: dict) -> GroupFusion:
    """A fusion module from a checkpoint's config (the zoo's builder)."""
    return GroupFusion(**config)
