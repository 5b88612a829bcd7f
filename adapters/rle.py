"""COCO run-length encoding of masks, in numpy alone (byte-identical to pycocotools' ``mask.encode``).

COCO's compressed RLE counts alternating runs of 0s and 1s in column-major order, starting with
0s; the string form codes each count (from the third on, as its difference to the count two
before) as little-endian groups of 5 bits, each group a character ``48 + bits`` with ``0x20`` set
while more groups follow (``maskApi.c``: ``rleToString`` / ``rleFrString``).  Writing results JSON
therefore needs no pycocotools; only evaluation does.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ssb.errors import MalformedFieldError

from ._arrays import as_numpy

__all__ = ["mask_to_rle", "rle_to_mask", "counts_to_string", "string_to_counts"]


def _runs(mask: np.ndarray) -> list[int]:
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


def counts_to_string(counts: list[int]) -> str:
    """The compressed string of COCO RLE ``counts``."""
    out = []
    for i, x in enumerate(counts):
        x = int(x) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: negative differences end in all ones
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def string_to_counts(text: str, field: str = "segmentation.counts") -> list[int]:
    """COCO RLE ``counts`` from their compressed string (bounded: each count at most 13 groups)."""
    counts: list[int] = []
    p, n = 0, len(text)
    while p < n:
        x = k = 0
        more = True
        while more:
            if p >= n or k > 12:
                raise MalformedFieldError("RLE string ends inside a count", field=field)
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise MalformedFieldError(f"bad RLE character {text[p]!r}", field=field)
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def mask_to_rle(mask: Any) -> dict:
    """COCO compressed RLE of one [H, W] mask (non-zero = inside), ``counts`` as a str (JSON-ready)."""
    m = as_numpy(mask)
    if m.ndim != 2:
        raise MalformedFieldError(f"a mask must be [H, W], got shape {m.shape}", field="mask")
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": counts_to_string(_runs(m != 0))}


def rle_to_mask(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (compressed ``counts`` str/bytes, or an uncompressed list) into a boolean [H, W] mask."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
        if isinstance(counts, (bytes, bytearray)):
            counts = counts.decode("ascii")
        counts = string_to_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise MalformedFieldError(f"not a COCO RLE: {exc}", field="segmentation") from exc
    if h < 0 or w < 0:
        raise MalformedFieldError(f"RLE size must be [height, width], got {[h, w]}", field="segmentation.size")
    if any(c < 0 for c in counts) or sum(counts) != h * w:
        raise MalformedFieldError(f"RLE counts cover {sum(counts)} pixels, the mask has {h * w}",
                                  field="segmentation.counts")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((h, w), order="F")
