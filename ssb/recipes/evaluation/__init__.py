"""``ssb eval``: rate-accuracy of SSB against pixel codecs, every task measured against its teacher.

One loop: every candidate (:mod:`~ssb.recipes.evaluation.candidates`) predicts every task it can
on the held-out images, and one set of detectron2-style evaluators (``reset / process /
evaluate``, :mod:`ssb.adapters.evaluation`) scores all tasks from the same predictions against
the teachers on the original pixels (:mod:`~ssb.recipes.evaluation.references`).  Rates are bits
per ORIGINAL pixel, container included.  Outputs: CSV, JSON (with BD-rates and matched-rate
tables) and one plot per task (:mod:`~ssb.recipes.evaluation.report`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ssb.recipes.evaluation.candidates import DEFAULT_PIXEL_SWEEPS, Heads, _Teachers, features, object_features, \
    object_heads, original, pixel_codec, ssb_levels, ssb_objects
from ssb.recipes.evaluation.references import TASKS, build_reference, evaluators
from ssb.recipes.evaluation.report import Point, bd_rates, compare_features, load_points, summarize, \
    write_outputs

__all__ = ["run_eval", "Point", "bd_rates", "summarize", "compare_features", "load_points", "write_outputs",
           "TASKS", "DEFAULT_PIXEL_SWEEPS", "pixel_sweeps"]


def pixel_sweeps(codecs, tasks, variants, qualities=None) -> list[tuple[str, str, int, tuple[str, ...]]]:
    """``(codec, variant, quality, tasks)`` of every pixel-codec point: detection on both variants over
    each codec's default sweep, pose / masks on full frames over :data:`DEFAULT_PIXEL_SWEEPS`
    (``qualities`` replaces both sweeps)."""
    from ssb.adapters import pixel_codecs

    points: dict[tuple[str, str, int], set[str]] = {}
    for codec in codecs:
        if "detection" in tasks:
            for variant in variants:
                for q in qualities or pixel_codecs.default_qualities(codec):
                    points.setdefault((codec, variant, q), set()).add("detection")
        for task in tasks:
            if task != "detection" and "full" in variants:
                for q in qualities or DEFAULT_PIXEL_SWEEPS.get(codec, pixel_codecs.default_qualities(codec)):
                    points.setdefault((codec, "full", q), set()).add(task)
    return [(c, v, q, tuple(t for t in TASKS if t in ts)) for (c, v, q), ts in points.items()]


@torch.no_grad()
def run_eval(out_dir, *, tasks=("detection",), weights=None, head_weights: dict | None = None, levels=None,
             codecs=("jpeg", "webp", "avif"), variants=("input", "full"), frame_step: int | None = None,
             qualities=None, progress: bool = True, name: str = "rate_accuracy", object_levels=None,
             object_base_levels=(0,), object_sizes=("large",)) -> list[Point]:
    """Score SSB (every level) and the pixel codecs on ``tasks``; write the tables to ``out_dir``.

    ``object_levels``: also score streams with object-scale units for people (pose / masks), at these
    object levels over each of ``object_base_levels`` and ``object_sizes``; ``levels=[]`` skips the plain SSB streams."""
    from ssb.adapters import pixel_codecs
    from ssb.pipeline import Models

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ref = build_reference(tasks, frame_step=frame_step, progress=progress)
    all_evaluators = evaluators(ref)
    models = Models(weights)
    heads = Heads(ref.tasks, head_weights=head_weights)
    codec = models.zoo.codec()
    levels = list(range(codec.config.num_levels)) if levels is None else list(levels)
    points: list[Point] = []

    def score(method, param, cand_tasks, nbytes, outputs):
        from ssb.adapters.evaluation import DatasetEvaluators

        ev = DatasetEvaluators([e for e in all_evaluators.evaluators if e.key in cand_tasks])
        ev.reset()
        ev.process(ref.inputs, outputs)
        results = ev.evaluate()
        for e in ev.evaluators:
            m = results[e.key]
            points.append(Point(e.key, method, int(param), 8.0 * nbytes[e.key] / max(ref.pixels(e.key), 1), m["AP"],
                                m["AP50"], m["AP75"], int(nbytes[e.key]), e.images, e.objects))
            if progress:
                p = points[-1]
                print(f"{p.task:>12} {method:>18} q={param:<3} bpp={p.bpp:.4f} AP={p.AP:.1f} AP50={p.AP50:.1f}",
                      flush=True)

    for cand in [*original(ref), *features(ref, heads), *ssb_levels(ref, models, heads, levels)]:
        score(*cand)
    if object_levels:
        oheads, reads = object_heads(ref.tasks, head_weights), {}
        for cand in [*object_features(ref, models, oheads),
                     *ssb_objects(ref, models, oheads, object_base_levels, object_levels, object_sizes, reads)]:
            score(*cand)
        if progress:
            for (method, o), (read, size) in sorted(reads.items()):
                print(f"  {method} q={o}: a pose query reads {read} of {size} bytes ({100 * read / size:.1f}%)")
    available = set(pixel_codecs.available_codecs())
    sweeps = pixel_sweeps([c for c in codecs if c in available], ref.tasks, variants, qualities)
    if sweeps:
        teachers = _Teachers(ref.tasks)
        import sys

        from tqdm import tqdm

        for c, v, q, ts in tqdm(sweeps, desc="pixel codecs", unit="point", leave=False,
                                disable=not (progress and sys.stderr.isatty())):
            score(*pixel_codec(ref, teachers, c, v, q, ts))
    write_outputs(points, out_dir, name)
    return points
