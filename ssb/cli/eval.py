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
    p.add_argument("--jpeg-qualities", default="5,10,20,30,50,70,90",
                   help="pose/segmentation: JPEG qualities of the remote-inference baseline ('' for none)")


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

    from ssb.recipes.evaluate_tasks import run_task_eval, summarize

    try:
        qualities = [int(q) for q in args.jpeg_qualities.split(",") if q.strip()]
    except ValueError:
        raise SSBError(f"--jpeg-qualities must be comma-separated integers, got {args.jpeg_qualities!r}",
                       field="--jpeg-qualities") from None
    pts = run_task_eval(args.task, args.output, weights=args.weights, head_weights=args.head_weights,
                        frame_step=args.frame_step, jpeg_qualities=qualities)
    summary = summarize(pts)
    for row in summary["matched_bpp"]:
        jpeg = "" if math.isnan(row["jpeg_AP_at_bpp"]) else f"  JPEG at that bpp: AP {row['jpeg_AP_at_bpp']:.1f}"
        print(f"level {row['level']}: bpp {row['bpp']:.4f}  AP {row['ssb_AP']:.1f}  AP50 {row['ssb_AP50']:.1f}{jpeg}")
    if "bd_rate_vs_jpeg_AP" in summary:
        (v, why), (v50, _) = summary["bd_rate_vs_jpeg_AP"], summary["bd_rate_vs_jpeg_AP50"]
        print(f"BD-rate of SSB vs JPEG: AP {v:+.1f}%  AP50 {v50:+.1f}%" + (f"  ({why})" if why else ""))
    print(f"wrote {args.output}/{args.task}_rate_accuracy.csv, .json")
    return 0
