"""Analysis speed of ``ssb.video`` streams, in one run on this CPU: predicted vs key frames, motion-only vs features.

Encodes held-out vtest frames (620.. by default) as one ``ssb.video`` stream (``--gop`` frames a
GOP, so that several key frames are timed), then times
per frame (median over the frames of a kind, after a warm-up pass):

* ``key``: a key frame from the bitstream to detections: BASE entropy decode -> latent ->
  feature synthesis -> detection head;
* ``predicted``: a predicted frame to detections, the decoder holding its reference as it does
  when it streams through a GOP: MOTION + RESIDUAL decode -> warp + add -> synthesis -> head;
* ``features``: a predicted frame to decoded features only (no head): the "full feature decode";
* ``motion``: the motion-only path (``need={"motion"}``): MOTION decode + the motion head's
  per-object displacement, no BASE or RESIDUAL byte read.

Prints milliseconds per frame and the ratios the video issue sets goals on:
``predicted / key`` (goal <= 1: a P-frame is not slower to analyse) and ``features / motion``
(goal >= 5: the motion-only path is at least 5x faster than decoding the features).

    python benchmarks/bench_video.py [--frames 24] [--gop 8] [--level 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--first", type=int, default=620, help="first frame (default: the held-out clip)")
    ap.add_argument("--gop", type=int, default=8)
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.gop < 2 or args.frames < args.gop:
        ap.error("--gop must be >= 2 and --frames >= --gop")

    import torch

    import ssb
    from ssb.codec import registry
    from ssb.media import frames
    from ssb.pipeline import Models, encode
    from ssb.resources import vtest_path
    from ssb.tasks import create

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    models = Models()
    clip = list(frames(vtest_path(), frames=range(args.first, args.first + args.frames)))
    buf = io.BytesIO()
    encode(iter(clip), buf, codec="ssb.video", gop=args.gop, quality=args.level, models=models)
    data = buf.getvalue()
    head, motion_head = create("detection"), create("motion")

    def timed(need, run_head, passes=2):
        """ms per frame over the stream's frames, by kind, from the last pass (the first warms up)."""
        for _ in range(passes):
            out = {"key": [], "predicted": []}
            with ssb.open(data) as bs:
                dec = registry.decoder(bs, models.zoo)
                for step in dec.plan(need=need):
                    t = time.perf_counter()
                    df = dec.decode(step)
                    run_head(df)
                    out["key" if step.frame.key else "predicted"].append(1e3 * (time.perf_counter() - t))
        return {k: statistics.median(v) for k, v in out.items() if v}

    def detect(df):
        head(df.features, image_sizes=[df.image_size])

    analysis = timed({"features"}, detect)
    features = timed({"features"}, lambda df: None)
    motion = timed({"motion"}, lambda df: motion_head({}, image_sizes=[df.image_size], frame=df))
    print(f"{len(clip)} frames of vtest from {args.first}, GOP {args.gop}, level {args.level}, {len(data)} bytes, "
          f"{args.threads} thread(s)")
    print(f"  key frame -> detections        {analysis['key']:8.2f} ms")
    print(f"  predicted frame -> detections  {analysis['predicted']:8.2f} ms")
    print(f"  predicted frame -> features    {features['predicted']:8.2f} ms")
    print(f"  predicted frame -> motion only {motion['predicted']:8.2f} ms")
    print(f"ratio predicted/key analysis: {analysis['predicted'] / analysis['key']:.2f} (goal <= 1)")
    print(f"ratio features/motion-only:   {features['predicted'] / motion['predicted']:.1f}x (goal >= 5)")


if __name__ == "__main__":
    main()
