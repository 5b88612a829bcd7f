"""``ssb analyze FILE.ssb --task detection[,...] [--frames A:B] [--classes person] [--objects ID] [--json OUT]``.

Results are printed and written frame by frame (a COCO results JSON list that is valid after
every frame), so a late failure keeps what was done.  Exit status 1 when no frame was analysed.
"""

from __future__ import annotations

import sys

from ssb.cli._common import ResultsWriter, check_output, frame_range, id_list, name_list, progress_enabled, \
    unit_interval
from ssb.errors import SSBError


def add_arguments(p) -> None:
    p.add_argument("file", help="SSB file (a path, an http(s):// URL or any fsspec URL)")
    p.add_argument("--task", default="detection", type=name_list,
                   help="comma-separated task heads, e.g. detection,pose,segmentation (see `ssb codecs`)")
    p.add_argument("--frames", type=frame_range, default=None, help="frames A:B or N")
    p.add_argument("--classes", default=None, type=name_list,
                   help="comma-separated class names or ids of the stream's label set to keep (e.g. person)")
    p.add_argument("--objects", default=None, type=id_list, help="comma-separated object (track) ids to keep")
    p.add_argument("--score-thresh", type=unit_interval, default=None,
                   help="score threshold of the detection, pose and segmentation heads")
    p.add_argument("--json", default=None,
                   help="write COCO results JSON here (image_id = frame index; with several tasks, one file "
                        "per task: OUT.<task>.json)")
    p.add_argument("--mot", default=None, metavar="OUT.txt",
                   help="write the index's object tracks of the analysed frames as MOT-challenge text "
                        "(frame from 1, id, x, y, w, h, score, -1, -1, -1)")
    p.add_argument("--weights", default=None, help="codec weights (default: the model the stream names)")
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch",
                   help="where the feature synthesis and the heads run (onnxruntime: the onnx or gpu extra)")
    p.add_argument("--providers", default=None, type=name_list,
                   help="with --runtime onnxruntime: execution providers in order (default: CUDA when present, "
                        "else CPU)")


#: heads whose output is a set of scored boxes (they take --score-thresh)
BOX_TASKS = ("detection", "pose", "segmentation")
#: heads whose boxes come from the index (COCO results are written, --score-thresh does not apply)
INDEX_TASKS = ("motion",)
#: heads whose ``labels`` are action indices (one line per track; JSON: one record per track and frame)
ACTION_TASKS = ("action",)


def _action_records(pred: dict, frame_index: int) -> list[dict]:
    """One JSON record per track of an action result."""
    names = pred["label_names"]
    return [{"frame": frame_index, "track_id": int(t), "label": names[int(lab)], "label_id": int(lab),
             "score": round(float(s), 4), "frames": [int(v) for v in span], "bbox": [round(float(v), 1) for v in box]}
            for t, lab, s, span, box in zip(pred["track_ids"], pred["labels"], pred["scores"], pred["frames"].tolist(),
                                            pred["boxes"].tolist())]


def _print_action(pred: dict) -> None:
    for r, speed, heading in zip(_action_records(pred, -1), pred["speed"].tolist(), pred["direction"].tolist()):
        x0, y0, x1, y1 = r["bbox"]
        print(f"  track {r['track_id']:<5} {r['label']:<16} {r['score']:.2f}  frames {r['frames'][0]}..{r['frames'][1]}"
              f"  [{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}]  {speed:.2f} box heights/s, heading {heading:.0f} deg")


def _print_prediction(name: str, pred: dict, names: dict) -> None:
    """One line per object: class, score, box, and the head's own output in brief."""
    if "action_scores" in pred:
        _print_action(pred)
        return
    if "boxes" not in pred:  # a head with another kind of output
        shapes = ", ".join(f"{k} {tuple(v.shape) if hasattr(v, 'shape') else v!r}" for k, v in pred.items())
        print(f"  {name}: {shapes}")
        return
    kps, masks = pred.get("keypoints"), pred.get("masks")
    tracks, disp = pred.get("track_ids"), pred.get("displacement")
    for j, (box, label, score) in enumerate(zip(pred["boxes"].tolist(), pred["labels"].tolist(),
                                                pred["scores"].tolist())):
        x0, y0, x1, y1 = box
        extra = f"  track {int(tracks[j])}" if tracks is not None and int(tracks[j]) >= 0 else ""
        if disp is not None:
            unit = "px/s" if pred.get("per_second") else "px/frame"
            extra += (f"  moved ({float(disp[j, 0]):+.1f}, {float(disp[j, 1]):+.1f}) px, "
                      f"{float(pred['speed'][j]):.1f} {unit}, heading {float(pred['direction'][j]):.0f} deg")
        if kps is not None:
            extra += f"  {int((kps[j, :, 2] >= 0.3).sum())}/{kps.shape[1]} keypoints"
        if masks is not None:
            extra += f"  mask {int((masks[j] > 0.5).sum())} px"
        cls = names.get(int(label), f"id{int(label)}")
        print(f"  {cls:<14} {score:.2f}  [{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}]{extra}")


def _json_paths(path: str, tasks: list[str]) -> dict[str, str]:
    """One COCO results file per box task: ``path`` itself for one task, ``<stem>.<task><suffix>`` for several."""
    from pathlib import Path

    box_tasks = [t for t in tasks if t in BOX_TASKS + INDEX_TASKS + ACTION_TASKS]
    if len(tasks) == 1:
        return {tasks[0]: path}
    p = Path(path)
    return {t: str(p.with_name(f"{p.stem}.{t}{p.suffix or '.json'}")) for t in box_tasks}


def validate(args) -> tuple[dict, list]:
    """Checks needing no model: the tasks exist, the stream opens and holds frames, the classes are
    in its label set, the output can be written.  Returns (label names, tasks)."""
    import ssb
    from ssb.format.labels import class_id, label_names
    from ssb.tasks import list_tasks

    tasks = list(dict.fromkeys(args.task))
    known = list_tasks()
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise SSBError(f"unknown task {', '.join(unknown)}; available: {', '.join(known)}", field="--task")
    with ssb.open(args.file) as bs:
        names = label_names(bs.header.metadata)
        if not bs.frames:
            why = f"; {bs.errors[0]}" if bs.errors else ""
            raise SSBError(f"{args.file} holds no complete frame{why}", field="file")
        if args.classes is not None:
            args.classes = [class_id(c, names, "--classes") for c in args.classes]
    if args.json:
        for path in _json_paths(args.json, tasks).values():
            check_output(path, "--json")
    if args.mot:
        check_output(args.mot, "--mot")
    if args.runtime == "onnxruntime":
        from ssb._optional import require

        require("onnxruntime", "--runtime onnxruntime")
    return names, tasks


def run(args) -> int:
    names, tasks = validate(args)
    from ssb.adapters.coco import to_coco_results
    from ssb.adapters.mot import mot_lines
    from ssb.pipeline import _Counters, iter_analyze

    opts = ({t: {"score_thresh": args.score_thresh} for t in tasks if t in BOX_TASKS}
            if args.score_thresh is not None else None)
    if args.classes is not None and any(t in ACTION_TASKS for t in tasks):
        # the action head keeps only these objects itself (its default is people)
        opts = {**(opts or {}), **{t: {"classes": args.classes} for t in tasks if t in ACTION_TASKS}}
    writers = {t: ResultsWriter(p) for t, p in _json_paths(args.json, tasks).items()} if args.json else {}
    mot = open(args.mot, "w") if args.mot else None  # noqa: SIM115 - closed in finally
    counters = _Counters()
    try:
        for fr in iter_analyze(args.file, tasks=tasks, frames=args.frames, classes=args.classes,
                               objects=args.objects, weights=args.weights, head_options=opts,
                               progress=progress_enabled(args), runtime=args.runtime, providers=args.providers,
                               counters=counters):
            for name, pred in fr.predictions.items():
                n = len(pred["scores"]) if "scores" in pred else "?"
                print(f"frame {fr.frame_index} {name}: {n} object(s)")
                _print_prediction(name, pred, names)
                if name in writers and name in ACTION_TASKS:
                    writers[name].extend(_action_records(pred, fr.frame_index))
                elif name in writers and "boxes" in pred and "scores" in pred:
                    writers[name].extend(to_coco_results([pred], [fr.frame_index]))
            if mot is not None:
                mot.writelines(mot_lines(fr.frame_index, fr.objects))
                mot.flush()
            sys.stdout.flush()
    finally:
        for w in writers.values():
            w.close()
        if mot is not None:
            mot.close()
    share = 100.0 * counters.bytes_read / max(counters.file_size, 1)
    print(f"read {counters.bytes_read} of {counters.file_size} bytes ({share:.1f}%); decode "
          f"{counters.decode_seconds:.3f} s, heads {counters.head_seconds:.3f} s", file=sys.stderr)
    for task, w in writers.items():
        print(f"wrote {w.count} {task} result(s) to {w.path}", file=sys.stderr)
    if counters.frames == 0:
        print(f"ssb analyze: no frame of {args.file} matched the query (frames {args.frames})", file=sys.stderr)
        return 1
    return 0
