"""``ssb eval -o DIR [--task detection] [--codecs jpeg,webp,avif]``: rate-accuracy table, BD-rates and plot."""

from __future__ import annotations

from ssb.errors import SSBError


def add_arguments(p) -> None:
    p.add_argument("-o", "--output", default="eval", help="folder for rate_accuracy.{csv,json,png}")
    p.add_argument("--task", default="detection", help="task to evaluate (detection)")
    p.add_argument("--codecs", default="jpeg,webp,avif", help="pixel codecs to compare against")
    p.add_argument("--variants", default="input,full", help="pixel-codec variants: input (300x300), full")
    p.add_argument("--frame-step", type=int, default=None, help="use every Nth held-out frame (default 5)")
    p.add_argument("--weights", default=None, help="codec weights (default: the shipped reference weights)")


def run(args) -> int:
    if args.task != "detection":
        raise SSBError(f"ssb eval supports --task detection only in this release, got {args.task!r}", field="--task")
    from ssb.recipes.evaluate import bd_rates, run_eval

    pts = run_eval(args.output, weights=args.weights, codecs=[c for c in args.codecs.split(",") if c],
                   variants=[v for v in args.variants.split(",") if v], frame_step=args.frame_step)
    for method, v in bd_rates(pts).items():
        print(f"BD-rate of SSB vs {method:>12}: mAP {v['bd_rate_mAP']:+.1f}%  AP50 {v['bd_rate_AP50']:+.1f}%"
              + (f"  ({v['why_mAP']})" if v["why_mAP"] else ""))
    print(f"wrote {args.output}/rate_accuracy.csv, .json, .png")
    return 0
