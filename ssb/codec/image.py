"""``ssb.image``: each frame coded alone as one BASE unit of the shared split features.

The encoder runs the teacher's front on the ORIGINAL pixels, codes the split features into one
``BASE`` unit per frame and, when given a detector, describes each object it saw in the index
(class, box, score: no unit), so ``ssb info`` can answer "how many people, where" from headers
alone.  Decoding reads only the ``BASE`` units of the frames asked for and returns split
features: no pixel is reconstructed on this path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ssb.codec.base import DecodedFrame, StreamDecoder, StreamEncoder, Step, frame_size, index_objects
from ssb.codec.object_scale import ObjectView, encode_view, layout_for, object_window
from ssb.codec.payload import located, model_context, pack_features, parse_features, parse_object_scale
from ssb.errors import MalformedFieldError, ModelMismatchError
from ssb.format import SequenceHeader, UnitType

__all__ = ["ImageEncoder", "ImageDecoder", "ObjectFn", "stream_header", "codec_of", "size_metadata", "CODEC_ID",
           "front_metadata", "check_front", "default_object_quality"]

CODEC_ID = "ssb.image"
#: Detector hook for the index: (split features [B,C,h,w], [(h, w)]) -> list of {boxes, labels, scores}.
ObjectFn = Callable[[torch.Tensor, list[tuple[int, int]]], list[dict]]


def stream_header(codec_id: str, codec, width: int, height: int, fps: float = 0.0, **extra) -> SequenceHeader:
    """The lean sequence header of a stream coded by ``codec``: the codec id, the model's id and
    the label set by registered names; nothing a reader can derive from those is repeated (a codec
    behind a user's front adds the front and its weights fingerprint: :func:`front_metadata`)."""
    from fractions import Fraction

    rate = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else Fraction(0)
    num, den = (rate.numerator, rate.denominator) if rate else (0, 1)
    meta = {"model": codec.identity.id, "labels": "coco", **front_metadata(codec), **extra}
    return SequenceHeader(width=width, height=height, fps_num=num, fps_den=den, codec=codec_id, metadata=meta)


def _front_of(codec):
    """The card of the front a codec codes the features of (``None`` if it names none)."""
    from ssb.backbones.features import FRONTS

    name = getattr(codec, "front_name", None)
    return FRONTS.get(name) if isinstance(name, str) else None


def front_metadata(codec) -> dict:
    """``{"front", "front_weights"}`` for a codec behind a user's front (weights fingerprinted); empty
    for the teacher's front, which the model id implies (streams it codes are unchanged)."""
    card = _front_of(codec)
    if card is None or card.weights is None:
        return {}
    return {"front": card.name, "front_weights": card.weights}


def _described_front(codec) -> str:
    card = _front_of(codec)
    return card.describe() if card is not None else str(getattr(codec, "front_name", None) or "no known front")


def check_front(meta: dict, codec) -> None:
    """Refuse a codec behind another front (name or weights) than the one a stream says it needs."""
    want = meta.get("front")
    if want is None:
        return
    want_w = meta.get("front_weights")
    card = _front_of(codec)
    if card is None or (card.name, card.weights) != (want, want_w):
        raise ModelMismatchError(
            f"the stream needs front {want} (weights {want_w}), but codec {codec.identity.id} "
            f"({getattr(codec, 'checkpoint_path', 'in memory')}) codes the features of front "
            f"{_described_front(codec)}: use the codec trained behind {want} with those weights",
            field="sequence_header.metadata.front")


def codec_of(bs, models):
    """The codec a stream was coded with, checked against the stream's model id, front and quality levels."""
    meta = bs.header.metadata or {}
    model_id = meta.get("model")
    if not isinstance(model_id, str):
        raise ModelMismatchError("the stream names no model (sequence metadata 'model')",
                                 field="sequence_header.metadata.model")
    try:
        codec = models.codec(model_id)
    except ModelMismatchError as exc:
        if meta.get("front") is None:
            raise
        try:
            given = models.codec()
            given = f"; the codec given ({given.identity.id}) codes front {_described_front(given)}"
        except Exception:  # noqa: BLE001 - only for the message
            given = ""
        raise ModelMismatchError(f"{exc.message}; the stream needs front {meta['front']} (weights "
                                 f"{meta.get('front_weights')}){given}: give the codec trained behind that front "
                                 "(--weights PATH)", offset=exc.offset, field=exc.field) from exc
    check_front(meta, codec)
    levels = meta.get("levels")  # 1.x streams repeat the level count
    if levels is not None and levels != codec.config.num_levels:
        raise ModelMismatchError(f"stream expects a {levels}-level model, the weights have "
                                 f"{codec.config.num_levels}", field="sequence_header.metadata.levels")
    return codec


def feature_info_of(codec):
    from ssb.backbones.features import front_card

    return front_card(codec.front_name).feature_info


class ImageEncoder(StreamEncoder):
    """Encode RGB frames as intra-coded SSB frames with the session's codec (``update()`` done)."""

    codec_id = CODEC_ID

    def __init__(self, models, *, quality: int = 3, detector: ObjectFn | None = None, min_score: float = 0.0,
                 object_scale=None, object_quality: int | None = None, object_min_score: float = 0.5,
                 object_size=None):
        super().__init__(models)
        self.codec = models.codec()
        self.codec._check_level(quality)
        self.level = int(quality)
        self.detector = detector
        self.min_score = float(min_score)
        #: classes (COCO ids) whose objects get an OBJECT_SCALE unit (None: none), at ``object_level``
        self.object_classes = None if object_scale is None else object_class_ids(object_scale)
        if self.object_classes is None and (object_quality is not None or object_size is not None):
            raise MalformedFieldError("object_quality / object_size need object_scale (the classes to code)",
                                      field="object_quality" if object_quality is not None else "object_size")
        self.object_level = default_object_quality(self.level) if object_quality is None else object_quality
        try:
            self.codec._check_level(self.object_level)
        except MalformedFieldError as exc:
            raise MalformedFieldError(exc.message, field="object_quality") from None
        self.object_min_score = float(object_min_score)
        if self.object_classes is not None and detector is None:
            raise MalformedFieldError("object-scale units need the encoder-side detector (index objects)",
                                      field="object_scale")
        #: where each object's window is and the size it is coded at (``object_size``: a name or (h, w))
        self.object_layout = layout_for("large" if object_size is None else object_size)

    def header(self, first) -> SequenceHeader:
        h, w = first.image.shape[:2]
        return stream_header(self.codec_id, self.codec, w, h, first.fps, **self.object_metadata())

    def object_metadata(self) -> dict:
        """``{"object_scale": [class ids]}`` when objects of those classes carry OBJECT_SCALE units."""
        return {} if self.object_classes is None else {"object_scale": list(self.object_classes)}

    def split(self, image) -> torch.Tensor:
        from ssb.backbones.ssd_mobilenet_v2 import preprocess

        front = self.models.front()
        prep = getattr(front, "preprocess", None) or preprocess  # a front with its own input (timm) says so
        return front(prep([image]))

    @torch.no_grad()
    def encode(self, writer, frame) -> None:
        split = self.split(frame.image)
        h, w = frame.image.shape[:2]
        writer.begin_frame(frame.index, pts=frame.pts, metadata=size_metadata(writer, h, w))
        payload = pack_features(self.codec.compress(split, self.level)[0])
        writer.add_unit(UnitType.BASE, payload)
        self.stats.add("BASE", len(payload))
        self.describe_objects(writer, split, (h, w), image=frame.image)
        writer.end_frame()
        self.stats.frames += 1
        self.stats.pixels += h * w

    def describe_objects(self, writer, split, size, track_ids=None, image=None) -> list[dict]:
        """Describe the detector's objects in the open frame's index; returns them.  An object of the
        :attr:`object_classes` scoring at least :attr:`object_min_score` is described by its
        OBJECT_SCALE unit (coded from ``image``, the original frame), every other by a descriptor."""
        if self.detector is None:
            return []
        try:
            det = self.detector(split, [size])[0]
        except (RuntimeError, MalformedFieldError) as exc:  # a detector of other features: say which, and what to do
            card = _front_of(self.codec)
            if card is None or card.weights is None:
                raise
            info = card.feature_info[0]
            raise ModelMismatchError(
                f"the encoder-side detector (objects for the index) cannot read the features of front "
                f"{card.describe()} ({info.channels} channels at stride {info.reduction}): encode without it "
                f"(ssb encode --no-index-objects; index_objects=False)", field="detector") from exc
        out = []
        for k, (box, label, score) in enumerate(zip(det["boxes"].tolist(), det["labels"].tolist(),
                                                    det["scores"].tolist())):
            if score < self.min_score:
                continue
            oid = k if track_ids is None else track_ids[k]
            attrs = {"object_id": oid, "class_id": int(label), "bbox": tuple(box), "score": min(max(score, 0.0), 1.0)}
            if image is not None and self.wants_view(int(label), score):
                payload = encode_view(self.codec, self.models.front(), image, object_window(box, self.object_layout),
                                      self.object_level, self.object_layout)
                writer.add_unit(UnitType.OBJECT_SCALE, payload, **attrs)
                self.stats.add("OBJECT_SCALE", len(payload))
            else:
                writer.add_object(**attrs)
            out.append({"object_id": oid, "class_id": int(label), "bbox": box, "score": score})
        self.stats.objects += len(out)
        return out


    def wants_view(self, class_id: int, score: float) -> bool:
        """Whether an object gets an OBJECT_SCALE unit."""
        return self.object_classes is not None and class_id in self.object_classes and score >= self.object_min_score


def object_class_ids(classes) -> tuple[int, ...]:
    """Sorted COCO ids from ids or names (one name, or a list), each checked against the label set."""
    from ssb.format.labels import COCO_CATEGORIES, class_id

    items = [classes] if isinstance(classes, (str, int)) else classes
    try:
        items = list(items)
    except TypeError:
        raise MalformedFieldError(f"object_scale must be class ids or names, got {classes!r}",
                                  field="object_scale") from None
    out = set()
    for c in items:
        if isinstance(c, (bool, float)):
            raise MalformedFieldError(f"object_scale: {c!r} is not a class id or name", field="object_scale")
        cid = class_id(c, COCO_CATEGORIES, field="object_scale")
        if cid not in COCO_CATEGORIES:
            raise MalformedFieldError(f"object_scale: no COCO class {cid}", field="object_scale")
        out.add(cid)
    if not out:
        raise MalformedFieldError("object_scale names no class", field="object_scale")
    return tuple(sorted(out))


def wants_objects(need) -> bool:
    """Whether a decode need asks for object-scale units (``"objects"`` or ``"objects:<class id>"``)."""
    return any(n == "objects" or n.startswith("objects:") for n in need)


def default_object_quality(quality: int) -> int:
    """The object layer's level when none is given: level 0 up to base level 3, then one per base level
    above it.  Measured (``ssb eval --task pose,segmentation --object-levels 0,1,2,3 --object-sizes
    small,medium,large``, 38 held-out frames): from object level 0 to 3, each level adds 13-18 % to a
    stream of medium or large units for about +1.1 to +1.4 pose AP and +0.4 mask AP, so the bits of
    a default stream go to the base (detection) first."""
    return max(0, int(quality) - 3)


def size_metadata(writer, h: int, w: int) -> dict | None:
    """Frame metadata holding the frame size only when it differs from the sequence's (say it once)."""
    hdr = writer.header
    return None if (hdr.height, hdr.width) == (h, w) else {"height": h, "width": w}


class ImageDecoder(StreamDecoder):
    """Split features of the selected frames, reading only their ``BASE`` units; on streams with
    object-scale units, ``need={"objects"}`` reads only the OBJECT_SCALE units of the objects asked
    for (``classes``, ``objects``) and gives them as ``features["objects"]``
    (:class:`~ssb.codec.object_scale.ObjectView` list)."""

    codec_id = CODEC_ID
    feature_types = (int(UnitType.BASE),)

    def __init__(self, bs, models):
        super().__init__(bs, models)
        self.codec = codec_of(bs, models)
        self.model_id = self.codec.identity.id
        self.grid = _grid(self.codec)
        scaled = (bs.header.metadata or {}).get("object_scale")
        #: classes whose objects carry OBJECT_SCALE units (empty: none)
        self.object_classes = tuple(int(c) for c in scaled) if isinstance(scaled, list) else ()
        #: "objects" (any object-scale unit) and "objects:<class id>" for each class that has them
        self.provides = frozenset({"features"} | ({"objects", *(f"objects:{c}" for c in self.object_classes)}
                                                  if self.object_classes else set()))

    def unit_types(self, need: frozenset[str]) -> tuple[int, ...]:
        return (((int(UnitType.BASE),) if "features" in need else ())
                + ((int(UnitType.OBJECT_SCALE),) if wants_objects(need) else ()))

    def plan(self, *, frames=None, classes=None, objects=None, need=("features",)):
        need = self.check_need(need)
        if not wants_objects(need):
            return super().plan(frames=frames, need=need)
        return self._object_plan(frames, classes, objects, need)

    def _object_plan(self, frames, classes, objects, need):
        wanted = None if "objects" in need else {int(n.split(":", 1)[1]) for n in need if n.startswith("objects:")}
        if classes is not None:
            wanted = set(classes) if wanted is None else wanted & set(classes)
        units = [] if wanted is not None and not wanted else list(self.bs.select(
            frames=frames, classes=wanted, objects=objects, types=[UnitType.OBJECT_SCALE], include_shared=False).units)
        if "features" in need:
            units += self.bs.select(frames=frames, types=[UnitType.BASE], include_shared=False).units
        return self.every_frame(units, frames, need)

    @property
    def feature_info(self):
        return feature_info_of(self.codec)

    @torch.no_grad()
    def decode(self, step: Step) -> DecodedFrame:
        fr = step.frame
        size = frame_size(self.bs, fr)
        ctx = model_context(self.codec, self.grid, size)
        features = {}
        nbytes, level = 0, None
        if wants_objects(step.need):
            features["objects"] = views = self.views(step, size)
            nbytes += sum(v.nbytes for v in views)
            level = views[0].level if views else None
            if "features" not in step.need:
                return DecodedFrame(fr.frame_index, size, features, level, nbytes, fr.pts, True,
                                    objects=index_objects(fr))
        bases = [u for u in step.units if u.type == UnitType.BASE and not u.attributed]
        if len(bases) != 1:
            raise MalformedFieldError(f"frame {fr.frame_index} holds {len(bases)} BASE units, expected 1",
                                      offset=fr.offset, field=f"frame[{fr.frame_index}]")
        u = bases[0]
        item, strings = parse_features(u.payload(), ctx=ctx, offset=u.offset, field=f"unit[{u.number}]")
        with located(strings):
            features["split"] = self.codec.decompress(item)
        return DecodedFrame(fr.frame_index, size, features, item.level, u.length + nbytes, fr.pts, True,
                            objects=index_objects(fr))

    def views(self, step: Step, size: tuple[int, int]) -> list:
        """The decoded OBJECT_SCALE units of a step, in stream order."""
        ctx = model_context(self.codec, self.grid, size)
        out = []
        for u in step.units:
            if u.type != UnitType.OBJECT_SCALE:
                continue
            where = f"unit[{u.number}]"
            window, item, strings = parse_object_scale(u.payload(), ctx=ctx, offset=u.offset, field=where)
            with located(strings):
                feats = self.codec.decompress(item)
            out.append(ObjectView(u.object_id, u.class_id, u.score, u.bbox, window, feats, item.level, u.length))
        return out


def _grid(codec) -> tuple[int, int]:
    """The split grid of a codec's front (the size every whole-frame payload must declare)."""
    from ssb.backbones.features import front_card

    return front_card(codec.front_name).grid
