"""Motion of a predicted frame: estimated on the ORIGINAL frames, coded per split cell, integer-exact.

**Estimation (encoder).**  DIS optical flow (OpenCV) from the current frame to the previous one,
on the original pixels, averaged over each cell of the split grid (the frame resized to the
teacher's square input, cells of ``stride`` pixels there) and expressed in *quarter pixels of the
teacher input*: ``mv = round(4 * flow * input_size / frame_size)`` per axis.  A cell whose two
components are both below ``MIN_MOTION`` is still (0, 0): DIS noise on a static background.
``mv`` points from a cell of the current frame to where its content was in the reference
(backward motion); an object's displacement *from* the reference *to* the current frame is
``-mv``.

**Coding.**  The MOTION payload (:data:`ssb.format.payloads.MOTION`) holds the mask of moving cells
(the lossless context coder of group masks, :mod:`ssb.codec.mask_coding`) and the vectors of the
moving cells in raster order, ``dx`` then ``dy``, coded with one of the integer Gaussian tables of
the video model (the encoder picks the table; its index is in the payload).

**Prediction (decoder and encoder alike).**  :func:`warp_latent` moves an integer latent by the
motion averaged over each latent cell (2 x 2 split cells), in 1/64 of a latent cell, with integer
bilinear weights and an arithmetic shift: bit-identical on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssb.errors import MalformedFieldError
from ssb.format.payloads import MOTION

__all__ = ["MotionField", "MotionEstimator", "MIN_MOTION", "pack_motion", "unpack_motion", "warp_latent",
           "latent_motion"]

#: Smallest coded component (quarter teacher-input pixels): below it on both axes a cell is still.
MIN_MOTION = 2
#: A component's magnitude is clipped to this (quarter pixels; 64 teacher-input pixels a frame).
MAX_MOTION = 256


@dataclass
class MotionField:
    """Backward motion of a window of the split grid: ``vectors`` int16 ``[2, rows, cols]`` (dx, dy) in
    quarter pixels of the teacher's ``input_size`` square input, at cells ``row0.., col0..``."""

    vectors: np.ndarray
    frame_size: tuple[int, int]
    input_size: int = 300
    stride: int = 8
    row0: int = 0
    col0: int = 0

    @property
    def moving(self) -> np.ndarray:
        return (self.vectors != 0).any(axis=0)

    def pixels(self) -> np.ndarray:
        """The backward motion in ORIGINAL frame pixels, float ``[2, rows, cols]``."""
        h, w = self.frame_size
        scale = np.array([w, h], dtype=np.float64)[:, None, None] / (4.0 * self.input_size)
        return self.vectors.astype(np.float64) * scale

    def cells_of(self, box) -> tuple[slice, slice]:
        """The window cells a box (frame pixels) covers (at least one cell, clipped to the window)."""
        h, w = self.frame_size
        rows, cols = self.vectors.shape[1:]
        sy, sx = self.input_size / (h * self.stride), self.input_size / (w * self.stride)
        r0 = int(np.clip(np.floor(box[1] * sy) - self.row0, 0, rows - 1))
        c0 = int(np.clip(np.floor(box[0] * sx) - self.col0, 0, cols - 1))
        r1 = int(np.clip(np.ceil(box[3] * sy) - self.row0, r0 + 1, rows))
        c1 = int(np.clip(np.ceil(box[2] * sx) - self.col0, c0 + 1, cols))
        return slice(r0, r1), slice(c0, c1)

    def displacement(self, box) -> tuple[float, float, float]:
        """How the content inside ``box`` moved from the reference to this frame: ``(dx, dy)`` in frame
        pixels (the mean over its moving cells; 0 when none moves) and the share of its cells moving."""
        rs, cs = self.cells_of(box)
        px = self.pixels()[:, rs, cs]
        moving = self.moving[rs, cs]
        if not moving.any():
            return 0.0, 0.0, 0.0
        return float(-px[0][moving].mean()), float(-px[1][moving].mean()), float(moving.mean())


class MotionEstimator:
    """DIS optical flow between consecutive ORIGINAL frames, reduced to the split grid (encoder side)."""

    def __init__(self, grid: tuple[int, int], input_size: int, stride: int, preset: str = "fast"):
        import cv2

        presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                   "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
        self._cv2 = cv2
        self._dis = cv2.DISOpticalFlow_create(presets[preset])
        self.grid, self.input_size, self.stride = grid, input_size, stride
        self._prev: np.ndarray | None = None

    def reset(self) -> None:
        self._prev = None

    def __call__(self, rgb: np.ndarray) -> MotionField | None:
        """The motion of ``rgb`` relative to the previous frame given (``None`` for the first)."""
        cv2 = self._cv2
        gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        prev, self._prev = self._prev, gray
        if prev is None or prev.shape != gray.shape:
            return None
        flow = self._dis.calc(gray, prev, None)  # current -> reference (backward)
        h, w = gray.shape
        rows, cols = self.grid
        # cell (i, j) of the teacher's grid covers frame rows i*H*stride/S .. and columns likewise
        span_y = int(round(h * self.stride * rows / self.input_size))
        span_x = int(round(w * self.stride * cols / self.input_size))
        padded = cv2.copyMakeBorder(flow, 0, max(span_y - h, 0), 0, max(span_x - w, 0), cv2.BORDER_REPLICATE)
        cells = cv2.resize(padded[:span_y, :span_x], (cols, rows), interpolation=cv2.INTER_AREA)
        mv = np.stack([cells[..., 0] * 4.0 * self.input_size / w, cells[..., 1] * 4.0 * self.input_size / h])
        mv = np.clip(np.rint(mv), -MAX_MOTION, MAX_MOTION).astype(np.int16)
        mv[:, (np.abs(mv) < MIN_MOTION).all(axis=0)] = 0
        return MotionField(mv, (h, w), self.input_size, self.stride)


def _table(std: float, scales: np.ndarray) -> int:
    return int(np.clip(np.searchsorted(scales, max(std, 1e-3)), 0, len(scales) - 1))


def pack_motion(field: MotionField, gaussian) -> bytes:
    """The MOTION payload of ``field``; ``gaussian``: the video model's GaussianConditional (its tables)."""
    from ssb.codec.mask_coding import encode_mask_bits
    from ssb.entropy.coding import encode_integers

    moving = field.moving
    values = field.vectors[:, moving].T.reshape(-1).astype(np.int64)  # dx, dy of each moving cell
    scales = gaussian.scale_table.detach().cpu().numpy()
    k = _table(float(np.sqrt(np.mean(values.astype(np.float64) ** 2))) if values.size else 0.0, scales)
    tables = gaussian.coding_tables()
    vec = encode_integers(values, np.full(values.size, k, dtype=np.int64), tables) if values.size else b""
    rows, cols = moving.shape
    return MOTION.pack({"version": 1, "row0": field.row0, "col0": field.col0, "rows": rows, "cols": cols, "scale": k,
                        "moving": encode_mask_bits(moving), "vectors": vec})


def unpack_motion(payload, *, ctx: dict, gaussian, frame_size: tuple[int, int], input_size: int, stride: int,
                  offset: int = 0, field: str = "unit") -> MotionField:
    """Parse, check (against the model's grid and tables) and decode a MOTION payload."""
    from ssb.codec.mask_coding import decode_mask_bits
    from ssb.entropy.coding import decode_integers

    tables = gaussian.coding_tables()
    rec, _ = MOTION.unpack(memoryview(payload), base=offset, path=f"{field}.payload",
                           ctx={**ctx, "tables": tables.num_tables})
    rows, cols = rec["rows"], rec["cols"]
    moving = decode_mask_bits(rec["moving"], rows, cols, offset=rec.offsets["moving"], field=f"{field}.payload.moving")
    n = int(moving.sum()) * 2
    vectors = np.zeros((2, rows, cols), dtype=np.int16)
    if n:
        values = decode_integers(bytes(rec["vectors"]), np.full(n, rec["scale"], dtype=np.int64), tables,
                                 field=f"{field}.payload.vectors", offset=rec.offsets["vectors"])
        if np.abs(values).max() > MAX_MOTION:
            raise MalformedFieldError(f"a motion component exceeds {MAX_MOTION} quarter pixels",
                                      offset=rec.offsets["vectors"], field=f"{field}.payload.vectors")
        vectors[:, moving] = values.reshape(-1, 2).T
    elif len(rec["vectors"]):
        raise MalformedFieldError("vectors given for a frame with no moving cell", offset=rec.offsets["vectors"],
                                  field=f"{field}.payload.vectors")
    return MotionField(vectors, tuple(frame_size), input_size, stride, rec["row0"], rec["col0"])


def latent_motion(field: MotionField, latent_hw: tuple[int, int]) -> torch.Tensor:
    """Per latent cell (2 x 2 split cells) the mean backward motion in 1/64 of a latent cell (int64
    ``[2, h, w]``): a latent cell is 16 teacher-input pixels, 64 quarter pixels."""
    h, w = latent_hw
    v = torch.zeros(2, 2 * h, 2 * w, dtype=torch.int64)
    rows, cols = field.vectors.shape[1:]
    v[:, field.row0: field.row0 + rows, field.col0: field.col0 + cols] = torch.from_numpy(field.vectors.astype(np.int64))
    s = v.view(2, h, 2, w, 2).sum(dim=(2, 4))
    return torch.div(s, 4, rounding_mode="floor")


def warp_latent(ref: torch.Tensor, mv: torch.Tensor) -> torch.Tensor:
    """``ref`` (integer-valued ``[1, C, h, w]``) sampled at ``(y + dy/64, x + dx/64)`` per cell, bilinear
    with integer weights (``/4096`` by an arithmetic shift), borders replicated: exact integers."""
    _, c, h, w = ref.shape
    r = ref.to(torch.int64)[0]
    dx, dy = mv[0], mv[1]
    yy = torch.arange(h).view(h, 1) + torch.div(dy, 64, rounding_mode="floor")
    xx = torch.arange(w).view(1, w) + torch.div(dx, 64, rounding_mode="floor")
    fy, fx = torch.remainder(dy, 64), torch.remainder(dx, 64)
    y0, y1 = yy.clamp(0, h - 1), (yy + 1).clamp(0, h - 1)
    x0, x1 = xx.clamp(0, w - 1), (xx + 1).clamp(0, w - 1)
    a, b = r[:, y0, x0], r[:, y0, x1]
    cc, d = r[:, y1, x0], r[:, y1, x1]
    top = (64 - fx) * a + fx * b
    bottom = (64 - fx) * cc + fx * d
    out = torch.div((64 - fy) * top + fy * bottom + 2048, 4096, rounding_mode="floor")
    return out[None].to(ref.dtype)
