"""Does the object-scale pose head hold on people it never saw?  Real photos, against MoveNet.

``python -m ssb.recipes.pose_photos [--levels 0,1,2,3] [--base-level 0]``

Photos with people, large in the frame, none of them in the object-scale heads' training data:
``grace_hopper`` (held out of it: :data:`ssb.recipes.train_objects.HELD_OUT_PHOTOS`) and
scikit-image's ``camera`` (in no split), plus ``astronaut`` (trained on, for contrast).  For each
photo and object level: the SSD teacher's people and MoveNet's keypoints on the ORIGINAL pixels
are the reference; the candidates are SSB (the photo coded with object-scale units, the pose head
on the person units) and AVIF at the quality whose size is closest to the SSB stream's (decoded,
then the same SSD + MoveNet).  Prints each person's median keypoint error (labelled keypoints,
in % of the person's box height) and OKS.
"""

from __future__ import annotations

import argparse
import io

import numpy as np

__all__ = ["PHOTOS", "main", "oks"]

PHOTOS = ("grace_hopper", "camera", "astronaut")


def oks(pred: np.ndarray, ref: np.ndarray, box) -> float:
    """COCO object keypoint similarity of ``pred`` ``[17, 2]`` against ``ref`` ``[17, 3]`` (labelled: score >= 0.3)."""
    from ssb.recipes.teachers import KEYPOINT_SCORE
    from ssb.tasks.pose import OKS_SIGMAS

    ok = ref[:, 2] >= KEYPOINT_SCORE
    if not ok.any():
        return float("nan")
    area = (box[2] - box[0]) * (box[3] - box[1]) * 0.53  # COCO's box-to-segment area ratio for people
    k2 = (2 * np.asarray(OKS_SIGMAS)) ** 2
    d2 = ((pred[:, :2] - ref[:, :2]) ** 2).sum(1)
    return float(np.exp(-d2 / (2 * area * k2 + 1e-9))[ok].mean())


def _errors(pred, ref, box) -> float:
    from ssb.recipes.teachers import KEYPOINT_SCORE

    ok = ref[:, 2] >= KEYPOINT_SCORE
    h = box[3] - box[1]
    return float(np.median(np.linalg.norm(pred[ok, :2] - ref[ok, :2], axis=1)) / h * 100) if ok.any() else float("nan")


def _score(pred, ref, box) -> tuple[float, float]:
    """(median error in % of the box height, OKS); a person not found scores (nan, 0)."""
    return (float("nan"), 0.0) if pred is None else (_errors(pred, ref, box), oks(pred, ref, box))


def _match(pred_boxes, box) -> int | None:
    from ssb.codec.tracking import iou_matrix

    if len(pred_boxes) == 0:
        return None
    iou = iou_matrix(np.asarray(box, dtype=np.float64)[None], np.asarray(pred_boxes, dtype=np.float64))[0]
    return int(np.argmax(iou)) if iou.max() >= 0.3 else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ssb.recipes.pose_photos", description=__doc__.split("\n")[0])
    p.add_argument("--levels", default="0,1,2,3", help="object levels (comma-separated)")
    p.add_argument("--base-level", type=int, default=0)
    args = p.parse_args(argv)
    levels = [int(v) for v in args.levels.split(",") if v.strip()]
    import torch

    from ssb.adapters import pixel_codecs
    from ssb.media import Frame
    from ssb.pipeline import Models, analyze, encode
    from ssb.recipes.data import _photos
    from ssb.recipes.teachers import MoveNetTeacher, PersonTeacher

    torch.set_grad_enabled(False)
    photos = _photos()
    try:  # the cameraman: in scikit-image's wheel, in no training or validation split
        from skimage import data as skdata

        photos.setdefault("camera", np.stack([skdata.camera()] * 3, axis=-1))
    except ImportError:
        pass
    people, movenet, models = PersonTeacher(), MoveNetTeacher(), Models()
    print("photo          level   bytes    bpp | person  SSB err% OKS | AVIF q  bytes  err%  OKS")
    for name in PHOTOS:
        if name not in photos:
            print(f"{name}: not installed here")
            continue
        img = photos[name]
        ref_boxes = people([img])[0]["boxes"]
        ref = movenet(img, ref_boxes)
        for level in levels:
            buf = io.BytesIO()
            encode([Frame(0, img)], buf, codec="ssb.image", quality=args.base_level, models=models, object_scale=[1],
                   object_quality=level)
            data = buf.getvalue()
            pred = analyze(data, tasks=["pose"], models=models).frames[0].predictions["pose"]
            q, avif = min(((q, pixel_codecs.encode("avif", img, q)) for q in range(1, 100, 4)),
                          key=lambda t: abs(len(t[1]) - len(data)))
            dec = pixel_codecs.decode("avif", avif)
            a_boxes = people([dec])[0]["boxes"]
            a_kp = movenet(dec, a_boxes)
            bpp = 8 * len(data) / (img.shape[0] * img.shape[1])
            for k, box in enumerate(ref_boxes):
                j = _match(pred["boxes"].numpy(), box)
                s = _score(None if j is None else pred["keypoints"][j].numpy(), ref[k], box)
                ja = _match(a_boxes, box)
                a = _score(None if ja is None else a_kp[ja], ref[k], box)
                print(f"{name:<14} {level:>5} {len(data):>7} {bpp:.4f} | {k:>6}  {s[0]:7.1f} {s[1]:.2f} | {q:>6} "
                      f"{len(avif):>6} {a[0]:5.1f} {a[1]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
