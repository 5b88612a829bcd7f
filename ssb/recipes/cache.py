"""Teacher targets on ORIGINAL pixels, computed once per sample and kept in memory.

For each real sample (and a few deterministic augmentations) we store, in float16:

* ``split``: the teacher front's stride-8 split features (the codec's input),
* ``codes`` / ``logits``: the teacher's raw box codes and class logits (distillation targets).

The codec only ever sees these tensors during training, so the heavy front runs once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import dataclasses
import json
from pathlib import Path

from ssb.recipes.data import Sample, load_split


@dataclass
class TeacherTargets:
    names: list[str]
    split: torch.Tensor  # [N, 32, 38, 38] float16
    codes: torch.Tensor  # [N, A, 4] float16
    logits: torch.Tensor  # [N, A, 91] float16

    def __len__(self) -> int:
        return len(self.names)


def augment(samples: list[Sample], *, crops_per_photo: int, flip_every: int, seed: int) -> list[Sample]:
    """Deterministic augmentations: random crops of the photos, horizontal flips of some frames."""
    rng = np.random.default_rng(seed)
    out = list(samples)
    for k, s in enumerate(samples):
        if s.name.startswith("vtest:") and flip_every and k % flip_every == 0:
            out.append(Sample(s.name + ":flip", np.ascontiguousarray(s.image[:, ::-1])))
        if s.name.startswith("photo:"):
            h, w = s.image.shape[:2]
            for c in range(crops_per_photo):
                frac = rng.uniform(0.35, 0.8)
                ch, cw = max(32, int(h * frac)), max(32, int(w * frac * rng.uniform(0.8, 1.25)))
                cw = min(cw, w)
                y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
                crop = s.image[y0 : y0 + ch, x0 : x0 + cw]
                if rng.random() < 0.5:
                    crop = crop[:, ::-1]
                out.append(Sample(f"{s.name}:crop{c}", np.ascontiguousarray(crop)))
    return out


@torch.no_grad()
def compute_targets(samples: list[Sample], front, head, *, batch_size: int = 16, progress: bool = True) -> TeacherTargets:
    """Run the teacher (front, then the detection head's raw outputs) on each sample's pixels."""
    from ssb.backbones.ssd_mobilenet_v2 import preprocess

    it = range(0, len(samples), batch_size)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="teacher targets", unit="batch")
    splits, codes, logits = [], [], []
    for i in it:
        x = preprocess([s.image for s in samples[i : i + batch_size]])
        split = front(x)
        c, lg, _ = head.raw_outputs(split)
        splits.append(split.half())
        codes.append(c.half())
        logits.append(lg.half())
    return TeacherTargets([s.name for s in samples], torch.cat(splits), torch.cat(codes), torch.cat(logits))


def build_targets(cfg, front, head, *, progress: bool = True) -> TeacherTargets:
    """Teacher targets of the training set (``cfg``: a TrainConfig), cached in ``$SSB_CACHE`` (keyed by data settings and teacher)."""
    import hashlib

    from ssb.backbones.teacher_weights import cache_dir
    from ssb.codec.zoo import teacher_fingerprint

    key = hashlib.sha256(json.dumps([cfg.frame_step, cfg.crops_per_photo, cfg.flip_every, cfg.seed,
                                     teacher_fingerprint(), 1]).encode()).hexdigest()[:16]
    path = cache_dir() / f"train-targets-{key}.pt"
    if path.is_file():
        d = torch.load(path, weights_only=True)
        return TeacherTargets(d["names"], d["split"], d["codes"], d["logits"])
    samples = augment(load_split("train", frame_step=cfg.frame_step), crops_per_photo=cfg.crops_per_photo,
                      flip_every=cfg.flip_every, seed=cfg.seed)
    t = compute_targets(samples, front, head, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dataclasses.asdict(t), str(path) + ".tmp")
    Path(str(path) + ".tmp").replace(path)
    return t
