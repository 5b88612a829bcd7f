"""Batch analysis on Ray: 1 -> 2 workers, and what the engines cost per stream against a plain loop.

``--streams`` real streams (one vtest.avi frame each, spread over the clip, level ``--level``, the
shipped codec and the real teacher) are coded once into ``--dir`` (a temporary folder by default;
an existing folder of streams is reused).  Then, in this one run, detection on every stream:

* ``plain loop``: ``pipeline.analyze`` per stream in this process, models loaded beforehand;
* ``local engine``: ``batch_analyze(engine="local")`` (the same analysis, rows, Parquet output);
* ``ray, 1 worker`` and ``ray, 2 workers``: ``batch_analyze(engine="ray")`` on one local
  ``ray.init(num_cpus=2)``; wall time includes starting the actors and loading their models.

Each engine also analyses the first ``--tiny`` streams alone: that short run gives its fixed cost
(start, model loading, output) and the two runs its marginal cost per stream, ``(wall(N) -
wall(tiny)) / (N - tiny)``.  Prints wall seconds, streams/s, fixed seconds and marginal ms/stream
of each; the 2-worker / 1-worker throughput ratio, marginal and wall (goal >= 1.8x on 2 cores); each
engine's extra ms/stream against the plain loop; and the CPU time per stream of each (this process,
plus the Ray workers' map time from Ray Data's stats), which the other load of a shared machine
does not inflate the way it does wall time.  Torch runs one thread per worker.  Every
measurement is repeated in ``--rounds`` interleaved rounds and the best kept; the load average is
printed, since on a shared machine the figures move with the other load.

    python benchmarks/bench_ray.py [--streams 300] [--level 0] [--batch-size 8] [--tiny 4] [--rounds 2] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def encode_streams(folder: Path, count: int, level: int, models) -> list[str]:
    from ssb import pipeline
    from ssb.resources import vtest_path

    folder.mkdir(parents=True, exist_ok=True)
    have = sorted(str(p) for p in folder.glob("*.ssb"))
    if len(have) >= count:
        return have[:count]
    clip = vtest_path()
    step = max(1, 790 // count)
    for i in range(count):
        out = folder / f"s{i:05d}.ssb"
        if not out.exists():
            first = i * step % 790
            pipeline.encode(clip, out, codec="ssb.image", quality=level, frames=range(first, first + 1),
                            models=models)
    return sorted(str(p) for p in folder.glob("*.ssb"))[:count]


def _worker_cpu(ds) -> float:
    """CPU seconds the Ray workers spent in the map of ``ds`` (Ray Data's own stats; nan if unavailable)."""
    try:
        return sum(op.cpu_time.sum for op in ds._get_stats_summary().operators_stats
                   if op.cpu_time is not None and "MapBatches" in op.operator_name)
    except Exception:  # noqa: BLE001 - a private API of Ray Data: the figure is optional
        return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=300)
    ap.add_argument("--level", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of every measurement (best of)")
    ap.add_argument("--tiny", type=int, default=4, help="streams of the short run giving each engine's fixed cost")
    ap.add_argument("--dir", default=None, help="folder of the coded streams (kept; reused when it holds enough)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import ray
    import torch

    from ssb import pipeline
    from ssb.adapters.ray import Query, batch_analyze

    torch.set_num_threads(1)
    tmp = tempfile.TemporaryDirectory(prefix="ssb-bench-ray-")
    folder = Path(args.dir) if args.dir else Path(tmp.name) / "streams"
    models = pipeline.Models()
    t = time.perf_counter()
    files = encode_streams(folder, args.streams, args.level, models)
    size = sum(os.path.getsize(f) for f in files)
    print(f"{len(files)} streams in {folder} (level {args.level}, {size / len(files):.0f} bytes each on average; "
          f"coded in {time.perf_counter() - t:.1f} s)")
    query = Query(tasks=("detection",))
    out = Path(tmp.name) / "out"
    out.mkdir()

    pipeline.analyze(files[0], models=models)  # models loaded before the clock starts

    cpu: dict = {}  # config -> [(this process's CPU s, Ray workers' CPU s in the map UDF)] of full runs

    def plain_loop() -> float:
        t, c = time.perf_counter(), time.process_time()
        frames = sum(len(pipeline.analyze(f, models=models).frames) for f in files)
        assert frames == len(files)
        cpu.setdefault(("loop", 1), []).append((time.process_time() - c, 0.0))
        return time.perf_counter() - t

    def run(engine: str, workers: int, subset: list[str], name: str) -> float:
        seen = []
        t, c = time.perf_counter(), time.process_time()
        summary = batch_analyze(subset, out / f"{name}.parquet", pipeline=pipeline, query=query, engine=engine,
                                workers=workers, batch_size=args.batch_size, overwrite=True, expand=False,
                                on_dataset=seen.append)
        wall, driver = time.perf_counter() - t, time.process_time() - c
        assert summary.rows == len(subset) and summary.errors == 0
        if len(subset) == len(files):
            cpu.setdefault((engine, workers), []).append((driver, _worker_cpu(seen[0]) if seen else 0.0))
        return wall

    n, k = len(files), args.tiny
    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    print(f"ray.init(num_cpus=2): {time.perf_counter() - t:.1f} s (not counted below)")
    configs = (("local", 1), ("ray", 1), ("ray", 2))
    walls: dict = {c: [] for c in (("loop", 1),) + configs}
    tinies: dict = {c: [] for c in configs}
    load = [os.getloadavg()[0]]
    try:
        for r in range(args.rounds):  # interleaved rounds, best of each: the machine is shared
            walls[("loop", 1)].append(plain_loop())
            for engine, workers in configs:
                name = f"{engine}{workers}"
                tinies[(engine, workers)].append(run(engine, workers, files[:k], name + "-tiny"))
                walls[(engine, workers)].append(run(engine, workers, files, name))
            load.append(os.getloadavg()[0])
    finally:
        ray.shutdown()
    loop = min(walls[("loop", 1)])
    results = {}
    for c in configs:
        full, tiny = min(walls[c]), min(tinies[c])
        results[c] = (full, tiny, (full - tiny) / (n - k))
    import pyarrow.parquet as pq

    tables = [pq.read_table(out / f"{name}.parquet") for name in ("local1", "ray1", "ray2")]
    same = all(t.equals(tables[0]) for t in tables[1:])

    print(f"\n{'engine':<16}{'wall s':>8}{'streams/s':>11}{'fixed s':>9}{'marginal ms/stream':>20}")
    print(f"{'plain loop':<16}{loop:8.2f}{n / loop:11.1f}{0.0:9.2f}{1000 * loop / n:20.1f}")
    labels = {("local", 1): "local engine", ("ray", 1): "ray, 1 worker", ("ray", 2): "ray, 2 workers"}
    for key, (full, tiny, marginal) in results.items():
        fixed = tiny - k * marginal
        print(f"{labels[key]:<16}{full:8.2f}{n / full:11.1f}{fixed:9.2f}{1000 * marginal:20.1f}")
    (w1, _, m1), (w2, _, m2) = results[("ray", 1)], results[("ray", 2)]
    print(f"\nthroughput, 2 workers / 1 worker: {m1 / m2:.2f}x marginal (per stream, fixed costs out), "
          f"{w1 / w2:.2f}x wall for {n} streams (actor start and model loading in)  (goal >= 1.8x)")
    for key in (("local", 1), ("ray", 1)):
        full, _, marginal = results[key]
        print(f"{labels[key]} vs plain loop: {1000 * (marginal - loop / n):+.1f} ms/stream marginal "
              f"({marginal / (loop / n):.2f}x), {full / loop:.2f}x the wall time for {n} streams")
    print("\nCPU time per stream (best round; independent of the other load's share of the cores):")
    for key, label in ((("loop", 1), "plain loop"),) + tuple(labels.items()):
        driver, workers = min(cpu[key], key=sum)
        extra = f" + Ray workers {1000 * workers / n:.1f} ms" if key[0] == "ray" else ""
        total = 1000 * (driver + workers) / n
        print(f"  {label:<16} this process {1000 * driver / n:.1f} ms{extra} = {total:.1f} ms")
    print(f"rows identical across the local and Ray runs: {same}")
    print(f"best of {args.rounds} interleaved round(s); machine: {os.cpu_count()} CPU(s), shared with other work "
          f"(1-min load average {', '.join(f'{v:.1f}' for v in load)} at the start and after each round)")
    tmp.cleanup()


if __name__ == "__main__":
    main()
