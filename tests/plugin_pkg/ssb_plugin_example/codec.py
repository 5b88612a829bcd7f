"""An example third-party SSB stream codec, registered through the ``ssb.codecs`` entry-point group.

``tiny-blocks`` codes each frame as the 8x8-block means of its picture resized to 304 x 304 (a
38 x 38 grid, 3 bytes a cell) in one BASE unit, and decodes them to 32-channel "split" features
(the three colour planes, then their products and squares, repeated).  It is a toy: it shows
the whole codec contract (an encoder and a decoder class over the container, the features the
decoder describes) without a learned model, so ``ssb encode --codec tiny-blocks`` and
``ssb analyze --task activity`` run with no file of SSB changed.
"""

from __future__ import annotations

import numpy as np

from ssb.backbones.features import FeatureInfo
from ssb.codec.base import DecodedFrame, StreamDecoder, StreamEncoder, frame_size
from ssb.codec.registry import CodecSpec
from ssb.errors import MalformedFieldError
from ssb.format import SequenceHeader, UnitType

GRID = 38


def _blocks(image: np.ndarray) -> bytes:
    import cv2

    small = cv2.resize(image, (GRID, GRID), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(small, dtype=np.uint8).tobytes()


class BlocksEncoder(StreamEncoder):
    codec_id = "tiny-blocks"

    def __init__(self, models, *, quality: int = 0, detector=None, **options):
        super().__init__(models)

    def header(self, first) -> SequenceHeader:
        h, w = first.image.shape[:2]
        return SequenceHeader(width=w, height=h, codec=self.codec_id, metadata={"grid": GRID})

    def encode(self, writer, frame) -> None:
        h, w = frame.image.shape[:2]
        same = (writer.header.height, writer.header.width) == (h, w)
        writer.begin_frame(frame.index, pts=frame.pts, metadata=None if same else {"height": h, "width": w})
        payload = _blocks(frame.image)
        writer.add_unit(UnitType.BASE, payload)
        writer.end_frame()
        self.stats.add("BASE", len(payload))
        self.stats.frames += 1
        self.stats.pixels += h * w


class BlocksDecoder(StreamDecoder):
    codec_id = "tiny-blocks"
    feature_types = (int(UnitType.BASE),)

    @property
    def feature_info(self):
        return (FeatureInfo("split", 32, 8),)

    def decode(self, step) -> DecodedFrame:
        import torch

        (unit,) = [u for u in step.units if u.type == UnitType.BASE]
        raw = bytes(unit.payload())
        if len(raw) != GRID * GRID * 3:
            raise MalformedFieldError(f"a tiny-blocks BASE unit holds {GRID * GRID * 3} bytes, not {len(raw)}",
                                      offset=unit.offset, field=f"unit[{unit.number}].payload")
        rgb = torch.from_numpy(np.frombuffer(raw, np.uint8).reshape(GRID, GRID, 3).astype(np.float32) / 255.0)
        planes = rgb.permute(2, 0, 1)
        feats = torch.cat([planes, planes**2, planes[[0]] * planes[[1]], planes[[1]] * planes[[2]]])
        split = feats.repeat(4, 1, 1)[:32][None]
        return DecodedFrame(step.frame.frame_index, frame_size(self.bs, step.frame), {"split": split}, 0,
                            unit.length, step.frame.pts)


TINY_CODEC = CodecSpec("tiny-blocks", BlocksEncoder, BlocksDecoder, "toy: 8x8 block means of the frame")
