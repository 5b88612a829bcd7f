"""``ssb analyze FILE.ssb --task detection[,...] [--json OUT] [--classes person]``."""

from __future__ import annotations

import json
import sys

from ssb.cli._common import class_ids, frame_range


def add_arguments(p) -> None:
    p.add_argument("file", help="SSB file")
    p.add_argument("--task", default="detection", help="comma-separated task heads, e.g. detection,pose,segmentation (see ssb.tasks.list())")
    p.add_argument("--frames", type=frame_range, default=None, help="frames A:B or N")
    p.add_argument("--classes", default=None, help="comma-separated COCO class names or ids to keep")
    p.add_argument("--score-thresh", type=float, default=None,
                   help="score threshold of the detection, pose and segmentation heads")
    p.add_argument("--json", default=None,
                   help="write COCO results JSON here (image_id = frame index; with several tasks, one file "
                        "per task: OUT.<task>.json)")
    p.add_argument("--weights", default=None, help="codec weights (default: the shipped reference weights)")


#: heads whose output is a set of scored boxes (they take --score-thresh)
BOX_TASKS = ("detection", "pose", "segmentation")


def _print_prediction(name: str, pred: dict, category_name) -> None:
    """One line per object: class, score, box, and the head's own output in brief."""
    if "boxes" not in pred:  # a plug-in head with another kind of output
        shapes = ", ".join(f"{k} {tuple(v.shape) if hasattr(v, 'shape') else v!r}" for k, v in pred.items())
        print(f"  {name}: {shapes}")
        return
    kps, masks = pred.get("keypoints"), pred.get("masks")
    for j, (box, label, score) in enumerate(zip(pred["boxes"].tolist(), pred["labels"].tolist(),
                                                pred["scores"].tolist())):
        x0, y0, x1, y1 = box
        extra = ""
        if kps is not None:
            extra += f"  {int((kps[j, :, 2] >= 0.3).sum())}/{kps.shape[1]} keypoints"
        if masks is not None:
            extra += f"  mask {int((masks[j] > 0.5).sum())} px"
        print(f"  {category_name(label):<14} {score:.2f}  [{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}]{extra}")


def _json_paths(path: str, tasks: list[str]) -> dict[str, str]:
    """One COCO results file per box task: ``path`` itself for one task, ``<stem>.<task><suffix>`` for several."""
    from pathlib import Path

    box_tasks = [t for t in tasks if t in BOX_TASKS]
    if len(tasks) == 1:
        return {tasks[0]: path}
    p = Path(path)
    return {t: str(p.with_name(f"{p.stem}.{t}{p.suffix or '.json'}")) for t in box_tasks}


def run(args) -> int:
    from ssb.adapters.coco import to_coco_results
    from ssb.pipeline import analyze
    from ssb.tasks.coco_names import category_name

    tasks = [t.strip() for t in args.task.split(",") if t.strip()]
    opts = ({t: {"score_thresh": args.score_thresh} for t in tasks if t in BOX_TASKS}
            if args.score_thresh is not None else None)
    res = analyze(args.file, tasks=tasks, frames=args.frames,
                  classes=class_ids(args.classes) if args.classes else None, weights=args.weights, head_options=opts)
    results: dict[str, list] = {t: [] for t in tasks}
    for fr in res.frames:
        for name, pred in fr.predictions.items():
            n = len(pred["scores"]) if "scores" in pred else "?"
            print(f"frame {fr.frame_index} {name}: {n} object(s)")
            _print_prediction(name, pred, category_name)
            if "boxes" in pred and "scores" in pred:
                results[name] += to_coco_results([pred], [fr.frame_index])
    print(f"read {res.bytes_read} of {res.file_size} bytes ({100.0 * res.bytes_read / max(res.file_size, 1):.1f}%); "
          f"decode {res.decode_seconds:.3f} s, heads {res.head_seconds:.3f} s", file=sys.stderr)
    if args.json:
        for task, path in _json_paths(args.json, tasks).items():
            with open(path, "w") as f:
                json.dump(results[task], f)
            if len(tasks) > 1:
                print(f"wrote {task} COCO results to {path}", file=sys.stderr)
    return 0
