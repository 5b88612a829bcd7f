"""Argument helpers shared by the sub-commands."""

from __future__ import annotations

import argparse

from ssb.errors import MalformedFieldError


def frame_range(text: str) -> range:
    """``"A:B"`` (B excluded), ``"A:"`` is refused (unbounded), ``"N"`` is one frame."""
    try:
        if ":" in text:
            a, b = text.split(":", 1)
            if not b:
                raise ValueError
            r = range(int(a or 0), int(b))
        else:
            r = range(int(text), int(text) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FRAMES as A:B or N, got {text!r}") from None
    if r.start < 0 or len(r) == 0:
        raise argparse.ArgumentTypeError(f"empty or negative frame range {text!r}")
    return r


def class_ids(text: str) -> list[int]:
    """Comma-separated COCO class names or ids -> ids."""
    from ssb.tasks.coco_names import COCO_CATEGORIES

    by_name = {v: k for k, v in COCO_CATEGORIES.items()}
    out = []
    for tok in (t.strip() for t in text.split(",") if t.strip()):
        if tok.isdigit():
            out.append(int(tok))
        elif tok in by_name:
            out.append(by_name[tok])
        else:
            raise MalformedFieldError(f"unknown COCO class {tok!r}", field="--classes")
    return out
