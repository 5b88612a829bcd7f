"""``ssb eval --task pose|segmentation``: OKS keypoint AP and mask AP per rate point, against the teachers.

Reference ("ground truth"), on the ORIGINAL pixels of the held-out ``vtest.avi`` frames
(:mod:`ssb.recipes.data`, frames 620.. every 5th): the SSD teacher's people (score >= 0.5) with
MoveNet keypoints (a keypoint is labelled when MoveNet scores it >= 0.3) or with their MOG2
instance masks (:mod:`ssb.recipes.teachers`).  OKS uses the box area as the object area.

Candidates, each scored with pycocotools (``keypoints`` or ``segm``; AP@[.5:.95], AP50, AP75):

* ``features``: the heads on the teacher's split features of the original pixels, uncoded (the
  ceiling of the heads themselves; "bpp" is that of the raw 24-bit frames);
* ``ssb`` at every quality level: all frames coded into ONE stream, features decoded once per
  frame, the detection head's boxes (score >= 0.05) fed to the pose / segmentation head;
* ``ssb-teacher-boxes``: the same decoded features with the teacher's person boxes given, which
  separates the heads' keypoint / mask quality from the detection errors;
* ``jpeg`` at a sweep of qualities, the teachers run on the decoded pixels ("remote
  inference": SSD people >= 0.05, MoveNet on them, or the frozen MOG2 model inside them).

Rates are bits per original pixel.  The JPEG accuracy at each SSB level's rate is interpolated
on the JPEG sweep (linear in log-rate) and BD-rates of SSB against JPEG are given.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ssb.recipes.task_data import TaskTargets, build_task_targets
from ssb.recipes.evaluate import DET_SCORE  # candidate detections kept for the PR curves

__all__ = ["TaskPoint", "DEFAULT_PIXEL_SWEEPS", "ground_truth", "run_task_eval", "summarize", "compare_features"]

TASKS = ("pose", "segmentation")
_SSB_METHODS = ("ssb", "ssb-teacher-boxes", "features")
IOU_TYPE = {"pose": "keypoints", "segmentation": "segm"}
MAX_OBJECTS = 20
PERSON = {1: "person"}


@dataclass
class TaskPoint:
    task: str
    method: str
    param: int
    bpp: float
    AP: float
    AP50: float
    AP75: float
    bytes: int
    images: int
    objects: int


def ground_truth(targets: TaskTargets, task: str) -> list[dict]:
    """The teachers' people per frame as predictions (keypoints with COCO visibility 0/2, or masks)."""
    from ssb.recipes.teachers import KEYPOINT_SCORE, PERSON_LABEL

    out = []
    for i in range(len(targets)):
        n = len(targets.boxes[i])
        gt = {"boxes": targets.boxes[i].numpy(), "labels": np.full(n, PERSON_LABEL),
              "scores": targets.scores[i].numpy()}
        if task == "pose":
            kp = targets.keypoints[i].numpy().copy()
            kp[:, :, 2] = np.where(kp[:, :, 2] >= KEYPOINT_SCORE, 2.0, 0.0)
            gt["keypoints"] = kp
        else:
            gt["masks"] = targets.instance_masks(i)
        out.append(gt)
    return out


class _Scorer:
    """COCO evaluation of one candidate against the ground truth, converting masks to RLE as it goes."""

    def __init__(self, task: str, gt_dict: dict):
        self.task, self.gt, self.results = task, gt_dict, []

    def add(self, image_id: int, pred: dict) -> None:
        from ssb.adapters.coco import to_coco_results

        keep = {k: pred[k] for k in ("boxes", "labels", "scores", "keypoints", "masks") if k in pred}
        self.results += to_coco_results([keep], [image_id])

    def metrics(self) -> dict:
        from ssb.adapters.coco import coco_evaluate

        m, _ = coco_evaluate(self.gt, self.results, IOU_TYPE[self.task])
        return m


def _heads(task: str, codec, head_weights=None):
    from ssb.tasks import create

    det = create("detection", score_thresh=DET_SCORE)
    head = create(task, score_thresh=DET_SCORE, max_objects=MAX_OBJECTS, codec=codec, weights=head_weights)
    return det, head


def _gt_detections(targets: TaskTargets, i: int) -> dict:
    n = len(targets.boxes[i])
    return {"boxes": targets.boxes[i], "labels": torch.ones(n, dtype=torch.int64), "scores": torch.ones(n)}


@torch.no_grad()
def _ssb_streams(targets: TaskTargets, images: list[np.ndarray], codec, levels, task, det, head, gt_dict):
    """Yield (level, stream bytes, scorer with detected boxes, scorer with teacher boxes)."""
    import ssb
    from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front
    from ssb.codec.image import ImageEncoder, decode_features

    enc = ImageEncoder(codec, SSDMobileNetV2Front(pretrained=True))
    for level in levels:
        buf = io.BytesIO()
        enc.encode(enumerate(images), buf, level=level)
        data = buf.getvalue()
        detected, given = _Scorer(task, gt_dict), _Scorer(task, gt_dict)
        with ssb.open(data) as bs:
            for df in decode_features(bs, codec):
                sizes = [df.image_size]
                dets = det(df.features, image_sizes=sizes)
                detected.add(df.frame_index, head(df.features, image_sizes=sizes, detections=dets)[0])
                given.add(df.frame_index, head(df.features, image_sizes=sizes,
                                               detections=[_gt_detections(targets, df.frame_index)])[0])
        yield level, len(data), detected, given


@torch.no_grad()
def _remote_inference(task: str, images: list[np.ndarray], codec: str, quality: int, gt_dict, teachers
                      ) -> tuple[int, "_Scorer"]:
    """Code each frame with pixel codec ``codec``, run the teachers on the decoded pixels."""
    from ssb.adapters import pixel_codecs
    from ssb.recipes.teachers import instance_masks

    people, pose_teacher, fg_teacher = teachers
    scorer, total = _Scorer(task, gt_dict), 0
    for i, img in enumerate(images):
        data = pixel_codecs.encode(codec, img, quality)
        total += len(data)
        dec = pixel_codecs.decode(codec, data)
        p = people([dec])[0]
        order = np.argsort(-p["scores"])[:MAX_OBJECTS]
        boxes, scores = p["boxes"][order], p["scores"][order]
        pred = {"boxes": boxes, "labels": np.ones(len(boxes), dtype=np.int64), "scores": scores}
        if task == "pose":
            kp = pose_teacher(dec, boxes)
            pred["keypoints"] = kp if len(boxes) else np.zeros((0, 17, 3), np.float32)
        else:
            pred["masks"] = instance_masks(fg_teacher(dec), boxes)
        scorer.add(i, pred)
    return total, scorer


#: the pixel-codec sweeps of the remote-inference baselines (the low end matters: SSB sits near 0.06-0.25 bpp)
DEFAULT_PIXEL_SWEEPS = {"jpeg": (5, 10, 20, 30, 50, 70, 90), "webp": (1, 5, 15, 30, 50, 70, 90),
                        "avif": (1, 10, 25, 40, 55, 70, 90)}


def run_task_eval(task: str, out_dir: str | Path, *, weights=None, head_weights=None, levels=None,
                  frame_step: int | None = None, pixel_sweeps: dict | None = None,
                  progress: bool = True) -> list[TaskPoint]:
    """Evaluate the ``task`` head at every SSB level (and the pixel codecs); write CSV / JSON to ``out_dir``.

    ``weights``: codec weights (default: shipped); ``head_weights``: the head's checkpoint
    (default: shipped ``ssb/weights/{pose,seg}_s8.pt``); ``pixel_sweeps``: ``{codec: qualities}``
    of the remote-inference baselines (default :data:`DEFAULT_PIXEL_SWEEPS`; ``{}`` for none).
    """
    from ssb.adapters.coco import predictions_to_coco_gt
    from ssb.codec.zoo import load_codec
    from ssb.errors import MalformedFieldError
    from ssb.recipes.data import load_split

    if task not in TASKS:
        raise MalformedFieldError(f"task must be one of {TASKS}, got {task!r}", field="--task")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    codec = load_codec(weights)
    det, head = _heads(task, codec, head_weights)
    targets = build_task_targets("val", frame_step=frame_step, progress=progress)
    samples = load_split("val", frame_step=frame_step, with_photos=False)
    images = [s.image for s in samples]
    if [s.name for s in samples] != targets.names:
        raise MalformedFieldError("validation frames changed since the targets were cached", field="targets")
    gt_preds = ground_truth(targets, task)
    records = [{"id": i, "height": h, "width": w} for i, (h, w) in enumerate(targets.image_sizes)]
    gt_dict = predictions_to_coco_gt(gt_preds, records, PERSON, score_thresh=0.5)
    n_obj = len(gt_dict["annotations"])
    pixels = sum(h * w for h, w in targets.image_sizes)
    points: list[TaskPoint] = []

    def add(method, param, nbytes, scorer):
        m = scorer.metrics()
        points.append(TaskPoint(task, method, int(param), 8.0 * nbytes / pixels, m["AP"], m["AP50"], m["AP75"],
                                int(nbytes), len(images), n_obj))
        if progress:
            p = points[-1]
            print(f"{task:>12} {method:>18} q={param:<3} bpp={p.bpp:.4f} AP={p.AP:.1f} AP50={p.AP50:.1f} "
                  f"AP75={p.AP75:.1f}", flush=True)

    feats = _Scorer(task, gt_dict)
    for i in range(len(targets)):
        split = targets.split[i : i + 1].float()
        sizes = [targets.image_sizes[i]]
        feats.add(i, head(split, image_sizes=sizes, detections=det(split, image_sizes=sizes))[0])
    add("features", 0, 3 * pixels, feats)
    levels = list(range(codec.config.num_levels)) if levels is None else list(levels)
    for level, nbytes, detected, given in _ssb_streams(targets, images, codec, levels, task, det, head, gt_dict):
        add("ssb", level, nbytes, detected)
        add("ssb-teacher-boxes", level, nbytes, given)
    sweeps = DEFAULT_PIXEL_SWEEPS if pixel_sweeps is None else pixel_sweeps
    if sweeps:
        from ssb.recipes.teachers import ForegroundTeacher, MoveNetTeacher, PersonTeacher
        from ssb.resources import vtest_path

        teachers = (PersonTeacher(score_thresh=DET_SCORE), MoveNetTeacher() if task == "pose" else None,
                    ForegroundTeacher().fit(vtest_path()) if task == "segmentation" else None)
        for name, qualities in sweeps.items():
            for q in qualities:
                nbytes, scorer = _remote_inference(task, images, name, q, gt_dict, teachers)
                add(name, q, nbytes, scorer)
    write_outputs(points, out_dir, task)
    return points


def _interp_log(x: float, xs: list[float], ys: list[float]) -> float:
    """``y`` at ``x`` on the curve (linear in log x); NaN outside the measured range."""
    if not xs or x < xs[0] or x > xs[-1]:
        return math.nan
    return float(np.interp(math.log(x), np.log(xs), ys))


def summarize(points: list[TaskPoint]) -> dict:
    """Per SSB level: its AP and each pixel codec's AP interpolated at the same bpp; BD-rates of SSB against each."""
    from ssb.metrics import bd_or_nan, bd_rate

    ssb = sorted((p for p in points if p.method == "ssb"), key=lambda p: p.bpp)
    pixel = {}
    for p in sorted(points, key=lambda p: p.bpp):
        if p.method not in _SSB_METHODS:
            pixel.setdefault(p.method, []).append(p)
    rows = []
    for p in ssb:
        row = {"level": p.param, "bpp": p.bpp, "ssb_AP": p.AP, "ssb_AP50": p.AP50}
        for name, pts in pixel.items():
            xs = [q.bpp for q in pts]
            row[f"{name}_AP_at_bpp"] = _interp_log(p.bpp, xs, [q.AP for q in pts])
            row[f"{name}_AP50_at_bpp"] = _interp_log(p.bpp, xs, [q.AP50 for q in pts])
        rows.append(row)
    out = {"matched_bpp": rows}
    if ssb:
        for name, pts in pixel.items():
            xs = [q.bpp for q in pts]
            out[f"bd_rate_vs_{name}_AP"] = bd_or_nan(bd_rate, xs, [q.AP for q in pts], [p.bpp for p in ssb],
                                                    [p.AP for p in ssb], pareto=True)
            out[f"bd_rate_vs_{name}_AP50"] = bd_or_nan(bd_rate, xs, [q.AP50 for q in pts], [p.bpp for p in ssb],
                                                      [p.AP50 for p in ssb], pareto=True)
    return out


def compare_features(shared: list[TaskPoint], tuned: list[TaskPoint], *, method: str = "ssb-teacher-boxes") -> dict:
    """The omnipotence check: per shared-codec level, the task-tuned codec's AP at the same bpp.

    ``shared`` / ``tuned``: :func:`run_task_eval` points of the shared codec with its head and of
    a codec tuned for this task alone with its own head of the same size
    (``python -m ssb.recipes.train_heads --tune-codec``).  The tuned curve is interpolated
    (linear in log-rate, never extrapolated) at each shared level's bpp; ``ratio`` is shared AP /
    tuned AP (the goal: at least 0.95).  ``method``: ``ssb-teacher-boxes`` (the heads on the
    teacher's person boxes: feature quality alone) or ``ssb`` (boxes detected on the same features).
    """
    from ssb.metrics import bd_metric, bd_or_nan

    a = sorted((p for p in shared if p.method == method), key=lambda p: p.bpp)
    b = sorted((p for p in tuned if p.method == method), key=lambda p: p.bpp)
    xs = [p.bpp for p in b]
    rows = []
    for p in a:
        t_ap, t_ap50 = _interp_log(p.bpp, xs, [q.AP for q in b]), _interp_log(p.bpp, xs, [q.AP50 for q in b])
        rows.append({"level": p.param, "bpp": p.bpp, "shared_AP": p.AP, "tuned_AP_at_bpp": t_ap,
                     "ratio_AP": p.AP / t_ap if t_ap and not math.isnan(t_ap) else math.nan,
                     "shared_AP50": p.AP50, "tuned_AP50_at_bpp": t_ap50})
    bd = bd_or_nan(bd_metric, xs, [q.AP for q in b], [p.bpp for p in a], [p.AP for p in a], pareto=False)
    return {"method": method, "matched_bpp": rows, "bd_AP_shared_minus_tuned": bd,
            "tuned_points": [{"level": q.param, "bpp": q.bpp, "AP": q.AP, "AP50": q.AP50} for q in b]}


def write_outputs(points: list[TaskPoint], out_dir: Path, task: str) -> None:
    rows = [asdict(p) for p in points]
    with open(out_dir / f"{task}_rate_accuracy.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out_dir / f"{task}_rate_accuracy.json").write_text(
        json.dumps({"points": rows, "summary": summarize(points)}, indent=1, default=str))
