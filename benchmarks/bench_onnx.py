"""Decoder-side networks in PyTorch vs ONNX Runtime, per frame, in one run on this machine.

Held-out vtest frames are coded at ``--level``; the BASE payloads are entropy-decoded once (that
exact integer path is the same code in both runtimes), then per frame, median over frames x
``--repeats`` after a warm-up:

* ``synthesis``: the feature synthesis ``g_s`` on the de-gained latent (torch as the codec runs it,
  oneDNN off), cropped;
* ``detection``: the detection head on the split features (network + the same anchor decoding and NMS);
* ``synthesis + detection``, ``+ pose`` and ``+ segmentation`` (RoI heads on the shared detections);
* ``bitstream -> all three``: entropy decoding + synthesis + the three heads.

Prints ms/frame for torch and ORT (CPU provider; the CUDA provider too when onnxruntime-gpu sees a
GPU) and the torch/ORT ratios, then the max |torch - ORT| of every network on these frames.

    python benchmarks/bench_onnx.py [--frames 5] [--repeats 5] [--threads 1] [--level 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--level", type=int, default=3)
    args = ap.parse_args()

    import torch

    from ssb.adapters.onnx import OrtRuntime, available_providers
    from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front, preprocess
    from ssb.codec import zoo
    from ssb.resources import read_video_frames, vtest_path
    from ssb.tasks import create

    warnings.filterwarnings("ignore", message="TF32 acceleration")
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    codec = zoo.load("codec")
    front = SSDMobileNetV2Front(pretrained=True)
    heads = {"detection": create("detection"), "pose": create("pose", behind=codec.identity.id),
             "segmentation": create("segmentation", behind=codec.identity.id)}
    frames = read_video_frames(vtest_path(), range(620, 620 + 40 * args.frames, 40))
    items = codec.compress(front(preprocess([img for _, img in frames])), args.level)
    sizes = [img.shape[:2] for _, img in frames]
    latents = []
    hook = codec.g_s.register_forward_pre_hook(lambda m, a: latents.append(a[0].clone()))
    splits = [codec.decompress(it) for it in items]
    hook.remove()

    def torch_synthesis(y, hw):
        with torch.backends.mkldnn.flags(enabled=False):
            return codec.g_s(y)[..., : hw[0], : hw[1]]

    def paths(synth, dec, det, pose, seg):
        def det_only(i):
            return det(splits[i], image_sizes=[sizes[i]])

        def syn_det(i):
            split = synth(latents[i], items[i].out_hw)
            return split, det(split, image_sizes=[sizes[i]])

        def syn_det_pose(i):
            split, d = syn_det(i)
            return pose(split, image_sizes=[sizes[i]], detections=d)

        def syn_det_seg(i):
            split, d = syn_det(i)
            return seg(split, image_sizes=[sizes[i]], detections=d)

        def full(i):
            split = dec.decompress(items[i])
            d = det(split, image_sizes=[sizes[i]])
            return (pose(split, image_sizes=[sizes[i]], detections=d),
                    seg(split, image_sizes=[sizes[i]], detections=d))

        return {"synthesis": lambda i: synth(latents[i], items[i].out_hw), "detection": det_only,
                "synthesis + detection": syn_det, "  + pose": syn_det_pose, "  + segmentation": syn_det_seg,
                "bitstream -> all three": full}

    runtimes = {"torch": paths(torch_synthesis, codec, *heads.values())}
    providers = ["CPUExecutionProvider"] + (["CUDAExecutionProvider"] if "CUDAExecutionProvider"
                                            in available_providers() else [])
    setup = {}
    for prov in providers:
        t = time.perf_counter()
        chain = [prov] if prov == "CPUExecutionProvider" else [prov, "CPUExecutionProvider"]
        rt = OrtRuntime(codec, providers=chain, threads=args.threads)
        w = {k: rt.wrap(h) for k, h in heads.items()}
        w["detection"].graph_for((38, 38))
        setup[prov] = (time.perf_counter() - t, rt)
        runtimes[f"ort {prov[:-len('ExecutionProvider')]}"] = paths(rt.synthesis, rt.codec(), w["detection"],
                                                                      w["pose"], w["segmentation"])
    times = {r: {p: [] for p in runtimes["torch"]} for r in runtimes}
    for r, ps in runtimes.items():
        for fn in ps.values():
            fn(0)  # warm-up
    for _ in range(args.repeats):
        for i in range(len(items)):
            for r, ps in runtimes.items():
                for p, fn in ps.items():
                    t = time.perf_counter()
                    fn(i)
                    times[r][p].append(time.perf_counter() - t)
    med = {r: {p: statistics.median(v) * 1000 for p, v in ps.items()} for r, ps in times.items()}

    nb = statistics.mean(len(it.y) + len(it.z) for it in items)
    print(f"{len(items)} held-out vtest frames x {args.repeats} repeats, {args.threads} thread(s) each, "
          f"SSB level {args.level} (~{nb:.0f} B of latents/frame), torch {torch.__version__}, "
          f"onnxruntime {__import__('onnxruntime').__version__}")
    if "CUDAExecutionProvider" not in providers:
        print(f"no CUDA provider in onnxruntime ({', '.join(available_providers())}): CPU only")
    for prov, (secs, rt) in setup.items():
        print(f"ORT {prov}: export-or-load of the graphs {secs:.1f} s (cache {rt.models_dir}), "
              f"sessions on {rt.active_providers}")
    names = list(runtimes)
    print(f"  {'ms/frame (median)':<24}" + "".join(f"{n:>12}" for n in names)
          + "".join(f"{'torch/' + n[4:]:>14}" for n in names[1:]))
    for p in runtimes["torch"]:
        row = f"  {p:<24}" + "".join(f"{med[n][p]:12.2f}" for n in names)
        print(row + "".join(f"{med['torch'][p] / med[n][p]:13.2f}x" for n in names[1:]))

    rt = setup["CPUExecutionProvider"][1]
    w = {k: rt.wrap(h) for k, h in heads.items()}
    y, split = torch.cat(latents), torch.cat(splits)
    boxes = [heads["pose"].select(d)["boxes"] for d in heads["detection"](split, image_sizes=sizes)]
    mboxes = [heads["segmentation"].select(d)["boxes"] for d in heads["detection"](split, image_sizes=sizes)]
    ort_raw, torch_raw = w["detection"].raw_outputs(split), heads["detection"].raw_outputs(split)
    diffs = {
        "synthesis": (rt.synthesis(y, items[0].out_hw) - split).abs().max(),
        "detection codes": (ort_raw[0] - torch_raw[0]).abs().max(),
        "detection logits": (ort_raw[1] - torch_raw[1]).abs().max(),
        "pose heatmap logits": (w["pose"].raw(split, boxes, sizes)[0]
                                - heads["pose"].raw(split, boxes, sizes)[0]).abs().max(),
        "mask logits": (w["segmentation"].raw(split, mboxes, sizes)
                        - heads["segmentation"].raw(split, mboxes, sizes)).abs().max(),
    }
    pairs = zip(heads["detection"](split, image_sizes=sizes), w["detection"](split, image_sizes=sizes))
    same = all(torch.equal(a["labels"], b["labels"]) for a, b in pairs)
    print("max |torch - ORT CPU| on these frames: "
          + ", ".join(f"{k} {float(v):.1e}" for k, v in diffs.items())
          + f"; detections after NMS: {'same labels' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
