"""``ssb train``: the seeded recipe that produces the reference feature-codec weights.

Data: real frames and photos (:mod:`ssb.recipes.data`), teacher targets on their ORIGINAL
pixels (:mod:`ssb.recipes.cache`).  Loss, per sample of quality level ``l``::

    R + lambda_l * (D_split + w_cls * D_cls + w_box * D_box)

* ``R``: bits per pixel of the teacher input (300x300) from the hyperprior likelihoods;
* ``D_split``: split-feature MSE relative to the features' mean energy (keeps the feature
  "omnipotent": every head reads it);
* ``D_cls`` / ``D_box``: output distillation against the teacher's class probabilities and
  box codes, weighted by the teacher's confidence at each anchor.

Three phases keep the recipe affordable on a CPU (the teacher tail dominates the cost):

1. ``warmup_iters``: additive noise, rate + ``D_split`` only (cheap, large batches);
2. ``distill_iters``: additive noise, the full loss with output distillation;
3. ``hard_iters``: soft-then-hard (Guo et al.): hard rounding with a straight-through
   gradient while the analysis transform is frozen (its latent space was learned softly; the
   decoder and entropy model adapt to the true quantizer).  ``--quant noise`` keeps additive
   noise in this phase instead, for the comparison the issue asks for.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ssb.codec.feature_codec import FeatureCodec, FeatureCodecConfig
from ssb.recipes.cache import TeacherTargets, build_targets


@dataclass
class TrainConfig:
    warmup_iters: int = 3500
    distill_iters: int = 800
    hard_iters: int = 400
    warmup_batch: int = 16
    batch_size: int = 4
    lr: float = 1e-3
    seed: int = 0
    quant: str = "soft-then-hard"  # or "noise"
    w_cls: float = 20.0
    w_box: float = 1.0
    crops_per_photo: int = 16
    flip_every: int = 3
    frame_step: int = 2
    threads: int = 2
    codec: FeatureCodecConfig = field(default_factory=FeatureCodecConfig)


#: pixels of the teacher input (300x300) the rate term counts bits over
TEACHER_PIXELS = 300 * 300


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


def train(cfg: TrainConfig, out_dir: Path, *, targets: TeacherTargets | None = None, head=None, front=None,
          progress: bool = True, log_every: int = 50, resume_soft: Path | None = None) -> Path:
    """Train the feature codec; writes ``out_dir/feature_codec.pt`` and a JSON log. Returns the weights path.

    The state after the two noise phases is saved as ``out_dir/soft_state.pt``; ``resume_soft``
    starts from such a file at the last phase (how the soft-then-hard vs noise-only
    comparison shares its first phases).
    """
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
    num_pixels = TEACHER_PIXELS
    total = cfg.warmup_iters + cfg.distill_iters + cfg.hard_iters
    log, t0 = [], time.time()
    it = range(total)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="train codec", unit="it")
    running = None
    start = 0
    if resume_soft is not None:
        codec.load_state_dict(torch.load(resume_soft, weights_only=True))
        start = cfg.warmup_iters + cfg.distill_iters
    for step in it:
        if step < start:
            continue
        if step == cfg.warmup_iters + cfg.distill_iters and resume_soft is None:
            torch.save(codec.state_dict(), out_dir / "soft_state.pt")
        phase = "warmup" if step < cfg.warmup_iters else "distill" if step < cfg.warmup_iters + cfg.distill_iters else "hard"
        if step == cfg.warmup_iters + cfg.distill_iters:
            if cfg.quant == "soft-then-hard":
                for p in codec.g_a.parameters():  # soft -> hard: the analysis side is frozen from now on
                    p.requires_grad_(False)
            opt = torch.optim.Adam([p for p in codec.parameters() if p.requires_grad], lr=cfg.lr * 0.1)
        if step in (int(cfg.warmup_iters * 0.8), cfg.warmup_iters) and resume_soft is None:
            for g in opt.param_groups:
                g["lr"] *= 0.3
        quant_mode = "ste" if phase == "hard" and cfg.quant == "soft-then-hard" else "noise"
        bs = cfg.warmup_batch if phase == "warmup" else cfg.batch_size
        idx = torch.randint(0, n, (bs,), generator=gen)
        levels = torch.randint(0, cfg.codec.num_levels, (bs,), generator=gen)
        split = targets.split[idx].float()
        out = codec(split, levels, quant_mode=quant_mode)
        r = rate_bpp(out["likelihoods"], num_pixels)
        if phase == "warmup":
            energy = split.pow(2).flatten(1).mean(1).clamp_min(1e-6)
            d = {"total": (out["x_hat"] - split).pow(2).flatten(1).mean(1) / energy}
            d["split"] = d["total"]
        else:
            d = distortion(out["x_hat"], split, head, targets.codes[idx].float(), targets.logits[idx].float(), cfg)
        loss = (r + lambdas[levels] * d["total"]).mean()
        aux = codec.entropy_bottleneck.aux_loss() if hasattr(codec.entropy_bottleneck, "aux_loss") else 0.0
        opt.zero_grad(set_to_none=True)
        (loss + aux).backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), 5.0)
        opt.step()
        stats = {"loss": loss.item(), "bpp300": r.mean().item(), **{k: v.mean().item() for k, v in d.items()}}
        if running is None or step in (cfg.warmup_iters, cfg.warmup_iters + cfg.distill_iters):
            running = dict(stats)
        running = {k: 0.9 * running.get(k, v) + 0.1 * v for k, v in stats.items()}
        if progress and hasattr(it, "set_postfix"):
            it.set_postfix(loss=f"{running['loss']:.3f}", bpp=f"{running['bpp300']:.3f}", phase=phase)
        if step % log_every == 0 or step == total - 1:
            log.append({"step": step, "time_s": round(time.time() - t0, 1), "phase": phase, "quant": quant_mode,
                        **running})
    codec.update(force=True)
    weights = out_dir / "feature_codec.pt"
    save_codec(codec, weights, extra={"train_config": _jsonable(cfg), "train_log_tail": log[-3:]})
    (out_dir / "train_log.json").write_text(json.dumps(log, indent=1))
    return weights


def _jsonable(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def save_codec(codec: FeatureCodec, path: Path, *, extra: dict | None = None, name: str | None = None,
               version: int | None = None) -> None:
    """Weights + config + identity + provenance in one checkpoint (:func:`ssb.codec.zoo.save`).

    A retrained codec is a NEW model: by default it takes the default codec's name with the next
    version (streams it codes name that version; older streams keep decoding with theirs).
    """
    from ssb.codec import zoo

    name = name or zoo.card(zoo.DEFAULTS["codec"]).name
    zoo.save(path, codec, kind="codec", name=name, version=version or zoo.next_version(name),
             config=json.loads(json.dumps(dataclasses.asdict(codec.config))), meta=extra,
             extra={"front": "ssd-mbv2.s8", "teacher": zoo.teacher_fingerprint()})
