"""Grouped vs ungrouped streams on held-out vtest frames with people, in one run on this CPU.

Frames: ``--frames`` held-out frames of vtest.avi evenly spread over 620..794, grouped
automatically (teacher detections with score >= 0.5, masked by MOG2 background subtraction warmed
up on the 100 frames before the first one).  Reference ("ground truth"): the teacher on the
ORIGINAL pixels, detections with score >= 0.5; candidates are scored with COCO AP@[.5:.95] and
AP50 (pycocotools, :class:`ssb.adapters.evaluation.COCOEvaluator`).

Reported:

1. **Rate and accuracy per quality level**, ungrouped (one ``BASE`` unit per frame) vs grouped
   (``BACKGROUND`` + per group ``OBJECT`` + ``GROUP_MASK``): feature payload bytes, whole-stream
   bytes (container, index and masks included), AP and AP50 over all classes and over people.
   The rate overhead at *equal accuracy* interpolates the ungrouped curve (person AP vs
   log-bytes) at each grouped point's person AP (all-class AP rests on a handful of rare-class
   objects here); a grouped point below the whole ungrouped curve has no equal-accuracy
   overhead (printed n/a).
2. **Person-only query** at ``--level``: bytes read / stream size and time (entropy decoding +
   composition, then the detection head) of ``analyze(classes=[person])`` against a full
   analysis of the same grouped stream and of the ungrouped stream; how the query's person
   detections match the full grouped analysis's (IoU >= 0.5, score differences); and the
   query's composition base (zeros, the default, vs the teacher's response to grey) and paste
   mode (``soft`` by mask coverage, the default, vs whole windows).
   Whole frames and queries go through the learned fusion (``ssb.codec.fusion``, ``--fusion``)
   when its weights are there; section 1 also prints the plain composition's accuracy.
3. **Mask coding**: bits per mask-box pixel, bytes per mask and per frame, encode / decode time,
   against 1-bit PNG (zlib) of the same crops.

    python benchmarks/bench_groups.py [--frames 10] [--threads 1] [--level 3] [--levels 0,1,2,3,4,5]
                                      [--fill grey|pushpull] [--background-fill grey|pushpull]
                                      [--masks foreground|box] [--fusion auto|none|PATH] [--background-level L]
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import time


def _frames(n: int, warmup: int = 100):
    """(index, RGB, foreground) of ``n`` frames evenly spread over 620..794, MOG2 run on all before."""
    import cv2
    import numpy as np

    from ssb.codec.group_masks import ForegroundModel
    from ssb.resources import vtest_path

    wanted = set(np.linspace(620, 794, n).round().astype(int).tolist())
    cap = cv2.VideoCapture(str(vtest_path()))
    fg_model, out, i = ForegroundModel(), [], 0
    while i <= max(wanted):
        ok, bgr = cap.read()
        if not ok:
            break
        if i >= min(wanted) - warmup:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            fg = fg_model.apply(rgb)
            if i in wanted:
                out.append((i, rgb, fg))
        i += 1
    cap.release()
    return out


def _score(gt, preds, sizes) -> tuple[float, float]:
    from ssb.adapters.evaluation import COCOEvaluator
    from ssb.format.labels import COCO_CATEGORIES

    ev = COCOEvaluator("bbox", categories=COCO_CATEGORIES, score_thresh=0.5)
    ev.process([{"image_id": k, "height": h, "width": w, "instances": g} for k, ((h, w), g) in
                enumerate(zip(sizes, gt))], preds)
    r = ev.evaluate()["bbox"]
    return r["AP"], r["AP50"]


def _persons(pred, min_score: float = 0.0) -> dict:
    keep = (pred["labels"] == 1) & (pred["scores"] >= min_score)
    return {k: v[keep] for k, v in pred.items()}


def _equal_accuracy_bytes(curve: list[tuple[float, float]], ap: float) -> float | None:
    """Bytes the ungrouped curve [(bytes, AP)] needs for ``ap`` (log-linear interpolation), None if outside."""
    pts = sorted(curve)
    for (b0, a0), (b1, a1) in zip(pts, pts[1:]):
        if min(a0, a1) <= ap <= max(a0, a1) and a0 != a1:
            t = (ap - a0) / (a1 - a0)
            return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--level", type=int, default=3, help="quality level of the query and mask measurements")
    ap.add_argument("--levels", default=None, help="comma-separated levels of the rate table (default: all)")
    ap.add_argument("--fill", default="grey", choices=("pushpull", "grey"),
                    help="how the encoder fills the pixels outside each group (ssb.codec.fill)")
    ap.add_argument("--fusion", default="auto",
                    help="learned composition of whole grouped frames: auto (shipped weights), none, or a checkpoint")
    ap.add_argument("--background-level", type=int, default=None,
                    help="code every grouped stream's background at this level (default: the groups' level)")
    ap.add_argument("--masks", default="foreground", choices=("foreground", "box"),
                    help="group masks: detection box AND MOG2 foreground (default), or the whole box")
    ap.add_argument("--background-fill", default="grey", choices=("pushpull", "grey"),
                    help="how the encoder fills the groups' pixels in the background")
    args = ap.parse_args()

    import torch
    from PIL import Image
    from torchvision.ops import box_iou

    import ssb
    from ssb.backbones.ssd_mobilenet_v2 import preprocess
    from ssb.codec.groups import GroupedInput, GroupEncoder, GroupLayout, compose, decode_groups, neutral_split
    from ssb.codec.image import ImageEncoder
    from ssb.codec.mask_coding import decode_mask_bits, encode_mask_bits, mask_bbox
    from ssb.format import UnitType
    from ssb.pipeline import analyze, load_models
    from ssb.tasks import create
    from ssb.format.labels import COCO_CATEGORIES

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    models = load_models(front=True, tasks=("detection",))
    teacher = models.heads["detection"]  # score_thresh 0.3: the encoder-side detector
    evaluate = create("detection", score_thresh=0.05)  # candidates for the PR curves
    models.heads["detection"] = evaluate
    if args.fusion == "none":
        models.fusion = None
    elif args.fusion != "auto":
        from ssb.codec.fusion import load_group_fusion

        models.fusion = load_group_fusion(models.codec, args.fusion)
    fusion = models.group_fusion()
    frames = _frames(args.frames)
    sizes = [img.shape[:2] for _, img, _ in frames]
    pixels = sum(h * w for h, w in sizes)
    gt = [teacher(models.front(preprocess([img])), image_sizes=[img.shape[:2]])[0] for _, img, _ in frames]
    person_gt = [_persons(g) for g in gt]
    levels = ([int(v) for v in args.levels.split(",")] if args.levels else list(range(models.codec.config.num_levels)))
    if args.level not in levels:
        levels.append(args.level)
    print(f"SSB grouped streams, vtest frames {[i for i, _, _ in frames]}, {args.threads} thread(s), "
          f"weights {getattr(models.codec, 'weights_path', '?').rsplit('/', 1)[-1]}, masks {args.masks}, "
          f"background level {'same' if args.background_level is None else args.background_level}, fusion {getattr(fusion, 'weights_path', 'none')}, fill {args.fill}, background fill {args.background_fill}")
    print(f"reference: teacher on original pixels, {sum(int((g['scores'] >= 0.5).sum()) for g in gt)} objects "
          f"(score >= 0.5), {sum(int(((g['scores'] >= 0.5) & (g['labels'] == 1)).sum()) for g in gt)} people")

    def detect(data: bytes, classes=None):
        res = analyze(data, classes=classes, models=models)
        return res, [fr.predictions["detection"] for fr in res.frames]

    def objects(split, s):
        return teacher(split, image_sizes=s)

    plain_enc = ImageEncoder(models.codec, models.front, objects=objects, class_names=dict(COCO_CATEGORIES))
    group_enc = GroupEncoder(models.codec, models.front, objects=objects, class_names=dict(COCO_CATEGORIES),
                             layout=GroupLayout(fill=args.fill, background_fill=args.background_fill))
    rows, streams, curve, plain_compose = [], {}, [], {}
    for level in levels:
        buf = io.BytesIO()
        plain_enc.encode([(i, img) for i, img, _ in frames], buf, level=level)
        plain = buf.getvalue()
        t0 = time.perf_counter()
        buf = io.BytesIO()
        gstats = group_enc.encode([GroupedInput(i, img, foreground=fg if args.masks == "foreground" else None)
                                    for i, img, fg in frames], buf, level=level,
                                   background_level=args.background_level)
        t_genc = (time.perf_counter() - t0) / len(frames)
        grouped = buf.getvalue()
        streams[level] = (plain, grouped, gstats)
        with ssb.open(plain) as bs:
            base = sum(u.length for u in bs.units if u.type == UnitType.BASE)
        p_pred, g_pred = detect(plain)[1], detect(grouped)[1]
        p_ap, g_ap = _score(gt, p_pred, sizes), _score(gt, g_pred, sizes)
        p_person = _score(person_gt, [_persons(p) for p in p_pred], sizes)
        g_person = _score(person_gt, [_persons(p) for p in g_pred], sizes)
        curve.append((base, p_person[0]))
        rows.append((level, base, len(plain), p_ap, p_person, gstats, len(grouped), g_ap, g_person, t_genc))
        if fusion is not None:  # the same grouped stream composed without the learned fusion
            models.fusion = None
            c_pred = detect(grouped)[1]
            models.fusion = fusion
            plain_compose[level] = (_score(gt, c_pred, sizes), _score(person_gt, [_persons(p) for p in c_pred], sizes))

    print("\n1. rate and accuracy (bytes for all frames; AP/AP50 against the teacher, all classes and people)")
    print(f"{'level':>5} | {'ungrouped feat':>14} {'file':>7} {'AP/AP50':>11} {'people':>11} | {'grouped feat':>12} "
          f"{'(bg+groups)':>13} {'masks':>6} {'file':>7} {'AP/AP50':>11} {'people':>11} | {'same-level':>10} "
          f"{'equal-AP':>9} | enc s/frame")
    for level, base, pfile, p_ap, p_person, st, gfile, g_ap, g_person, t_genc in rows:
        same = st.feature_bytes / base - 1
        eq = _equal_accuracy_bytes(curve, g_person[0])
        eq_txt = f"{st.feature_bytes / eq - 1:+9.1%}" if eq else f"{'n/a':>9}"
        print(f"{level:>5} | {base:>14} {pfile:>7} {_fmt(p_ap):>11} {_fmt(p_person):>11} | {st.feature_bytes:>12} "
              f"{st.background_bytes:>6}+{st.object_bytes:<6} {st.mask_bytes:>6} {gfile:>7} {_fmt(g_ap):>11} "
              f"{_fmt(g_person):>11} | {same:+10.1%} {eq_txt} | {t_genc:.2f}")
    print("(same-level: grouped / ungrouped feature bytes - 1; equal-AP: against the ungrouped feature bytes that "
          "reach the grouped person AP on the ungrouped person-AP curve, n/a when no ungrouped level is that low)")
    if plain_compose:
        print("(grouped AP above: whole frames through the learned fusion; without it, plain composition: "
              + ", ".join(f"level {lv} {_fmt(a)} all / {_fmt(pp)} people" for lv, (a, pp) in plain_compose.items())
              + ")")
    print(f"(feature bits per original pixel at level {args.level}: ungrouped "
          f"{8 * {r[0]: r[1] for r in rows}[args.level] / pixels:.4f}, grouped "
          f"{streams[args.level][2].bpp:.4f}; {streams[args.level][2].groups} groups in {len(frames)} frames)")

    plain, grouped, gstats = streams[args.level]
    print(f"\n2. person-only query at level {args.level} (analyze(classes=[person]); models loaded beforehand)")
    detect(grouped, [1])  # warm-up
    runs = {"ungrouped, full": (plain, None), "grouped, full": (grouped, None), "grouped, person query": (grouped, [1])}
    results = {}
    for name, (data, classes) in runs.items():
        times = []
        for _ in range(3):
            res, preds = detect(data, classes)
            times.append((res.decode_seconds, res.head_seconds))
        dec = statistics.median(t[0] for t in times) / len(frames)
        head = statistics.median(t[1] for t in times) / len(frames)
        results[name] = preds
        print(f"  {name:<22} read {res.bytes_read:>7} of {res.file_size:>7} bytes ({res.bytes_read / res.file_size:6.1%})"
              f"  decode {1000 * dec:6.1f} ms/frame  head {1000 * head:6.1f} ms/frame")
    q, full = results["grouped, person query"], results["grouped, full"]
    print(f"  person AP/AP50 vs teacher people: ungrouped full {_fmt(_score(person_gt, [_persons(p) for p in results['ungrouped, full']], sizes))}"
          f", grouped full {_fmt(_score(person_gt, [_persons(p) for p in full], sizes))}"
          f", person query {_fmt(_score(person_gt, [_persons(p) for p in q], sizes))}")
    matched, total, ious, dscore = 0, 0, [], []
    for fp, qp in zip(full, q):
        ref, got = _persons(fp, 0.5), _persons(qp, 0.3)
        total += len(ref["scores"])
        if len(ref["scores"]) and len(got["scores"]):
            iou = box_iou(ref["boxes"], got["boxes"])
            best, idx = iou.max(dim=1)
            for k in range(len(best)):
                if best[k] >= 0.5:
                    matched += 1
                    ious.append(float(best[k]))
                    dscore.append(abs(float(ref["scores"][k] - got["scores"][idx[k]])))
    print(f"  query vs full grouped analysis: {matched}/{total} people (score >= 0.5 in the full analysis) found "
          f"by the query (score >= 0.3, IoU >= 0.5); mean IoU {statistics.mean(ious) if ious else float('nan'):.3f}, "
          f"mean |score difference| {statistics.mean(dscore) if dscore else float('nan'):.3f}")
    print(f"  person AP/AP50 of the query against the full grouped analysis's people (score >= 0.5): "
          f"{_fmt(_score([_persons(p, 0.5) for p in full], [_persons(p) for p in q], sizes))}")

    neutral = neutral_split(models.front)
    variants = []
    for base, paste in (("zeros", "soft"), ("neutral", "soft"), ("zeros", "window"), ("neutral", "window")):
        with ssb.open(grouped) as bs:
            preds = [evaluate(compose(fr, base=base, paste=paste, neutral=neutral), image_sizes=[fr.image_size])[0]
                     for fr in decode_groups(bs, models.codec, classes=[1], masks=True)]
        variants.append(f"{base}+{paste} {_fmt(_score(person_gt, [_persons(p) for p in preds], sizes))}")
    print(f"  query composition (person AP/AP50 vs teacher people): {', '.join(variants)}")

    print(f"\n3. mask coding (level-independent; {gstats.groups} masks in {len(frames)} frames)")
    masks = []
    with ssb.open(grouped) as bs:
        for fr in decode_groups(bs, models.codec, masks=True, background=False):
            masks += [g.mask.mask for g in fr.groups]
    t_enc = t_dec = 0.0
    png = 0
    for m in masks:
        t0 = time.perf_counter()
        data = encode_mask_bits(m)
        t1 = time.perf_counter()
        decode_mask_bits(data, *m.shape)
        t_enc, t_dec = t_enc + t1 - t0, t_dec + time.perf_counter() - t1
        buf = io.BytesIO()
        Image.fromarray(m).convert("1").save(buf, format="PNG", optimize=True)
        png += len(buf.getvalue())
        assert mask_bbox(m) == (0, 0, m.shape[1], m.shape[0])
    box_px = sum(m.size for m in masks)
    print(f"  {gstats.mask_bytes} bytes of GROUP_MASK payloads (10-byte header included): "
          f"{gstats.mask_bits_per_pixel:.3f} bits per mask-box pixel, {gstats.mask_bytes / max(len(masks), 1):.1f} "
          f"bytes per mask, {gstats.mask_bytes / len(frames):.0f} bytes per frame "
          f"({gstats.mask_bytes / len(grouped):.1%} of the grouped stream)")
    print(f"  mask pixels: {box_px} in boxes, {int(sum(m.sum() for m in masks))} set; coder "
          f"{1e6 * t_enc / box_px:.2f} us/pixel to encode, {1e6 * t_dec / box_px:.2f} us/pixel to decode")
    print(f"  baseline: 1-bit PNG of the same crops {png} bytes ({8 * png / box_px:.3f} bits per pixel)")


def _fmt(ap: tuple[float, float]) -> str:
    return f"{ap[0]:.1f}/{ap[1]:.1f}"


if __name__ == "__main__":
    main()
