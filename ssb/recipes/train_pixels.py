"""Recipe for the pixel decoder (``ssb train --pixels``): frozen codec, L1 to the teacher's input picture.

Inputs are the codec's own hard-quantized reconstructions of the training split features at a
random quality level each step, so the decoder learns what the stream really holds.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ssb.codec.pixels import PixelSynthesis
from ssb.recipes.cache import augment, build_targets
from ssb.recipes.data import load_split


def train_pixels(cfg, codec, out_dir: Path, *, iterations: int = 800, batch_size: int = 4, lr: float = 1e-3,
                 progress: bool = True) -> Path:
    """``cfg``: the codec's TrainConfig (same data); ``codec``: loaded by ``ssb.codec.zoo.load("codec")``."""
    import cv2

    torch.manual_seed(cfg.seed)
    targets = build_targets(cfg, None, None)
    samples = augment(load_split("train", frame_step=cfg.frame_step), crops_per_photo=cfg.crops_per_photo,
                      flip_every=cfg.flip_every, seed=cfg.seed)
    assert [s.name for s in samples] == targets.names, "training samples changed since the targets were cached"
    pix = torch.from_numpy(np.stack([cv2.resize(s.image, (300, 300), interpolation=cv2.INTER_LINEAR)
                                     for s in samples])).permute(0, 3, 1, 2)
    model = PixelSynthesis()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    codec.eval()
    it = range(iterations)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="train pixel decoder", unit="it")
    t0, log = time.time(), []
    for step in it:
        if step == int(iterations * 0.8):
            for g in opt.param_groups:
                g["lr"] *= 0.2
        idx = torch.randint(0, len(samples), (batch_size,), generator=gen)
        levels = torch.randint(0, codec.config.num_levels, (batch_size,), generator=gen)
        with torch.no_grad():
            split = codec(targets.split[idx].float(), levels, quant_mode="hard")["x_hat"]
        target = pix[idx].float() / 255.0
        out = model(split)[..., :300, :300]
        loss = (out - target).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress and hasattr(it, "set_postfix"):
            it.set_postfix(l1=f"{loss.item():.4f}")
        if step % 50 == 0 or step == iterations - 1:
            log.append({"step": step, "l1": loss.item(), "time_s": round(time.time() - t0, 1)})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "pixel_synthesis.pt"
    from ssb.codec import zoo

    name = zoo.card(zoo.DEFAULTS["pixels"]).name
    return zoo.save(path, model, kind="pixels", name=name, version=zoo.next_version(name),
                    config={"in_channels": 32, "width": 64}, behind=codec.identity.id,
                    meta={"iterations": iterations, "batch_size": batch_size, "log_tail": log[-3:]})
