"""Recipe for the pose and instance-segmentation heads, trained behind FROZEN codec weights.

``python -m ssb.recipes.train_heads --task pose|segmentation -o ssb/weights/pose_s8.pt``

Data: the cached teacher targets of the training split (:mod:`ssb.recipes.task_data`: person
boxes of the SSD teacher, MoveNet keypoints, MOG2 instance masks, all on ORIGINAL pixels).
Each step draws frames, codes their split features with the frozen codec at a random quality
level each, with hard rounding (``codec(x, level, quant_mode="hard")["x_hat"]``: what a stream
really decodes to), jitters the teacher's person boxes (shift and scale, standing in for boxes
detected on decoded features), and trains the head on the decoded features:

* pose: cross-entropy of each keypoint heatmap's softmax against a Gaussian around the
  teacher's keypoint (keypoints MoveNet scores >= 0.3 inside the RoI), plus binary
  cross-entropy of the visibility logits against that same "labelled" flag;
* segmentation: binary cross-entropy of the 28x28 mask logits against the teacher's instance
  mask (MOG2 foreground inside the teacher box) pooled over the jittered box.

The checkpoint records the SHA-256 of the codec weights (heads refuse other codec weights).

``--tune-codec`` makes the counterpart of the omnipotence check: the codec is NOT frozen but
fine-tuned (from the shared weights, same architecture and levels) jointly with a fresh head of
the same size, on this task's loss alone plus the rate term of the shared recipe, ``R /
lambda_l`` (``R``: bits per teacher-input pixel from the likelihoods, straight-through hard
rounding).  It writes the tuned codec next to the head (``<output stem>_codec.pt``, entropy
tables rebuilt) and binds the head to it; ``ssb eval --task ... --weights ... --head-weights ...``
then measures it and :func:`ssb.recipes.evaluate_tasks.compare_features` compares it with the
shared features at equal bpp.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ssb.errors import MalformedFieldError
from ssb.recipes.task_data import TaskTargets, build_task_targets
from ssb.recipes.train import TEACHER_PIXELS, rate_bpp

__all__ = ["HeadTrainConfig", "main", "train_head"]

TASKS = ("pose", "segmentation")
#: iterations the shipped ssb/weights/{pose,seg}_s8.pt were trained for
DEFAULT_ITERATIONS = {"pose": 1500, "segmentation": 1000}


@dataclass
class HeadTrainConfig:
    task: str = "pose"
    iterations: int | None = None  # None: the shipped weights' count for the task (DEFAULT_ITERATIONS)
    batch_size: int = 8  # frames per step
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    #: box jitter: centre shift (fraction of the box side) and log-scale standard deviations
    shift: float = 0.08
    scale: float = 0.10
    #: heatmap Gaussian standard deviation, in heatmap cells
    sigma: float = 1.5
    vis_weight: float = 0.5
    frame_step: int | None = None
    threads: int = 1
    #: task-tuned features (see the module doc): codec trained with the head, at this learning rate
    tune_codec: bool = False
    codec_lr: float = 1e-4
    rate_weight: float = 1.0

    def __post_init__(self):
        if self.task not in TASKS:
            raise MalformedFieldError(f"task must be one of {TASKS}, got {self.task!r}", field="task")
        if self.iterations is None:
            self.iterations = DEFAULT_ITERATIONS[self.task]


def jitter_boxes(boxes: torch.Tensor, shift: float, scale: float, gen: torch.Generator) -> torch.Tensor:
    """Boxes ``[n, 4]`` with centres shifted by ``N(0, shift)`` box sides and sides scaled by ``exp(N(0, scale))``."""
    n = len(boxes)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 + torch.randn(n, generator=gen) * shift * w
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + torch.randn(n, generator=gen) * shift * h
    w = w * torch.exp(torch.randn(n, generator=gen) * scale)
    h = h * torch.exp(torch.randn(n, generator=gen) * scale)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)


def gaussian_targets(coords: torch.Tensor, hw: tuple[int, int], sigma: float) -> torch.Tensor:
    """Normalized Gaussian heatmaps ``[K, J, h, w]`` around heatmap coordinates ``[K, J, 2]`` (col, row)."""
    h, w = hw
    ys = torch.arange(h, dtype=torch.float32)[:, None]
    xs = torch.arange(w, dtype=torch.float32)[None, :]
    d2 = (xs - coords[..., 0, None, None]) ** 2 + (ys - coords[..., 1, None, None]) ** 2
    g = torch.exp(-d2 / (2 * sigma**2))
    return g / g.sum(dim=(-2, -1), keepdim=True).clamp(min=1e-12)


def pose_loss(head, split: torch.Tensor, boxes: list[torch.Tensor], kps: list[torch.Tensor], sizes, cfg
              ) -> tuple[torch.Tensor, dict]:
    """Heatmap cross-entropy + visibility BCE of a batch (``kps``: teacher ``[n, 17, 3]`` per image)."""
    from ssb.recipes.teachers import KEYPOINT_SCORE
    from ssb.tasks.pose import heatmap_coords

    heat, vis, regions = head.raw(split, boxes, sizes)
    kp = torch.cat(kps)
    hw = heat.shape[-2:]
    coords = heatmap_coords(kp[..., :2], regions, hw)
    inside = (coords[..., 0] > -0.5) & (coords[..., 0] < hw[1] - 0.5) & (coords[..., 1] > -0.5) & (
        coords[..., 1] < hw[0] - 0.5)
    labelled = (kp[..., 2] >= KEYPOINT_SCORE) & inside
    target = gaussian_targets(coords, hw, cfg.sigma)
    logp = torch.log_softmax(heat.flatten(2), dim=-1).reshape(heat.shape)
    ce = -(target * logp).sum(dim=(-2, -1))
    l_heat = (ce * labelled).sum() / labelled.sum().clamp(min=1)
    l_vis = nn.functional.binary_cross_entropy_with_logits(vis, labelled.float())
    return l_heat + cfg.vis_weight * l_vis, {"heat": l_heat.item(), "vis": l_vis.item()}


def mask_targets(masks: np.ndarray, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """``[n, 1, size, size]`` binary targets: each instance mask pooled over its (jittered) box."""
    from torchvision.ops import roi_align

    m = torch.from_numpy(masks).float()[:, None]
    rois = torch.cat([torch.arange(len(boxes), dtype=torch.float32)[:, None], boxes], dim=1)
    return (roi_align(m, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=2, aligned=True)
            >= 0.5).float()


def mask_loss(head, split: torch.Tensor, boxes: list[torch.Tensor], targets: torch.Tensor, sizes
              ) -> tuple[torch.Tensor, dict]:
    logits = head.raw(split, boxes, sizes)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, targets)
    return loss, {"bce": loss.item()}


def _usable(targets: TaskTargets, task: str) -> list[int]:
    keep = [i for i in range(len(targets)) if len(targets.boxes[i])]
    if task == "segmentation":
        keep = [i for i in keep if targets.has_foreground(i)]
    if not keep:
        raise MalformedFieldError(f"no training samples with people for {task}", field="targets")
    return keep


def train_head(cfg: HeadTrainConfig, codec, out_path: str | Path, *, progress: bool = True,
               targets: TaskTargets | None = None) -> Path:
    """Train the ``cfg.task`` head behind the frozen ``codec`` (``ssb.codec.zoo.load("codec")``) and save it."""
    from ssb.codec import zoo
    from ssb.tasks.pose import PoseHead
    from ssb.tasks.segmentation import SegmentationHead

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    targets = targets or build_task_targets("train", frame_step=cfg.frame_step, progress=progress)
    usable = _usable(targets, cfg.task)
    head_cls = PoseHead if cfg.task == "pose" else SegmentationHead
    head = head_cls(pretrained=False)
    head.train()
    codec.train(cfg.tune_codec)
    for p in codec.parameters():
        p.requires_grad_(cfg.tune_codec)
    groups = [{"params": list(head.net.parameters()), "lr": cfg.lr, "weight_decay": cfg.weight_decay}]
    if cfg.tune_codec:
        groups.append({"params": list(codec.parameters()), "lr": cfg.codec_lr, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups)
    lambdas = torch.tensor(codec.config.lambdas)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * s / cfg.iterations)))
    gen = torch.Generator().manual_seed(cfg.seed)
    levels_n = codec.config.num_levels
    mask_cache: dict[int, np.ndarray] = {}
    it = range(cfg.iterations)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"train {cfg.task} head", unit="it")
    log, t0, run = [], time.time(), None
    for step in it:
        pick = [usable[int(j)] for j in torch.randint(0, len(usable), (cfg.batch_size,), generator=gen)]
        levels = torch.randint(0, levels_n, (len(pick),), generator=gen)
        x = targets.split[pick].float()
        rate = None
        if cfg.tune_codec:
            out = codec(x, levels, quant_mode="ste")
            split = out["x_hat"]
            rate = (rate_bpp(out["likelihoods"], TEACHER_PIXELS) / lambdas[levels]).mean()
        else:
            with torch.no_grad():
                split = codec(x, levels, quant_mode="hard")["x_hat"]
        sizes = [targets.image_sizes[i] for i in pick]
        boxes = [jitter_boxes(targets.boxes[i], cfg.shift, cfg.scale, gen) for i in pick]
        if cfg.task == "pose":
            loss, parts = pose_loss(head, split, boxes, [targets.keypoints[i] for i in pick], sizes, cfg)
        else:
            size = 2 * head.roi_size[0]
            tgt = []
            for i, b in zip(pick, boxes):
                if i not in mask_cache:
                    mask_cache[i] = targets.instance_masks(i)
                tgt.append(mask_targets(mask_cache[i], b, size))
            loss, parts = mask_loss(head, split, boxes, torch.cat(tgt), sizes)
        if rate is not None:
            parts["rate"] = rate.item()
            loss = loss + cfg.rate_weight * rate
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run = loss.item() if run is None else 0.98 * run + 0.02 * loss.item()
        if progress and hasattr(it, "set_postfix"):
            it.set_postfix(loss=f"{run:.4f}")
        if step % 100 == 0 or step == cfg.iterations - 1:
            log.append({"step": step, "loss": round(run, 5), **{k: round(v, 5) for k, v in parts.items()},
                        "time_s": round(time.time() - t0, 1)})
    head.eval()
    if cfg.tune_codec:
        codec = _save_tuned_codec(codec, Path(out_path), cfg, log)
    meta = {"train": asdict(cfg), "samples": len(usable), "objects": int(sum(len(targets.boxes[i]) for i in usable)),
            "log_tail": log[-5:], "seconds": round(time.time() - t0, 1),
            "teachers": "SSD-MobileNetV2 persons >= 0.5; MoveNet Lightning keypoints" if cfg.task == "pose"
            else "SSD-MobileNetV2 persons >= 0.5; MOG2 foreground inside the box"}
    name = zoo.card(zoo.DEFAULTS[cfg.task]).name
    return zoo.save(out_path, head.net, kind=cfg.task, name=name, version=zoo.next_version(name), config=head.config,
                    behind=codec.identity.id, meta=meta)


def tuned_codec_path(head_path: str | Path) -> Path:
    """Where ``--tune-codec`` writes the codec of head checkpoint ``head_path``."""
    p = Path(head_path)
    return p.with_name(f"{p.stem}_codec.pt")


def _save_tuned_codec(codec, head_path: Path, cfg: HeadTrainConfig, log: list):
    from ssb.codec import zoo
    from ssb.recipes.train import _jsonable, save_codec

    codec.eval()
    codec.update(force=True)
    path = tuned_codec_path(head_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tuned_from = codec.identity.id
    save_codec(codec, path, name=f"{codec.identity.name}-{cfg.task}-tuned", version=1,
               extra={"tuned_for": cfg.task, "tuned_from": tuned_from, "train_config": _jsonable(cfg),
                      "train_log_tail": log[-3:]})
    return zoo.load("codec", path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ssb.recipes.train_heads", description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=TASKS, required=True)
    p.add_argument("-o", "--output", required=True, help="checkpoint path, e.g. ssb/weights/pose_s8.pt")
    p.add_argument("--codec-weights", default=None, help="frozen codec weights (default: the shipped ones)")
    p.add_argument("--iterations", type=int, default=None, help=f"default: {DEFAULT_ITERATIONS}")
    p.add_argument("--batch-size", type=int, default=HeadTrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=HeadTrainConfig.lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tune-codec", action="store_true",
                   help="fine-tune the codec with the head on this task alone (the omnipotence check's counterpart)")
    p.add_argument("--codec-lr", type=float, default=HeadTrainConfig.codec_lr)
    p.add_argument("--rate-weight", type=float, default=HeadTrainConfig.rate_weight)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    from ssb.codec import zoo

    cfg = HeadTrainConfig(task=args.task, iterations=args.iterations, batch_size=args.batch_size, lr=args.lr,
                          seed=args.seed, threads=args.threads, tune_codec=args.tune_codec, codec_lr=args.codec_lr,
                          rate_weight=args.rate_weight)
    path = train_head(cfg, zoo.load("codec", args.codec_weights), args.output, progress=not args.no_progress)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
