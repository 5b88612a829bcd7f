"""Cold start of the command line, in one run on this machine: time to the first result.

Encodes one real photo (scikit-image's ``coffee``) once, then, ``--repeats`` times each in fresh
processes: ``python -c "import torch"`` (the floor any PyTorch program pays), ``ssb info`` (no
torch at all), and ``ssb analyze --task detection`` timed until its first result line appears on
stdout (the models load once, lazily, after the arguments and the stream are checked).  Prints the
medians and the ratios to ``import torch``.

    python benchmarks/bench_cold_start.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _time_to_line(cmd: list[str], marker: str) -> float:
    t = time.perf_counter()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as p:
        assert p.stdout is not None
        for line in p.stdout:
            if marker in line:
                elapsed = time.perf_counter() - t
                p.kill()
                return elapsed
        p.wait()
    raise RuntimeError(f"{' '.join(cmd)} never printed {marker!r}")


def _time(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    import numpy as np
    from PIL import Image
    from skimage import data

    ssb = [sys.executable, "-m", "ssb.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        photo, stream = Path(tmp) / "coffee.png", Path(tmp) / "coffee.ssb"
        Image.fromarray(np.asarray(data.coffee())).save(photo)
        subprocess.run([*ssb, "encode", str(photo), "-o", str(stream)], check=True, capture_output=True)
        runs = {"import torch": [], "ssb info": [], "ssb analyze (first result)": []}
        for _ in range(args.repeats):
            runs["import torch"].append(_time([sys.executable, "-c", "import torch"]))
            runs["ssb info"].append(_time([*ssb, "info", str(stream)]))
            runs["ssb analyze (first result)"].append(
                _time_to_line([*ssb, "analyze", str(stream), "--task", "detection"], "frame 0 detection"))
    base = statistics.median(runs["import torch"])
    for name, values in runs.items():
        m = statistics.median(values)
        print(f"{name:<28} median {m:6.2f} s over {len(values)} runs   ratio to import torch {m / base:5.2f}")


if __name__ == "__main__":
    main()
