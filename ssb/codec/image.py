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
from ssb.codec.payload import located, model_context, pack_features, parse_features
from ssb.errors import MalformedFieldError, ModelMismatchError
from ssb.format import SequenceHeader, UnitType

__all__ = ["ImageEncoder", "ImageDecoder", "ObjectFn", "stream_header", "codec_of", "size_metadata", "CODEC_ID",
           "front_metadata", "check_front"]

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

    def __init__(self, models, *, quality: int = 3, detector: ObjectFn | None = None, min_score: float = 0.0):
        super().__init__(models)
        self.codec = models.codec()
        self.codec._check_level(quality)
        self.level = int(quality)
        self.detector = detector
        self.min_score = float(min_score)

    def header(self, first) -> SequenceHeader:
        h, w = first.image.shape[:2]
        return stream_header(self.codec_id, self.codec, w, h, first.fps)

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
        self.describe_objects(writer, split, (h, w))
        writer.end_frame()
        self.stats.frames += 1
        self.stats.pixels += h * w

    def describe_objects(self, writer, split, size, track_ids=None) -> list[dict]:
        """Describe the detector's objects in the open frame's index (no units); returns them."""
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
            writer.add_object(object_id=oid, class_id=int(label), bbox=tuple(box), score=min(max(score, 0.0), 1.0))
            out.append({"object_id": oid, "class_id": int(label), "bbox": box, "score": score})
        self.stats.objects += len(out)
        return out


def size_metadata(writer, h: int, w: int) -> dict | None:
    """Frame metadata holding the frame size only when it differs from the sequence's (say it once)."""
    hdr = writer.header
    return None if (hdr.height, hdr.width) == (h, w) else {"height": h, "width": w}


class ImageDecoder(StreamDecoder):
    """Split features of the selected frames, reading only their ``BASE`` units."""

    codec_id = CODEC_ID
    feature_types = (int(UnitType.BASE),)

    def __init__(self, bs, models):
        super().__init__(bs, models)
        self.codec = codec_of(bs, models)
        self.model_id = self.codec.identity.id
        self.grid = _grid(self.codec)

    @property
    def feature_info(self):
        return feature_info_of(self.codec)

    @torch.no_grad()
    def decode(self, step: Step) -> DecodedFrame:
        fr = step.frame
        size = frame_size(self.bs, fr)
        ctx = model_context(self.codec, self.grid, size)
        bases = [u for u in step.units if u.type == UnitType.BASE and not u.attributed]
        if len(bases) != 1:
            raise MalformedFieldError(f"frame {fr.frame_index} holds {len(bases)} BASE units, expected 1",
                                      offset=fr.offset, field=f"frame[{fr.frame_index}]")
        u = bases[0]
        item, strings = parse_features(u.payload(), ctx=ctx, offset=u.offset, field=f"unit[{u.number}]")
        with located(strings):
            split = self.codec.decompress(item)
        return DecodedFrame(fr.frame_index, size, {"split": split}, item.level, u.length, fr.pts, True,
                            objects=index_objects(fr))


def _grid(codec) -> tuple[int, int]:
    """The split grid of a codec's front (the size every whole-frame payload must declare)."""
    from ssb.backbones.features import front_card

    return front_card(codec.front_name).grid
