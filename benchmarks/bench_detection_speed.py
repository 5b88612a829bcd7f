"""Bitstream -> detections, against two pixel pipelines, in one run on this CPU.

Per held-out vtest frame (median over frames, after a warm-up), three paths from bytes to
COCO detections:

* ``ssb``: BASE payload -> entropy decode -> feature synthesis -> detector tail and head
  (no pixels);
* baseline (a) ``jpeg``: JPEG bytes of the 300x300 detector input (``--jpeg-quality``, pick the
  quality whose mAP matches SSB's in ``ssb eval``) -> Pillow decode -> the full teacher;
* baseline (b) ``ssb-pixels``: the same SSB bytes -> entropy decode -> feature synthesis ->
  pixel decoder -> the full teacher on the decoded pixels.

Prints milliseconds per frame and the speed ratios (baseline time / SSB time).

    python benchmarks/bench_detection_speed.py [--frames 20] [--threads 1] [--level 3] [--jpeg-quality 30]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--jpeg-quality", type=int, default=30)
    args = ap.parse_args()

    import cv2
    import torch

    from ssb.adapters import pixel_codecs
    from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front, preprocess
    from ssb.codec import zoo
    from ssb.codec.payload import pack_features, unpack_features
    from ssb.recipes.data import load_split
    from ssb.tasks import create

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    codec = zoo.load("codec")
    front = SSDMobileNetV2Front(pretrained=True)
    head = create("detection")
    synth = zoo.load("pixels", behind=codec.identity.id)
    samples = [s for s in load_split("val", with_photos=False)][: args.frames]
    ctx = {"levels": codec.config.num_levels, "grid": (38, 38)}

    prepared = []
    for s in samples:
        split = front(preprocess([s.image]))
        base = pack_features(codec.compress(split, args.level)[0])
        jpeg = pixel_codecs.encode("jpeg", cv2.resize(s.image, (300, 300), interpolation=cv2.INTER_LINEAR),
                                   args.jpeg_quality)
        prepared.append((s.image.shape[:2], base, jpeg))

    def ssb_path(size, base, jpeg):
        feats = codec.decompress(unpack_features(base, ctx=ctx))
        return head(feats, image_sizes=[size])

    def jpeg_path(size, base, jpeg):
        img = pixel_codecs.decode("jpeg", jpeg)
        return head(front(preprocess([img])), image_sizes=[size])

    def pixels_path(size, base, jpeg):
        feats = codec.decompress(unpack_features(base, ctx=ctx))
        rgb = synth(feats)[0, :, :300, :300].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).contiguous()
        return head(front(preprocess([rgb.numpy()])), image_sizes=[size])

    paths = {"ssb": ssb_path, "jpeg (a)": jpeg_path, "ssb-pixels (b)": pixels_path}
    for fn in paths.values():  # warm-up
        fn(*prepared[0])
    times = {k: [] for k in paths}
    for item in prepared:
        for name, fn in paths.items():
            t = time.perf_counter()
            fn(*item)
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    nb = statistics.mean(len(b) for _, b, _ in prepared)
    nj = statistics.mean(len(j) for _, _, j in prepared)
    print(f"{len(prepared)} held-out vtest frames, {args.threads} thread(s), SSB level {args.level} "
          f"({nb:.0f} B/frame), JPEG q{args.jpeg_quality} at 300x300 ({nj:.0f} B/frame)")
    for name, ms in med.items():
        print(f"  {name:<16} {ms:8.1f} ms/frame")
    print(f"speed-up of bitstream->detections vs (a) JPEG->teacher: {med['jpeg (a)'] / med['ssb']:.2f}x")
    print(f"speed-up of bitstream->detections vs (b) SSB pixels->teacher: {med['ssb-pixels (b)'] / med['ssb']:.2f}x")


if __name__ == "__main__":
    main()
