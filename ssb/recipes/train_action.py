"""``python -m ssb.recipes.train_action``: the action head's classifier, from motion units, seeded.

Two sources of labelled data, one training loop (:func:`fit`):

**(a) The reference model** (no ``--data``): vtest.avi frames 0..599 (never the held-out 620..794)
coded as one ``ssb.video`` stream (level ``--level``; the MOTION units and the index do not depend
on the level), every window the head classifies (:func:`ssb.recipes.action_data.stream_windows`),
each labelled by the teacher on the ORIGINAL pixels (SSD tracks + MoveNet pose dynamics, the rule
of :mod:`ssb.recipes.action_teacher`) through the teacher person its box overlaps in the window's
last frame.  Windows without a teacher label are left out.  ``--val-from F`` holds frames >= F
out of training and reports them; ``--cv K`` reports a K-fold split of frames 0..599 in time
(blocks of consecutive frames, each tested on a model trained on the others, windows overlapping
the test block left out of its training): the recipe's settings were chosen with ``--cv 3``.

**(b) A user's labelled clips** (``--data``): a folder in the UCF-101 / HMDB-51 layout,
``DIR/<label>/*.mp4|*.avi|...`` (one label per clip, the folder name), or a CSV file with rows
``clip,label[,x0,y0,x1,y1]`` (a header row is allowed; paths relative to the CSV's folder; the
box, in the clip's first frame pixels, picks the actor's track).  Each clip is coded as
``ssb.video`` (cached in ``$SSB_CACHE``) and its windows come from its MOTION units.  The actor is
the person track overlapping the CSV box most in the first frame it has one; without a box, the
person track present in most frames (largest mean box on ties); a clip with no tracked person
gives whole-frame windows (the checkpoint then says ``whole_frame``, and the head labels a frame
with no tracked person as one object).  ``--val-fraction`` of the clips of each label (seeded) are
held out and scored per clip (mean window probabilities).  With UCF-101 on disk (its
``UCF-101/<Action>/v_*.avi`` folders), one command gives a real model::

    ssb train --task action --data UCF-101/ -o runs/ucf101
    python -m ssb.recipes.train_action --data UCF-101/ -o runs/ucf101 --window 32  # every setting; 25 fps: 1.3 s

and the head runs it on streams coded by the same codec::

    pipeline.analyze("clip.ssb", tasks=["action"], head_options={"action": {"weights": "runs/ucf101/action.pt"}})

(clips are coded once and cached; a split list of UCF-101 converts to the CSV form in one line).

Training: class-weighted cross-entropy (inverse square-root frequency), AdamW, a one-cycle
schedule, and per-batch augmentation: horizontal mirroring (motion and flow windows; labels
containing ``left`` and ``right`` swap; ``--no-mirror`` for label sets where a mirror image is
another action) and dropping each frame of a window with probability ``drop``.  Inputs are standardized with the training windows' statistics,
stored in the checkpoint (zoo kind ``action``, saved with :func:`ssb.codec.zoo.save` and the codec
id it was trained behind).  Seeded; one torch thread by default.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

__all__ = ["ActionTrainConfig", "fit", "predict", "mirror_map", "reference_data", "cross_validate", "folder_clips",
           "clip_windows", "train_reference", "train_folder", "evaluate_windows", "main"]

REFERENCE_NAME = "action-motion.s8"
USER_NAME = "action-user.s8"
TRAIN_FRAMES = range(0, 600)


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


# -- (a) the reference model: vtest and its teacher -----------------------------------------------


def reference_data(cfg: ActionTrainConfig, models, *, frames: range = TRAIN_FRAMES, source: str = "motion",
                   progress: bool = True):
    """``(windows, teacher labels)`` of vtest ``frames`` from ``source`` (level ``cfg.level`` stream)."""
    from ssb.recipes.action_data import encode_clip, stream_windows, teacher_targets
    from ssb.recipes.action_teacher import label_windows, run_teacher
    from ssb.resources import vtest_path

    run = run_teacher(progress=progress)
    labels = label_windows(run)
    stream = encode_clip(vtest_path(), frames, cfg.level, models)
    win = stream_windows(stream, models, source=source, video=vtest_path(), window=cfg.window,
                         min_frames=cfg.min_frames, progress=progress)
    return win, teacher_targets(win.frames, win.boxes, run, labels)


def cross_validate(cfg: ActionTrainConfig, *, folds: int = 3, weights=None, source: str = "motion",
                   progress: bool = True) -> dict:
    """Agreement on vtest 0..599 by ``folds`` blocks of consecutive frames (module doc)."""
    from ssb.pipeline import Models
    from ssb.recipes.action_teacher import ACTION_LABELS

    _torch(cfg)
    win, y = reference_data(cfg, Models(weights), source=source, progress=progress)
    edges = np.linspace(TRAIN_FRAMES.start, TRAIN_FRAMES.stop, folds + 1).astype(int)
    preds, ys = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        test = (y >= 0) & (win.frames >= a + cfg.window) & (win.frames < b)
        train = (y >= 0) & ((win.frames < a) | (win.frames >= b + cfg.window))
        net, _, _ = fit(win.x[train], win.mask[train], y[train], ACTION_LABELS, cfg, source=source)
        preds.append(predict(net, win.x[test], win.mask[test]).argmax(1))
        ys.append(y[test])
    return evaluate_windows(np.concatenate(preds), np.concatenate(ys), ACTION_LABELS)


def train_reference(cfg: ActionTrainConfig, out_path, *, weights=None, val_from: int | None = None,
                    version: int | None = None, source: str = "motion", mirror: bool = True,
                    progress: bool = True) -> tuple[Path, dict]:
    """Train the reference model on vtest 0..599 (``val_from``: train below it, report from it)."""
    from ssb.codec import zoo
    from ssb.pipeline import Models
    from ssb.recipes.action_teacher import ACTION_LABELS, WINDOW

    _torch(cfg)
    models = Models(weights)
    win, y = reference_data(cfg, models, source=source, progress=progress)
    train = (y >= 0) & (win.frames < (val_from if val_from is not None else 1 << 30))
    net, config, log = fit(win.x[train], win.mask[train], y[train], ACTION_LABELS, cfg, source=source,
                           progress=progress, mirror=mirror)
    meta = {"train": asdict(cfg), "data": "vtest.avi frames 0..599, teacher labels (ssb.recipes.action_teacher)",
            "windows": int(train.sum()), "support": {n: int((y[train] == k).sum()) for k, n in enumerate(ACTION_LABELS)},
            "teacher_window": WINDOW, "log_tail": log[-3:]}
    if val_from is not None:
        val = (y >= 0) & (win.frames >= val_from + cfg.window)  # no window overlapping the training frames
        meta["val_from"] = int(val_from)
        meta["validation"] = evaluate_windows(predict(net, win.x[val], win.mask[val]).argmax(1), y[val], ACTION_LABELS)
    codec = models.zoo.codec()
    name = REFERENCE_NAME if source == "motion" else f"action-{source}.s8"
    path = zoo.save(_checkpoint_path(out_path), net, kind="action", name=name,
                    version=version or zoo.next_version(name), config=config, behind=codec.identity.id, meta=meta)
    return path, meta


def _checkpoint_path(out) -> Path:
    out = Path(out)
    return out if out.suffix == ".pt" else out / "action.pt"


# -- (b) a user's labelled clips ------------------------------------------------------------------


def folder_clips(data) -> list[tuple[Path, str, tuple | None]]:
    """``(clip, label, box or None)`` of a labelled folder (``DIR/<label>/*.<video>``) or a CSV file."""
    from ssb.errors import MalformedFieldError
    from ssb.media import VIDEO_SUFFIXES

    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(2, "No such file or directory", str(data))
    out: list[tuple[Path, str, tuple | None]] = []
    if data.is_file():
        with open(data, newline="", encoding="utf-8") as f:
            for n, row in enumerate(csv.reader(f)):
                row = [c.strip() for c in row]
                if not row or not any(row) or row[0].startswith("#"):
                    continue
                if n == 0 and row[0].lower() in ("clip", "path", "video", "file"):
                    continue
                if len(row) not in (2, 6):
                    raise MalformedFieldError(f"{data} line {n + 1}: expected clip,label[,x0,y0,x1,y1], got {row}",
                                              field="data")
                box = None
                if len(row) == 6:
                    try:
                        box = tuple(float(v) for v in row[2:])
                    except ValueError:
                        raise MalformedFieldError(f"{data} line {n + 1}: the box must be 4 numbers", field="data"
                                                  ) from None
                    if not (box[0] < box[2] and box[1] < box[3]):
                        raise MalformedFieldError(f"{data} line {n + 1}: the box needs x0 < x1 and y0 < y1",
                                                  field="data")
                clip = Path(row[0]) if Path(row[0]).is_absolute() else data.parent / row[0]
                if not clip.is_file():
                    raise FileNotFoundError(2, "No such file or directory", str(clip))
                if not row[1]:
                    raise MalformedFieldError(f"{data} line {n + 1}: empty label", field="data")
                out.append((clip, row[1], box))
    else:
        for sub in sorted(p for p in data.iterdir() if p.is_dir()):
            for clip in sorted(p for p in sub.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()):
                out.append((clip, sub.name, None))
    labels = sorted({lab for _, lab, _ in out})
    if len(labels) < 2:
        raise MalformedFieldError(f"{data}: need clips of at least 2 labels, found {labels or 'none'} "
                                  "(layout DIR/<label>/*.mp4, or a CSV of clip,label)", field="data")
    return out


def _actor(windows, box) -> int | None:
    """The track id of a clip's actor among its windows' tracks (see the module doc)."""
    if len(windows) == 0:
        return None
    ids = np.unique(windows.track_ids)
    if box is not None:
        from ssb.codec.tracking import iou_matrix

        best, best_iou = None, 0.0
        for tid in ids:
            sel = windows.track_ids == tid
            first = np.argmin(windows.frames[sel])
            iou = float(iou_matrix(np.asarray([box], np.float64), windows.boxes[sel][first][None].astype(np.float64))[0, 0])
            if iou > best_iou:
                best, best_iou = int(tid), iou
        if best is not None:
            return best
    area = lambda t: float(np.mean(np.prod(windows.boxes[windows.track_ids == t][:, 2:] -  # noqa: E731
                                          windows.boxes[windows.track_ids == t][:, :2], axis=1)))
    return int(max(ids, key=lambda t: (int((windows.track_ids == t).sum()), area(t))))


def clip_windows(clip, box, cfg: ActionTrainConfig, models, *, index_objects: bool = True):
    """``(windows of the clip's actor, whole_frame)`` from the clip's MOTION units."""
    from ssb.recipes.action_data import encode_clip, stream_windows

    stream = encode_clip(clip, None, cfg.level, models, index_objects=index_objects)
    win = stream_windows(stream, models, source="motion", window=cfg.window, min_frames=cfg.min_frames)
    actor = _actor(win, box)
    if actor is not None:
        return win.subset(win.track_ids == actor), False
    return stream_windows(stream, models, source="motion", window=cfg.window, min_frames=cfg.min_frames,
                          whole_frame=True), True


def train_folder(data, cfg: ActionTrainConfig, out_path, *, models=None, weights=None, val_fraction: float = 0.2,
                 index_objects: bool = True, name: str = USER_NAME, version: int | None = None,
                 mirror: bool = True, progress: bool = True) -> tuple[Path, dict]:
    """Train on a user's labelled clips (module doc, (b)); returns the checkpoint path and its meta."""
    from ssb.codec import zoo
    from ssb.errors import MalformedFieldError
    from ssb.pipeline import Models

    _torch(cfg)
    if not 0.0 <= val_fraction < 1.0:
        raise MalformedFieldError(f"val_fraction must be in [0, 1), got {val_fraction}", field="val_fraction")
    models = models or Models(weights)
    clips = folder_clips(data)
    labels = sorted({lab for _, lab, _ in clips})
    rng = np.random.default_rng(cfg.seed)
    val_ids: set[int] = set()
    for lab in labels:
        members = [i for i, c in enumerate(clips) if c[1] == lab]
        k = int(round(val_fraction * len(members)))
        if len(members) - k >= 1 and k:
            val_ids.update(rng.choice(members, size=k, replace=False).tolist())
    it = list(enumerate(clips))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="clips", unit="clip", leave=False)
    train_parts, train_y, val_parts, whole_any, skipped = [], [], [], False, []
    for i, (clip, lab, box) in it:
        win, whole = clip_windows(clip, box, cfg, models, index_objects=index_objects)
        if len(win) == 0:
            skipped.append(str(clip))
            continue
        whole_any |= whole
        if i in val_ids:
            val_parts.append((win, labels.index(lab)))
        else:
            train_parts.append(win)
            train_y.append(np.full(len(win), labels.index(lab)))
    if not train_parts:
        raise MalformedFieldError(f"no clip of {data} gave a window of {cfg.min_frames} frames with motion "
                                  f"(clips too short for --min-frames?)", field="data")
    from ssb.recipes.action_data import Windows

    train = Windows.concat(train_parts)
    y = np.concatenate(train_y)
    net, config, log = fit(train.x, train.mask, y, labels, cfg, source="motion", progress=progress,
                           extra_config={"whole_frame": bool(whole_any)}, mirror=mirror)
    meta = {"train": asdict(cfg), "data": str(data), "clips": len(clips), "train_clips": len(train_parts),
            "windows": int(len(train)), "skipped": skipped, "log_tail": log[-3:]}
    if val_parts:
        correct = [int(predict(net, w.x, w.mask).mean(0).argmax() == lab) for w, lab in val_parts]
        meta["validation"] = {"clips": len(val_parts), "clip_top1": float(np.mean(correct))}
    codec = models.zoo.codec()
    path = zoo.save(_checkpoint_path(out_path), net, kind="action", name=name,
                    version=version or zoo.next_version(name), config=config, behind=codec.identity.id, meta=meta)
    return path, meta


# -- command line ---------------------------------------------------------------------------------


def add_arguments(p) -> None:
    p.add_argument("-o", "--output", required=True, help="checkpoint path (.pt) or a folder (gets action.pt and "
                                                          "train_log.json)")
    p.add_argument("--data", default=None, help="labelled clips: DIR/<label>/*.mp4 (UCF-101 layout) or a CSV of "
                                                "clip,label[,x0,y0,x1,y1]; default: the vtest teacher reference")
    p.add_argument("--codec-weights", default=None, help="codec weights the clips are coded with (default: the zoo's)")
    p.add_argument("--level", type=int, default=ActionTrainConfig.level, help="quality level clips are coded at")
    p.add_argument("--window", type=int, default=ActionTrainConfig.window, help="frames per window")
    p.add_argument("--min-frames", type=int, default=ActionTrainConfig.min_frames,
                   help="frames with motion a window needs")
    p.add_argument("--width", type=int, default=ActionTrainConfig.width)
    p.add_argument("--epochs", type=int, default=ActionTrainConfig.epochs)
    p.add_argument("--batch-size", type=int, default=ActionTrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=ActionTrainConfig.lr)
    p.add_argument("--seed", type=int, default=ActionTrainConfig.seed)
    p.add_argument("--threads", type=int, default=ActionTrainConfig.threads)
    p.add_argument("--val-fraction", type=float, default=0.2, help="with --data: clips per label held out")
    p.add_argument("--val-from", type=int, default=None, help="reference: train on frames below this, report above")
    p.add_argument("--cv", type=int, default=None, metavar="K",
                   help="reference: report a K-fold split of frames 0..599 in time instead of training")
    p.add_argument("--no-mirror", action="store_true", help="no mirrored windows in training")
    p.add_argument("--source", choices=("motion", "flow", "features"), default="motion",
                   help="reference only: train the same classifier on DIS flow of the original frames (the upper "
                        "reference) or on decoded features instead of the motion units")
    p.add_argument("--version", type=int, default=None, help="model version (default: one past the zoo's)")
    p.add_argument("--no-progress", action="store_true")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ssb.recipes.train_action", description=__doc__.split("\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    cfg = replace(ActionTrainConfig(), window=args.window, min_frames=args.min_frames, width=args.width,
                  epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads,
                  level=args.level)
    progress = not args.no_progress
    if args.cv is not None:
        if args.data is not None or args.cv < 2:
            p.error("--cv K (K >= 2) applies to the reference model only")
        print(json.dumps(cross_validate(cfg, folds=args.cv, weights=args.codec_weights, source=args.source,
                                        progress=progress)))
        return 0
    if args.data is None:
        path, meta = train_reference(cfg, args.output, weights=args.codec_weights, val_from=args.val_from,
                                     version=args.version, source=args.source, mirror=not args.no_mirror,
                                     progress=progress)
    else:
        if args.source != "motion":
            p.error("--source applies to the reference model only")
        path, meta = train_folder(args.data, cfg, args.output, weights=args.codec_weights,
                                  val_fraction=args.val_fraction, version=args.version, mirror=not args.no_mirror,
                                  progress=progress)
    out = Path(args.output)
    if out.suffix != ".pt":
        (out / "train_log.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {path} ({meta['windows']} training windows)")
    if "validation" in meta:
        print("validation:", json.dumps(meta["validation"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
