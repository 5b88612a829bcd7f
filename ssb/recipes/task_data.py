"""Teacher targets of the pose and segmentation heads, computed once on ORIGINAL pixels and cached.

Per real sample (``vtest.avi`` frames of a split from :mod:`ssb.recipes.data`, their horizontal
flips for training, and the training photos) we keep:

* ``split``: the teacher front's split features of the original pixels (the codec's input);
* ``boxes`` / ``scores``: the SSD teacher's person detections (score >= 0.5);
* ``keypoints``: MoveNet Lightning's 17 keypoints (x, y, score) per person;
* ``foreground``: the MOG2 foreground of the frame (bit-packed), ``None`` for photos.

Teachers are in :mod:`ssb.recipes.teachers`.  The cache lives in ``$SSB_CACHE`` (default
``~/.cache/ssb``), keyed by the data settings and the teachers' file hashes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ssb.recipes.data import Sample, load_split, vtest_indices

__all__ = ["TaskTargets", "build_task_targets", "compute_task_targets"]

#: Bump when what is computed changes, so stale caches are not reused.
TARGETS_VERSION = 1


@dataclass
class TaskTargets:
    names: list[str]
    image_sizes: list[tuple[int, int]]
    split: torch.Tensor  # [N, 32, 38, 38] float16
    boxes: list[torch.Tensor]  # [n, 4] float32, original pixels
    scores: list[torch.Tensor]  # [n]
    keypoints: list[torch.Tensor]  # [n, 17, 3] (x, y, MoveNet score)
    foreground: list[torch.Tensor]  # bit-packed H*W bool (uint8), empty when unknown

    def __len__(self) -> int:
        return len(self.names)

    def has_foreground(self, i: int) -> bool:
        return self.foreground[i].numel() > 0

    def foreground_mask(self, i: int) -> np.ndarray:
        """The ``H x W`` bool MOG2 foreground of sample ``i`` (it must have one)."""
        h, w = self.image_sizes[i]
        return np.unpackbits(self.foreground[i].numpy(), count=h * w).reshape(h, w).astype(bool)

    def instance_masks(self, i: int) -> np.ndarray:
        """``[n, H, W]`` bool: the foreground inside each teacher person box of sample ``i``."""
        from ssb.recipes.teachers import instance_masks

        return instance_masks(self.foreground_mask(i), self.boxes[i].numpy())

    def to_dict(self) -> dict:
        return {"names": self.names, "image_sizes": [list(s) for s in self.image_sizes], "split": self.split,
                "boxes": self.boxes, "scores": self.scores, "keypoints": self.keypoints,
                "foreground": self.foreground}

    @classmethod
    def from_dict(cls, d: dict) -> "TaskTargets":
        return cls(list(d["names"]), [tuple(int(v) for v in s) for s in d["image_sizes"]], d["split"],
                   list(d["boxes"]), list(d["scores"]), list(d["keypoints"]), list(d["foreground"]))


def _samples(split: str, frame_step: int | None, flips: bool, photos: bool) -> tuple[list[Sample], list[int | None]]:
    """Samples and, for each, the vtest frame index whose foreground it has (None for photos)."""
    samples = load_split(split, frame_step=frame_step, with_photos=photos)
    frames = [int(s.name.split(":")[1]) if s.name.startswith("vtest:") else None for s in samples]
    if flips:
        flipped = [Sample(s.name + ":flip", np.ascontiguousarray(s.image[:, ::-1])) for s in samples]
        samples, frames = samples + flipped, frames + frames
    return samples, frames


@torch.no_grad()
def compute_task_targets(samples: list[Sample], frames: list[int | None], *, batch_size: int = 8,
                         progress: bool = True) -> TaskTargets:
    """Run the three teachers on the samples' original pixels."""
    from ssb.recipes.teachers import ForegroundTeacher, MoveNetTeacher, PersonTeacher
    from ssb.resources import vtest_path

    people_teacher, pose_teacher = PersonTeacher(), MoveNetTeacher()
    fg_teacher = ForegroundTeacher().fit(vtest_path()) if any(f is not None for f in frames) else None
    it = range(0, len(samples), batch_size)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="pose/mask teachers", unit="batch")
    splits, boxes, scores, kps, fgs = [], [], [], [], []
    for i in it:
        chunk = samples[i : i + batch_size]
        split, people = people_teacher.split_and_people([s.image for s in chunk])
        splits.append(split.half())
        for s, p, frame in zip(chunk, people, frames[i : i + batch_size]):
            boxes.append(torch.from_numpy(p["boxes"]))
            scores.append(torch.from_numpy(p["scores"]))
            kps.append(torch.from_numpy(pose_teacher(s.image, p["boxes"])))
            if frame is None:
                fgs.append(torch.zeros(0, dtype=torch.uint8))
            else:
                fg = fg_teacher(s.image)  # the flipped frame's foreground is that of the flipped pixels
                fgs.append(torch.from_numpy(np.packbits(fg.reshape(-1))))
    return TaskTargets([s.name for s in samples], [tuple(s.image.shape[:2]) for s in samples], torch.cat(splits),
                       boxes, scores, kps, fgs)


def build_task_targets(split: str, *, frame_step: int | None = None, flips: bool | None = None,
                       photos: bool | None = None, progress: bool = True) -> TaskTargets:
    """Targets of ``split`` ('train': frames, flips and photos by default; 'val': frames only), cached."""
    from ssb.backbones.teacher_weights import cache_dir
    from ssb.codec.zoo import teacher_fingerprint
    from ssb.recipes.teachers import MOVENET_FILE
    from ssb.resources import file_sha256, teacher_path

    flips = (split == "train") if flips is None else flips
    photos = (split == "train") if photos is None else photos
    key = hashlib.sha256(json.dumps([split, vtest_indices(split, step=frame_step), flips, photos,
                                     teacher_fingerprint(), file_sha256(teacher_path(MOVENET_FILE))[:16],
                                     TARGETS_VERSION]).encode()).hexdigest()[:16]
    path = cache_dir() / f"task-targets-{split}-{key}.pt"
    if path.is_file():
        return TaskTargets.from_dict(torch.load(path, weights_only=True))
    samples, frames = _samples(split, frame_step, flips, photos)
    targets = compute_task_targets(samples, frames, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(targets.to_dict(), str(path) + ".tmp")
    Path(str(path) + ".tmp").replace(path)
    return targets
