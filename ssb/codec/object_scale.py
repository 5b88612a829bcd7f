"""Object-scale enhancement units (``OBJECT_SCALE``): each object coded at its own scale.

The frame-level features (BASE) are the base layer: detection and counting read them, or only the
index.  For each object of the classes asked for (people by default), the encoder adds one
``OBJECT_SCALE`` unit, attributed in the index (object id, class, box, score): the object's
*window* of the ORIGINAL frame (its box enlarged by :attr:`ObjectScaleLayout.box_scale` to the
layout's aspect, whole pixels), resampled to the layout's fixed input size, run through the
model's front and coded alone by the same codec (its own latent and hyper-latent strings).  A large
and a small person thus reach the heads at the same normalised size: a pose or mask head reads a
person's unit and the index, never the BASE of the frame or another object's unit.

**Independence.**  A unit is a function of its window's pixels and of the object's box only
(batch-1 coding), and it decodes alone: reading it needs no other unit.

The window rule and the input size are encoder choices; each payload carries its window and its
coded grid (``docs/format.md`` section 14.1), so a decoder needs neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ssb.errors import MalformedFieldError

__all__ = [
    "DEFAULT_LAYOUT",
    "OBJECT_SIZES",
    "ObjectScaleLayout",
    "ObjectView",
    "crop_window",
    "encode_view",
    "layout_for",
    "object_window",
    "window_box",
]


@dataclass(frozen=True)
class ObjectScaleLayout:
    """Where an object's window is and the size it is coded at.

    ``input_size``: (height, width) pixels every window is resampled to (multiples of the front's
    stride 8); ``aspect``: window height / width (a person's 4:3); ``box_scale``: the window is
    the box lengthened to ``aspect`` then scaled by this about its centre.
    """

    input_size: tuple[int, int] = (128, 96)
    aspect: float = 4.0 / 3.0
    box_scale: float = 1.25
    fill: int = 128  #: grey outside the frame (the front's zero)

    def __post_init__(self):
        h, w = self.input_size
        if h % 8 or w % 8 or h < 8 or w < 8 or h * w > 512 * 512:
            raise MalformedFieldError(f"object input size must be multiples of 8 up to 512x512, got {h}x{w}",
                                      field="object_size")

    @property
    def grid(self) -> tuple[int, int]:
        return self.input_size[0] // 8, self.input_size[1] // 8


DEFAULT_LAYOUT = ObjectScaleLayout()
#: the object sizes (input height, width) the reference heads are trained on; ``--object-size``
OBJECT_SIZES = {"small": (64, 48), "medium": (96, 72), "large": (128, 96)}


def layout_for(size) -> ObjectScaleLayout:
    """The layout coding objects at ``size``: a name of :data:`OBJECT_SIZES` or ``(height, width)``."""
    import dataclasses

    if isinstance(size, str):
        if size not in OBJECT_SIZES:
            raise MalformedFieldError(f"object size must be one of {', '.join(OBJECT_SIZES)} or HxW, got {size!r}",
                                      field="object_size")
        size = OBJECT_SIZES[size]
    return dataclasses.replace(DEFAULT_LAYOUT, input_size=(int(size[0]), int(size[1])))


def object_window(bbox, layout: ObjectScaleLayout = DEFAULT_LAYOUT) -> tuple[int, int, int, int]:
    """``(x0, y0, width, height)`` in whole frame pixels: ``bbox`` (xyxy) at the layout's aspect and scale."""
    x1, y1, x2, y2 = (float(v) for v in bbox)
    if not all(np.isfinite([x1, y1, x2, y2])):
        raise MalformedFieldError(f"non-finite box {bbox}", field="bbox")
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    w, h = max(w, h / layout.aspect), max(h, w * layout.aspect)
    w, h = w * layout.box_scale, h * layout.box_scale
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    x0, y0 = int(np.floor(cx - w / 2.0)), int(np.floor(cy - h / 2.0))
    return x0, y0, max(int(np.ceil(cx + w / 2.0)) - x0, 1), max(int(np.ceil(cy + h / 2.0)) - y0, 1)


def window_box(window) -> tuple[float, float, float, float]:
    """The window ``(x0, y0, width, height)`` as an xyxy box."""
    x0, y0, w, h = window
    return float(x0), float(y0), float(x0 + w), float(y0 + h)


def crop_window(image: np.ndarray, window, size: tuple[int, int], fill: int = 128) -> np.ndarray:
    """``size`` (h, w): the frame's pixels in ``window`` (``fill`` outside the frame), resampled (area
    averaging when shrinking, bilinear when enlarging); ``image`` is RGB uint8 (or one channel)."""
    import cv2

    x0, y0, w, h = (int(v) for v in window)
    fh, fw = image.shape[:2]
    out = np.full((h, w) + image.shape[2:], fill, dtype=image.dtype)
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, fw), min(y0 + h, fh)
    if xb > xa and yb > ya:
        out[ya - y0: yb - y0, xa - x0: xb - x0] = image[ya:yb, xa:xb]
    th, tw = size
    interp = cv2.INTER_AREA if (w > tw and h > th) else cv2.INTER_LINEAR
    return cv2.resize(out, (tw, th), interpolation=interp)


@torch.no_grad()
def window_features(front, image: np.ndarray, window, layout: ObjectScaleLayout = DEFAULT_LAYOUT) -> torch.Tensor:
    """The front's split features ``[1, C, rows, cols]`` of one window of ``image`` at the layout's size."""
    from ssb.backbones.ssd_mobilenet_v2 import preprocess

    crop = crop_window(image, window, layout.input_size, layout.fill)
    return front(preprocess([crop], size=layout.input_size))


@torch.no_grad()
def encode_view(codec, front, image: np.ndarray, window, level: int,
                layout: ObjectScaleLayout = DEFAULT_LAYOUT) -> bytes:
    """The OBJECT_SCALE payload of one window of ``image`` (a function of those pixels only)."""
    from ssb.codec.payload import pack_object_scale

    return pack_object_scale(window, codec.compress(window_features(front, image, window, layout), level)[0])


@dataclass
class ObjectView:
    """One decoded object-scale unit: what the index says about the object, its window and its features."""

    object_id: int | None
    class_id: int | None
    score: float | None
    bbox: tuple[float, float, float, float] | None  #: the index's box (frame pixels)
    window: tuple[int, int, int, int]  #: (x0, y0, width, height) the features span, frame pixels
    features: torch.Tensor  #: split features ``[1, C, rows, cols]`` of the window
    level: int = 0
    nbytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def window_box(self) -> tuple[float, float, float, float]:
        return window_box(self.window)
