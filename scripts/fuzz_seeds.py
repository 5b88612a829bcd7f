"""The payload fuzzer's run constants and seed streams (``scripts/fuzz_payloads.py``, issue 13).

The seed streams are real vtest.avi frames coded with the shipped models (:data:`SEEDS`,
:func:`build_seeds`, in the worker); :class:`Seed` lists a stream's content units (:class:`Unit`)
for the mutators.  Nothing here imports torch.
"""

from __future__ import annotations

import io
import random
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

FAMILIES = ("field", "bytes", "index", "splice")
#: the seed streams: vtest.avi frames [a, b), coded at level QUALITY with the shipped models
SEEDS = {
    "image": {"codec": "ssb.image", "frames": (620, 622)},
    "grouped": {"codec": "ssb.grouped", "groups": "auto", "frames": (640, 641)},
    "video": {"codec": "ssb.video", "frames": (620, 625), "gop": 3},
    "objects": {"codec": "ssb.image", "frames": (650, 652), "object_scale": [1], "object_quality": 0},
}
SEED_NAMES = tuple(SEEDS)
QUALITY = 0
DEFAULT_TIME_LIMIT = 20.0
DEFAULT_MEMORY_LIMIT = 2 << 30
DEFAULT_FINDINGS = "/tmp/fuzz_findings"
STARTUP_LIMIT = 900.0
#: the split grid of the shipped model (38 x 38 cells of stride 8 over a 300 x 300 input)
GRID = 38
#: bounds of a "bounded" result: no decode of these seeds may give more
MAX_DETECTIONS = 1000
MAX_IMAGE_BYTES = 1 << 30
ACCEPTED = ("ok", "ssb")


@dataclass
class Unit:
    position: int  # fragment position in stream order
    k: int  # content unit index inside the fragment
    number: int
    type: int
    payload: bytes


def _units(data: bytes) -> list[Unit]:
    from ssb.format.reader import open_bitstream

    out = []
    with open_bitstream(data, verify=False) as bs:
        for pos, fr in enumerate(bs.frames):
            for k, u in enumerate(fr.units):
                out.append(Unit(pos, k, u.number, int(u.type), bytes(u.payload())))
    return out


def _frame_count(data: bytes) -> int:
    from ssb.format.reader import open_bitstream

    with open_bitstream(data, verify=False) as bs:
        return len(bs.frames)


def _tname(t: int) -> str:
    from ssb.format.layout import type_name

    return type_name(t)


def _pick(rng: random.Random, pool):
    return pool[rng.randrange(len(pool))]


class Seed:
    """A seed stream and its content units."""

    def __init__(self, name: str, data: bytes):
        self.name = name
        self.data = data
        self.units = _units(data)
        self.frames = _frame_count(data)


def build_seeds(models) -> dict[str, bytes]:
    """The seed streams (deterministic: real frames, shipped models, one thread)."""
    from ssb import pipeline
    from ssb.resources import vtest_path

    src = str(vtest_path())
    out = {}
    for name, spec in SEEDS.items():
        opts = dict(spec)
        a, b = opts.pop("frames")
        buf = io.BytesIO()
        pipeline.encode(src, buf, quality=QUALITY, frames=range(a, b), models=models, **opts)
        out[name] = buf.getvalue()
    return out
