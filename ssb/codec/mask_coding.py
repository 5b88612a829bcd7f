"""Lossless coding of binary group masks: context-adaptive binary arithmetic coding (constriction ANS).

A group mask is coded over its tight bounding box (every edge row and column of the box holds
at least one mask pixel), in raster order.  Each pixel is coded with a Bernoulli model whose
probability comes from an adaptive counter selected by its *context*: the values of
``len(TEMPLATE)`` causal neighbours (pixels above, or to the left on the same row; neighbours
outside the box count as 0), as in JBIG2's generic region coding.

Everything that feeds the coder is integer: each context holds two counts ``n0, n1`` (both start
at 0); the probability of a 1 is the Krichevsky-Trofimov estimate quantized to 16 bits,

    ``p1 = clip(((2 * n1 + 1) << 16) // (2 * (n0 + n1) + 2), P_MIN, 65536 - P_MIN) / 65536``,

a dyadic rational, so every decoder derives the same ``p1`` bit for bit; when ``n0 + n1``
reaches ``HALVE_AT`` both counts are halved (rounding up), which keeps the model adaptive.
The Bernoulli models are constriction's (``perfect=False``); the string is the ANS coder's
compressed words, written as little-endian ``u32``.  constriction's ANS coder is a stack:
the encoder computes every pixel's probability in raster order, then pushes the pixels in
reverse, so the decoder pops them in raster order.

The ``GROUP_MASK`` payload syntax is :data:`ssb.format.payloads.GROUP_MASK` (docs/format.md,
section 15): version, coder, the box, then the ANS string of u32 words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssb._optional import require
from ssb.errors import LimitExceededError, MalformedFieldError, TruncatedError
from ssb.format.payloads import GROUP_MASK, MASK_MAX_PIXELS

__all__ = [
    "TEMPLATE",
    "MAX_MASK_PIXELS",
    "MaskUnit",
    "encode_mask_bits",
    "decode_mask_bits",
    "pack_group_mask",
    "unpack_group_mask",
    "mask_bbox",
]

#: Causal neighbours ``(dy, dx)`` forming the context, most significant bit first: W, NW, N, NE.
#: (On 112 real foreground masks of vtest.avi, 6- and 10-pixel templates cost 3% and 7% more:
#: a mask of a few thousand pixels is too short to train their 64 / 1024 counters.)
TEMPLATE: tuple[tuple[int, int], ...] = ((0, -1), (-1, -1), (-1, 0), (-1, 1))
#: Smallest probability of either symbol, in 1/65536 (bounds the cost of a pixel to 11 bits).
P_MIN = 32
#: Counts are halved when their sum reaches this value.
HALVE_AT = 1024
#: Largest mask (bounding-box pixels) a decoder accepts: decoding time and memory are linear in it.
MAX_MASK_PIXELS = MASK_MAX_PIXELS

MASK_VERSION = 1
CODER_CONTEXT = 1
_PAD = max(max(-dy, abs(dx)) for dy, dx in TEMPLATE)
assert len(TEMPLATE) == 4, "_scan unrolls a 4-pixel template"  # the template is part of coder id 1
_STATE_WORDS = 2
#: One pixel costs at most -log2(P_MIN / 65536) = 11 bits.
_MAX_BITS_PER_PIXEL = 11


def _bernoulli():
    return require("constriction", "group-mask coding").stream.model.Bernoulli


def _scan(height: int, width: int, rows: np.ndarray | None = None, coder=None) -> tuple[list[int], list[int]]:
    """The raster scan both sides run: contexts, adaptive counts, probabilities (see the module doc).

    Encoding (``rows`` given): returns the padded raster and every pixel's ``p1`` in 1/65536.
    Decoding (``coder`` given): pops each pixel from the ANS coder with its ``p1``; returns the
    padded raster (``_PAD`` zero rows above, ``_PAD`` zero columns left and right).
    One function for both, written flat: this loop is the mask coder's whole cost in Python.
    """
    n0 = [0] * (1 << len(TEMPLATE))
    n1 = [0] * (1 << len(TEMPLATE))
    stride = width + 2 * _PAD
    o0, o1, o2, o3 = (dy * stride + dx for dy, dx in TEMPLATE)
    raster = [0] * ((height + _PAD) * stride)
    probs: list[int] = []
    models: dict = {}
    bernoulli = _bernoulli() if coder is not None else None
    p_max = 65536 - P_MIN
    for y in range(height):
        base = (y + _PAD) * stride + _PAD
        row = rows[y].tolist() if rows is not None else None
        for x in range(width):
            pos = base + x
            ctx = (raster[pos + o0] << 3) | (raster[pos + o1] << 2) | (raster[pos + o2] << 1) | raster[pos + o3]
            a, b = n0[ctx], n1[ctx]
            p = ((2 * b + 1) << 16) // (2 * (a + b) + 2)
            p = P_MIN if p < P_MIN else (p_max if p > p_max else p)
            if coder is None:
                bit = row[x]
                probs.append(p)
            else:
                model = models.get(p)
                if model is None:
                    model = models[p] = bernoulli(p / 65536.0, perfect=False)
                bit = int(coder.decode(model))
            raster[pos] = bit
            if bit:
                b += 1
            else:
                a += 1
            if a + b >= HALVE_AT:
                a, b = (a + 1) >> 1, (b + 1) >> 1
            n0[ctx], n1[ctx] = a, b
    return raster, probs


def encode_mask_bits(mask: np.ndarray) -> bytes:
    """ANS string of a 2-D boolean mask (any content; :func:`pack_group_mask` adds the box)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or mask.size == 0:
        raise MalformedFieldError(f"a mask must be a non-empty 2-D array, got shape {mask.shape}", field="mask")
    if mask.size > MAX_MASK_PIXELS:
        raise LimitExceededError(f"mask of {mask.size} pixels exceeds {MAX_MASK_PIXELS}", field="mask")
    bits = mask.astype(np.int32)
    _, probs = _scan(*mask.shape, rows=bits)
    coder = require("constriction", "group-mask coding").stream.stack.AnsCoder()
    coder.encode_reverse(bits.ravel(), _bernoulli()(perfect=False), np.asarray(probs, dtype=np.float64) / 65536.0)
    return coder.get_compressed().astype("<u4").tobytes()


def decode_mask_bits(data, height: int, width: int, *, offset: int = 0, field: str = "mask") -> np.ndarray:
    """Inverse of :func:`encode_mask_bits` for a ``height x width`` mask.

    Raises :class:`~ssb.errors.SSBError` subclasses for a size over :data:`MAX_MASK_PIXELS`, a
    string whose length no encoder produces, or one that does not decode to exactly the pixels
    declared (the ANS coder must be empty afterwards).  ``offset`` is the string's absolute byte
    offset, for error messages.
    """
    count = height * width
    if height < 1 or width < 1:
        raise MalformedFieldError(f"mask size {height}x{width} is empty", offset=offset, field=field)
    if count > MAX_MASK_PIXELS:
        raise LimitExceededError(f"mask of {height}x{width} pixels exceeds {MAX_MASK_PIXELS}",
                                 offset=offset, field=field)
    data = bytes(data)
    if len(data) % 4:
        raise TruncatedError(f"mask string of {len(data)} bytes is not a whole number of u32 words",
                             offset=offset + len(data) - len(data) % 4, field=field)
    if len(data) // 4 > _STATE_WORDS + (count * _MAX_BITS_PER_PIXEL + 31) // 32:
        raise MalformedFieldError(f"mask string of {len(data)} bytes is longer than any coding of "
                                  f"{count} pixels", offset=offset, field=field)
    constriction = require("constriction", "group-mask coding")
    try:
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        raster, _ = _scan(height, width, coder=coder)
        empty = coder.is_empty()
    except Exception as exc:  # constriction reports invalid data as ValueError / RuntimeError
        raise MalformedFieldError(f"mask decoder rejected the string: {exc}", offset=offset, field=field) from exc
    if not empty:
        raise MalformedFieldError("mask string is corrupted or truncated (coder not exhausted after the last "
                                  "pixel)", offset=offset, field=field)
    full = np.asarray(raster, dtype=bool).reshape(height + _PAD, width + 2 * _PAD)
    return full[_PAD:, _PAD : _PAD + width].copy()


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight bounding box ``(x0, y0, x1, y1)`` (``x1, y1`` exclusive) of a boolean mask, None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


@dataclass(frozen=True)
class MaskUnit:
    """A decoded ``GROUP_MASK`` payload: the mask over its box and where the box sits in the frame."""

    x0: int
    y0: int
    mask: np.ndarray  # bool [height, width], tight

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``, ``x1, y1`` exclusive."""
        return self.x0, self.y0, self.x0 + self.mask.shape[1], self.y0 + self.mask.shape[0]

    def full(self, height: int, width: int) -> np.ndarray:
        """The mask pasted into an all-False ``height x width`` frame."""
        out = np.zeros((height, width), dtype=bool)
        x0, y0, x1, y1 = self.bbox
        out[y0:y1, x0:x1] = self.mask
        return out


def pack_group_mask(mask: np.ndarray) -> bytes:
    """``GROUP_MASK`` payload of a full-frame boolean mask (coded over its tight bounding box)."""
    mask = np.asarray(mask, dtype=bool)
    box = mask_bbox(mask) if mask.ndim == 2 else None
    if box is None:
        raise MalformedFieldError("a group mask must be a 2-D array with at least one pixel set", field="mask")
    x0, y0, x1, y1 = box
    if max(x1, y1) > 0xFFFF:
        raise LimitExceededError(f"mask box {box} does not fit 16-bit coordinates", field="mask")
    return GROUP_MASK.pack({"version": MASK_VERSION, "coder": CODER_CONTEXT, "x0": x0, "y0": y0, "width": x1 - x0,
                            "height": y1 - y0, "mask": encode_mask_bits(mask[y0:y1, x0:x1])})


def unpack_group_mask(payload, frame_size: tuple[int, int], *, unit_offset: int = 0,
                      field: str = "unit") -> MaskUnit:
    """Parse, bound-check (syntax :data:`ssb.format.payloads.GROUP_MASK`) and decode a ``GROUP_MASK``
    payload for a frame of ``(height, width)`` pixels."""
    rec, _ = GROUP_MASK.unpack(memoryview(payload), base=unit_offset, path=f"{field}.payload",
                               ctx={"frame": tuple(frame_size)})
    bits = decode_mask_bits(rec["mask"], rec["height"], rec["width"], offset=rec.offsets["mask"],
                            field=f"{field}.payload.mask")
    if not (bits[0].any() and bits[-1].any() and bits[:, 0].any() and bits[:, -1].any()):
        raise MalformedFieldError("decoded mask does not touch every edge of its declared box (corrupted payload)",
                                  offset=rec.offsets["mask"], field=f"{field}.payload.mask")
    return MaskUnit(rec["x0"], rec["y0"], bits)
