"""Images in, SSB out, and back to split features: the codec over the container.

The encoder runs the teacher's front on the ORIGINAL pixels, codes the split features into one
``BASE`` unit per frame and, when given a detector, writes one ``OBJECT`` descriptor unit per
object it saw (class, box, score: in the index too), so ``ssb info`` can answer "how many
people, where" from headers alone.  Decoding reads only the ``BASE`` units of the frames asked
for and returns split features: no pixel is reconstructed on this path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ssb.codec.payload import pack_base, pack_object, unpack_base
from ssb.codec.zoo import MODEL_ID, teacher_fingerprint
from ssb.errors import MalformedFieldError, ModelMismatchError
from ssb.format import SequenceHeader, UnitType, Writer

#: Detector hook for the index: (split features [B,C,h,w], [(h, w)]) -> list of {boxes, labels, scores}.
ObjectFn = Callable[[torch.Tensor, list[tuple[int, int]]], list[dict]]


@dataclass
class EncodeStats:
    frames: int = 0
    base_bytes: int = 0
    object_units: int = 0
    pixels: int = 0

    @property
    def bpp(self) -> float:
        """Feature bits per ORIGINAL pixel (BASE payloads only)."""
        return 8.0 * self.base_bytes / max(self.pixels, 1)


class ImageEncoder:
    """Encode RGB uint8 images as SSB frames with a :class:`FeatureCodec` (``update()`` done)."""

    def __init__(self, codec, front, *, objects: ObjectFn | None = None, class_names: dict[int, str] | None = None):
        self.codec = codec
        self.front = front
        self.objects = objects
        self.class_names = class_names or {}

    def header(self, width: int, height: int, fps: float = 0.0) -> SequenceHeader:
        from ssb.backbones.ssd_mobilenet_v2 import INPUT_SIZE, SPLIT_CHANNELS, SPLIT_STRIDE

        num, den = (int(round(fps * 1000)), 1000) if fps else (0, 1)
        meta = {
            "model": MODEL_ID,
            "teacher": teacher_fingerprint(),
            "levels": self.codec.config.num_levels,
            "input_size": INPUT_SIZE,
            "split": {"channels": SPLIT_CHANNELS, "stride": SPLIT_STRIDE},
            "weights": getattr(self.codec, "weights_path", "").rsplit("/", 1)[-1],
        }
        if self.class_names:
            meta["classes"] = {str(k): v for k, v in sorted(self.class_names.items())}
        return SequenceHeader(width=width, height=height, fps_num=num, fps_den=den, codec=MODEL_ID, metadata=meta)

    @torch.no_grad()
    def encode(self, frames: Iterable[tuple[int, np.ndarray]], dest, *, level: int, fps: float = 0.0,
               batch_size: int = 8) -> EncodeStats:
        """Write ``(frame_index, image)`` pairs to ``dest`` (path or binary file)."""
        from ssb.backbones.ssd_mobilenet_v2 import preprocess

        self.codec._check_level(level)  # before any file is created
        stats = EncodeStats()
        it = iter(frames)
        first = next(it, None)
        if first is None:
            raise MalformedFieldError("no images to encode", field="images")
        h0, w0 = first[1].shape[:2]
        with Writer(dest, self.header(w0, h0, fps)) as writer:
            batch = [first]
            for item in it:
                if len(batch) == batch_size:
                    self._encode_batch(writer, batch, level, stats, preprocess)
                    batch = []
                batch.append(item)
            self._encode_batch(writer, batch, level, stats, preprocess)
        return stats

    def _encode_batch(self, writer, batch, level, stats, preprocess) -> None:
        x = preprocess([img for _, img in batch])
        split = self.front(x)
        items = self.codec.compress(split, level)
        sizes = [img.shape[:2] for _, img in batch]
        dets = self.objects(split, sizes) if self.objects else [None] * len(batch)
        for (index, img), item, det in zip(batch, items, dets):
            h, w = img.shape[:2]
            writer.begin_frame(index, metadata={"height": h, "width": w})
            payload = pack_base(item)
            writer.add_unit(UnitType.BASE, payload)
            stats.base_bytes += len(payload)
            if det is not None:
                for k, (box, label, score) in enumerate(zip(det["boxes"].tolist(), det["labels"].tolist(),
                                                            det["scores"].tolist())):
                    writer.add_unit(UnitType.OBJECT, pack_object(label, box, score), object_id=k, class_id=label,
                                    bbox=tuple(box), score=score)
                    stats.object_units += 1
            writer.end_frame()
            stats.frames += 1
            stats.pixels += h * w


def check_stream_model(bs, codec) -> None:
    """Refuse a stream made by another model or for another teacher."""
    meta = bs.header.metadata or {}
    if meta.get("model") != MODEL_ID:
        raise ModelMismatchError(f"stream was made by model {meta.get('model')!r}; this decoder is {MODEL_ID!r}",
                                 field="sequence_header.metadata.model")
    if meta.get("levels") != codec.config.num_levels:
        raise ModelMismatchError(
            f"stream expects a {meta.get('levels')}-level model, loaded weights have {codec.config.num_levels}",
            field="sequence_header.metadata.levels")


def frame_size(bs, frame) -> tuple[int, int]:
    meta = frame.metadata or {}
    return int(meta.get("height", bs.header.height)), int(meta.get("width", bs.header.width))


@dataclass
class DecodedFrame:
    frame_index: int
    features: dict[str, torch.Tensor]  # {"split": [1, C, h, w]}
    image_size: tuple[int, int]
    level: int
    base_bytes: int


def decode_features(bs, codec, *, frames: Iterable[int] | None = None) -> Iterator[DecodedFrame]:
    """Split features of the selected frames, reading only their ``BASE`` units."""
    check_stream_model(bs, codec)
    sel = bs.select(frames=frames, types=[UnitType.BASE], include_shared=False)
    for u in sel.units:
        frame = bs.frame(u.frame)
        item = unpack_base(u.payload(), num_levels=codec.config.num_levels, unit_offset=u.offset,
                           field=f"unit[{u.number}]")
        split = codec.decompress(item)
        yield DecodedFrame(u.frame, {"split": split}, frame_size(bs, frame), item.level, u.length)
