"""The omnipotence check: shared features vs features tuned for one task, at equal bpp.

Recipe (each step a command; ``DIR`` any scratch folder)::

    # 1. the shared codec and its head (the shipped weights), measured
    ssb eval --task pose -o DIR/shared
    # 2. a codec tuned for pose alone, jointly with a fresh head of the same size
    python -m ssb.recipes.train_heads --task pose --tune-codec -o DIR/pose_tuned.pt
    ssb eval --task pose --weights DIR/pose_tuned_codec.pt --head-weights DIR/pose_tuned.pt --codecs "" -o DIR/tuned
    # 3. the comparison
    python -m ssb.recipes.omnipotence --task pose DIR/shared DIR/tuned

The same for ``--task segmentation``.  With object-scale units (``ssb eval ... --object-levels``
on both sides; the tuned pair from ``python -m ssb.recipes.train_objects --tune-codec pose``),
the ``ssb-objects-b*`` curves are compared too.  The table gives, per shared level, the shared head's AP,
the tuned codec's AP interpolated at the same bpp and their ratio (goal: >= 0.95), with the
heads on the teacher's person boxes (feature quality alone) and on boxes detected from the
same features.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ssb.recipes.evaluation.report import Point, compare_features
from ssb.recipes.evaluation.report import load_points as _load

__all__ = ["load_points", "main"]


def load_points(folder: str | Path, task: str) -> list[Point]:
    """The ``task`` points ``ssb eval --task TASK -o FOLDER`` wrote."""
    path = Path(folder) / "rate_accuracy.csv"
    if not path.is_file():
        from ssb.errors import MalformedFieldError

        raise MalformedFieldError(f"no {path}: run `ssb eval --task {task} -o {folder}` first", field="folder")
    return [p for p in _load(path) if p.task == task]


def _fmt(v: float, spec: str = ".1f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ssb.recipes.omnipotence", description=__doc__.split("\n")[0])
    p.add_argument("shared", help="ssb eval output folder of the shared codec")
    p.add_argument("tuned", help="ssb eval output folder of the task-tuned codec")
    p.add_argument("--task", required=True, choices=("pose", "segmentation"))
    p.add_argument("-o", "--output", default=None, help="write the comparison as JSON here")
    args = p.parse_args(argv)
    shared, tuned = load_points(args.shared, args.task), load_points(args.tuned, args.task)
    out = {}
    methods = [("ssb-teacher-boxes", "teacher boxes"), ("ssb", "detected boxes")]
    scaled = sorted({p.method for p in shared if p.method.startswith("ssb-objects")}
                    & {p.method for p in tuned if p.method.startswith("ssb-objects")})
    methods += [(m, f"object-scale units ({m})") for m in scaled]
    for method, label in methods:
        if not any(p.method == method for p in shared) or not any(p.method == method for p in tuned):
            continue
        cmp = compare_features(shared, tuned, method=method)
        out[method] = cmp
        print(f"{args.task}, heads on {label}: tuned codec points "
              + ", ".join(f"L{q['level']} {q['bpp']:.3f} bpp AP {q['AP']:.1f}" for q in cmp["tuned_points"]))
        print("  level   bpp    shared AP  tuned AP@bpp  ratio")
        for r in cmp["matched_bpp"]:
            print(f"  {r['level']:>5} {r['bpp']:.4f}  {_fmt(r['shared_AP']):>9}  {_fmt(r['tuned_AP_at_bpp']):>12}"
                  f"  {_fmt(r['ratio_AP'], '.3f'):>5}")
        bd, why = cmp["bd_AP_shared_minus_tuned"]
        print(f"  BD-AP (shared - tuned): {_fmt(bd, '+.2f')}" + (f" ({why})" if why else ""))
    if args.output:
        Path(args.output).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
