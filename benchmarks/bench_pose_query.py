"""The bytes and the time a pose query touches, in one run on this CPU: SSB object-scale units vs AVIF.

Held-out vtest frames (620.. by default), each person's pose:

* ``ssb``: the frames coded as ONE ``ssb.image`` stream with object-scale units for people
  (``--base-level``, ``--object-level``); the query (``analyze(tasks=["pose"])``) reads the index
  and the person OBJECT_SCALE units only (entropy decode, synthesis, the pose head on each window);
* ``avif``: each frame coded as AVIF at the quality whose total size is closest to the SSB
  stream's (same bytes); the query decodes the pixels (Pillow), finds the people with the SSD
  teacher and runs MoveNet Lightning on each person's crop (remote inference, the usual pipeline).

Everything on one thread.  Prints, per path, the bytes read and the milliseconds per frame (the
fastest of ``--passes`` rounds, so a busy machine biases neither) and the ratios SSB / AVIF.
Accuracy is ``ssb eval --task pose --object-levels ...``'s job, not this benchmark's.

    python benchmarks/bench_pose_query.py [--frames 20] [--first 620] [--base-level 0] [--object-level 0]
"""

from __future__ import annotations

import argparse
import io
import time


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--first", type=int, default=620, help="first frame (default: the held-out clip)")
    ap.add_argument("--base-level", type=int, default=0)
    ap.add_argument("--object-level", type=int, default=0)
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args(argv)
    if args.frames < 1 or args.passes < 1:
        ap.error("--frames and --passes must be >= 1")

    import cv2
    import torch

    from ssb.adapters import pixel_codecs
    from ssb.media import Frame
    from ssb.pipeline import Models, analyze, encode
    from ssb.recipes.teachers import MoveNetTeacher, PersonTeacher
    from ssb.resources import read_video_frames, vtest_path

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.set_grad_enabled(False)
    clip = [img for _, img in read_video_frames(vtest_path(), range(args.first, args.first + args.frames))]
    pixels = sum(im.shape[0] * im.shape[1] for im in clip)
    models = Models()
    buf = io.BytesIO()
    encode((Frame(i, im) for i, im in enumerate(clip)), buf, codec="ssb.image", quality=args.base_level,
           models=models, object_scale=[1], object_quality=args.object_level)
    stream = buf.getvalue()
    # the AVIF quality whose total size is closest to the stream's
    best = None
    for q in pixel_codecs.default_qualities("avif") + (1, 5, 15):
        files = [pixel_codecs.encode("avif", im, q) for im in clip]
        size = sum(map(len, files))
        if best is None or abs(size - len(stream)) < abs(best[1] - len(stream)):
            best = (q, size, files)
    avif_q, avif_bytes, avif_files = best
    people, movenet = PersonTeacher(), MoveNetTeacher()

    def run_ssb():
        r = analyze(stream, tasks=["pose"], models=models)
        return r.bytes_read, sum(len(f.predictions["pose"]["scores"]) for f in r.frames)

    def run_avif():
        n = 0
        for data in avif_files:
            img = pixel_codecs.decode("avif", data)
            boxes = people([img])[0]["boxes"]
            n += len(movenet(img, boxes))
        return avif_bytes, n

    paths = {"ssb": run_ssb, "avif": run_avif}
    times = {k: float("inf") for k in paths}
    out = {}
    run_ssb()  # warm the models
    for _ in range(args.passes):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            out[name] = fn()
            times[name] = min(times[name], time.perf_counter() - t0)
    ms = {k: 1000 * v / len(clip) for k, v in times.items()}
    bpp = {"ssb": 8 * len(stream) / pixels, "avif": 8 * avif_bytes / pixels}
    print(f"{len(clip)} frames from {args.first}; SSB base level {args.base_level}, object level {args.object_level}: "
          f"{len(stream)} B ({bpp['ssb']:.4f} bpp); AVIF q{avif_q}: {avif_bytes} B ({bpp['avif']:.4f} bpp)")
    for k in paths:
        read, n = out[k]
        print(f"  {k:>5}: reads {read:>8} B ({100 * read / (len(stream) if k == 'ssb' else avif_bytes):5.1f}% of "
              f"its file), {ms[k]:7.1f} ms/frame, {n} people")
    ratios = {"bytes": out["ssb"][0] / out["avif"][0], "time": ms["ssb"] / ms["avif"]}
    print(f"SSB / AVIF: bytes touched {ratios['bytes']:.2f}x, time {ratios['time']:.2f}x "
          f"(AVIF / SSB time: {1 / ratios['time']:.1f}x)")
    return {"ms": ms, "bytes": {k: v[0] for k, v in out.items()}, "bpp": bpp, "ratios": ratios,
            "avif_quality": avif_q}


if __name__ == "__main__":
    main()
