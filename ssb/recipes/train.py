"""``ssb train``: the seeded recipe that produces the reference feature-codec weights.

Data: real frames and photos (:mod:`ssb.recipes.data`), teacher targets on their ORIGINAL
pixels (:mod:`ssb.recipes.cache`).  Loss, per sample of quality level ``l``::

    R + lambda_l * (D_split + w_cls * D_cls + w_box * D_box)

* ``R``: bits per pixel of the teacher input (300x300) from the hyperprior likelihoods;
* ``D_split``: split-feature MSE relative to the features' mean energy (keeps the feature
  "omnipotent": every head reads it);
* ``D_cls`` / ``D_box``: output distillation against the teacher's class probabilities and
  box codes, weighted by the teacher's confidence at each anchor.

Quantization follows soft-then-hard (Guo et al.): additive-noise training for the first
``soft_fraction`` of the iterations, then hard rounding with a straight-through gradient
while the analysis transform is frozen (its latent space was learned softly; the decoder
and entropy model adapt to the true quantizer).  ``--quant noise`` trains with noise only,
for the comparison the issue asks for.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ssb.codec.feature_codec import FeatureCodec, FeatureCodecConfig
from ssb.recipes.cache import TeacherTargets, augment, compute_targets
from ssb.recipes.data import load_split


@dataclass
class TrainConfig:
    iterations: int = 2000
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    soft_fraction: float = 0.75
    quant: str = "soft-then-hard"  # or "noise"
    w_cls: float = 20.0
    w_box: float = 1.0
    crops_per_photo: int = 16
    flip_every: int = 3
    frame_step: int = 2
    threads: int = 2
    codec: FeatureCodecConfig = field(default_factory=FeatureCodecConfig)


def rate_bpp(likelihoods: dict, num_pixels: int) -> torch.Tensor:
    """Bits per pixel of each sample from the likelihood tensors."""
    bits = sum(-torch.log2(lik).flatten(1).sum(1) for lik in likelihoods.values())
    return bits / num_pixels


def distortion(x_hat, split, head, codes_t, logits_t, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """Per-sample distortion terms (see the module docstring)."""
    energy = split.pow(2).flatten(1).mean(1).clamp_min(1e-6)
    d_split = (x_hat - split).pow(2).flatten(1).mean(1) / energy
    codes_s, logits_s, _ = head.raw_outputs(x_hat)
    p_t = torch.sigmoid(logits_t[..., 1:])
    p_s = torch.sigmoid(logits_s[..., 1:])
    w = p_t.max(-1).values + 0.01  # [B, A]: anchors the teacher is confident about weigh most
    wsum = w.sum(1)
    d_cls = ((p_s - p_t).pow(2).sum(-1) * w).sum(1) / wsum
    d_box = ((codes_s - codes_t).abs().sum(-1) * w).sum(1) / wsum
    total = d_split + cfg.w_cls * d_cls + cfg.w_box * d_box
    return {"total": total, "split": d_split, "cls": d_cls, "box": d_box}


def build_targets(cfg: TrainConfig, front, head, *, progress: bool = True) -> TeacherTargets:
    samples = augment(load_split("train", frame_step=cfg.frame_step), crops_per_photo=cfg.crops_per_photo,
                      flip_every=cfg.flip_every, seed=cfg.seed)
    return compute_targets(samples, front, head, progress=progress)


def train(cfg: TrainConfig, out_dir: Path, *, targets: TeacherTargets | None = None, head=None, front=None,
          progress: bool = True, log_every: int = 50) -> Path:
    """Train the feature codec; writes ``out_dir/feature_codec.pt`` and a JSON log. Returns the weights path."""
    from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front
    from ssb.tasks import create

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    head = head or create("detection")
    for p in head.parameters():
        p.requires_grad_(False)
    if targets is None:
        front = front or SSDMobileNetV2Front(pretrained=True)
        targets = build_targets(cfg, front, head, progress=progress)
    codec = FeatureCodec(cfg.codec)
    lambdas = torch.tensor(cfg.codec.lambdas)
    opt = torch.optim.Adam(codec.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(targets)
    soft_iters = cfg.iterations if cfg.quant == "noise" else int(cfg.iterations * cfg.soft_fraction)
    num_pixels = 300 * 300
    log, t0 = [], time.time()
    it = range(cfg.iterations)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="train codec", unit="it")
    running = None
    for step in it:
        if step == soft_iters:  # soft -> hard: freeze the analysis side, hard rounding from now on
            for mod in (codec.g_a,):
                for p in mod.parameters():
                    p.requires_grad_(False)
            opt = torch.optim.Adam([p for p in codec.parameters() if p.requires_grad], lr=cfg.lr * 0.3)
        if step == int(cfg.iterations * 0.9):
            for g in opt.param_groups:
                g["lr"] *= 0.1
        quant_mode = "noise" if step < soft_iters else "ste"
        idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
        levels = torch.randint(0, cfg.codec.num_levels, (cfg.batch_size,), generator=gen)
        split = targets.split[idx].float()
        out = codec(split, levels, quant_mode=quant_mode)
        r = rate_bpp(out["likelihoods"], num_pixels)
        d = distortion(out["x_hat"], split, head, targets.codes[idx].float(), targets.logits[idx].float(), cfg)
        loss = (r + lambdas[levels] * d["total"]).mean()
        aux = codec.entropy_bottleneck.aux_loss() if hasattr(codec.entropy_bottleneck, "aux_loss") else 0.0
        opt.zero_grad(set_to_none=True)
        (loss + aux).backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), 5.0)
        opt.step()
        stats = {"loss": loss.item(), "bpp300": r.mean().item(), **{k: v.mean().item() for k, v in d.items()}}
        running = stats if running is None else {k: 0.95 * running[k] + 0.05 * v for k, v in stats.items()}
        if progress and hasattr(it, "set_postfix"):
            it.set_postfix(loss=f"{running['loss']:.3f}", bpp=f"{running['bpp300']:.3f}", q=quant_mode)
        if step % log_every == 0 or step == cfg.iterations - 1:
            log.append({"step": step, "time_s": round(time.time() - t0, 1), "quant": quant_mode, **running})
    codec.update(force=True)
    weights = out_dir / "feature_codec.pt"
    save_codec(codec, weights, extra={"train_config": _jsonable(cfg), "train_log_tail": log[-3:]})
    (out_dir / "train_log.json").write_text(json.dumps(log, indent=1))
    return weights


def _jsonable(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def save_codec(codec: FeatureCodec, path: Path, *, extra: dict | None = None) -> None:
    """Weights + config + provenance in one file (loaded by :func:`ssb.codec.zoo.load_codec`)."""
    from ssb.codec.zoo import MODEL_ID, teacher_fingerprint

    torch.save(
        {
            "model_id": MODEL_ID,
            "config": dataclasses.asdict(codec.config),
            "teacher": teacher_fingerprint(),
            "state_dict": {k: v.detach().cpu() for k, v in codec.state_dict().items()},
            "meta": extra or {},
        },
        path,
    )
