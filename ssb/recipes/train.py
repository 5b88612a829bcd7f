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

Behind another front (``front="timm:MODEL[:INDEX]"``: your own timm backbone, :mod:`ssb.adapters.timm`,
with your weights ``front_weights``) there is no detection teacher for those features: the codec is
sized from the front's ``feature_info`` and trained on feature fidelity alone, ``R + lambda_l *
D_split`` in every phase (the ``distill_iters`` are fidelity iterations at ``batch_size``; the last
phase is still soft-then-hard), with ``R`` in bits per pixel of the front's input.  Its checkpoint
records the front's card and weights fingerprint (every stream it codes names them).  ``images``
(a folder) trains on your own images instead of the recipe's real frames and photos.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ssb.backbones.features import SSD_MBV2_S8, FrontCard
from ssb.codec.feature_codec import FeatureCodec, FeatureCodecConfig, config_for
from ssb.errors import MalformedFieldError
from ssb.recipes.cache import TeacherTargets, augment, build_targets, compute_targets


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
    #: the codec's sizes; behind another front ``in_channels`` comes from its feature_info
    codec: FeatureCodecConfig = field(default_factory=FeatureCodecConfig)
    #: the front whose features the codec codes: the teacher's split, ``timm:MODEL[:INDEX]`` or a registered name
    front: str = SSD_MBV2_S8.name
    #: the front's weights, a state dict file (required for a timm front; never downloaded)
    front_weights: str | None = None
    #: side of a timm front's square input (default: the model's pretrained_cfg input size)
    front_input_size: int | None = None
    #: a folder of images to train on instead of the recipe's real frames and photos
    images: str | None = None
    #: the codec's name in its identity (default: :func:`codec_name` of the front)
    name: str | None = None


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


def is_teacher_front(name: str) -> bool:
    """Whether ``name`` is the teacher's split (trained with detection distillation)."""
    return name == SSD_MBV2_S8.name


def training_samples(cfg: TrainConfig):
    """The training images: the recipe's real frames and photos, or the folder ``cfg.images``
    (each image taken as a photo: ``crops_per_photo`` random crops of it are added)."""
    from ssb.recipes.data import Sample, load_split

    if cfg.images is None:
        samples = load_split("train", frame_step=cfg.frame_step)
    else:
        from ssb.media import frames

        samples = [Sample(f"photo:{Path(f.info.get('path', str(f.index))).stem}", f.image)
                   for f in frames(cfg.images)]
    return augment(samples, crops_per_photo=cfg.crops_per_photo, flip_every=cfg.flip_every, seed=cfg.seed)


def resolve_front(cfg: TrainConfig, front=None) -> tuple[FrontCard, object]:
    """The card of ``cfg.front`` and the front module (the user's weights loaded into a timm front)."""
    from ssb.adapters.timm import is_timm

    if is_timm(cfg.front):
        if not cfg.front_weights:
            raise MalformedFieldError(f"front {cfg.front} needs its weights: --front-weights PATH (a state dict "
                                      "file; nothing is downloaded)", field="front_weights")
        from ssb.adapters.timm import timm_front

        card, module = timm_front(cfg.front, cfg.front_weights, input_size=cfg.front_input_size)
        return card, front if front is not None else module
    from ssb.backbones.features import build_front, front_card

    if cfg.front_weights or cfg.front_input_size:
        raise MalformedFieldError(f"--front-weights and --front-input-size are for timm fronts, not {cfg.front}",
                                  field="front_weights")
    card = front_card(cfg.front)
    return card, front if front is not None else build_front(cfg.front, pretrained=True).eval()


@torch.no_grad()
def front_targets(samples, front, *, batch_size: int = 16, progress: bool = True) -> TeacherTargets:
    """The front's features of each sample (its own ``preprocess``), the codec's only training input
    behind a front without a detection teacher (``codes`` and ``logits`` are ``None``)."""
    from ssb.backbones.ssd_mobilenet_v2 import preprocess

    prep = getattr(front, "preprocess", None) or preprocess
    it = range(0, len(samples), batch_size)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="front features", unit="batch")
    split = torch.cat([front(prep([s.image for s in samples[i : i + batch_size]])) for i in it])
    if not torch.isfinite(split).all():
        raise MalformedFieldError("the front gave non-finite features (check its weights)", field="front_weights")
    split = split.half() if float(split.abs().max()) < 6e4 else split
    return TeacherTargets([s.name for s in samples], split, None, None)


def train(cfg: TrainConfig, out_dir: Path, *, targets: TeacherTargets | None = None, head=None, front=None,
          progress: bool = True, log_every: int = 50, resume_soft: Path | None = None) -> Path:
    """Train the feature codec; writes ``out_dir/feature_codec.pt`` and a JSON log. Returns the weights path.

    The state after the two noise phases is saved as ``out_dir/soft_state.pt``; ``resume_soft``
    starts from such a file at the last phase (how the soft-then-hard vs noise-only
    comparison shares its first phases).  Behind a front other than the teacher's (``cfg.front``)
    the loss is feature fidelity only (module docstring).
    """
    from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front

    if min(cfg.warmup_iters, cfg.distill_iters, cfg.hard_iters) < 0 or \
            cfg.warmup_iters + cfg.distill_iters + cfg.hard_iters < 1:
        raise MalformedFieldError("the iteration counts must be >= 0 and not all 0", field="iterations")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    card = None
    if is_teacher_front(cfg.front):
        from ssb.tasks import create

        if cfg.front_weights or cfg.front_input_size:
            raise MalformedFieldError("--front-weights and --front-input-size are for timm fronts, not the "
                                      "teacher's", field="front_weights")
        head = head or create("detection")
        for p in head.parameters():
            p.requires_grad_(False)
        if targets is None:
            front = front or SSDMobileNetV2Front(pretrained=True)
            if cfg.images is None:
                targets = build_targets(cfg, front, head, progress=progress)
            else:
                targets = compute_targets(training_samples(cfg), front, head, progress=progress)
        codec_cfg = cfg.codec
        num_pixels, bpp_key = TEACHER_PIXELS, "bpp300"
    else:  # another front: no teacher outputs to distil, feature fidelity only
        card, front = resolve_front(cfg, front)
        head = None
        if targets is None:
            targets = front_targets(training_samples(cfg), front, progress=progress)
        codec_cfg = config_for(card.feature_info, cfg.codec)
        got = tuple(targets.split.shape[1:])
        if got != (codec_cfg.in_channels, *card.grid):
            raise MalformedFieldError(f"front {card.name} gave features {got}, its card says "
                                      f"{(codec_cfg.in_channels, *card.grid)}", field="front")
        num_pixels, bpp_key = card.input_size ** 2, f"bpp{card.input_size}"
    codec = FeatureCodec(codec_cfg)
    lambdas = torch.tensor(codec_cfg.lambdas)
    opt = torch.optim.Adam(codec.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(targets)
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
        levels = torch.randint(0, codec_cfg.num_levels, (bs,), generator=gen)
        split = targets.split[idx].float()
        out = codec(split, levels, quant_mode=quant_mode)
        r = rate_bpp(out["likelihoods"], num_pixels)
        if phase == "warmup" or head is None:
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
        stats = {"loss": loss.item(), bpp_key: r.mean().item(), **{k: v.mean().item() for k, v in d.items()}}
        if running is None or step in (cfg.warmup_iters, cfg.warmup_iters + cfg.distill_iters):
            running = dict(stats)
        running = {k: 0.9 * running.get(k, v) + 0.1 * v for k, v in stats.items()}
        if progress and hasattr(it, "set_postfix"):
            it.set_postfix(loss=f"{running['loss']:.3f}", bpp=f"{running[bpp_key]:.3f}", phase=phase)
        if step % log_every == 0 or step == total - 1:
            label = "fidelity" if phase == "distill" and head is None else phase
            log.append({"step": step, "time_s": round(time.time() - t0, 1), "phase": label, "quant": quant_mode,
                        **running})
    codec.update(force=True)
    weights = out_dir / "feature_codec.pt"
    save_codec(codec, weights, extra={"train_config": _jsonable(cfg), "train_log_tail": log[-3:]}, front=card,
               name=cfg.name)
    (out_dir / "train_log.json").write_text(json.dumps(log, indent=1))
    return weights


def _jsonable(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def codec_name(front: FrontCard | None = None) -> str:
    """The default name of a codec trained behind ``front``: the default codec's behind the teacher,
    ``omni-`` and the front's name otherwise (``omni-timm-resnet18-2``)."""
    from ssb.codec import zoo

    if front is None or is_teacher_front(front.name):
        return zoo.card(zoo.DEFAULTS["codec"]).name
    return "omni-" + front.name.replace(":", "-")


def save_codec(codec: FeatureCodec, path: Path, *, extra: dict | None = None, name: str | None = None,
               version: int | None = None, front: FrontCard | None = None) -> None:
    """Weights + config + identity + provenance in one checkpoint (:func:`ssb.codec.zoo.save`).

    A retrained codec is a NEW model: by default it takes the default codec's name with the next
    version (streams it codes name that version; older streams keep decoding with theirs).  Behind
    another ``front`` the checkpoint holds the front's card (its features, grid and weights
    fingerprint), its default name is :func:`codec_name`'s, and no teacher fingerprint is recorded.
    """
    from ssb.codec import zoo

    name = name or codec_name(front)
    if front is None or is_teacher_front(front.name):
        ident = {"front": SSD_MBV2_S8.name, "teacher": zoo.teacher_fingerprint()}
    else:
        ident = {"front": front.name, "front_weights": front.weights, "front_card": front.to_dict()}
    zoo.save(path, codec, kind="codec", name=name, version=version or zoo.next_version(name),
             config=json.loads(json.dumps(dataclasses.asdict(codec.config))), meta=extra, extra=ident)
