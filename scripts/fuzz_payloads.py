#!/usr/bin/env python
"""Structure-aware fuzzer of SSB codec payloads, past the container's checksums (issue 13).

The seed streams are real: vtest.avi frames coded with the shipped models as an ``ssb.image``
stream (2 frames, level 0), an ``ssb.grouped`` stream (``groups="auto"``, 1 frame) and an
``ssb.video`` stream (5 frames, GOP 3).  Each case mutates one seed, then recomputes every length
and CRC (:func:`ssb.format.edit.replace_payloads`, :func:`~ssb.format.edit.rewrite_frame`) so the
mutation reaches the codec's payload decoders instead of the container's checksum test.  The
mutation families (case ``i`` uses ``FAMILIES[i % 4]``, on seed ``SEED_NAMES[i // 4 % len(SEED_NAMES)]``):

* ``field``: a payload decoded with its declarative syntax (:data:`ssb.format.payloads.UNIT_PAYLOADS`),
  one field set to a boundary value (0, 1, grid +- 1, 255, 4096, 65535, 2**31, ..., random) or,
  for a bytes field, truncated / extended / zeroed / randomized, then re-packed without validation;
* ``bytes``: bit flips, byte values, truncations, insertions, deletions inside one payload;
* ``index``: the frame header and its index rewritten: entries' type, attributes (class, box,
  object and group ids), presence bits, dropped / duplicated / swapped entries, references to
  missing or future frames, frame indices, the frame's size in its metadata; one case in ten
  edits the SEQUENCE_HEADER instead (picture size, codec id, metadata keys);
* ``splice``: a payload replaced by (or joined with) another unit's, of any type and seed stream.

Every case runs the whole analysis path (``ssb.pipeline.analyze(tasks=["detection"])``, every
frame) and the pixel path (``ssb.pipeline.iter_pixels``) in a worker subprocess that loads the
models once and takes many cases over a pipe.  The parent enforces a time limit per case and a
memory limit (the worker's resident size, polled in ``/proc``: the CUDA build of torch reserves
too much address space for ``RLIMIT_AS``), kills the worker above it and starts a fresh one.
Accepted: a clean :class:`ssb.errors.SSBError` or a bounded result.  Anything else (another
exception, a crash, a hang, memory over the limit, an unbounded result) is a *finding*, saved with
its reproducer (the mutated stream) under ``--findings``.

    python scripts/fuzz_payloads.py --cases 100000 --seed 1 --workers 2 [--minutes 25]
    python scripts/fuzz_payloads.py --replay /tmp/fuzz_findings/exception-s1-c42.ssb

The engine is importable (``tests/test_payload_fuzz.py`` runs a few hundred cases through
:func:`run`); the parent side needs no torch.  It lives beside this file: ``fuzz_seeds`` (run
constants, seed streams), ``fuzz_mutations`` and ``fuzz_index`` (the mutation families, cases),
``fuzz_worker`` (the worker process), ``fuzz_limits`` (its time and memory limits),
``fuzz_report`` (counts, findings) and ``fuzz_session`` (a run); every name is importable from here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # the engine's modules lie beside this file (also when a test loads it by path)
    sys.path.insert(0, _HERE)

# Every name of the engine stays importable from here (tests/test_payload_fuzz.py uses a few private ones).
from fuzz_index import _ATTRS as _ATTRS  # noqa: E402
from fuzz_index import _ID_VALUES as _ID_VALUES  # noqa: E402
from fuzz_index import _META_EDITS as _META_EDITS  # noqa: E402
from fuzz_index import _SIZE_VALUES as _SIZE_VALUES  # noqa: E402
from fuzz_index import _TYPES as _TYPES  # noqa: E402
from fuzz_index import _fill_attrs as _fill_attrs  # noqa: E402
from fuzz_index import _own_attrs as _own_attrs  # noqa: E402
from fuzz_index import mutate_index, mutate_sequence  # noqa: E402
from fuzz_limits import Worker, WorkerDied  # noqa: E402
from fuzz_limits import _rss as _rss  # noqa: E402
from fuzz_mutations import MUTATORS, Case, make_case, mutate_bytes, mutate_field, mutate_splice  # noqa: E402
from fuzz_mutations import _blob as _blob  # noqa: E402
from fuzz_mutations import _boundary as _boundary  # noqa: E402
from fuzz_mutations import _int_range as _int_range  # noqa: E402
from fuzz_report import _SEVERITY as _SEVERITY  # noqa: E402
from fuzz_report import Report, _key, reached_payload  # noqa: E402
from fuzz_report import _norm_field as _norm_field  # noqa: E402
from fuzz_report import _save as _save  # noqa: E402
from fuzz_report import _severity as _severity  # noqa: E402
from fuzz_seeds import (  # noqa: E402 - puts ROOT on sys.path (run from a checkout without installing)
    ACCEPTED,
    DEFAULT_FINDINGS,
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_TIME_LIMIT,
    FAMILIES,
    GRID,
    MAX_DETECTIONS,
    MAX_IMAGE_BYTES,
    QUALITY,
    ROOT,
    SEED_NAMES,
    SEEDS,
    STARTUP_LIMIT,
    Seed,
    Unit,
    build_seeds,
)
from fuzz_seeds import _frame_count as _frame_count  # noqa: E402
from fuzz_seeds import _pick as _pick  # noqa: E402
from fuzz_seeds import _tname as _tname  # noqa: E402
from fuzz_seeds import _units as _units  # noqa: E402
from fuzz_session import Session, run  # noqa: E402
from fuzz_worker import _module_of as _module_of  # noqa: E402
from fuzz_worker import _outcome as _outcome  # noqa: E402
from fuzz_worker import _recv_blocking as _recv_blocking  # noqa: E402
from fuzz_worker import _send as _send  # noqa: E402
from fuzz_worker import run_case, worker_main  # noqa: E402

__all__ = [
    "ROOT", "FAMILIES", "SEEDS", "SEED_NAMES", "QUALITY", "DEFAULT_TIME_LIMIT", "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_FINDINGS", "STARTUP_LIMIT", "GRID", "MAX_DETECTIONS", "MAX_IMAGE_BYTES", "ACCEPTED",  # fuzz_seeds
    "Unit", "Seed", "build_seeds",
    "mutate_field", "mutate_bytes", "mutate_splice", "MUTATORS", "Case", "make_case",  # fuzz_mutations
    "mutate_index", "mutate_sequence",  # fuzz_index
    "run_case", "worker_main", "Worker", "WorkerDied",  # fuzz_worker, fuzz_limits
    "Report", "reached_payload", "Session", "run",  # fuzz_report, fuzz_session
    "replay", "main",
]


def replay(paths: list[str]) -> int:
    """Run saved cases in this process and print both outcomes of each (with tracebacks)."""
    import torch

    torch.set_num_threads(1)
    from ssb import pipeline

    models = pipeline.Models()
    bad = 0
    for path in paths:
        res = run_case(Path(path).read_bytes(), models)
        print(path)
        for p, o in res.items():
            print(f"  {p}: {_key(o)} {o.get('field') or ''} {o.get('message', '')}")
            if o.get("traceback"):
                print(o["traceback"])
        bad += not all(o["kind"] in ACCEPTED for o in res.values())
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1000, help="cases to run (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="run seed: case i of seed S is always the same bytes")
    ap.add_argument("--start", type=int, default=0, help="first case index (to resume or replay a range)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes (one model set each, ~1 GB)")
    ap.add_argument("--minutes", type=float, default=None, help="stop after this wall time")
    ap.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, help="seconds per case (both paths)")
    ap.add_argument("--memory-limit-mb", type=int, default=DEFAULT_MEMORY_LIMIT >> 20,
                    help="worker resident memory limit (MiB)")
    ap.add_argument("--findings", default=DEFAULT_FINDINGS, help="folder for the reproducers of findings")
    ap.add_argument("--json", help="also write the counts as JSON here")
    ap.add_argument("--replay", nargs="+", help="run saved .ssb cases in this process and print the outcomes")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main()
    if args.replay:
        return replay(args.replay)
    report = run(args.cases, args.seed, workers=args.workers, time_limit=args.time_limit,
                 memory_limit=args.memory_limit_mb << 20, findings=args.findings, minutes=args.minutes,
                 start=args.start, progress=True)
    print(report.table())
    if args.json:
        Path(args.json).write_text(json.dumps({
            "seed": report.seed, "cases": report.cases, "seconds": report.seconds, "restarts": report.restarts,
            "outcomes": {f"{p}:{k}": n for (p, k), n in report.outcomes.items()}, "cases_by_worst": dict(report.worst),
            "families": {k: dict(v) for k, v in report.families.items()}, "findings": report.findings,
            "fields": dict(report.fields), "origins": {str(k): v for k, v in report.origins.items()},
            "generator_errors": report.generator_errors}, indent=2))
    return 1 if report.findings or report.generator_errors else 0


if __name__ == "__main__":
    sys.exit(main())
