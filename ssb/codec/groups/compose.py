"""Composing a grouped frame's decoded parts into the split features task heads read (decoder side).

Start from the decoded background (a query that skipped it starts from zeros), then blend each
decoded group over its window with weight ``sqrt(coverage)``, the fraction of each cell its mask
covers as the teacher's input sees it (:func:`compose`); or map the parts through the learned
fusion (:func:`fuse`, :mod:`ssb.codec.fusion`).  This needs the groups' masks, so a detection
query reads the ``GROUP_MASK`` units of its groups too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ssb.codec.groups.layout import COVERAGE_THRESHOLD, GroupLayout, grey_value
from ssb.codec.mask_coding import MaskUnit
from ssb.errors import MalformedFieldError

__all__ = ["DecodedGroup", "GroupedFrame", "neutral_split", "cell_coverage", "compose", "fusion_inputs", "fuse",
           "group_alpha"]


@dataclass
class DecodedGroup:
    """One decoded group: its index attributes, window (split cells), features and, if read, mask."""

    group_id: int
    object_id: int | None
    class_id: int | None
    score: float | None
    bbox: tuple[float, float, float, float] | None
    window: tuple[int, int]  # (row0, col0)
    features: torch.Tensor  # [1, C, rows, cols]
    mask: MaskUnit | None = None


@dataclass
class GroupedFrame:
    """The decoded parts of one frame of a grouped stream (only those a query asked for)."""

    frame_index: int
    image_size: tuple[int, int]
    grid: tuple[int, int]
    channels: int
    level: int | None
    background: torch.Tensor | None
    groups: list[DecodedGroup] = field(default_factory=list)
    payload_bytes: int = 0


def neutral_split(front, layout: GroupLayout = GroupLayout()) -> torch.Tensor:
    """The teacher front's split features ``[1, C, gh, gw]`` of an all-grey picture."""
    x = torch.full((1, 3, layout.input_size, layout.input_size), grey_value())
    with torch.no_grad():
        return front(x)


def cell_coverage(mask: MaskUnit, image_size: tuple[int, int], layout: GroupLayout) -> torch.Tensor:
    """Fraction ``[gh, gw]`` of each split cell's frame pixels that lie in the mask.

    A frame pixel belongs to the cell holding its centre once the frame is scaled to the
    teacher's ``input_size`` square (the teacher's resize); only the mask's box is visited.
    """
    h, w = image_size
    gh, gw = layout.grid
    rows = np.minimum(((np.arange(h) + 0.5) * (layout.input_size / h) / layout.stride).astype(np.int64), gh - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * (layout.input_size / w) / layout.stride).astype(np.int64), gw - 1)
    total = np.outer(np.bincount(rows, minlength=gh), np.bincount(cols, minlength=gw))
    ys, xs = np.nonzero(mask.mask)
    inside = np.bincount(rows[ys + mask.y0] * gw + cols[xs + mask.x0], minlength=gh * gw).reshape(gh, gw)
    return torch.from_numpy((inside / np.maximum(total, 1)).astype(np.float32))


def compose(frame: GroupedFrame, *, base: str = "auto", paste: str = "soft", neutral: torch.Tensor | None = None,
            threshold: float = COVERAGE_THRESHOLD, layout: GroupLayout = GroupLayout(),
            coverages: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Split features ``[1, C, gh, gw]`` for the task heads from a frame's decoded parts.

    ``base``: ``"background"`` (the decoded background), ``"zeros"`` or ``"neutral"`` (the grey
    response ``neutral``, see :func:`neutral_split`); ``"auto"`` is the background when it was
    decoded, else zeros (person-only queries on 10 held-out vtest frames at level 3, person
    AP/AP50 against the teacher: zeros 48.1/92.6, neutral 27.8/82.9 with ``paste="soft"``; zeros
    41.6/81.0, neutral 45.9/80.1 with ``"window"``: ``benchmarks/bench_groups.py``).
    ``coverages``: each group's :func:`cell_coverage`, in ``frame.groups`` order, when the caller
    already has them (computed here otherwise).
    ``paste``, per group, in stream order:

    * ``"soft"`` (default): ``canvas = a * group + (1 - a) * canvas`` over the window, with
      ``a = sqrt(coverage)`` of each cell by the group's mask (needs the decoded mask);
    * ``"cells"``: the group's features replace the cells its mask covers by more than ``threshold``;
    * ``"window"``: the group's features replace its whole window (no mask needed).
    """
    if base == "auto":
        base = "background" if frame.background is not None else "zeros"
    if base == "background":
        if frame.background is None:
            raise MalformedFieldError("the background was not decoded", field="base")
        canvas = frame.background.clone()
    elif base == "neutral":
        if neutral is None:
            raise MalformedFieldError("base='neutral' needs the neutral features", field="neutral")
        canvas = neutral.clone()
    elif base == "zeros":
        canvas = torch.zeros(1, frame.channels, *frame.grid)
    else:
        raise MalformedFieldError(f"unknown composition base {base!r}", field="base")
    if paste not in ("soft", "cells", "window"):
        raise MalformedFieldError(f"unknown paste mode {paste!r}", field="paste")
    for k, g in enumerate(frame.groups):
        r0, c0 = g.window
        rows, cols = g.features.shape[-2:]
        region = canvas[..., r0 : r0 + rows, c0 : c0 + cols]
        if paste == "window":
            region.copy_(g.features)
            continue
        if g.mask is None:
            raise MalformedFieldError(f"group {g.group_id}: paste={paste!r} needs its decoded mask", field="paste")
        full = coverages[k] if coverages is not None else cell_coverage(g.mask, frame.image_size, layout)
        cover = full[r0 : r0 + rows, c0 : c0 + cols]
        if paste == "cells":
            region.copy_(torch.where(cover > threshold, g.features, region))
        else:
            alpha = cover.sqrt().to(region.dtype)
            region.copy_(alpha * g.features + (1 - alpha) * region)
    return canvas


def fusion_inputs(frame: GroupedFrame, layout: GroupLayout = GroupLayout()) -> tuple[torch.Tensor, ...]:
    """``(pasted, background, groups, coverage)`` of a decoded frame, the inputs of
    :class:`~ssb.codec.fusion.GroupFusion` (needs every decoded group's mask).  Without a
    decoded background (a class query) ``pasted`` is ``groups`` and ``background`` zeros."""
    for g in frame.groups:
        if g.mask is None:
            raise MalformedFieldError(f"group {g.group_id}: fusion needs its decoded mask", field="masks")
    covers = [cell_coverage(g.mask, frame.image_size, layout) for g in frame.groups]
    alone = GroupedFrame(frame.frame_index, frame.image_size, frame.grid, frame.channels, frame.level, None,
                         frame.groups)
    groups = compose(alone, base="zeros", layout=layout, coverages=covers)
    coverage = sum(covers, torch.zeros(frame.grid)).clamp_(max=1.0)[None, None]
    if frame.background is None:
        return groups, torch.zeros_like(groups), groups, coverage
    return compose(frame, base="background", layout=layout, coverages=covers), frame.background, groups, coverage


def fuse(frame: GroupedFrame, fusion, layout: GroupLayout = GroupLayout()) -> torch.Tensor:
    """Split features of a whole decoded frame through the learned fusion (see :mod:`ssb.codec.fusion`)."""
    with torch.no_grad():
        return fusion(*fusion_inputs(frame, layout))


def group_alpha(frame: GroupedFrame) -> np.ndarray:
    """``uint8`` alpha ``H x W`` of a frame: 255 inside the decoded groups' masks, 0 elsewhere."""
    h, w = frame.image_size
    alpha = np.zeros((h, w), dtype=np.uint8)
    for g in frame.groups:
        if g.mask is None:
            raise MalformedFieldError(f"group {g.group_id}: its mask was not decoded", field="masks")
        x0, y0, x1, y1 = g.mask.bbox
        alpha[y0:y1, x0:x1][g.mask.mask] = 255
    return alpha


