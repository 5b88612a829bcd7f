"""``ssb eval --video``: detection accuracy against rate on a real clip, SSB video vs SSB intra vs H.264/H.265/AV1.

Reference: the SSD teacher on the ORIGINAL frames of the held-out clip (vtest frames 620..794 by
default: never trained or tuned on), its detections with score >= 0.5 kept as objects.  Candidates,
every one scored with COCO AP@[.5:.95] and AP50 through the same evaluator loop:

* ``ssb-video-gN``: ``ssb.video`` streams with a key frame every N frames, at every quality level,
  detections from the decoded features (no pixels);
* ``ssb-intra``: ``ssb.image`` streams (every frame intra-coded), at every level;
* ``h264`` / ``h265`` / ``av1``: the clip through ffmpeg (libx264 / libx265 / libsvtav1, low delay,
  no B-frames, one key frame for the clip), the teacher run on the decoded frames.

Rates are bits per ORIGINAL pixel over the whole clip: the whole SSB file (container, index,
motion and residual included); the codec bitstream for the pixel codecs.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from ssb.recipes.evaluation.references import DET_SCORE, GT_SCORE
from ssb.recipes.evaluation.report import Point, write_outputs

__all__ = ["run_video_eval", "DEFAULT_CRFS", "HELD_OUT_CLIP"]

HELD_OUT_CLIP = range(620, 795)
#: rate sweeps of the pixel codecs (low rates matter: SSB video sits near 0.01-0.1 bpp)
DEFAULT_CRFS = {"h264": (23, 28, 33, 38, 43, 48), "h265": (23, 28, 33, 38, 43, 48), "av1": (30, 38, 46, 54, 60, 63)}


class _Scorer:
    """The detection evaluator of one candidate against the teacher on the original frames."""

    def __init__(self, gt: dict[int, dict], size: tuple[int, int]):
        self.gt, self.size = gt, size

    def __call__(self, preds: dict[int, dict]) -> tuple[dict, int, int]:
        from ssb.adapters.evaluation import COCOEvaluator
        from ssb.format.labels import COCO_CATEGORIES

        ev = COCOEvaluator("bbox", COCO_CATEGORIES, score_thresh=GT_SCORE)
        ids = sorted(self.gt)
        ev.process([{"image_id": i, "height": self.size[0], "width": self.size[1], "instances": self.gt[i]} for i in ids],
                   [preds[i] for i in ids])
        return ev.evaluate()["bbox"], ev.images, ev.objects


@torch.no_grad()
def _teacher(images, front, head) -> dict:
    from ssb.backbones.ssd_mobilenet_v2 import preprocess

    return head(front(preprocess(list(images))), image_sizes=[im.shape[:2] for im in images])


def run_video_eval(out_dir, *, video=None, frames: range = HELD_OUT_CLIP, weights=None, levels=None,
                   gops=(16, 64), intra: bool = True, codecs=("h264", "h265", "av1"), crfs: dict | None = None,
                   progress: bool = True, name: str = "video_rate_accuracy") -> list[Point]:
    """Score every candidate on ``frames`` of ``video`` (default: vtest.avi); write the tables to ``out_dir``."""
    import ssb.media as media
    from ssb.pipeline import Models, analyze, encode
    from ssb.resources import vtest_path
    from ssb.tasks import create

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    video = Path(video or vtest_path())
    clip = list(media.frames(video, frames=frames))
    h, w = clip[0].image.shape[:2]
    pixels = h * w * len(clip)
    models = Models(weights)
    front, teacher = models.zoo.front(), create("detection")
    gt = {f.index: _teacher([f.image], front, teacher)[0] for f in clip}
    score = _Scorer(gt, (h, w))
    points: list[Point] = []

    def add(method: str, param: int, nbytes: int, preds: dict[int, dict]) -> None:
        m, images, objects = score(preds)
        points.append(Point("detection", method, int(param), 8.0 * nbytes / pixels, m["AP"], m["AP50"], m["AP75"],
                            int(nbytes), images, objects))
        if progress:
            p = points[-1]
            print(f"{method:>16} q={param:<3} bpp={p.bpp:.4f} AP={p.AP:.1f} AP50={p.AP50:.1f}", flush=True)

    codec = models.zoo.codec()
    levels = list(range(codec.config.num_levels)) if levels is None else list(levels)
    runs = [(f"ssb-video-g{g}", "ssb.video", {"gop": g}) for g in gops] + ([("ssb-intra", "ssb.image", {})] if intra
                                                                           else [])
    import sys

    from tqdm import tqdm

    bar = tqdm(total=len(runs) * len(levels) + sum(len((crfs or DEFAULT_CRFS)[c]) for c in codecs or ()),
               desc="video eval", unit="point", leave=False, disable=not (progress and sys.stderr.isatty()))
    for method, codec_id, opts in runs:
        for level in levels:
            bar.update()
            buf = io.BytesIO()
            encode(iter(clip), buf, codec=codec_id, quality=level, models=models, index_objects=False, **opts)
            res = analyze(buf.getvalue(), tasks=["detection"], models=models,
                          head_options={"detection": {"score_thresh": DET_SCORE}})
            add(method, level, len(buf.getvalue()), {f.frame_index: f.predictions["detection"] for f in res.frames})
    if codecs:
        from ssb.adapters import video_codecs

        fps = clip[0].fps or 25.0
        det = create("detection", score_thresh=DET_SCORE)
        for name_ in codecs:
            for crf in (crfs or DEFAULT_CRFS)[name_]:
                bar.update()
                enc = video_codecs.encode_video(name_, (f.image for f in clip), fps=fps, crf=crf, gop=len(clip))
                preds = {}
                for f, img in zip(clip, video_codecs.decode_video(enc)):
                    preds[f.index] = _teacher([img], front, det)[0]
                add(name_, crf, enc.nbytes, preds)
    bar.close()
    write_outputs(points, out_dir, name)
    return points
