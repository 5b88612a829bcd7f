"""``ssb eval``: rate-accuracy of SSB against pixel codecs, measured against the teacher.

Reference ("ground truth"): the teacher (SSD-MobileNetV2, rebuilt in PyTorch with parity to
``cv2.dnn``) on the ORIGINAL pixels of the held-out split (:mod:`ssb.recipes.data`), its
detections above ``gt_score`` kept as objects.  Each candidate is then scored with COCO
mAP@[.5:.95] and AP50 (pycocotools):

* **SSB** at every quality level: all held-out images coded into ONE stream (container overhead
  included and amortized as for a clip), detections from the decoded features, no pixels;
* **pixel codecs** (JPEG, WebP, AVIF through Pillow) at a sweep of qualities, the teacher run on
  the decoded pixels ("remote inference"), in two variants: ``full`` codes the original image,
  ``input`` codes the 300x300 picture the detector actually sees (the strongest pixel
  baseline: nothing the detector ignores is paid for).

Rates are bits per ORIGINAL pixel for every candidate.  BD-rate (mAP as the metric, monotone
cubic, Pareto points) of SSB against each pixel curve; CSV, JSON and a PNG plot.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ssb.recipes.data import Sample, load_split

DET_SCORE = 0.05  # candidate detections kept for the PR curves


@dataclass
class Point:
    method: str  # "ssb" or "<codec>-<variant>"
    param: int  # quality level (SSB) or codec quality
    bpp: float
    AP: float
    AP50: float
    AP75: float
    bytes: int
    images: int


def _teacher(models):
    from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front

    front = models.front or SSDMobileNetV2Front(pretrained=True)
    models.front = front
    return front


@torch.no_grad()
def _detect_pixels(images: list[np.ndarray], front, head, sizes) -> list[dict]:
    from ssb.backbones.ssd_mobilenet_v2 import preprocess

    out = []
    for i in range(0, len(images), 8):
        split = front(preprocess(images[i : i + 8]))
        out += head(split, image_sizes=sizes[i : i + 8])
    return out


def _score(gt_preds, preds, samples, gt_score: float) -> dict:
    from ssb.adapters.coco import COCOEvaluator
    from ssb.tasks.coco_names import COCO_CATEGORIES

    ev = COCOEvaluator("bbox", categories=COCO_CATEGORIES, score_thresh=gt_score)
    inputs = [{"image_id": i, "height": s.image.shape[0], "width": s.image.shape[1], "instances": g}
              for i, (s, g) in enumerate(zip(samples, gt_preds))]
    ev.process(inputs, preds)
    return ev.evaluate()["bbox"]


def ssb_points(samples: list[Sample], models, head, levels) -> list[Point]:
    """One stream per level holding every sample; detections from decoded features."""
    import ssb
    from ssb.codec.image import ImageEncoder, decode_features

    enc = ImageEncoder(models.codec, _teacher(models))
    sizes = [s.image.shape[:2] for s in samples]
    pixels = sum(h * w for h, w in sizes)
    pts = []
    for level in levels:
        buf = io.BytesIO()
        enc.encode(enumerate(s.image for s in samples), buf, level=level)
        data = buf.getvalue()
        preds = [None] * len(samples)
        with ssb.open(data) as bs:
            for df in decode_features(bs, models.codec):
                preds[df.frame_index] = head(df.features, image_sizes=[df.image_size])[0]
        pts.append((level, len(data), preds))
    return pts, pixels


def pixel_points(samples, models, head, codec: str, variant: str, qualities):
    from ssb.adapters import pixel_codecs
    from ssb.backbones.ssd_mobilenet_v2 import INPUT_SIZE

    import cv2

    front = _teacher(models)
    sizes = [s.image.shape[:2] for s in samples]
    pts = []
    for q in qualities:
        total, decoded = 0, []
        for s in samples:
            img = s.image
            if variant == "input":
                img = cv2.resize(img, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
            data = pixel_codecs.encode(codec, img, q)
            total += len(data)
            decoded.append(pixel_codecs.decode(codec, data))
        pts.append((q, total, _detect_pixels(decoded, front, head, sizes)))
    return pts


@torch.no_grad()
def run_eval(out_dir: Path, *, weights=None, levels=None, codecs=("jpeg", "webp", "avif"),
             variants=("input", "full"), gt_score: float = 0.5, frame_step: int | None = None,
             progress: bool = True) -> list[Point]:
    from ssb.adapters import pixel_codecs
    from ssb.pipeline import load_models
    from ssb.tasks import create

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = load_models(weights, front=True)
    head = create("detection", score_thresh=DET_SCORE)
    gt_head = create("detection")
    samples = load_split("val", frame_step=frame_step)
    sizes = [s.image.shape[:2] for s in samples]
    pixels = sum(h * w for h, w in sizes)
    gt = _detect_pixels([s.image for s in samples], models.front, gt_head, sizes)
    levels = list(range(models.codec.config.num_levels)) if levels is None else list(levels)
    points: list[Point] = []

    def add(method, param, nbytes, preds):
        m = _score(gt, preds, samples, gt_score)
        points.append(Point(method, int(param), 8.0 * nbytes / pixels, m["AP"], m["AP50"], m["AP75"], int(nbytes),
                            len(samples)))
        if progress:
            print(f"{method:>12} q={param:<3} bpp={points[-1].bpp:.4f} AP={m['AP']:.1f} AP50={m['AP50']:.1f}",
                  flush=True)

    # The teacher on the original pixels against itself: the ceiling every curve approaches.
    add("original", 0, 3 * pixels, _detect_pixels([s.image for s in samples], models.front, head, sizes))
    ssb_pts, _ = ssb_points(samples, models, head, levels)
    for level, nbytes, preds in ssb_pts:
        add("ssb", level, nbytes, preds)
    for codec in codecs:
        if codec not in pixel_codecs.available_codecs():
            print(f"skipping {codec}: not available in this Pillow build")
            continue
        for variant in variants:
            for q, nbytes, preds in pixel_points(samples, models, head, codec, variant,
                                                 pixel_codecs.default_qualities(codec)):
                add(f"{codec}-{variant}", q, nbytes, preds)
    write_outputs(points, out_dir)
    return points


def bd_rates(points: list[Point]) -> dict[str, dict]:
    """BD-rate (%) of SSB against each pixel curve on mAP and AP50 (negative: SSB saves bits)."""
    from ssb.metrics import bd_or_nan, bd_rate

    def curve(method):
        pts = sorted((p for p in points if p.method == method), key=lambda p: p.bpp)
        return [p.bpp for p in pts], [p.AP for p in pts], [p.AP50 for p in pts]

    r_s, ap_s, ap50_s = curve("ssb")
    out = {}
    for method in sorted({p.method for p in points} - {"ssb", "original"}):
        r, ap, ap50 = curve(method)
        v, why = bd_or_nan(bd_rate, r, ap, r_s, ap_s, pareto=True)
        v50, why50 = bd_or_nan(bd_rate, r, ap50, r_s, ap50_s, pareto=True)
        out[method] = {"bd_rate_mAP": v, "why_mAP": why, "bd_rate_AP50": v50, "why_AP50": why50}
    return out


def write_outputs(points: list[Point], out_dir: Path) -> None:
    rows = [asdict(p) for p in points]
    with open(out_dir / "rate_accuracy.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    bd = bd_rates(points)
    (out_dir / "rate_accuracy.json").write_text(json.dumps({"points": rows, "bd_rate": bd}, indent=1, default=str))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in sorted({p.method for p in points} - {"original"}):
        pts = sorted((p for p in points if p.method == method), key=lambda p: p.bpp)
        ax.plot([p.bpp for p in pts], [p.AP for p in pts], "o-" if method == "ssb" else ".--", label=method,
                lw=2.5 if method == "ssb" else 1)
    ref = next((p for p in points if p.method == "original"), None)
    if ref:
        ax.axhline(ref.AP, color="gray", lw=0.8, label="teacher on originals")
    ax.set_xscale("log")
    ax.set_xlabel("bits per original pixel")
    ax.set_ylabel("mAP@[.5:.95] vs teacher (%)")
    ax.set_title("Detection accuracy vs rate (held-out real frames)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "rate_accuracy.png", dpi=120)
    plt.close(fig)
