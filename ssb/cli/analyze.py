"""``ssb analyze FILE.ssb --task detection[,...] [--json OUT] [--classes person]``."""

from __future__ import annotations

import json
import sys

from ssb.cli._common import class_ids, frame_range


def add_arguments(p) -> None:
    p.add_argument("file", help="SSB file")
    p.add_argument("--task", default="detection", help="comma-separated task heads (see `ssb analyze --list`)")
    p.add_argument("--frames", type=frame_range, default=None, help="frames A:B or N")
    p.add_argument("--classes", default=None, help="comma-separated COCO class names or ids to keep")
    p.add_argument("--score-thresh", type=float, default=None, help="detection score threshold")
    p.add_argument("--json", default=None, help="write COCO results JSON here (image_id = frame index)")
    p.add_argument("--weights", default=None, help="codec weights (default: the shipped reference weights)")


def run(args) -> int:
    from ssb.adapters.coco import to_coco_results
    from ssb.pipeline import analyze
    from ssb.tasks.coco_names import category_name

    tasks = [t.strip() for t in args.task.split(",") if t.strip()]
    opts = {"detection": {"score_thresh": args.score_thresh}} if args.score_thresh is not None else None
    res = analyze(args.file, tasks=tasks, frames=args.frames,
                  classes=class_ids(args.classes) if args.classes else None, weights=args.weights, head_options=opts)
    results = []
    for fr in res.frames:
        for name, pred in fr.predictions.items():
            n = len(pred.get("scores", []))
            print(f"frame {fr.frame_index} {name}: {n} object(s)")
            for box, label, score in zip(pred["boxes"].tolist(), pred["labels"].tolist(), pred["scores"].tolist()):
                x0, y0, x1, y1 = box
                print(f"  {category_name(label):<14} {score:.2f}  [{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}]")
        results += to_coco_results([fr.predictions[t] for t in tasks if "boxes" in fr.predictions[t]][:1],
                                   [fr.frame_index])
    print(f"read {res.bytes_read} of {res.file_size} bytes ({100.0 * res.bytes_read / max(res.file_size, 1):.1f}%); "
          f"decode {res.decode_seconds:.3f} s, heads {res.head_seconds:.3f} s", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f)
    return 0
