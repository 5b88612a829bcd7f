"""The action classifier's training loop (:mod:`ssb.recipes.train_action`): its settings, :func:`fit`,
:func:`predict` and :func:`evaluate_windows`.

Class-weighted cross-entropy (inverse square-root frequency), AdamW, a one-cycle schedule, and
per-batch augmentation: horizontal mirroring (labels containing ``left`` and ``right`` swap,
:func:`mirror_map`) and dropping each frame of a window with probability ``drop``.  Inputs are
standardized with the training windows' statistics (the net's ``mean``/``std`` buffers).  Seeded;
torch is imported when a function runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

__all__ = ["ActionTrainConfig", "fit", "predict", "mirror_map", "evaluate_windows"]


@dataclass(frozen=True)
class ActionTrainConfig:
    window: int = 16
    min_frames: int = 8
    width: int = 48
    dropout: float = 0.1
    epochs: int = 60
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-2
    drop: float = 0.15
    #: class weights are frequency ** -class_power (0.5: inverse square root)
    class_power: float = 0.5
    seed: int = 0
    threads: int = 1
    level: int = 3


def _torch(cfg: ActionTrainConfig):
    import torch

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    return torch


def mirror_map(labels) -> list[int]:
    """What each label becomes in the mirrored scene: ``..._left`` and ``..._right`` swap, the others stay."""
    labels = [str(v) for v in labels]
    out = []
    for name in labels:
        other = name.replace("left", "\0").replace("right", "left").replace("\0", "right")
        out.append(labels.index(other) if other in labels else labels.index(name))
    return out


def fit(x: np.ndarray, mask: np.ndarray, y: np.ndarray, labels, cfg: ActionTrainConfig, *, source: str = "motion",
        progress: bool = False, extra_config: dict | None = None, mirror: bool = True):
    """Train an :class:`~ssb.tasks.action.ActionNet` on windows ``x`` [N, T, F] (masks [N, T]) with labels
    ``y`` [N] in ``range(len(labels))``; returns ``(net in eval mode, config, log)``.  ``mirror``: augment
    with mirrored windows (labels through :func:`mirror_map`; not for ``features`` windows)."""
    torch = _torch(cfg)
    from ssb.errors import MalformedFieldError
    from ssb.recipes.action_data import mirror as mirrored
    from ssb.tasks.action import DEFAULT_CONFIG, build_net

    labels = [str(v) for v in labels]
    if len(x) == 0:
        raise MalformedFieldError("no labelled window to train on", field="data")
    if y.min() < 0 or y.max() >= len(labels):
        raise MalformedFieldError(f"labels must lie in [0, {len(labels)})", field="data.labels")
    config = {**DEFAULT_CONFIG, "in_features": int(x.shape[-1]), "num_classes": len(labels), "width": cfg.width,
              "window": cfg.window, "min_frames": cfg.min_frames, "dropout": cfg.dropout, "labels": labels,
              "source": source, **(extra_config or {})}
    net = build_net(config)
    m = mask.astype(bool)
    flat = x[m]
    net.mean.copy_(torch.from_numpy(flat.mean(0)))
    net.std.copy_(torch.from_numpy(np.maximum(flat.std(0), 1e-3)))
    counts = np.bincount(y, minlength=len(labels)).astype(np.float64)
    weights = np.where(counts > 0, np.maximum(counts, 1) ** -cfg.class_power, 0.0)
    weights = weights / (weights * counts).sum() * counts.sum()
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, int(np.ceil(len(x) / cfg.batch_size)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.15)
    rng = np.random.default_rng(cfg.seed)
    xt, mt, yt = torch.from_numpy(x), torch.from_numpy(mask), torch.from_numpy(y)
    mirror = mirror and source != "features"
    xm = torch.from_numpy(mirrored(x, source)) if mirror else xt
    ym = torch.tensor(mirror_map(labels))[yt] if mirror else yt
    log = []
    epochs = range(cfg.epochs)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc=f"train action ({source})", unit="epoch", leave=False)
    t0 = time.time()
    net.train()
    for epoch in epochs:
        order = rng.permutation(len(x))
        total, n = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            idx = torch.from_numpy(order[i : i + cfg.batch_size])
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            xb = torch.where(flip[:, None, None], xm[idx], xt[idx])
            yb = torch.where(flip, ym[idx], yt[idx])
            keep = torch.from_numpy((rng.random((len(idx), x.shape[1])) >= cfg.drop).astype(np.float32))
            keep[:, -1] = 1.0  # the current frame stays
            mb = mt[idx] * keep
            loss = loss_fn(net(xb, mb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        if epoch % 10 == 0 or epoch == cfg.epochs - 1:
            log.append({"epoch": epoch, "loss": round(total / n, 4), "time_s": round(time.time() - t0, 1)})
    net.eval()
    return net, config, log


def predict(net, x: np.ndarray, mask: np.ndarray, batch: int = 512) -> np.ndarray:
    """Class probabilities ``[N, C]`` of windows."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            logits = net(torch.from_numpy(x[i : i + batch]), torch.from_numpy(mask[i : i + batch]))
            out.append(torch.softmax(logits, dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, net.fc.out_features), np.float32)


def evaluate_windows(pred: np.ndarray, y: np.ndarray, labels) -> dict:
    """Top-1 agreement, per-class recall and their mean (balanced) over windows with ``y >= 0``."""
    keep = y >= 0
    pred, y = pred[keep], y[keep]
    recall = {}
    for k, name in enumerate(labels):
        sel = y == k
        recall[str(name)] = float((pred[sel] == k).mean()) if sel.any() else None
    vals = [v for v in recall.values() if v is not None]
    return {"windows": int(len(y)), "top1": float((pred == y).mean()) if len(y) else None, "recall": recall,
            "balanced": float(np.mean(vals)) if vals else None,
            "support": {str(n): int((y == k).sum()) for k, n in enumerate(labels)}}
