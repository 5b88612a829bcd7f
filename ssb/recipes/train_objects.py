"""Recipe for the pose and mask heads on object-scale units, trained behind the FROZEN codec.

``python -m ssb.recipes.train_objects -o ssb/weights`` writes ``pose_object_s8.pt`` and
``seg_object_s8.pt`` (zoo kinds ``pose_object`` / ``segmentation_object``).

Data: the training split's teacher targets (:mod:`ssb.recipes.task_data`: SSD person boxes,
MoveNet keypoints and MOG2 instance masks, all on ORIGINAL pixels; vtest frames 0-599 and the
training photos but :data:`HELD_OUT_PHOTOS`), without their precomputed flips: each step draws people and makes what the
encoder would code for them (:mod:`ssb.codec.object_scale`), with augmentation so the heads hold
on people of any size and scene:

* the teacher box jittered (centre shift, side scale), then the encoder's window rule, at an object
  size drawn per step (small 64x48, medium 96x72, large 128x96: what ``--object-size`` chooses);
* an upper-body crop, 30 % of the time (the box cut to its top 35-80 %: a person filling the
  window, keypoints below it unlabelled);
* a horizontal flip (keypoints mirrored, left and right swapped);
* colour (brightness, contrast, saturation, grey) and resolution (a window shrunk by up to 3x and
  enlarged back: small, blurred people) jitter;
* the window through the teacher's front and the codec at a random level, hard rounding (what a
  stream decodes to).

Losses: pose, the heatmap cross-entropy against a Gaussian at each labelled MoveNet keypoint
(score >= 0.3, inside the window) plus the visibility BCE (as :mod:`ssb.recipes.train_heads`);
masks, the BCE of the mask logits against the teacher mask resampled to the logits' grid (frames
with a MOG2 foreground only).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["ObjectTrainConfig", "ObjectSamples", "train_objects", "main"]

#: training photos left out of these heads' data, to test how they hold on people they never saw
HELD_OUT_PHOTOS = ("photo:grace_hopper",)
POSE_CONFIG = {"in_channels": 32, "width": 96, "depth": 5, "upsample": 2, "num_keypoints": 17}
MASK_CONFIG = {"in_channels": 32, "width": 96, "depth": 4, "upsample": 4}


@dataclass
class ObjectTrainConfig:
    iterations: int = 5000  #: what the shipped weights were trained for (1376 people, ~25 min on 2 cores)
    batch_size: int = 32  #: people per step
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    shift: float = 0.06
    scale: float = 0.2
    #: probability of keeping only the top 35-80 % of the box (an upper body filling the window, as in
    #: portraits and close-ups; the keypoints below the window are then unlabelled)
    truncate: float = 0.3
    flip: float = 0.5
    colour: float = 0.8  #: probability of a colour jitter
    low_res: float = 0.3  #: probability of shrinking the window (up to 3x) and enlarging it back
    sigma: float = 1.5
    vis_weight: float = 0.5
    mask_weight: float = 1.0
    threads: int = 2
    frame_step: int | None = None
    min_keypoints: int = 3  #: a person needs this many labelled keypoints to train the pose net
    #: object sizes (:data:`ssb.codec.object_scale.OBJECT_SIZES` names) drawn per step, so the heads
    #: read units of every size an encoder may choose
    sizes: tuple[str, ...] = ("small", "medium", "large")
    #: the omnipotence check's counterpart: "pose" or "segmentation" fine-tunes the codec (from the
    #: shared weights) with that head alone, on its loss plus the rate R / lambda_level
    tune_codec: str | None = None
    codec_lr: float = 1e-4
    rate_weight: float = 1.0

    @property
    def task(self) -> str:
        """What a tuned codec is named after."""
        return f"{self.tune_codec}-object"


class ObjectSamples:
    """The people of the training targets, with their frames' pixels (no precomputed flips)."""

    def __init__(self, targets, images: dict[str, np.ndarray]):
        from ssb.recipes.teachers import KEYPOINT_SCORE

        self.targets, self.images = targets, images
        self.people: list[tuple[int, int]] = []
        self._masks: dict[int, np.ndarray] = {}
        for i, name in enumerate(targets.names):
            if name.endswith(":flip") or name not in images or name in HELD_OUT_PHOTOS:
                continue
            for k in range(len(targets.boxes[i])):
                self.people.append((i, k))
        self.labelled = [int((self.targets.keypoints[i][k, :, 2] >= KEYPOINT_SCORE).sum()) for i, k in self.people]

    def __len__(self) -> int:
        return len(self.people)

    def mask(self, i: int, k: int) -> np.ndarray | None:
        """Person ``k``'s teacher mask in sample ``i`` (uint8 0/1), ``None`` without a foreground."""
        if not self.targets.has_foreground(i):
            return None
        if i not in self._masks:
            self._masks = {i: self.targets.instance_masks(i).astype(np.uint8)}  # one frame at a time
        return self._masks[i][k]


def _jitter(box, shift: float, scale: float, rng: np.random.Generator):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2 + rng.normal() * shift * w, (y1 + y2) / 2 + rng.normal() * shift * h
    w, h = w * np.exp(rng.normal() * scale), h * np.exp(rng.normal() * scale)
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def _colour(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = crop.astype(np.float32)
    x = (x - x.mean()) * rng.uniform(0.7, 1.3) + x.mean() * rng.uniform(0.7, 1.3)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * (0.0 if rng.random() < 0.1 else rng.uniform(0.6, 1.4))
    return np.clip(x, 0, 255).astype(np.uint8)


def _low_res(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    import cv2

    h, w = crop.shape[:2]
    f = rng.uniform(1.5, 3.0)
    small = cv2.resize(crop, (max(int(w / f), 4), max(int(h / f), 4)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def make_batch(data: ObjectSamples, pick, cfg: ObjectTrainConfig, rng: np.random.Generator, layout, mask_hw):
    """(crops uint8 [B,H,W,3], window boxes [B,4], keypoints [B,17,3] in frame pixels (flipped into
    the window when mirrored), mask targets [B,1,h,w] or None per person)."""
    import cv2

    from ssb.codec.object_scale import crop_window, object_window
    from ssb.tasks.pose import FLIP_INDEX

    crops, wins, kps, masks = [], [], [], []
    for j in pick:
        i, k = data.people[j]
        image = data.images[data.targets.names[i]]
        box = data.targets.boxes[i][k].numpy().copy()
        if rng.random() < cfg.truncate:
            box[3] = box[1] + (box[3] - box[1]) * rng.uniform(0.35, 0.8)
        win = object_window(_jitter(box, cfg.shift, cfg.scale, rng), layout)
        crop = crop_window(image, win, layout.input_size, layout.fill)
        kp = data.targets.keypoints[i][k].clone()
        m = data.mask(i, k)
        mt = None
        if m is not None:
            mc = crop_window(m * 255, win, layout.input_size, 0)
            mt = cv2.resize(mc, (mask_hw[1], mask_hw[0]), interpolation=cv2.INTER_AREA) >= 128
        if rng.random() < cfg.flip:
            crop = np.ascontiguousarray(crop[:, ::-1])
            kp = kp[list(FLIP_INDEX)]
            kp[:, 0] = 2 * win[0] + win[2] - kp[:, 0]
            mt = None if mt is None else np.ascontiguousarray(mt[:, ::-1])
        if rng.random() < cfg.colour:
            crop = _colour(crop, rng)
        if rng.random() < cfg.low_res:
            crop = _low_res(crop, rng)
        crops.append(crop)
        x0, y0, w, h = win
        wins.append((x0, y0, x0 + w, y0 + h))
        kps.append(kp)
        masks.append(None if mt is None else torch.from_numpy(mt.astype(np.float32))[None])
    return crops, torch.tensor(wins, dtype=torch.float32), torch.stack(kps), masks


def pose_loss(net, feats, wins, kps, cfg):
    from ssb.recipes.teachers import KEYPOINT_SCORE
    from ssb.recipes.train_heads import gaussian_targets
    from ssb.tasks.pose import heatmap_coords

    heat, vis = net(feats)
    hw = heat.shape[-2:]
    coords = heatmap_coords(kps[..., :2], wins, hw)
    inside = (coords[..., 0] > -0.5) & (coords[..., 0] < hw[1] - 0.5) & (coords[..., 1] > -0.5) & (
        coords[..., 1] < hw[0] - 0.5)
    labelled = (kps[..., 2] >= KEYPOINT_SCORE) & inside
    logp = torch.log_softmax(heat.flatten(2), dim=-1).reshape(heat.shape)
    ce = -(gaussian_targets(coords, hw, cfg.sigma) * logp).sum(dim=(-2, -1))
    l_heat = (ce * labelled).sum() / labelled.sum().clamp(min=1)
    l_vis = nn.functional.binary_cross_entropy_with_logits(vis, labelled.float())
    return l_heat + cfg.vis_weight * l_vis, l_heat.item()


def load_samples(frame_step=None, progress=True) -> ObjectSamples:
    from ssb.recipes.data import load_split
    from ssb.recipes.task_data import build_task_targets

    targets = build_task_targets("train", frame_step=frame_step, progress=progress)
    images = {s.name: s.image for s in load_split("train", frame_step=frame_step)}
    return ObjectSamples(targets, images)


def train_objects(cfg: ObjectTrainConfig, codec, front, out_dir, *, data: ObjectSamples | None = None,
                  progress: bool = True) -> tuple[Path, ...]:
    """Train both object-scale nets behind the frozen ``codec`` and save them in ``out_dir`` (with
    ``cfg.tune_codec``: one head and its tuned codec)."""
    from ssb.backbones.ssd_mobilenet_v2 import preprocess
    from ssb.codec import zoo
    from ssb.codec.object_scale import layout_for
    from ssb.tasks.pose import build_net as pose_net
    from ssb.tasks.segmentation import build_net as mask_net

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    data = data or load_samples(cfg.frame_step, progress)
    pool = [j for j, n in enumerate(data.labelled) if n >= cfg.min_keypoints]
    if not pool:
        from ssb.errors import MalformedFieldError

        raise MalformedFieldError("no training people with labelled keypoints", field="targets")
    pose, mask = pose_net(POSE_CONFIG), mask_net(MASK_CONFIG)
    tune = cfg.tune_codec
    if tune not in (None, "pose", "segmentation"):
        from ssb.errors import MalformedFieldError

        raise MalformedFieldError(f"tune_codec must be pose or segmentation, got {tune!r}", field="tune_codec")
    heads = {"pose": [pose], "segmentation": [mask], None: [pose, mask]}[tune]
    groups = [{"params": [q for h in heads for q in h.parameters()], "max_lr": cfg.lr}]
    codec.train(tune is not None)
    for q in codec.parameters():
        q.requires_grad_(tune is not None)
    if tune is not None:
        groups.append({"params": list(codec.parameters()), "max_lr": cfg.codec_lr, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["max_lr"] for g in groups],
                                                total_steps=cfg.iterations, pct_start=0.05)
    lambdas = torch.tensor(codec.config.lambdas)
    layouts = [layout_for(n) for n in cfg.sizes]
    up = MASK_CONFIG["upsample"]
    it = range(cfg.iterations)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="train object-scale heads", unit="it")
    log, t0, run = [], time.time(), None
    for step in it:
        pick = rng.choice(pool, size=cfg.batch_size)
        layout = layouts[int(rng.integers(len(layouts)))]
        pixels = layout.input_size[0] * layout.input_size[1]
        crops, wins, kps, masks = make_batch(data, pick, cfg, rng, layout, (up * layout.grid[0], up * layout.grid[1]))
        levels = torch.from_numpy(rng.integers(0, codec.config.num_levels, len(pick)))
        with torch.no_grad():
            split = front(preprocess(crops, size=layout.input_size))
        rate = None
        if tune is None:
            with torch.no_grad():
                feats = codec(split, levels, quant_mode="hard")["x_hat"]
        else:
            from ssb.recipes.train import rate_bpp

            out = codec(split, levels, quant_mode="ste")
            feats = out["x_hat"]
            rate = (rate_bpp(out["likelihoods"], pixels) / lambdas[levels]).mean()
        loss, heat = pose_loss(pose, feats, wins, kps, cfg) if tune != "segmentation" else (0.0, 0.0)
        has = [b for b, m in enumerate(masks) if m is not None] if tune != "pose" else []
        bce = 0.0
        if rate is not None:
            loss = loss + cfg.rate_weight * rate
        if has:
            logits = mask(feats[has])
            l_mask = nn.functional.binary_cross_entropy_with_logits(logits, torch.stack([masks[b] for b in has]))
            loss = loss + cfg.mask_weight * l_mask
            bce = l_mask.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run = loss.item() if run is None else 0.98 * run + 0.02 * loss.item()
        if progress and hasattr(it, "set_postfix"):
            it.set_postfix(loss=f"{run:.3f}")
        if step % 100 == 0 or step == cfg.iterations - 1:
            log.append({"step": step, "loss": round(run, 4), "heat": round(heat, 4), "mask_bce": round(bce, 4),
                        "time_s": round(time.time() - t0, 1)})
            if not progress and step % 500 == 0:
                print(log[-1], flush=True)
    meta = {"train": asdict(cfg), "people": len(pool), "layouts": [asdict(x) for x in layouts], "log_tail": log[-5:],
            "seconds": round(time.time() - t0, 1),
            "teachers": "SSD-MobileNetV2 persons >= 0.5; MoveNet Lightning keypoints; MOG2 foreground in the box"}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if tune is not None:
        from ssb.recipes.train_heads import _save_tuned_codec

        codec = _save_tuned_codec(codec, out_dir / f"{tune}_object_tuned.pt", cfg, log)
    paths = []
    for kind, net, config in (("pose_object", pose, POSE_CONFIG), ("segmentation_object", mask, MASK_CONFIG)):
        if tune is not None and kind != f"{tune}_object":
            continue
        c = zoo.card(zoo.DEFAULTS[kind])
        name = c.name if tune is None else f"{c.name}-tuned"
        paths.append(zoo.save(out_dir / (c.file if tune is None else f"{tune}_object_tuned.pt"), net.eval(),
                              kind=kind, name=name, version=c.version, config=config, behind=codec.identity.id,
                              meta=meta))
    return tuple(paths)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ssb.recipes.train_objects", description=__doc__.split("\n")[0])
    p.add_argument("-o", "--output", required=True, help="folder for pose_object_s8.pt and seg_object_s8.pt")
    p.add_argument("--iterations", type=int, default=ObjectTrainConfig.iterations)
    p.add_argument("--batch-size", type=int, default=ObjectTrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=ObjectTrainConfig.lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=ObjectTrainConfig.threads)
    p.add_argument("--codec-weights", default=None, help="frozen codec weights (default: the shipped ones)")
    p.add_argument("--tune-codec", choices=("pose", "segmentation"), default=None,
                   help="fine-tune the codec with that head alone (the omnipotence check's counterpart); writes "
                        "<task>_object_tuned.pt (head) and <task>_object_tuned_codec.pt (codec)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.iterations < 1 or args.batch_size < 1:
        p.error("--iterations and --batch-size must be >= 1")
    from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front
    from ssb.codec import zoo

    cfg = ObjectTrainConfig(iterations=args.iterations, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                            threads=args.threads, tune_codec=args.tune_codec)
    front = SSDMobileNetV2Front(pretrained=True).eval()
    paths = train_objects(cfg, zoo.load("codec", args.codec_weights), front, args.output,
                          progress=not args.no_progress)
    print("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
