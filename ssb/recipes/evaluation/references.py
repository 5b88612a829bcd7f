"""The references ``ssb eval`` measures against: the teachers on the ORIGINAL pixels of held-out frames.

* detection: the SSD teacher's detections (score >= ``GT_SCORE``) on every held-out sample
  (vtest frames 620.. every ``frame_step``-th, and the held-out photos);
* pose: its people with MoveNet keypoints (a keypoint is labelled when MoveNet scores it >= 0.3),
  on the vtest frames;
* segmentation: its people with their MOG2 instance masks, on the vtest frames.

Each image is one detectron2-style input dict ``{"image_id", "height", "width", "detection",
"pose", "segmentation"}``; a task's value is ``None`` where it has no reference, and the
evaluator of that task then skips the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssb.recipes.data import Sample, load_split

__all__ = ["Reference", "build_reference", "TASKS", "GT_SCORE", "DET_SCORE", "MAX_OBJECTS", "evaluators"]

TASKS = ("detection", "pose", "segmentation")
IOU_TYPE = {"detection": "bbox", "pose": "keypoints", "segmentation": "segm"}
GT_SCORE = 0.5  #: teacher detections kept as objects
DET_SCORE = 0.05  #: candidate detections kept for the PR curves
MAX_OBJECTS = 20  #: people per frame the pose / mask heads run on


@dataclass
class Reference:
    samples: list[Sample]
    inputs: list[dict]
    tasks: tuple[str, ...]
    targets: object = None  #: :class:`ssb.recipes.task_data.TaskTargets` of the vtest frames (pose / masks)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return [s.image.shape[:2] for s in self.samples]

    def pixels(self, task: str) -> int:
        """Original pixels of the images ``task`` is evaluated on."""
        return sum(h * w for inp, (h, w) in zip(self.inputs, self.sizes) if inp[task] is not None)

    def task_images(self, task: str) -> list[int]:
        return [i for i, inp in enumerate(self.inputs) if inp[task] is not None]


def _person_refs(targets, i: int, task: str) -> dict:
    from ssb.recipes.teachers import KEYPOINT_SCORE, PERSON_LABEL

    n = len(targets.boxes[i])
    gt = {"boxes": targets.boxes[i].numpy(), "labels": np.full(n, PERSON_LABEL), "scores": targets.scores[i].numpy()}
    if task == "pose":
        kp = targets.keypoints[i].numpy().copy()
        kp[:, :, 2] = np.where(kp[:, :, 2] >= KEYPOINT_SCORE, 2.0, 0.0)
        gt["keypoints"] = kp
    else:
        gt["masks"] = targets.instance_masks(i)
    return gt


@torch.no_grad()
def build_reference(tasks, *, frame_step: int | None = None, progress: bool = True) -> Reference:
    """The held-out samples and every asked task's reference on their original pixels."""
    from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front, preprocess
    from ssb.errors import MalformedFieldError
    from ssb.tasks import create

    tasks = tuple(tasks)
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise MalformedFieldError(f"ssb eval evaluates {', '.join(TASKS)}, not {', '.join(bad)}", field="--task")
    samples = load_split("val", frame_step=frame_step, with_photos="detection" in tasks)
    inputs = [{"image_id": i, "height": s.image.shape[0], "width": s.image.shape[1], **{t: None for t in TASKS}}
              for i, s in enumerate(samples)]
    if "detection" in tasks:
        front, head = SSDMobileNetV2Front(pretrained=True), create("detection")
        for i in range(0, len(samples), 8):
            chunk = samples[i: i + 8]
            dets = head(front(preprocess([s.image for s in chunk])), image_sizes=[s.image.shape[:2] for s in chunk])
            for k, d in enumerate(dets):
                inputs[i + k]["detection"] = d
    targets = None
    if "pose" in tasks or "segmentation" in tasks:
        from ssb.recipes.task_data import build_task_targets

        targets = build_task_targets("val", frame_step=frame_step, progress=progress)
        by_name = {n: i for i, n in enumerate(targets.names)}
        for i, s in enumerate(samples):
            j = by_name.get(s.name)
            for task in ("pose", "segmentation"):
                if task in tasks and j is not None:
                    inputs[i][task] = _person_refs(targets, j, task)
    return Reference(samples, inputs, tasks, targets)


def evaluators(ref: Reference):
    """One COCO evaluator per task (``reset / process / evaluate``), all fed by one loop."""
    from ssb.adapters.evaluation import COCOEvaluator, DatasetEvaluators
    from ssb.format.labels import COCO_CATEGORIES

    evs = []
    for task in ref.tasks:
        cats = COCO_CATEGORIES if task == "detection" else {1: "person"}
        evs.append(COCOEvaluator(IOU_TYPE[task], cats, score_thresh=GT_SCORE, key=task))
    return DatasetEvaluators(evs)
