"""Container benchmark: lazy parsing speed, and bytes read by `ssb info` and by a one-class query.

Every figure is printed next to its baseline, measured in the same run on the same file:

* parsing: units per second of ``ssb.format.open`` (headers and indexes only) against
  opening *and* reading + CRC-checking every payload (``Bitstream.check``), and against
  merely reading the file's bytes;
* bytes: bytes read by ``summarize`` (what ``ssb info`` prints) and by
  ``select(classes={c})`` + reading the selected payloads, as a fraction of the file
  (the baseline, reading the whole file, is 1.0), with their times against reading
  the whole file.

The stream is synthetic (seeded): ``--frames`` frames of ``--units-per-frame`` units (a
BASE, a BACKGROUND, a METADATA, the rest OBJECT units of 10 COCO classes with a skewed
frequency, payload sizes drawn around those of a feature codec).

    python benchmarks/bench_format.py                 # 100 000 units
    python benchmarks/bench_format.py --frames 100    # quicker
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from ssb.format import SequenceHeader, UnitType, Writer, summarize
from ssb.format import open as ssb_open

# COCO ids: person, bicycle, car, motorcycle, bus, truck, bird, cat, dog, backpack
CLASSES = [1, 2, 3, 4, 6, 8, 16, 17, 18, 27]
CLASS_P = np.array([40, 4, 20, 4, 3, 6, 5, 5, 8, 5], dtype=float) / 100
NAMES = {
    1: "person",
    2: "bicycle",
    3: "car",
    4: "motorcycle",
    6: "bus",
    8: "truck",
    16: "bird",
    17: "cat",
    18: "dog",
    27: "backpack",
}


def build(path: Path, frames: int, units_per_frame: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, size=1 << 16, dtype=np.uint8).tobytes()
    header = SequenceHeader(1920, 1080, 25, 1, "bench", {"classes": {str(k): v for k, v in NAMES.items()}})
    n = 0
    with Writer(path, header) as w:
        for f in range(frames):
            w.begin_frame(f, pts=f * 40_000)
            w.add_unit(UnitType.BASE, pool[: int(rng.integers(6000, 10000))])
            w.add_unit(UnitType.BACKGROUND, pool[: int(rng.integers(2000, 4000))])
            w.add_unit(UnitType.METADATA, b'{"frame": %d}' % f)
            n_obj = units_per_frame - 3
            classes = rng.choice(CLASSES, size=n_obj, p=CLASS_P)
            sizes = rng.integers(400, 2400, size=n_obj)
            xy = rng.uniform(0, 1800, size=(n_obj, 2))
            for k in range(n_obj):
                x, y = xy[k]
                w.add_unit(
                    UnitType.OBJECT,
                    pool[: int(sizes[k])],
                    object_id=k,
                    class_id=int(classes[k]),
                    bbox=(x, y, x + 60, y + 120),
                    score=0.9,
                )
            w.end_frame()
            n += units_per_frame + 2
    return n


def best(fn, repeat: int = 3):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--units-per-frame", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.ssb"
        t = time.perf_counter()
        build(path, args.frames, args.units_per_frame)
        t_write = time.perf_counter() - t
        size = path.stat().st_size
        with ssb_open(path) as bs:
            n_units = len(bs.units)
            content = sum(
                1
                for u in bs.units
                if u.frame is not None and u.type not in (UnitType.FRAME_HEADER, UnitType.INDEX)
            )
        print(
            f"file: {n_units} units ({content} content units) in {args.frames} frames, {size / 1e6:.1f} MB; "
            f"written in {t_write:.2f} s ({n_units / t_write:,.0f} units/s)"
        )

        def read_all():
            data = path.read_bytes()
            return zlib.crc32(data)

        def lazy_open():
            with ssb_open(path) as b:
                return len(b.units), b.bytes_read

        def full_parse():
            with ssb_open(path) as b:
                problems = b.check()
                assert not problems
                return len(b.units), b.bytes_read

        def info():
            with ssb_open(path) as b:
                summarize(b, boxes=False)  # what `ssb info` computes (--json adds the list of boxes)
                return b.bytes_read

        def select_one(cls):
            def run():
                with ssb_open(path) as b:
                    sel = b.select(classes={cls})
                    for _unit, _view in sel.payloads():  # the payload read (CRC-verified) is the cost
                        pass
                    return b.bytes_read, sel.nbytes, sum(1 for u in sel.units if u.class_id == cls)

            return run

        t_read, _ = best(read_all, args.repeat)
        t_lazy, (units, lazy_bytes) = best(lazy_open, args.repeat)
        t_full, (_, full_bytes) = best(full_parse, args.repeat)
        t_info, info_bytes = best(info, args.repeat)
        rows = [
            ("baseline: read whole file + CRC-32", t_read, size, None),
            ("baseline: open + read/verify all payloads", t_full, full_bytes, units / t_full),
            ("lazy open (headers + indexes)", t_lazy, lazy_bytes, units / t_lazy),
            ("ssb info (summarize, no payload)", t_info, info_bytes, None),
        ]
        for cls in (1, 18):
            t_sel, (sel_bytes, nbytes, n_hits) = best(select_one(cls), args.repeat)
            label = f"select class {cls} ({NAMES[cls]}) + read it"
            rows.append((label, t_sel, sel_bytes, None))
            print(
                f"class {cls} ({NAMES[cls]}): {n_hits} units = {n_hits / content:.1%} of content units; "
                f"its merged byte ranges (shared units included) = {nbytes / size:.4f} of the file"
            )

        print(
            f"\n{'measurement (best of %d)' % args.repeat:<44} {'time':>9} {'time ratio':>10} "
            f"{'bytes read':>11} {'units/s':>10}"
        )
        print(f"{'':<44} {'':>9} {'vs read':>10} {'/ file':>11}")
        for label, t, nbytes, rate in rows:
            rate_s = f"{rate:10,.0f}" if rate else f"{'':>10}"
            print(f"{label:<44} {t * 1e3:6.1f} ms {t / t_read:9.2f}x {nbytes / size:11.4f} {rate_s}")
        print(
            f"\nlazy open parses {units / t_lazy:,.0f} units/s = {t_full / t_lazy:.1f}x the full parse "
            f"({units / t_full:,.0f} units/s)"
        )
        print(f"(cpu count {os.cpu_count()}, numpy {np.__version__}; wall-clock, file in the page cache)")


if __name__ == "__main__":
    main()
