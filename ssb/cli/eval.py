"""``ssb eval -o DIR [--task detection|pose|segmentation] [--codecs jpeg,webp,avif]``: rate-accuracy tables.

``--task detection``: mAP against the teacher, BD-rates and plot (:mod:`ssb.recipes.evaluate`);
``--task pose`` / ``segmentation``: OKS keypoint AP / mask AP against MoveNet / MOG2 per SSB level
and JPEG at matched bpp (:mod:`ssb.recipes.evaluate_tasks`).
"""

from __future__ import annotations

from ssb.errors import SSBError


def add_arguments(p) -> None:
    p.add_argument("-o", "--output", default="eval", help="folder for rate_accuracy.{csv,json,png}")
    p.add_argument("--task", default="detection", help="task to evaluate: detection, pose or segmentation")
    p.add_argument("--codecs", default="jpeg,webp,avif", help="pixel codecs to compare against")
    p.add_argument("--variants", default="input,full", help="pixel-codec variants: input (300x300), full")
    p.add_argument("--frame-step", type=int, default=None, help="use every Nth held-out frame (default 5)")
    p.add_argument("--weights", default=None, help="codec weights (default: the shipped reference weights)")
    p.add_argument("--head-weights", default=None,
                   help="pose/segmentation: the head checkpoint (default: ssb/weights/{pose,seg}_s8.pt)")
    p.add_argument("--qualities", default=None,
                   help="pose/segmentation: one quality sweep for every codec in --codecs, e.g. 5,10,20 "
                        "(default: each codec's sweep in ssb.recipes.evaluate_tasks.DEFAULT_PIXEL_SWEEPS)")


def run(args) -> int:
    if args.task in ("pose", "segmentation"):
        return _run_task(args)
    if args.task != "detection":
        raise SSBError(f"ssb eval supports --task detection, pose or segmentation, got {args.task!r}", field="--task")
    from ssb.recipes.evaluate import bd_rates, run_eval

    pts = run_eval(args.output, weights=args.weights, codecs=[c for c in args.codecs.split(",") if c],
                   variants=[v for v in args.variants.split(",") if v], frame_step=args.frame_step)
    for method, v in bd_rates(pts).items():
        print(f"BD-rate of SSB vs {method:>12}: mAP {v['bd_rate_mAP']:+.1f}%  AP50 {v['bd_rate_AP50']:+.1f}%"
              + (f"  ({v['why_mAP']})" if v["why_mAP"] else ""))
    print(f"wrote {args.output}/rate_accuracy.csv, .json, .png")
    return 0


def _run_task(args) -> int:
    import math

    from ssb.recipes.evaluate_tasks import DEFAULT_PIXEL_SWEEPS, run_task_eval, summarize

    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    unknown = [c for c in codecs if c not in DEFAULT_PIXEL_SWEEPS]
    if unknown:
        raise SSBError(f"--codecs for pose/segmentation: choose among {', '.join(DEFAULT_PIXEL_SWEEPS)}, "
                       f"got {', '.join(unknown)}", field="--codecs")
    try:
        override = None if args.qualities is None else [int(q) for q in args.qualities.split(",") if q.strip()]
    except ValueError:
        raise SSBError(f"--qualities must be comma-separated integers, got {args.qualities!r}",
                       field="--qualities") from None
    sweeps = {c: tuple(override) if override is not None else DEFAULT_PIXEL_SWEEPS[c] for c in codecs}
    pts = run_task_eval(args.task, args.output, weights=args.weights, head_weights=args.head_weights,
                        frame_step=args.frame_step, pixel_sweeps=sweeps)
    summary = summarize(pts)
    for row in summary["matched_bpp"]:
        pixel = "".join(f"  {c.upper()} {row[f'{c}_AP_at_bpp']:.1f}" for c in codecs
                        if not math.isnan(row[f"{c}_AP_at_bpp"]))
        print(f"level {row['level']}: bpp {row['bpp']:.4f}  AP {row['ssb_AP']:.1f}  AP50 {row['ssb_AP50']:.1f}"
              + (f"  | AP at that bpp:{pixel}" if pixel else ""))
    for c in codecs:
        (v, why), (v50, _) = summary[f"bd_rate_vs_{c}_AP"], summary[f"bd_rate_vs_{c}_AP50"]
        print(f"BD-rate of SSB vs {c.upper()}: AP {v:+.1f}%  AP50 {v50:+.1f}%" + (f"  ({why})" if why else ""))
    print(f"wrote {args.output}/{args.task}_rate_accuracy.csv, .json")
    return 0
