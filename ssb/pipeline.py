"""High-level API: encode media to SSB, analyse SSB with task heads (no pixel reconstruction).

>>> stats = ssb.pipeline.encode("frame.png", "frame.ssb", quality=3)          # doctest: +SKIP
>>> result = ssb.pipeline.analyze("frame.ssb", tasks=["detection"])            # doctest: +SKIP
>>> result.frames[0].predictions["detection"]["boxes"]                         # doctest: +SKIP

Features are decoded once per frame and shared by every requested head.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssb.errors import MalformedFieldError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg"}


@dataclass
class Models:
    codec: object
    front: object = None
    heads: dict = field(default_factory=dict)
    #: learned composition of grouped streams (ssb.codec.fusion); "auto": the shipped weights when
    #: they match the codec, else plain composition; None: plain composition
    fusion: object = "auto"

    def group_fusion(self):
        """The fusion module to use on grouped streams, or ``None`` (resolves ``"auto"`` once)."""
        if isinstance(self.fusion, str) and self.fusion == "auto":
            import warnings

            from ssb.codec.fusion import load_group_fusion
            from ssb.errors import ModelMismatchError

            try:
                self.fusion = load_group_fusion(self.codec, missing_ok=True)
            except ModelMismatchError as exc:
                warnings.warn(f"grouped streams composed without the learned fusion: {exc}", stacklevel=2)
                self.fusion = None
        return self.fusion


def load_models(weights: str | Path | None = None, *, front: bool = False, tasks: Sequence[str] = ()) -> Models:
    """The reference codec (shipped weights unless ``weights``), optionally the teacher front and heads."""
    from ssb.codec.zoo import load_codec
    from ssb.tasks import create

    codec = load_codec(weights)
    fr = None
    if front:
        from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front

        fr = SSDMobileNetV2Front(pretrained=True)
    return Models(codec, fr, {t: create(t) for t in tasks})


def read_images(source: str | Path, *, frames: range | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, RGB uint8)`` from an image file, a folder of images, or a video file."""
    from ssb._optional import require
    from ssb.resources import read_video_frames

    p = Path(source)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise MalformedFieldError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {p}", field="input")
        for i, f in enumerate(files):
            if frames is None or i in frames:
                yield i, _read_image(f)
        return
    if not p.exists():
        raise FileNotFoundError(2, "No such file or directory", str(p))
    if p.suffix.lower() in VIDEO_SUFFIXES:
        idx = None if frames is None else list(frames)
        got = read_video_frames(p, idx)
        if not got:
            raise MalformedFieldError(f"no frames read from video {p} (frames {frames})", field="input")
        yield from got
        return
    require("PIL", "reading images")
    yield 0, _read_image(p)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.width * im.height > 64_000_000:
                raise MalformedFieldError(f"{path} declares {im.width}x{im.height} pixels, over the 64 MP limit",
                                          field="input.size")
            return np.asarray(im.convert("RGB"))
    except UnidentifiedImageError as exc:
        raise MalformedFieldError(f"{path} is not an image Pillow can read", field="input") from exc


def _no_grad(fn):
    """Run ``fn`` under ``torch.no_grad()`` without touching the caller's autograd state."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper


@_no_grad
def encode(source, dest, *, quality: int = 3, frames: range | None = None, index_objects: bool = True,
           weights=None, fps: float = 0.0, models: Models | None = None, groups=None,
           background_quality: int | None = None):
    """Encode an image, a folder of images or a video into an SSB file. Returns :class:`EncodeStats`.

    ``groups`` (``"auto"`` or a label-image path) writes a grouped stream instead: see
    :func:`encode_grouped`, which then returns a :class:`~ssb.codec.groups.GroupEncodeStats`
    (``background_quality`` applies to grouped streams only).
    """
    if groups is not None:
        return encode_grouped(source, dest, groups=groups, quality=quality, frames=frames, weights=weights,
                              fps=fps, models=models, background_quality=background_quality)
    if background_quality is not None:
        raise MalformedFieldError("background_quality needs a grouped stream (groups=...)", field="background_quality")
    from ssb.codec.image import ImageEncoder
    from ssb.tasks.coco_names import COCO_CATEGORIES

    models = models or load_models(weights, front=True, tasks=("detection",) if index_objects else ())
    if models.front is None:
        from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front

        models.front = SSDMobileNetV2Front(pretrained=True)
    det = models.heads.get("detection") if index_objects else None
    objects = (lambda split, sizes: det(split, image_sizes=sizes)) if det is not None else None
    enc = ImageEncoder(models.codec, models.front, objects=objects, class_names=dict(COCO_CATEGORIES))
    items = source if not isinstance(source, (str, Path)) else read_images(source, frames=frames)
    return enc.encode(items, dest, level=quality, fps=fps)


# -- grouped streams (irregular pixel groups, ssb.codec.groups) ---------------------------------------
#: Frames of background-subtraction history fed before the first encoded frame of a video.
FOREGROUND_WARMUP = 100


def _video_with_foreground(path: Path, frames: range | None, warmup: int):
    """``(index, RGB, foreground mask)`` of a video's frames, MOG2 warmed up on the frames before them."""
    import cv2

    from ssb.codec.group_masks import ForegroundModel

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise MalformedFieldError(f"cannot open video {path}", field="input")
    first = 0 if frames is None else frames.start
    model, i = ForegroundModel(), 0
    try:
        while frames is None or i < frames.stop:
            ok, bgr = cap.read()
            if not ok:
                break
            if i >= first - warmup:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                fg = model.apply(rgb)
                if frames is None or i in frames:
                    yield i, rgb, fg
            i += 1
    finally:
        cap.release()


def grouped_inputs(source, *, groups="auto", frames: range | None = None, warmup: int = FOREGROUND_WARMUP):
    """:class:`~ssb.codec.groups.GroupedInput` items for :func:`encode_grouped`.

    ``groups="auto"``: groups from the encoder-side detector, masked by MOG2 foreground for a
    video (static camera, ``warmup`` frames of history), by the boxes themselves for images.
    Otherwise ``groups`` is a label-image path (0 = background, k = group k) used for every frame.
    """
    from ssb.codec.group_masks import read_label_image
    from ssb.codec.groups import GroupedInput

    labels = None if groups == "auto" else read_label_image(groups)
    p = Path(source)
    if labels is None and p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
        got = False
        for index, rgb, fg in _video_with_foreground(p, frames, warmup):
            got = True
            yield GroupedInput(index, rgb, foreground=fg)
        if not got:
            raise MalformedFieldError(f"no frames read from video {p} (frames {frames})", field="input")
        return
    for index, rgb in read_images(source, frames=frames):
        yield GroupedInput(index, rgb, labels=labels)


@_no_grad
def encode_grouped(source, dest, *, groups="auto", quality: int = 3, frames: range | None = None, weights=None,
                   fps: float = 0.0, models: Models | None = None, min_score: float = 0.5,
                   background_quality: int | None = None):
    """Encode as a grouped stream: background + one independently decodable group per object.

    ``quality`` codes the groups, ``background_quality`` (default: ``quality``) the background.
    Returns :class:`~ssb.codec.groups.GroupEncodeStats`.  See :func:`grouped_inputs` for ``groups``.
    """
    from ssb.codec.groups import GroupEncoder
    from ssb.tasks.coco_names import COCO_CATEGORIES

    models = models or load_models(weights, front=True, tasks=("detection",))
    if models.front is None:
        from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front

        models.front = SSDMobileNetV2Front(pretrained=True)
    det = models.heads.get("detection")
    if det is None:
        from ssb.tasks import create

        det = models.heads["detection"] = create("detection")
    enc = GroupEncoder(models.codec, models.front, objects=lambda split, sizes: det(split, image_sizes=sizes),
                       class_names=dict(COCO_CATEGORIES), min_score=min_score)
    items = source if not isinstance(source, (str, Path)) else grouped_inputs(source, groups=groups, frames=frames)
    if background_quality is not None:
        models.codec._check_level(background_quality)
    return enc.encode(items, dest, level=quality, fps=fps, background_level=background_quality)


@dataclass
class FrameResult:
    frame_index: int
    image_size: tuple[int, int]
    predictions: dict[str, dict]


@dataclass
class AnalysisResult:
    frames: list[FrameResult]
    bytes_read: int
    file_size: int
    seconds: float
    decode_seconds: float
    head_seconds: float


@_no_grad
def analyze(path, *, tasks: Sequence[str] = ("detection",), frames: Iterable[int] | None = None,
            classes: Iterable[int] | None = None, weights=None, models: Models | None = None,
            head_options: dict | None = None) -> AnalysisResult:
    """Run task heads on the decoded features of an SSB file; no pixel reconstruction.

    ``classes`` keeps only predictions of those COCO ids; on a grouped stream it also reads only
    those classes' group units (no background, no other group), see
    :func:`ssb.codec.groups.decode_grouped_features`.
    """
    import ssb
    from ssb.codec.groups import decode_grouped_features, is_grouped
    from ssb.codec.image import decode_features

    t0 = time.perf_counter()
    models = models or load_models(weights, tasks=tasks)
    for t in tasks:
        if t not in models.heads:
            from ssb.tasks import create

            models.heads[t] = create(t, **(head_options or {}).get(t, {}))
    for t in tasks:
        if hasattr(models.heads[t], "check_codec"):
            models.heads[t].check_codec(models.codec)  # heads trained behind other codec weights are refused
    # heads that consume detections run after the detection head (when it was asked for)
    order = sorted(tasks, key=lambda t: t != "detection")
    keep = None if classes is None else set(int(c) for c in classes)
    out, t_dec, t_head = [], 0.0, 0.0
    with ssb.open(path) as bs:
        if is_grouped(bs):
            it = decode_grouped_features(bs, models.codec, frames=frames, classes=keep, fusion=models.group_fusion())
        else:
            it = decode_features(bs, models.codec, frames=frames)
        while True:
            t1 = time.perf_counter()
            df = next(it, None)
            t_dec += time.perf_counter() - t1
            if df is None:
                break
            t1 = time.perf_counter()
            preds = {}
            for name in order:
                head = models.heads[name]
                kwargs = {}
                if "detection" in getattr(head, "consumes", ()) and "detection" in preds:
                    kwargs["detections"] = [preds["detection"]]  # detect once, share the boxes
                p = head(df.features, image_sizes=[df.image_size], **kwargs)[0]
                if keep is not None and "labels" in p:
                    m = np.isin(p["labels"].numpy(), list(keep))
                    p = {k: (v[m] if hasattr(v, "shape") and len(v) == len(m) else v) for k, v in p.items()}
                preds[name] = p
            t_head += time.perf_counter() - t1
            out.append(FrameResult(df.frame_index, df.image_size, {t: preds[t] for t in tasks}))
        read, size = bs.bytes_read, bs.size
    return AnalysisResult(out, read, size, time.perf_counter() - t0, t_dec, t_head)
