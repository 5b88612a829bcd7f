"""``python -m ssb.recipes.action_eval -o DIR``: action agreement with the teacher on held-out vtest frames.

Held out: vtest.avi frames 620..794 (never trained or tuned on).  Reference labels: the action
teacher on the ORIGINAL pixels (:mod:`ssb.recipes.action_teacher`), each window matched to the
teacher person its box overlaps (IoU >= 0.5) in its last frame; windows without a teacher label
are not scored.  Scores: top-1 agreement, per-class recall and their mean ("balanced").

* ``ssb`` rows: the shipped action head through the real analysis path
  (:func:`ssb.pipeline.analyze` with ``tasks=["action"]``: MOTION units + index, no BASE or RESIDUAL
  byte), on the held-out clip coded at every quality level; with the bits per original pixel of
  the whole stream and the bytes the analysis read;
* ``dis-flow``: the upper reference: the same classifier design, trained by the same recipe on
  vtest 0..599 with DIS optical flow (``medium``) of the ORIGINAL frames in place of the MOTION
  units (same tracked boxes, same windows);
* ``features``: the same design trained on RoI-pooled decoded split features (the "decode the
  features" baseline of the benchmark), at every level.

Also writes the teacher's contact sheets (one PNG per label, training frames 0..599) to
``DIR/sheets``.  Agreement with a teacher on one real clip, not a result on a public benchmark.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

__all__ = ["HELD_OUT", "run_action_eval", "main"]

HELD_OUT = range(620, 795)


def _unit_bytes(path) -> dict[str, int]:
    import ssb
    from ssb.format import UnitType

    out: dict[str, int] = {}
    with ssb.open(path) as bs:
        for f in bs.frames:
            for u in f.units:
                name = UnitType(u.type).name if u.type in UnitType._value2member_map_ else str(u.type)
                out[name] = out.get(name, 0) + u.size
        out["file"] = bs.size
    return out


def run_action_eval(out_dir, *, weights=None, codec_weights=None, levels=None, cfg=None, baselines: bool = True,
                    progress: bool = True) -> dict:
    """Score the action head (and, with ``baselines``, the DIS-flow and features classifiers); write
    ``action_eval.json`` and ``action_eval.md`` to ``out_dir``."""
    import torch

    from ssb.pipeline import Models, analyze
    from ssb.recipes.action_data import encode_clip, stream_windows, teacher_targets
    from ssb.recipes.action_teacher import ACTION_LABELS, label_windows, run_teacher
    from ssb.recipes.train_action import ActionTrainConfig, evaluate_windows, fit, predict, reference_data
    from ssb.resources import vtest_path
    from ssb.tasks.action import ActionHead

    cfg = cfg or ActionTrainConfig()
    torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = Models(codec_weights)
    codec = models.zoo.codec()
    levels = list(range(codec.config.num_levels)) if levels is None else [int(v) for v in levels]
    run = run_teacher(progress=progress)
    labels = label_windows(run)
    h, w = run.size
    pixels = h * w * len(HELD_OUT)
    video = vtest_path()
    report: dict = {"held_out": [HELD_OUT.start, HELD_OUT.stop - 1], "labels": list(ACTION_LABELS), "ssb": [],
                    "features": []}
    streams = {}
    for level in levels:
        stream = encode_clip(video, HELD_OUT, level, models)
        streams[level] = stream
        head = ActionHead(weights=weights, behind=codec.identity.id)
        res = analyze(stream, tasks=["action"], models=Models(zoo=models.zoo, heads={"action": head}))
        frames, boxes, preds = [], [], []
        for fr in res.frames:
            p = fr.predictions["action"]
            frames += [fr.frame_index] * len(p["labels"])
            boxes += p["boxes"].tolist()
            preds += p["labels"].tolist()
        y = teacher_targets(np.array(frames), np.array(boxes).reshape(-1, 4), run, labels)
        m = evaluate_windows(np.array(preds, np.int64), y, ACTION_LABELS)
        units = _unit_bytes(stream)
        row = {"level": level, "bpp": 8.0 * units["file"] / pixels, "bytes_read": res.bytes_read,
               "file_bytes": units["file"], "motion_bytes": units.get("MOTION", 0),
               "base_residual_bytes": units.get("BASE", 0) + units.get("RESIDUAL", 0), "analysis_s": res.seconds, **m}
        report["ssb"].append(row)
        if progress:
            print(f"ssb level {level}: bpp {row['bpp']:.4f}, read {res.bytes_read}/{units['file']} B, top-1 "
                  f"{100 * m['top1']:.1f}, balanced {100 * m['balanced']:.1f}", flush=True)
    if baselines:
        ref_level = 3 if 3 in streams else levels[0]
        for source in ("flow", "features"):
            win, y = reference_data(cfg, models, source=source, progress=progress)
            keep = y >= 0
            net, _, _ = fit(win.x[keep], win.mask[keep], y[keep], ACTION_LABELS, cfg, source=source)
            test_levels = [ref_level] if source == "flow" else levels
            for level in test_levels:
                test = stream_windows(streams[level], models, source=source, video=video, window=cfg.window,
                                      min_frames=cfg.min_frames, progress=progress)
                yt = teacher_targets(test.frames, test.boxes, run, labels)
                m = evaluate_windows(predict(net, test.x, test.mask).argmax(1), yt, ACTION_LABELS)
                if source == "flow":
                    report["dis_flow"] = {"boxes_from_level": level, **m}
                else:
                    report["features"].append({"level": level, **m})
                if progress:
                    print(f"{source} (level {level}): top-1 {100 * m['top1']:.1f}, balanced {100 * m['balanced']:.1f}",
                          flush=True)
    from ssb.recipes.action_teacher import contact_sheets

    report["contact_sheets"] = [str(p) for p in contact_sheets(run, labels, out_dir / "sheets", frames=range(0, 600))]
    (out_dir / "action_eval.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "action_eval.md").write_text(markdown(report))
    return report


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def markdown(report: dict) -> str:
    """The report as markdown tables (top-1 / per-class recall per level, the references)."""
    names = report["labels"]
    head = "| | bpp | bytes read | top-1 | balanced | " + " | ".join(names) + " |\n"
    head += "| --- " * (5 + len(names)) + "|\n"
    lines = []
    for r in report["ssb"]:
        lines.append(f"| SSB level {r['level']} (motion units) | {r['bpp']:.4f} | {r['bytes_read']} of {r['file_bytes']} | "
                     f"{_pct(r['top1'])} | {_pct(r['balanced'])} | " + " | ".join(_pct(r['recall'][n]) for n in names)
                     + " |")
    if "dis_flow" in report:
        r = report["dis_flow"]
        lines.append(f"| DIS flow of the original frames (upper reference) | | | {_pct(r['top1'])} | "
                     f"{_pct(r['balanced'])} | " + " | ".join(_pct(r['recall'][n]) for n in names) + " |")
    for r in report.get("features", []):
        lines.append(f"| decoded features, level {r['level']} | | | {_pct(r['top1'])} | {_pct(r['balanced'])} | "
                     + " | ".join(_pct(r['recall'][n]) for n in names) + " |")
    support = report["ssb"][0]["support"] if report["ssb"] else {}
    tail = (f"\nWindows scored: {report['ssb'][0]['windows'] if report['ssb'] else 0} (support: "
            + ", ".join(f"{k} {v}" for k, v in support.items()) + ").\n")
    return head + "\n".join(lines) + "\n" + tail


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ssb.recipes.action_eval", description=__doc__.split("\n")[0])
    p.add_argument("-o", "--output", required=True, help="folder for action_eval.json / .md")
    p.add_argument("--weights", default=None, help="action weights (default: the zoo's)")
    p.add_argument("--codec-weights", default=None)
    p.add_argument("--levels", default=None, help="comma-separated quality levels (default: all)")
    p.add_argument("--no-baselines", action="store_true", help="skip the DIS-flow and features classifiers")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    levels = None if args.levels is None else [int(v) for v in args.levels.split(",")]
    report = run_action_eval(args.output, weights=args.weights, codec_weights=args.codec_weights, levels=levels,
                             baselines=not args.no_baselines, progress=not args.no_progress)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
