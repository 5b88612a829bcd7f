"""High-level API: encode media to SSB, analyse SSB with task heads (no pixel reconstruction).

>>> stats = ssb.pipeline.encode("frame.png", "frame.ssb", quality=3)          # doctest: +SKIP
>>> result = ssb.pipeline.analyze("frame.ssb", tasks=["detection"])            # doctest: +SKIP
>>> result.frames[0].predictions["detection"]["boxes"]                         # doctest: +SKIP
>>> for fr in ssb.pipeline.iter_analyze("clip.ssb", tasks=["detection"]):     # doctest: +SKIP
...     ...                                                                    # one frame at a time

Both directions stream: frames are read, coded and written one at a time, and results come out
frame by frame.  The codec of a stream is found from its header (:mod:`ssb.codec.registry`);
features are decoded once per frame and shared by every requested head.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssb.errors import MalformedFieldError

__all__ = ["Models", "encode", "analyze", "iter_analyze", "iter_pixels", "FrameResult", "AnalysisResult",
           "default_codec", "RUNTIMES"]

#: where the float networks of the decoder side run
RUNTIMES = ("torch", "onnxruntime")


class Models:
    """The models of a session: the codec zoo's (:class:`~ssb.codec.models.ModelSet`) and task heads.

    ``weights``: codec weights (a zoo id or a checkpoint path) instead of the default;
    ``overrides``: other kinds' (``{"pixels": PATH}``); ``zoo``: a ready model set (tests, plug-ins);
    ``heads``: heads to use by task name (created from the registry otherwise).
    """

    def __init__(self, weights=None, *, overrides: dict | None = None, zoo=None, heads: dict | None = None):
        from ssb.codec.models import ModelSet

        self.zoo = zoo if zoo is not None else ModelSet({"codec": weights, **(overrides or {})})
        self.heads: dict[str, object] = dict(heads or {})

    def head(self, name: str, **options):
        """Head ``name``, created once (later options are ignored once it exists)."""
        if name not in self.heads:
            from ssb.tasks import create

            self.heads[name] = create(name, **options)
        return self.heads[name]

    def detector(self):
        """The encoder-side detector for the index: split features -> boxes in frame pixels (the
        detection head is built on the first call, so an encoder that never calls it needs no teacher)."""
        return lambda split, sizes: self.head("detection")(split, image_sizes=sizes)


def _no_grad(fn):
    """Run ``fn`` under ``torch.no_grad()`` without touching the caller's autograd state; a generator
    function runs each step of the generator under it (grad mode restored at every ``yield``)."""
    import functools
    import inspect

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def steps(*args, **kwargs):
            import torch

            gen = fn(*args, **kwargs)
            try:
                while True:
                    with torch.no_grad():
                        try:
                            item = next(gen)
                        except StopIteration:
                            return
                    yield item
            finally:
                gen.close()

        return steps

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper


def default_codec(source, *, groups=None) -> str:
    """The codec a source is coded with by default: grouped when asked, video for a video."""
    if groups is not None:
        return "ssb.grouped"
    if isinstance(source, (str, Path)):
        from ssb.codec import registry
        from ssb.media import probe

        if probe(source).kind == "video" and "ssb.video" in registry.list_codecs():
            return "ssb.video"
    return "ssb.image"


def _progress(iterable, *, total=None, desc: str = "", enabled: bool = False):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="frame", leave=False)


@_no_grad
def encode(source, dest, *, codec: str | None = None, quality: int = 3, frames: range | None = None,
           index_objects: bool = True, weights=None, models: Models | None = None, groups=None,
           progress: bool = False, **options):
    """Encode an image, a folder of images, a video (or an iterable of frames) into an SSB file.

    ``codec``: a registered codec id (default: :func:`default_codec`); ``groups`` (``"auto"`` or a
    label-image path) selects the grouped codec; ``options`` go to the codec's encoder (e.g.
    ``background_quality`` for grouped streams, ``gop`` for video).  Returns the encoder's
    :class:`~ssb.codec.base.EncodeStats` (``stream_bytes`` counts the whole file).
    """
    import ssb.media as media
    from ssb.codec import registry
    from ssb.format import Writer

    name = codec or default_codec(source, groups=groups)
    spec = registry.resolve(name)
    models = models or Models(weights)
    if groups is not None:
        if groups != "auto":
            from ssb.codec.group_masks import read_label_image

            options["labels"] = read_label_image(groups)
    detector = models.detector() if (index_objects or name == "ssb.grouped") else None
    enc = spec.encoder(models.zoo, quality=quality, detector=detector, **options)
    warmup = getattr(enc, "warmup", 0)
    info = media.probe(source) if isinstance(source, (str, Path)) else None
    total = len(frames) if frames is not None else (info.count if info else None)
    it = media.frames(source, frames=frames, warmup=warmup)
    first = None
    for frame in it:
        if frame.info.get("warmup"):
            enc.observe(frame)
            continue
        first = frame
        break
    if first is None:
        raise MalformedFieldError("no frames to encode", field="input")
    with Writer(dest, enc.header(first)) as writer:
        enc.encode(writer, first)
        for frame in _progress(it, total=None if total is None else total - 1, desc="encode", enabled=progress):
            enc.encode(writer, frame)
    if isinstance(dest, (str, Path)):
        enc.stats.stream_bytes = Path(dest).stat().st_size
    return enc.stats


@dataclass
class FrameResult:
    """One analysed frame: each task's predictions, and the objects the stream's index describes
    (with their track ids in video streams)."""

    frame_index: int
    image_size: tuple[int, int]
    predictions: dict[str, dict]
    pts: int | None = None
    objects: list = field(default_factory=list)


@dataclass
class AnalysisResult:
    frames: list[FrameResult]
    bytes_read: int
    file_size: int
    seconds: float
    decode_seconds: float
    head_seconds: float


@dataclass
class _Counters:
    bytes_read: int = 0
    file_size: int = 0
    decode_seconds: float = 0.0
    head_seconds: float = 0.0
    frames: int = 0
    extra: dict = field(default_factory=dict)


def _with_tracks(pred: dict, objects: list, min_iou: float = 0.5) -> dict:
    """``pred`` with ``track_ids``: each box matched (greedily, best score first, same class, IoU >=
    ``min_iou``) to an object of the index that carries a track id; -1 when none matches."""
    import torch

    from ssb.codec.tracking import iou_matrix

    tracked = [o for o in objects if o.object_id is not None and o.bbox is not None]
    n = len(pred["boxes"])
    ids = np.full(n, -1, dtype=np.int64)
    if n and tracked:
        iou = iou_matrix(np.asarray(pred["boxes"], dtype=np.float64), np.array([o.bbox for o in tracked]))
        same = np.asarray(pred["labels"]).reshape(-1, 1) == np.array([o.class_id for o in tracked]).reshape(1, -1)
        iou = np.where(same, iou, 0.0)
        taken: set[int] = set()
        for i in np.argsort(-np.asarray(pred["scores"], dtype=np.float64)):
            j = int(np.argmax(np.where([k in taken for k in range(len(tracked))], -1.0, iou[i])))
            if iou[i, j] >= min_iou and j not in taken:
                ids[i] = tracked[j].object_id
                taken.add(j)
    return {**pred, "track_ids": torch.from_numpy(ids)}


def _keep(pred: dict, key: str, keep: set[int]) -> dict:
    """``pred`` with only the instances whose ``pred[key]`` (labels, track_ids) is in ``keep``."""
    if key not in pred:
        return pred
    m = np.isin(np.asarray(pred[key]), list(keep))
    return {k: (v[m] if hasattr(v, "shape") and len(v) == len(m) else v) for k, v in pred.items()}


@_no_grad
def iter_analyze(path, *, tasks: Sequence[str] = ("detection",), frames: Iterable[int] | None = None,
                 classes=None, objects: Iterable[int] | None = None, weights=None, models: Models | None = None,
                 head_options: dict | None = None, progress: bool = False, runtime: str = "torch",
                 providers: Sequence[str] | None = None, counters: _Counters | None = None) -> Iterator[FrameResult]:
    """Run task heads on the decoded features of an SSB stream, yielding one result per frame.

    ``classes`` (ids or names of the stream's label set) keeps only predictions of those classes
    and, on streams that code objects apart (grouped), reads only their units; ``objects`` (ids,
    track ids in video) likewise (a head whose ``labels`` are not classes names the key it filters
    by, ``class_key``): in video streams the predictions matched to other tracks (or to
    none) are dropped, and :attr:`FrameResult.objects` lists only the requested ones.  Heads and their needs are checked against the stream before
    anything is decoded (:func:`ssb.tasks.plan.plan_heads`).  ``runtime="onnxruntime"`` runs the
    float networks (feature synthesis, heads) in ONNX Runtime on ``providers`` (CUDA first when
    available); entropy decoding stays exact in PyTorch/numpy (:mod:`ssb.adapters.onnx`).
    """
    import ssb
    from ssb.codec import registry
    from ssb.tasks.plan import needs_of, plan_heads

    c = counters if counters is not None else _Counters()
    models = models or Models(weights)
    if runtime not in RUNTIMES:
        raise MalformedFieldError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}", field="runtime")
    if runtime == "onnxruntime":
        from ssb.adapters.onnx import OrtRuntime

        models = OrtRuntime(providers=providers).wrap_models(models)
    with ssb.open(path) as bs:
        c.file_size = bs.size
        dec = registry.decoder(bs, models.zoo)
        plan = plan_heads(tasks, options=head_options, heads=models.heads, feature_info=dec.feature_info,
                          provides=dec.provides, model_id=dec.model_id)
        for p in plan:
            p.head = models.heads.setdefault(p.name, p.head)  # (a runtime may store its own version)
            if callable(getattr(p.head, "reset", None)):
                p.head.reset()  # a stateful head (action windows) starts every stream afresh
        need = frozenset().union(*(needs_of(p.head) for p in plan))
        keep = None
        if classes is not None:
            from ssb.format.labels import class_id, label_names

            names = label_names(bs.header.metadata)
            keep = {class_id(x, names) for x in ([classes] if isinstance(classes, (str, int)) else classes)}
        tracks = (bs.header.metadata or {}).get("object_ids") == "tracks"
        ids = None if objects is None else {int(o) for o in objects}
        steps = dec.plan(frames=frames, classes=keep, objects=objects, need=need)
        for step in _progress(steps, desc="analyze", enabled=progress):
            t1 = time.perf_counter()
            df = dec.decode(step)
            c.decode_seconds += time.perf_counter() - t1
            if not step.output:
                continue
            t1 = time.perf_counter()
            preds: dict[str, dict] = {}
            for p in plan:
                kwargs = {kw: [preds[up]] for up, kw in p.inputs.items()}
                if "motion" in needs_of(p.head):
                    kwargs["frame"] = df
                out = p.head(df.features, image_sizes=[df.image_size], **kwargs)[0]
                if tracks and "boxes" in out and "labels" in out and "track_ids" not in out:
                    out = _with_tracks(out, df.objects)
                out = _keep(out, getattr(p.head, "class_key", "labels"), keep) if keep is not None else out
                preds[p.name] = _keep(out, "track_ids", ids) if ids is not None else out
            c.head_seconds += time.perf_counter() - t1
            c.frames += 1
            c.bytes_read = bs.bytes_read
            shown = df.objects if ids is None else [o for o in df.objects if o.object_id in ids]
            yield FrameResult(df.frame_index, df.image_size, {p.name: preds[p.name] for p in plan if p.output},
                              df.pts, shown)
        c.bytes_read = bs.bytes_read


def analyze(path, **kwargs) -> AnalysisResult:
    """:func:`iter_analyze`, collected: every frame's results and what the analysis cost."""
    t0 = time.perf_counter()
    c = _Counters()
    out = list(iter_analyze(path, counters=c, **kwargs))
    return AnalysisResult(out, c.bytes_read, c.file_size, time.perf_counter() - t0, c.decode_seconds, c.head_seconds)


@_no_grad
def iter_pixels(path, *, frames: Iterable[int] | None = None, classes=None, models: Models | None = None,
                weights=None, pixel_weights=None, progress: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """Pixels for people: ``(frame index, uint8 image)`` per frame, from the decoded features through
    the small pixel-synthesis network (:mod:`ssb.codec.pixels`; preview quality, never on the analysis
    path).  Predicted frames decode their dependency chain first.  A grouped stream is rendered from
    its composed groups; ``classes`` (grouped streams only) reads only those classes' units and gives
    RGBA images, opaque inside their masks."""
    import ssb
    from ssb.codec import registry
    from ssb.codec.groups import compose, group_alpha
    from ssb.codec.pixels import render
    from ssb.codec.registry import stream_codec

    models = models or Models(weights, overrides={"pixels": pixel_weights} if pixel_weights else None)
    with ssb.open(path) as bs:
        grouped = stream_codec(bs) == "ssb.grouped"
        if classes is not None:
            if not grouped:
                raise MalformedFieldError("selective reconstruction by class needs a grouped stream (group units); "
                                          "decode without classes for the whole frame", field="classes")
            from ssb.format.labels import class_id, label_names

            names = label_names(bs.header.metadata)
            classes = [class_id(c, names) for c in ([classes] if isinstance(classes, (str, int)) else classes)]
        dec = registry.decoder(bs, models.zoo)
        synth = models.zoo.get("pixels", behind=dec.model_id)
        steps = dec.plan(frames=frames, classes=classes) if grouped else dec.plan(frames=frames)
        for step in _progress(steps, desc="decode", enabled=progress):
            if grouped:
                fr = dec.parts(step)
                img = render(synth, compose(fr, layout=dec.layout), fr.image_size)
                if classes is not None:
                    img = np.dstack([img, group_alpha(fr)])
            else:
                df = dec.decode(step)
                if not step.output:
                    continue
                img = render(synth, df.features["split"], df.image_size)
            yield step.frame.frame_index, img
