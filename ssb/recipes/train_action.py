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
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ssb.recipes.action_fit import ActionTrainConfig, _torch, evaluate_windows, fit, mirror_map, predict
from ssb.recipes.action_sources import TRAIN_FRAMES, clip_windows, folder_clips, reference_data

# The training loop is ssb.recipes.action_fit, the labelled data ssb.recipes.action_sources; their names stay here.
__all__ = ["ActionTrainConfig", "fit", "predict", "mirror_map", "reference_data", "cross_validate", "folder_clips",
           "clip_windows", "train_reference", "train_folder", "evaluate_windows", "main"]

REFERENCE_NAME = "action-motion.s8"
USER_NAME = "action-user.s8"


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
