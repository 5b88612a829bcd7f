"""``ssb eval -o DIR [--task detection,pose,segmentation] [--codecs jpeg,webp,avif]``: rate-accuracy tables.

Every task is measured against its teacher on the original pixels of the held-out frames, all from
one loop over detectron2-style evaluators (:mod:`ssb.recipes.evaluation`).  ``ssb eval --video``
scores detection on the held-out clip: SSB video (``--gops``) and SSB intra against H.264, H.265
and AV1 (:mod:`ssb.recipes.evaluation.video`).
"""

from __future__ import annotations

from ssb.cli._common import id_list, name_list
from ssb.errors import SSBError


def add_arguments(p) -> None:
    p.add_argument("-o", "--output", default="eval", help="folder for rate_accuracy.{csv,json} and plots")
    p.add_argument("--task", default=["detection"], type=name_list,
                   help="tasks to evaluate: detection, pose, segmentation (comma-separated)")
    p.add_argument("--video", action="store_true",
                   help="the video evaluation: SSB video and intra vs H.264/H.265/AV1 on the held-out clip")
    p.add_argument("--gops", default=[16, 64], type=id_list, help="with --video: SSB key-frame intervals")
    p.add_argument("--codecs", default=None,
                   help="pixel codecs to compare against ('' for none; default jpeg,webp,avif, with --video "
                        "h264,h265,av1)")
    p.add_argument("--variants", default="input,full", help="pixel-codec variants: input (300x300), full")
    p.add_argument("--levels", default=None, type=_levels,
                   help="SSB quality levels (default: all; 'none' scores no plain SSB stream, e.g. with "
                        "--object-levels)")
    p.add_argument("--frame-step", type=int, default=None, help="use every Nth held-out frame (default 5)")
    p.add_argument("--weights", default=None, help="codec weights (default: the shipped reference weights)")
    p.add_argument("--head-weights", default=None,
                   help="pose/segmentation: a head checkpoint (default: the zoo's); with several tasks, TASK=PATH,...")
    p.add_argument("--object-levels", default=None, type=id_list,
                   help="pose/segmentation: also score streams with object-scale units for people at these object "
                        "levels (e.g. 0,1,2,3), the heads reading only the person units and the index")
    p.add_argument("--object-base-levels", default=[0], type=id_list,
                   help="with --object-levels: base-layer levels of those streams (default 0)")
    p.add_argument("--object-sizes", default=["large"], type=name_list,
                   help="with --object-levels: object sizes (small, medium, large; default large)")
    p.add_argument("--qualities", default=None, type=id_list,
                   help="one quality sweep for every pixel codec, e.g. 5,10,20 (default: each codec's sweep)")


def _levels(text: str) -> list[int]:
    return [] if text.strip().lower() == "none" else id_list(text)


def _head_weights(text: str | None, tasks: list[str]) -> dict:
    if not text:
        return {}
    if "=" not in text:
        roi = [t for t in tasks if t != "detection"]
        if len(roi) != 1:
            raise SSBError("--head-weights PATH needs exactly one of pose / segmentation; use TASK=PATH,...",
                           field="--head-weights")
        return {roi[0]: text}
    out = {}
    for item in text.split(","):
        task, _, path = item.partition("=")
        out[task.strip()] = path.strip()
    return out


def _run_video(args) -> int:
    from ssb.adapters.video_codecs import CODECS

    codecs = [c.strip() for c in (args.codecs if args.codecs is not None else "h264,h265,av1").split(",") if c.strip()]
    unknown = [c for c in codecs if c not in CODECS]
    if unknown:
        raise SSBError(f"--codecs with --video: choose among {', '.join(CODECS)}, got {', '.join(unknown)}",
                       field="--codecs")
    if any(g < 1 for g in args.gops):
        raise SSBError("--gops must be >= 1", field="--gops")
    from ssb.recipes.evaluation import summarize
    from ssb.recipes.evaluation.video import run_video_eval

    pts = run_video_eval(args.output, weights=args.weights, levels=args.levels, gops=args.gops, codecs=codecs,
                         progress=not args.quiet)
    for anchor in sorted({p.method for p in pts if p.method.startswith("ssb-video")}):
        for method, v in summarize(pts, "detection", anchor=anchor)["bd_rate"].items():
            if method.startswith("ssb-video"):
                continue
            why = f"  ({v['why_AP']})" if v["why_AP"] else ""
            print(f"BD-rate of {anchor} vs {method:>10}: AP {v['bd_rate_AP']:+.1f}%  AP50 {v['bd_rate_AP50']:+.1f}%{why}")
    print(f"wrote {args.output}/video_rate_accuracy.csv, .json and plots")
    return 0


def _check_object_options(args) -> None:
    if args.object_levels:
        from ssb.codec import zoo

        n = zoo.card(zoo.DEFAULTS["codec"]).levels if args.weights is None else None
        bad = [q for q in args.object_levels if q < 0 or (n is not None and q >= n)]
        if bad:
            raise SSBError(f"--object-levels must be quality levels in 0..{(n or 256) - 1}, got {bad[0]}",
                           field="--object-levels")
    elif args.object_sizes != ["large"] or args.object_base_levels != [0]:
        raise SSBError("--object-sizes / --object-base-levels need --object-levels", field="--object-levels")
    if args.object_levels and args.video:
        raise SSBError("--object-levels scores image streams, not --video", field="--object-levels")


def run(args) -> int:
    import math

    from ssb.recipes.evaluation import TASKS

    _check_object_options(args)
    if args.video:
        return _run_video(args)
    bad = [t for t in args.task if t not in TASKS]
    if bad:
        raise SSBError(f"ssb eval supports --task {', '.join(TASKS)}, got {', '.join(bad)}", field="--task")
    codecs = [c.strip() for c in (args.codecs if args.codecs is not None else "jpeg,webp,avif").split(",")
              if c.strip()]
    from ssb.adapters.pixel_codecs import codec_names

    unknown = [c for c in codecs if c not in codec_names()]
    if unknown:
        raise SSBError(f"--codecs: choose among {', '.join(codec_names())}, got {', '.join(unknown)}", field="--codecs")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if set(variants) - {"input", "full"}:
        raise SSBError(f"--variants: input and/or full, got {args.variants!r}", field="--variants")
    if args.frame_step is not None and args.frame_step < 1:
        raise SSBError("--frame-step must be >= 1", field="--frame-step")
    from ssb.codec.object_scale import OBJECT_SIZES

    if set(args.object_sizes) - set(OBJECT_SIZES):
        raise SSBError(f"--object-sizes: choose among {', '.join(OBJECT_SIZES)}", field="--object-sizes")
    if args.object_levels and not set(args.task) & {"pose", "segmentation"}:
        raise SSBError("--object-levels scores the pose / segmentation heads: give --task pose and/or segmentation",
                       field="--object-levels")
    heads = _head_weights(args.head_weights, args.task)
    from ssb.recipes.evaluation import run_eval, summarize

    pts = run_eval(args.output, tasks=args.task, weights=args.weights, head_weights=heads, levels=args.levels,
                   codecs=codecs, variants=variants, frame_step=args.frame_step, qualities=args.qualities,
                   progress=not args.quiet, object_levels=args.object_levels,
                   object_base_levels=args.object_base_levels, object_sizes=args.object_sizes)
    anchors = ["ssb"] + sorted({p.method for p in pts if p.method.startswith("ssb-objects")})
    for task in args.task:
        for anchor in anchors[1:]:
            for method, v in summarize(pts, task, anchor=anchor)["bd_rate"].items():
                if not method.startswith("ssb"):
                    print(f"{task}: BD-rate of {anchor} vs {method:>12}: AP {v['bd_rate_AP']:+.1f}%  AP50 "
                          f"{v['bd_rate_AP50']:+.1f}%" + (f"  ({v['why_AP']})" if v["why_AP"] else ""))
        s = summarize(pts, task)
        for method, v in s["bd_rate"].items():
            why = f"  ({v['why_AP']})" if v["why_AP"] else ""
            print(f"{task}: BD-rate of SSB vs {method:>12}: AP {v['bd_rate_AP']:+.1f}%  AP50 "
                  f"{v['bd_rate_AP50']:+.1f}%{why}")
        for row in s["matched_bpp"]:
            pixel = "".join(f"  {k[:-10]} {v:.1f}" for k, v in row.items()
                            if k.endswith("_AP_at_bpp") and not math.isnan(v))
            print(f"{task}: level {row['level']} bpp {row['bpp']:.4f} AP {row['ssb_AP']:.1f} AP50 "
                  f"{row['ssb_AP50']:.1f}" + (f" | pixel codecs' AP at that bpp:{pixel}" if pixel else ""))
    print(f"wrote {args.output}/rate_accuracy.csv, .json and plots")
    return 0
