"""Action recognition speed, in one run on this CPU: from MOTION units vs from pixels vs from features.

Encodes held-out vtest frames (620.. by default) as one ``ssb.video`` stream, then runs three ways
of labelling every tracked person's window over the whole stream, frame by frame in order (the
same windows, the same tracked boxes from the index, the same classifier design,
:class:`ssb.tasks.action.ActionNet`):

* ``motion``: the ``action`` head on the motion-only plan (``need={"motion"}``): MOTION entropy
  decode, per-box pooling, classifier; no BASE or RESIDUAL byte read;
* ``(a) pixels + DIS``: decode pixels (:func:`ssb.pipeline.iter_pixels`: the full feature decode and
  the pixel synthesis), DIS optical flow between consecutive decoded frames (``medium``, the preset
  of the upper-reference classifier; ``--fast-flow`` adds the ``fast`` preset too), the same
  per-box pooling and classifier;
* ``(b) features``: the full feature decode (BASE / RESIDUAL entropy decode, warp, synthesis), RoI
  pooling of the split features per box, the same classifier on those windows.

Classifier weights do not change the time: (a) and (b) use the architecture with their input
widths.  Everything on one thread (torch and OpenCV).  Prints milliseconds per frame of each path
(the fastest of ``--passes`` rounds over all paths, so a busy machine biases no path) and the
ratios (goal: motion >= 5x faster than (a)).

    python benchmarks/bench_action.py [--frames 60] [--first 620] [--level 3] [--passes 3] [--fast-flow]
"""

from __future__ import annotations

import argparse
import io
import time


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--first", type=int, default=620, help="first frame (default: the held-out clip)")
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--fast-flow", action="store_true", help="also time (a) with DIS 'fast'")
    args = ap.parse_args(argv)

    import cv2
    import numpy as np
    import torch

    import ssb
    from ssb.codec import registry
    from ssb.codec.base import index_objects
    from ssb.media import frames
    from ssb.pipeline import Models, encode, iter_pixels
    from ssb.recipes.action_data import feature_features
    from ssb.resources import vtest_path
    from ssb.tasks.action import BOX_FEATURES, MOTION_FEATURES, ActionHead, TrackWindows, build_net, flow_features

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.set_grad_enabled(False)
    models = Models()
    clip = list(frames(vtest_path(), frames=range(args.first, args.first + args.frames)))
    buf = io.BytesIO()
    encode(iter(clip), buf, codec="ssb.video", quality=args.level, models=models)
    data = buf.getvalue()
    head = ActionHead()
    cfg = head.config
    flow_net = build_net({**cfg, "source": "flow"}).eval()
    feat_net = build_net({**cfg, "in_features": 32 * 3 + BOX_FEATURES, "source": "features"}).eval()
    assert cfg["in_features"] == MOTION_FEATURES + BOX_FEATURES

    def persons(objects):
        return [o for o in objects if o.bbox is not None and o.object_id is not None and o.class_id == 1]

    def classify(net, tw, frame, objs, parts, fps, has_motion=True):
        ready = tw.update(frame, [o.object_id for o in objs], [o.bbox for o in objs], parts, fps=fps,
                          has_motion=has_motion)
        if ready:
            x = torch.from_numpy(np.stack([r[2] for r in ready]))
            m = torch.from_numpy(np.stack([r[3] for r in ready]))
            torch.softmax(net(x, m), dim=1)
        return len(ready)

    def run_motion():
        head.reset()
        n = 0
        with ssb.open(data) as bs:
            dec = registry.decoder(bs, models.zoo)
            for step in dec.plan(need={"motion"}):
                df = dec.decode(step)
                n += len(head({}, image_sizes=[df.image_size], frame=df)[0]["labels"])
            read = bs.bytes_read
        return n, read

    def run_pixels(preset):
        dis = cv2.DISOpticalFlow_create(preset)
        tw, prev, n = TrackWindows(cfg["window"], cfg["min_frames"]), None, 0
        with ssb.open(data) as bs:
            fps = bs.header.fps_num / bs.header.fps_den if bs.header.fps_num else None
            for index, img in iter_pixels(data, models=models):
                gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
                flow = dis.calc(gray, prev, None) if prev is not None else None
                prev = gray
                objs = persons(index_objects(bs.frame(index)))
                parts = [flow_features(flow, o.bbox, fps) if flow is not None else np.zeros(MOTION_FEATURES, np.float32)
                         for o in objs]
                n += classify(flow_net, tw, index, objs, parts, fps, flow is not None)
        return n, len(data)

    def run_features():
        tw, n = TrackWindows(cfg["window"], cfg["min_frames"]), 0
        with ssb.open(data) as bs:
            dec = registry.decoder(bs, models.zoo)
            for step in dec.plan(need={"features"}):
                df = dec.decode(step)
                objs = persons(df.objects)
                parts = list(feature_features(df.features["split"], [o.bbox for o in objs], df.image_size))
                n += classify(feat_net, tw, df.frame_index, objs, parts, df.fps or None, df.motion is not None)
            read = bs.bytes_read
        return n, read

    paths = {"motion units (the action head)": run_motion,
             "(a) pixels + DIS medium + classifier": lambda: run_pixels(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM),
             "(b) features + classifier": run_features}
    if args.fast_flow:
        paths["(a') pixels + DIS fast + classifier"] = lambda: run_pixels(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    timing = {}
    for _ in range(max(args.passes, 1)):  # rounds over the paths; the fastest round of each counts
        for name, fn in paths.items():
            t = time.perf_counter()
            windows, read = fn()
            sec = time.perf_counter() - t
            if name not in timing or sec < timing[name][0]:
                timing[name] = (sec, windows, read)
    base = timing["motion units (the action head)"][0]
    print(f"{len(clip)} frames of vtest from {args.first}, level {args.level}, {len(data)} bytes, 1 thread")
    for name, (sec, windows, read) in timing.items():
        print(f"  {name:<40} {1e3 * sec / len(clip):8.2f} ms/frame  {windows:5d} windows  read {read} B"
              f"  ({sec / base:5.1f}x the motion path)")
    ratios = {name: sec / base for name, (sec, _, _) in timing.items()}
    print(f"ratio (a)/motion: {ratios['(a) pixels + DIS medium + classifier']:.1f}x (goal >= 5)")
    print(f"ratio (b)/motion: {ratios['(b) features + classifier']:.1f}x")
    return {"ms_per_frame": {k: 1e3 * v[0] / len(clip) for k, v in timing.items()}, "ratios": ratios}


if __name__ == "__main__":
    main()
