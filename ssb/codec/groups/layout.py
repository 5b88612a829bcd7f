"""Geometry of group windows on the split grid, shared by the grouped encoder and decoder.

The teacher resizes the frame to ``input_size`` squared and its front has stride ``stride``
(the split grid, 38x38 cells for 300x300): both come from the codec's front
(:class:`~ssb.backbones.features.FrontCard`), so the layout never states them itself.  A group
window is the cells covered by its mask's box, ``margin`` cells more on each side, its first row
and column even (the codec's latent grid has stride 2 over the split grid), clipped to the grid.
The front runs on a crop of the filled input holding the window plus ``context`` cells around
it, clipped to the picture, starting on a multiple of 16 pixels and ``8 k + 4`` pixels long (or
ending at the picture's edge): with TensorFlow SAME padding its features then fall exactly on
the full-frame grid, and on an unmasked picture they equal the full-frame features (any other
crop size shifts them by half a cell).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ssb.codec.fill import FILLS, GREY, fill_outside
from ssb.errors import MalformedFieldError

__all__ = ["GroupLayout", "group_window", "masked_input", "front_window", "grey_value", "COVERAGE_THRESHOLD"]

#: ``compose(paste="cells")``: a group's features replace the cells its mask covers by more than this.
COVERAGE_THRESHOLD = 0.3
#: Version of the "groups" block of 1.x sequence metadata.
GROUPS_VERSION = 1


@dataclass(frozen=True)
class GroupLayout:
    """Geometry of group windows (``input_size``/``stride`` from the codec's front; :meth:`for_codec`).

    ``margin``/``context`` shape the encoder's windows (the payloads carry the windows, so a
    decoder never needs them); ``fill``/``background_fill`` are encoder choices, recorded for
    provenance when they are not the defaults.
    """

    input_size: int = 300
    stride: int = 8
    margin: int = 1
    context: int = 4
    #: how the encoder fills the pixels outside a group, and the groups' pixels in the background
    #: (encoder-side only; recorded for provenance; see ssb.codec.fill and benchmarks/bench_groups.py)
    fill: str = "grey"
    background_fill: str = "grey"

    def __post_init__(self):
        for name in ("fill", "background_fill"):
            if getattr(self, name) not in FILLS:
                raise MalformedFieldError(f"unknown {name} {getattr(self, name)!r}; choose among {FILLS}",
                                          field=f"groups.{name}")
        # the crop geometry of front_window reproduces the teacher's SAME padding for these sizes only
        if (self.stride != 8 or self.input_size % 8 != 4 or not 12 <= self.input_size <= 4092
                or not 0 <= self.margin <= 64 or not 0 <= self.context <= 64):
            raise MalformedFieldError(f"unsupported group layout {self} (stride 8, input size 4 mod 8)",
                                      field="groups")

    @property
    def grid(self) -> tuple[int, int]:
        """Split-grid size (rows, cols)."""
        n = math.ceil(self.input_size / self.stride)
        return n, n

    @classmethod
    def for_codec(cls, codec, **options) -> GroupLayout:
        """The layout of ``codec``'s front (its input size and stride), with encoder ``options``."""
        from ssb.backbones.features import front_card

        card = front_card(codec.front_name)
        return cls(card.input_size, card.feature_info[0].reduction, **options)

    def metadata(self) -> dict | None:
        """What a 2.x stream records of the layout: only encoder choices that are not the defaults."""
        default = GroupLayout()
        extra = {k: getattr(self, k) for k in ("margin", "context", "fill", "background_fill")
                 if getattr(self, k) != getattr(default, k)}
        return extra or None

    @classmethod
    def of_stream(cls, bs, codec) -> GroupLayout:
        """The layout of an open grouped stream: its 1.x ``groups`` block, or the codec's front (2.x)."""
        meta = (bs.header.metadata or {}).get("groups")
        if bs.version[0] < 2:
            return cls.from_json(meta)
        base = cls.for_codec(codec)
        if not isinstance(meta, dict):
            return base
        try:
            return cls(base.input_size, base.stride, int(meta.get("margin", base.margin)),
                       int(meta.get("context", base.context)), str(meta.get("fill", base.fill)),
                       str(meta.get("background_fill", base.background_fill)))
        except (TypeError, ValueError) as exc:
            raise MalformedFieldError(f"bad groups metadata {meta!r}", field="sequence_header.metadata.groups") from exc

    @classmethod
    def from_json(cls, meta: dict) -> GroupLayout:
        """The layout of a 1.x stream's ``groups`` metadata block."""
        if not isinstance(meta, dict) or meta.get("version") != GROUPS_VERSION:
            raise MalformedFieldError(f"unsupported groups metadata {meta!r}", field="sequence_header.metadata.groups")
        try:
            return cls(int(meta["input_size"]), int(meta["stride"]), int(meta["margin"]), int(meta["context"]),
                       str(meta.get("fill", "grey")), str(meta.get("background_fill", "grey")))
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedFieldError(f"bad groups metadata {meta!r}", field="sequence_header.metadata.groups") from exc


def group_window(box: tuple[int, int, int, int], image_size: tuple[int, int], layout: GroupLayout
                 ) -> tuple[int, int, int, int]:
    """``(row0, col0, rows, cols)`` in split cells of the window around a mask box (pixels, exclusive ends)."""
    h, w = image_size
    gh, gw = layout.grid
    cell = layout.stride
    x0, y0, x1, y1 = box
    sy, sx = layout.input_size / h, layout.input_size / w
    r0 = max(math.floor(y0 * sy / cell) - layout.margin, 0) & ~1
    c0 = max(math.floor(x0 * sx / cell) - layout.margin, 0) & ~1
    r1 = min(math.ceil(y1 * sy / cell) + layout.margin, gh)
    c1 = min(math.ceil(x1 * sx / cell) + layout.margin, gw)
    return r0, c0, max(r1 - r0, 1), max(c1 - c0, 1)


def masked_input(image: np.ndarray, keep: np.ndarray, input_size: int, fill: str = "grey") -> torch.Tensor:
    """Teacher input ``[1, 3, S, S]`` of ``image`` with every pixel outside ``keep`` filled from inside it."""
    from ssb.backbones.ssd_mobilenet_v2 import preprocess

    return preprocess([fill_outside(image, keep, fill)], size=input_size)


def grey_value() -> float:
    """The teacher-input value of a grey (``GREY``) pixel."""
    return GREY * 2.0 / 255.0 - 1.0


def front_window(front, x: torch.Tensor, window: tuple[int, int, int, int], layout: GroupLayout) -> torch.Tensor:
    """Split features ``[1, C, rows, cols]`` of ``window``, aligned with the full-frame grid.

    Runs ``front`` on a crop of ``x`` covering the window plus ``layout.context`` cells, clipped
    to the picture.  The crop starts on a multiple of 16 pixels and is ``8 k + 4`` pixels long
    (or ends at the picture's edge, which is ``12 mod 16`` pixels away for a 300-pixel input),
    so TensorFlow SAME padding puts its features exactly on the full-frame grid and treats the
    picture's edges as the full-frame network does (see the module doc).
    """
    r0, c0, rows, cols = window
    ctx, s = layout.context & ~1, layout.stride
    size = x.shape[-1]
    top, left = max((r0 - ctx) * s, 0), max((c0 - ctx) * s, 0)
    bottom = min(s * (r0 + rows + ctx - 1) + 4, size)
    right = min(s * (c0 + cols + ctx - 1) + 4, size)
    feats = front(x[..., top:bottom, left:right])
    r, c = r0 - top // s, c0 - left // s
    return feats[..., r : r + rows, c : c + cols].contiguous()


