"""``python -m ssb.recipes.train_video``: the video model (residual entropy model) behind the frozen codec.

Data: the training frames of ``vtest.avi`` (0..599, real; never the held-out 620..794), every
frame, in order.  Per frame the teacher front runs on the ORIGINAL pixels and the frozen codec's
analysis gives the latent; DIS motion is estimated between consecutive original frames, as the
encoder does (:mod:`ssb.codec.video.motion`).  Residuals are then produced exactly as the
encoder produces them (closed loop: the reference is the previous frame *as decoded*; the same
motion-compensation decision, the same dead zone), over GOPs of ``gop`` frames, at every quality
level, with the encoder's dead zone of that level (:func:`ssb.codec.video.encoder.deadzone_for`)
times each factor of ``deadzone_factors``.  The model is trained to minimize their bits
(residual under its hyperprior, plus the hyper-latent), then ``update()`` freezes integer tables
and the integer hyper-synthesis into the checkpoint (zoo kind ``video``).  Seeded; tqdm progress.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

__all__ = ["VideoTrainConfig", "build_video_data", "simulate_residuals", "train_video", "main"]


@dataclass(frozen=True)
class VideoTrainConfig:
    first_frame: int = 0
    last_frame: int = 599
    gop: int = 32
    deadzone_factors: tuple[float, ...] = (1.0, 1.5)
    iterations: int = 12000
    batch_size: int = 16
    lr: float = 1e-3
    seed: int = 0
    threads: int = 2


def _cache_path(cfg: VideoTrainConfig, codec) -> Path:
    from ssb.backbones.teacher_weights import cache_dir

    key = json.dumps([codec.identity.id, cfg.first_frame, cfg.last_frame, 1])
    return cache_dir() / f"video-data-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


@torch.no_grad()
def build_video_data(cfg: VideoTrainConfig, models, *, progress: bool = True) -> dict:
    """Unscaled latents ``[N, C, h, w]`` and motion vectors ``[N, 2, gh, gw]`` of consecutive training frames."""
    from ssb.backbones.features import front_card
    from ssb.backbones.ssd_mobilenet_v2 import preprocess
    from ssb.codec.video.motion import MotionEstimator
    from ssb.media import frames
    from ssb.resources import vtest_path

    codec = models.zoo.codec()
    path = _cache_path(cfg, codec)
    if path.is_file():
        return torch.load(path, weights_only=True)
    front = models.zoo.front()
    card = front_card(codec.front_name)
    estimator = MotionEstimator(card.grid, card.input_size, card.feature_info[0].reduction)
    latents, motions = [], []
    it = frames(vtest_path(), frames=range(cfg.first_frame, cfg.last_frame + 1))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=cfg.last_frame + 1 - cfg.first_frame, desc="video data", unit="frame")
    for frame in it:
        latents.append(codec.g_a(front(preprocess([frame.image])))[0].half())
        m = estimator(frame.image)
        motions.append(torch.zeros(2, *card.grid, dtype=torch.int16) if m is None else torch.from_numpy(m.vectors))
    data = {"latents": torch.stack(latents), "motion": torch.stack(motions), "frame_size": list(frame.image.shape[:2])}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, str(path) + ".tmp")
    Path(str(path) + ".tmp").replace(path)
    return data


@torch.no_grad()
def simulate_residuals(data: dict, codec, cfg: VideoTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's residuals (int16 ``[M, C, h, w]``) and their levels, closed loop (see the module doc)."""
    from ssb.codec.video.encoder import deadzone_for, residual_of
    from ssb.codec.video.motion import MotionField

    out, levels = [], []
    lat = data["latents"].float()
    n = len(lat)
    for level in range(codec.config.num_levels):
        gain = torch.exp(codec.log_gain[level])[:, None, None]
        for deadzone in (f * deadzone_for(level) for f in cfg.deadzone_factors):
            ref = None
            for t in range(n):
                y = lat[t : t + 1] * gain
                if t % cfg.gop == 0:
                    ref = torch.round(y)
                    continue
                field = MotionField(data["motion"][t].numpy(), tuple(data["frame_size"]))
                _, r, pred = residual_of(y, ref, field, deadzone)
                ref = pred + r
                out.append(r[0].to(torch.int16))
                levels.append(level)
    return torch.stack(out), torch.tensor(levels)


def train_video(cfg: VideoTrainConfig, out_path: str | Path, *, weights=None, progress: bool = True) -> Path:
    """Train the residual coder behind the codec (default: the zoo's); write the checkpoint."""
    from ssb.codec import zoo
    from ssb.codec.video.residual import ResidualCoder, ResidualConfig
    from ssb.pipeline import Models

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    models = Models(weights)
    codec = models.zoo.codec()
    data = build_video_data(cfg, models, progress=progress)
    residuals, levels = simulate_residuals(data, codec, cfg)
    coder = ResidualCoder(ResidualConfig(latent=codec.config.latent))
    opt = torch.optim.Adam(coder.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 if s < 0.7 * cfg.iterations else 0.2)
    gen = torch.Generator().manual_seed(cfg.seed)
    elements = residuals[0].numel()
    it = range(cfg.iterations)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="train video model", unit="it")
    log, run, t0 = [], None, time.time()
    for step in it:
        idx = torch.randint(0, len(residuals), (cfg.batch_size,), generator=gen)
        r = residuals[idx].float()
        lik = coder(r)["likelihoods"]
        bits = {k: -torch.log2(v).flatten(1).sum(1).mean() for k, v in lik.items()}
        loss = sum(bits.values()) / elements
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(coder.parameters(), 5.0)
        opt.step()
        sched.step()
        run = loss.item() if run is None else 0.98 * run + 0.02 * loss.item()
        if progress and hasattr(it, "set_postfix"):
            it.set_postfix(bits_per_element=f"{run:.4f}")
        if step % 100 == 0 or step == cfg.iterations - 1:
            log.append({"step": step, "bits_per_element": round(run, 5), "r_bytes": round(bits["r"].item() / 8, 1),
                        "z_bytes": round(bits["z"].item() / 8, 1), "time_s": round(time.time() - t0, 1)})
    coder.eval()
    coder.update(force=True)
    name = "ssvc-residual.s8"
    meta = {"train": asdict(cfg), "residuals": len(residuals), "nonzero_share": float((residuals != 0).float().mean()),
            "log_tail": log[-5:], "seconds": round(time.time() - t0, 1)}
    return zoo.save(out_path, coder, kind="video", name=name, version=zoo.next_version(name),
                    config=coder.config_dict(), behind=codec.identity.id, meta=meta)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ssb.recipes.train_video", description=__doc__.split("\n")[0])
    p.add_argument("-o", "--output", required=True, help="checkpoint path, e.g. ssb/weights/video_s8.pt")
    p.add_argument("--codec-weights", default=None, help="frozen codec weights (default: the zoo's)")
    p.add_argument("--iterations", type=int, default=VideoTrainConfig.iterations)
    p.add_argument("--gop", type=int, default=VideoTrainConfig.gop)
    p.add_argument("--threads", type=int, default=VideoTrainConfig.threads)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    cfg = VideoTrainConfig(iterations=args.iterations, gop=args.gop, threads=args.threads)
    print(f"wrote {train_video(cfg, args.output, weights=args.codec_weights, progress=not args.no_progress)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
