"""Recipe for the learned composition of grouped streams (``ssb/weights/fusion_s8.pt``).

``python -m ssb.recipes.train_fusion --threads 2 -o ssb/weights/fusion_s8.pt``

Data: the training frames of ``vtest.avi`` (30..599, every ``--frame-step``-th, none of the
held-out frames 620..794 the benchmarks use), grouped as ``ssb encode --groups auto`` does
(teacher detections with score >= 0.5 AND MOG2 foreground warmed up on every frame before),
each coded at a random quality level into a one-frame grouped stream (half of them with the
background at a random lower level, as ``--background-quality`` writes) and DECODED (what a
reader really gets), then turned into the fusion's inputs (:func:`ssb.codec.groups.fusion_inputs`).
Targets: the teacher's split features of the ORIGINAL frame and its detection outputs.

Whole frames and class queries (``query_share`` of the steps: no background, the groups pasted on
zeros, as :func:`ssb.codec.groups.decode_grouped_features` composes a query) are trained together.
Loss of a whole frame: the codec recipe's distortion (:func:`ssb.recipes.train.distortion`): split-feature MSE
relative to the features' energy, plus distillation of the detector's class probabilities and
box codes weighted by the teacher's confidence; of a query, the split-feature error near the
groups only (what lies elsewhere is not in the units a query reads).  The codec and the detector are frozen; the
checkpoint records the SHA-256 of the codec weights.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["FusionTrainConfig", "build_fusion_data", "train_fusion", "main"]


@dataclass
class FusionTrainConfig:
    iterations: int = 3000  # the shipped ssb/weights/fusion_s8.pt: these defaults, 1,394 s on 2 threads
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    frame_step: int = 1
    first_frame: int = 30  # MOG2 needs some history before its foreground means anything
    #: share of frames whose background is coded at a lower level than the groups (``--background-quality``)
    low_background: float = 0.5
    #: share of steps trained as a class query (no background: the groups on zeros), with the
    #: split-feature error counted near the groups only (cells within 2 of any group's coverage)
    query_share: float = 0.3
    last_frame: int = 599
    width: int = 96
    w_cls: float = 20.0
    w_box: float = 1.0
    threads: int = 1


def _cache_path(cfg: FusionTrainConfig, codec) -> Path:
    from ssb.backbones.teacher_weights import cache_dir
    from ssb.resources import file_sha256

    key = (f"{file_sha256(codec.checkpoint_path)}:{cfg.frame_step}:{cfg.first_frame}:{cfg.last_frame}:{cfg.seed}:"
           f"{cfg.low_background}:v2")
    return cache_dir() / f"fusion-data-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


@torch.no_grad()
def build_fusion_data(cfg: FusionTrainConfig, models, *, progress: bool = True) -> dict:
    """Inputs (decoded grouped frames) and teacher targets of the training frames (cached on disk)."""

    import ssb
    from ssb.backbones.ssd_mobilenet_v2 import preprocess
    from ssb.codec.groups import GroupedDecoder, GroupEncoder, fusion_inputs
    from ssb.format import Writer
    from ssb.media import frames
    from ssb.resources import vtest_path

    codec = models.zoo.codec()
    path = _cache_path(cfg, codec)
    if path.is_file():
        return torch.load(path, weights_only=True)
    det = models.head("detection")
    enc = GroupEncoder(models.zoo, detector=models.detector())
    front = models.zoo.front()
    gen = np.random.default_rng(cfg.seed)
    inputs, splits, codes, logits, levels = [], [], [], [], []
    t0 = time.time()
    for frame in frames(vtest_path(), frames=range(0, cfg.last_frame + 1)):
        i = frame.index
        if not (i >= cfg.first_frame and (i - cfg.first_frame) % cfg.frame_step == 0):
            enc.observe(frame)  # background-subtraction history
            continue
        level = int(gen.integers(0, codec.config.num_levels))
        bg_level = int(gen.integers(0, level + 1)) if gen.random() < cfg.low_background else level
        enc.level, enc.background_level = level, bg_level
        buf = io.BytesIO()
        with Writer(buf, enc.header(frame)) as w:
            enc.encode(w, frame)
        with ssb.open(buf.getvalue()) as bs:
            dec = GroupedDecoder(bs, models.zoo, fusion="none")
            parts = fusion_inputs(dec.parts(next(dec.plan())), dec.layout)
        inputs.append(torch.cat(parts, dim=1).half())
        split = front(preprocess([frame.image]))
        c, lg, _ = det.raw_outputs(split)
        splits.append(split.half())
        codes.append(c.half())
        logits.append(lg.half())
        levels.append(level)
        if progress and len(inputs) % 25 == 0:
            print(f"fusion data: {len(inputs)} frames ({time.time() - t0:.0f} s)", flush=True)
    data = {"inputs": torch.cat(inputs), "split": torch.cat(splits), "codes": torch.cat(codes),
            "logits": torch.cat(logits), "levels": torch.tensor(levels)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return data


def train_fusion(cfg: FusionTrainConfig, out_path: str | Path, *, weights=None, progress: bool = True) -> Path:
    from ssb.codec import zoo
    from ssb.codec.fusion import GroupFusion
    from ssb.pipeline import Models
    from ssb.recipes.train import distortion

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    models = Models(weights)
    data = build_fusion_data(cfg, models, progress=progress)
    head = models.head("detection")
    codec = models.zoo.codec()
    for p in head.parameters():
        p.requires_grad_(False)
    c = codec.config.in_channels
    modes = ("whole", "query") if cfg.query_share > 0 else ("whole",)
    fusion = GroupFusion(c, cfg.width, modes=modes)
    opt = torch.optim.Adam(fusion.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / cfg.iterations)))
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(data["inputs"])
    log, run, t0 = [], None, time.time()
    for step in range(cfg.iterations):
        idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
        x = data["inputs"][idx].float()
        split = data["split"][idx].float()
        groups, coverage = x[:, 2 * c : 3 * c], x[:, 3 * c :]
        if float(torch.rand((), generator=gen)) < cfg.query_share:
            out = fusion(groups, torch.zeros_like(groups), groups, coverage)
            near = torch.nn.functional.max_pool2d((coverage > 0).float(), 5, stride=1, padding=2)
            energy = split.pow(2).flatten(1).mean(1).clamp_min(1e-6)
            err = ((out - split).pow(2) * near).flatten(1).sum(1) / (near.flatten(1).sum(1) * c).clamp_min(1.0)
            d = {"query": err / energy}
            loss = d["query"].mean()
        else:
            out = fusion(x[:, :c], x[:, c : 2 * c], groups, coverage)
            d = distortion(out, split, head, data["codes"][idx].float(), data["logits"][idx].float(), cfg)
            loss = d["total"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        stats = {k: v.mean().item() for k, v in d.items()}
        run = dict(stats) if run is None else run
        run.update({k: 0.95 * run.get(k, v) + 0.05 * v for k, v in stats.items()})
        if step % 100 == 0 or step == cfg.iterations - 1:
            log.append({"step": step, "time_s": round(time.time() - t0, 1), **{k: round(v, 5) for k, v in run.items()}})
            if progress:
                print(log[-1], flush=True)
    fusion.eval()
    name = zoo.card(zoo.DEFAULTS["fusion"]).name
    return zoo.save(out_path, fusion, kind="fusion", name=name, version=zoo.next_version(name),
                    config={"channels": c, "width": cfg.width, "modes": list(modes)}, behind=codec.identity.id,
                    meta={"train": asdict(cfg), "frames": n, "log_tail": log[-3:],
                          "seconds": round(time.time() - t0, 1)})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ssb.recipes.train_fusion", description=__doc__.split("\n")[0])
    p.add_argument("-o", "--output", required=True, help="checkpoint path, e.g. ssb/weights/fusion_s8.pt")
    p.add_argument("--codec-weights", default=None, help="codec weights (default: the shipped ones)")
    p.add_argument("--iterations", type=int, default=FusionTrainConfig.iterations)
    p.add_argument("--frame-step", type=int, default=FusionTrainConfig.frame_step)
    p.add_argument("--width", type=int, default=FusionTrainConfig.width)
    p.add_argument("--query-share", type=float, default=FusionTrainConfig.query_share)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    cfg = FusionTrainConfig(iterations=args.iterations, frame_step=args.frame_step, width=args.width,
                            query_share=args.query_share, threads=args.threads)
    print(f"wrote {train_fusion(cfg, args.output, weights=args.codec_weights, progress=not args.no_progress)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
