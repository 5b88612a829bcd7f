"""The candidates ``ssb eval`` scores: each yields ``(method, param, tasks, bytes, outputs)``.

``outputs[i]`` is ``{task: prediction}`` for image ``i`` (torchvision-style dicts); ``tasks`` the
tasks the candidate is measured on; ``bytes`` per task (what coding that task's images cost,
container included).

* ``original``: the teacher on the original pixels (detection's ceiling);
* ``features``: the heads on the teacher's uncoded split features (the pose / mask heads' ceiling);
* ``ssb`` at every quality level: all images coded into ONE stream (container overhead included
  and amortized as for a clip), predictions from the decoded features, no pixels;
  ``ssb-teacher-boxes``: the same features with the teacher's person boxes given to the pose /
  mask heads (their quality apart from detection errors);
* ``ssb-objects-<size>[-b<B>]`` at every object level: streams with object-scale units for people
  (object size ``small|medium|large``, base level ``B``, 0 unless named), the pose / mask heads on
  the person units and the index only, the rate of the
  whole stream; ``object-features``: those heads on uncoded object-scale features (their ceiling);
* pixel codecs (JPEG / WebP / AVIF through Pillow), the teachers run on the decoded pixels
  ("remote inference"); variant ``input`` codes the 300x300 picture the detector sees (the
  strongest pixel baseline for detection), ``full`` the original image.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import torch

from ssb.errors import MalformedFieldError
from ssb.recipes.evaluation.references import DET_SCORE, MAX_OBJECTS, Reference

__all__ = ["Heads", "original", "features", "ssb_levels", "pixel_codec", "DEFAULT_PIXEL_SWEEPS", "object_heads",
           "ssb_objects", "object_features"]

#: pose / mask remote-inference sweeps (the low end matters: SSB sits near 0.06-0.25 bpp)
DEFAULT_PIXEL_SWEEPS = {"jpeg": (5, 10, 20, 30, 50, 70, 90), "webp": (1, 5, 15, 30, 50, 70, 90),
                        "avif": (1, 10, 25, 40, 55, 70, 90)}


class Heads:
    """The candidate heads on decoded features: detection at ``DET_SCORE``, pose and masks on its boxes."""

    def __init__(self, tasks, *, head_weights: dict | None = None):
        from ssb.tasks import create

        self.tasks = tuple(tasks)
        self.detection = create("detection", score_thresh=DET_SCORE)
        self.roi = {t: create(t, score_thresh=DET_SCORE, max_objects=MAX_OBJECTS,
                              weights=(head_weights or {}).get(t)) for t in self.tasks if t != "detection"}

    @torch.no_grad()
    def __call__(self, split: torch.Tensor, size, people: dict | None = None) -> dict:
        """``{task: prediction}``; ``people``: the teacher's person boxes for the pose / mask heads."""
        det = self.detection(split, image_sizes=[size])
        out = {"detection": det[0]} if "detection" in self.tasks else {}
        for task, head in self.roi.items():
            out[task] = head(split, image_sizes=[size], detections=[people] if people is not None else det)[0]
        return out


def _people(ref: Reference, i: int) -> dict | None:
    """The teacher's person boxes of image ``i`` as given detections (``None`` without a person reference)."""
    gt = ref.inputs[i].get("pose") or ref.inputs[i].get("segmentation")
    if gt is None:
        return None
    n = len(gt["boxes"])
    return {"boxes": torch.as_tensor(gt["boxes"]), "labels": torch.ones(n, dtype=torch.int64), "scores": torch.ones(n)}


def _bytes(ref: Reference, sizes: list[int], overhead: int) -> dict[str, int]:
    """Bytes per task: its images' fragments plus its share of the stream-level overhead."""
    total = len(sizes)
    out = {}
    for task in ref.tasks:
        idx = ref.task_images(task)
        out[task] = int(sum(sizes[i] for i in idx) + overhead * len(idx) / max(total, 1))
    return out


@torch.no_grad()
def original(ref: Reference) -> Iterator[tuple]:
    """The teacher on the original pixels (24 bits a pixel)."""
    from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front, preprocess

    if "detection" not in ref.tasks:
        return
    front, heads = SSDMobileNetV2Front(pretrained=True), Heads(("detection",))
    outs = [heads(front(preprocess([s.image])), s.image.shape[:2]) for s in ref.samples]
    yield "original", 0, ("detection",), {"detection": 3 * ref.pixels("detection")}, outs


@torch.no_grad()
def features(ref: Reference, heads: Heads) -> Iterator[tuple]:
    """The pose / mask heads on the teacher's uncoded split features (their ceiling)."""
    tasks = tuple(t for t in ref.tasks if t != "detection")
    if not tasks or ref.targets is None:
        return
    by_name = {n: i for i, n in enumerate(ref.targets.names)}
    outs = []
    for s in ref.samples:
        j = by_name.get(s.name)
        outs.append({} if j is None else heads(ref.targets.split[j: j + 1].float(), s.image.shape[:2]))
    yield "features", 0, tasks, {t: 3 * ref.pixels(t) for t in tasks}, outs


@torch.no_grad()
def ssb_levels(ref: Reference, models, heads: Heads, levels) -> Iterator[tuple]:
    """Every sample in one stream per level; predictions from the decoded features."""
    import ssb
    from ssb.codec import registry
    from ssb.media import Frame
    from ssb.pipeline import encode

    names = [s.name for s in ref.samples]
    for level in levels:
        buf = io.BytesIO()
        encode((Frame(i, s.image) for i, s in enumerate(ref.samples)), buf, codec="ssb.image", quality=level,
               models=models, index_objects=False)
        data = buf.getvalue()
        outs, given = [None] * len(names), [None] * len(names)
        with ssb.open(data) as bs:
            sizes = [f.length for f in bs.frames]
            overhead = bs.size - sum(sizes)
            dec = registry.decoder(bs, models.zoo)
            for step in dec.plan():
                df = dec.decode(step)
                i, split = df.frame_index, df.features["split"]
                outs[i] = heads(split, df.image_size)
                people = _people(ref, i)
                given[i] = heads(split, df.image_size, people) if people is not None else {}
        yield "ssb", level, ref.tasks, _bytes(ref, sizes, overhead), outs
        roi = tuple(t for t in ref.tasks if t != "detection")
        if roi:
            yield "ssb-teacher-boxes", level, roi, _bytes(ref, sizes, overhead), given


def object_heads(tasks, head_weights: dict | None = None) -> dict:
    """The pose / mask heads on object-scale units (``object_weights`` from ``head_weights["<task>_object"]``)."""
    from ssb.tasks import create

    out = {}
    for t in tasks:
        if t == "detection":
            continue
        head = create(t, score_thresh=DET_SCORE, max_objects=MAX_OBJECTS,
                      object_weights=(head_weights or {}).get(f"{t}_object"))
        head.adapt({"objects"})
        if not head.on_objects:
            raise MalformedFieldError(f"no {t} weights for object-scale units (train them: python -m "
                                      "ssb.recipes.train_objects)", field="head_weights")
        out[t] = head
    return out


@torch.no_grad()
def ssb_objects(ref: Reference, models, heads: dict, base_levels, object_levels, sizes=("large",),
                reads: dict | None = None) -> Iterator[tuple]:
    """Streams with object-scale units (people), one per (object size, base level, object level),
    method ``ssb-objects-<size>[-b<base>]``: the pose / mask heads on the person units and the
    index only.  ``bytes`` is the WHOLE stream (base + object units + container), so the rate is
    comparable with coding the frames; the bytes the query read go to ``reads``
    ({(method, object level): (read, stream bytes)})."""
    import ssb
    from ssb.codec import registry
    from ssb.media import Frame
    from ssb.pipeline import encode

    tasks = tuple(heads)
    if not tasks:
        return
    for size, base, level in ((z, b, q) for z in sizes for b in base_levels for q in object_levels):
            method = f"ssb-objects-{size}" + (f"-b{base}" if base else "")
            buf = io.BytesIO()
            encode((Frame(i, s.image) for i, s in enumerate(ref.samples)), buf, codec="ssb.image", quality=base,
                   models=models, object_scale=[1], object_quality=level, object_size=size)
            data = buf.getvalue()
            outs = [{} for _ in ref.samples]
            with ssb.open(data) as bs:
                frame_bytes = [f.length for f in bs.frames]
                overhead = bs.size - sum(frame_bytes)
                dec = registry.decoder(bs, models.zoo)
                for step in dec.plan(classes={1}, need={"objects"}):
                    df = dec.decode(step)
                    outs[df.frame_index] = {t: h(df.features, image_sizes=[df.image_size])[0]
                                            for t, h in heads.items()}
                if reads is not None:
                    reads[(method, level)] = (bs.bytes_read, bs.size)
            yield method, level, tasks, _bytes(ref, frame_bytes, overhead), outs



@torch.no_grad()
def object_features(ref: Reference, models, heads: dict) -> Iterator[tuple]:
    """The object-scale heads on UNCODED object-scale features of the teacher's people (their ceiling)."""
    from ssb.codec.object_scale import DEFAULT_LAYOUT, ObjectView, object_window, window_features

    tasks = tuple(heads)
    if not tasks:
        return
    front = models.zoo.front()
    outs = []
    for i, s in enumerate(ref.samples):
        people = _people(ref, i)
        if people is None:
            outs.append({})
            continue
        views = []
        for box in people["boxes"].tolist():
            win = object_window(box, DEFAULT_LAYOUT)
            views.append(ObjectView(None, 1, 1.0, tuple(box), win, window_features(front, s.image, win)))
        outs.append({t: h({"objects": views}, image_sizes=[s.image.shape[:2]])[0] for t, h in heads.items()})
    yield "object-features", 0, tasks, {t: 3 * ref.pixels(t) for t in tasks}, outs


class _Teachers:
    """The teachers run on decoded pixels (remote inference), built once."""

    def __init__(self, tasks):
        from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front
        from ssb.recipes.teachers import ForegroundTeacher, MoveNetTeacher, PersonTeacher
        from ssb.resources import vtest_path

        self.front = SSDMobileNetV2Front(pretrained=True)
        self.heads = Heads(("detection",))
        self.people = PersonTeacher(score_thresh=DET_SCORE) if set(tasks) - {"detection"} else None
        self.pose = MoveNetTeacher() if "pose" in tasks else None
        self.fg = ForegroundTeacher().fit(vtest_path()) if "segmentation" in tasks else None

    @torch.no_grad()
    def __call__(self, image: np.ndarray, tasks, size=None) -> dict:
        """The teachers' predictions on ``image`` (decoded pixels), boxes in frame pixels of ``size``.

        ``size`` (h, w): the original frame's, when ``image`` is the coded detector input; the
        pose and mask teachers then run on ``image`` resized back to it.
        """
        from ssb.backbones.ssd_mobilenet_v2 import preprocess
        from ssb.recipes.teachers import instance_masks

        out = {}
        size = tuple(size or image.shape[:2])
        if "detection" in tasks:
            out.update(self.heads(self.front(preprocess([image])), size))
        if tuple(image.shape[:2]) != size and set(tasks) - {"detection"}:
            import cv2

            image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        if self.people is not None and set(tasks) - {"detection"}:
            p = self.people([image])[0]
            order = np.argsort(-p["scores"])[:MAX_OBJECTS]
            boxes, scores = p["boxes"][order], p["scores"][order]
            base = {"boxes": boxes, "labels": np.ones(len(boxes), dtype=np.int64), "scores": scores}
            if "pose" in tasks:
                kp = self.pose(image, boxes)
                out["pose"] = {**base, "keypoints": kp if len(boxes) else np.zeros((0, 17, 3), np.float32)}
            if "segmentation" in tasks:
                out["segmentation"] = {**base, "masks": instance_masks(self.fg(image), boxes)}
        return out


def pixel_codec(ref: Reference, teachers: _Teachers, codec: str, variant: str, quality: int, tasks
                ) -> tuple:
    """One pixel-codec point: every image coded at ``quality``, the teachers on the decoded pixels."""
    import cv2

    from ssb.adapters import pixel_codecs
    from ssb.backbones.ssd_mobilenet_v2 import INPUT_SIZE

    sizes, outs = [], []
    for i, s in enumerate(ref.samples):
        wanted = tuple(t for t in tasks if ref.inputs[i][t] is not None)
        img = s.image
        if variant == "input":
            img = cv2.resize(img, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
        data = pixel_codecs.encode(codec, img, quality)
        sizes.append(len(data))
        dec = pixel_codecs.decode(codec, data)
        outs.append(teachers(dec, wanted, s.image.shape[:2]) if wanted else {})
    return f"{codec}-{variant}", quality, tuple(tasks), _bytes(ref, sizes, 0), outs
