"""The codec over the container: ImageEncoder writes BASE (and OBJECT) units, decode_features reads them.

A tiny codec and a stand-in front (a stride-8 convolution, 3 -> 8 channels) on synthetic images:
these tests are about units, indexes, partial reads and model checks, not about the teacher.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from tiny_codec import TINY, tiny_codec

import ssb
from ssb.backbones.ssd_mobilenet_v2 import preprocess
from ssb.codec import image as image_codec
from ssb.codec.image import ImageEncoder, decode_features
from ssb.codec.payload import pack_base, unpack_base, unpack_object
from ssb.codec.zoo import MODEL_ID
from ssb.errors import MalformedFieldError, ModelMismatchError
from ssb.format import SequenceHeader, UnitType, Writer

LEVEL = 1
FINGERPRINT = "0123456789abcdef"


@pytest.fixture(autouse=True)
def _setup(monkeypatch):
    """One thread; a fixed teacher fingerprint, so these tests do not need the teacher package."""
    monkeypatch.setattr(image_codec, "teacher_fingerprint", lambda: FINGERPRINT)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def codec():
    return tiny_codec()


@pytest.fixture(scope="module")
def front() -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(3)
        conv = torch.nn.Conv2d(3, TINY.in_channels, 8, stride=8)
    return conv.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Three smooth synthetic RGB images of different sizes (so per-frame sizes are checked)."""
    rng = np.random.default_rng(0)
    out = []
    for h, w in ((48, 64), (60, 80), (50, 50)):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], axis=-1)
        out.append(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def expected(codec, front, images):
    """What the encoder must have coded: the same batch through the same front and codec."""
    with torch.no_grad():
        return codec.compress(front(preprocess(images)), LEVEL)


def _encode(codec, front, images, **kwargs) -> tuple[bytes, object]:
    buf = io.BytesIO()
    stats = ImageEncoder(codec, front, **kwargs).encode(enumerate(images), buf, level=LEVEL)
    return buf.getvalue(), stats


def test_one_base_unit_per_frame_with_the_codec_bytes(codec, front, images, expected):
    data, stats = _encode(codec, front, images)
    with ssb.open(data) as bs:
        meta = bs.header.metadata
        assert (meta["model"], meta["levels"], meta["teacher"]) == (MODEL_ID, TINY.num_levels, FINGERPRINT)
        assert (bs.header.width, bs.header.height) == (64, 48) and bs.header.codec == MODEL_ID
        assert [f.frame_index for f in bs.frames] == [0, 1, 2]
        base = [u for u in bs.units if u.type == UnitType.BASE]
        assert [u.frame for u in base] == [0, 1, 2]
        assert not [u for u in bs.units if u.type == UnitType.OBJECT]
        for u, item in zip(base, expected):
            assert unpack_base(u.payload(), num_levels=TINY.num_levels) == item
        assert stats.frames == 3 and stats.object_units == 0
        assert stats.base_bytes == sum(u.length for u in base)
        assert stats.pixels == sum(img.shape[0] * img.shape[1] for img in images)
        assert stats.bpp == pytest.approx(8 * stats.base_bytes / stats.pixels)


def test_decode_features_equals_codec_decompress(codec, front, images, expected):
    data, _ = _encode(codec, front, images)
    with ssb.open(data) as bs:
        frames = list(decode_features(bs, codec))
    assert [f.frame_index for f in frames] == [0, 1, 2]
    for f, item, img in zip(frames, expected, images):
        assert f.image_size == img.shape[:2] and f.level == LEVEL
        assert f.features["split"].shape == (1, TINY.in_channels, 37, 37)  # 300 px input, stride-8 conv
        assert torch.equal(f.features["split"], codec.decompress(item))


def test_one_frame_reads_only_its_base_unit(codec, front, images, expected, tmp_path):
    path = tmp_path / "three.ssb"
    path.write_bytes(_encode(codec, front, images)[0])
    with ssb.open(path) as bs:
        base = {u.frame: u for u in bs.units if u.type == UnitType.BASE}
        assert min(u.length for u in base.values()) > 500  # big enough for the byte count to tell
        before = bs.bytes_read
        [frame] = list(decode_features(bs, codec, frames=[1]))
        read = bs.bytes_read - before
    assert frame.frame_index == 1 and torch.equal(frame.features["split"], codec.decompress(expected[1]))
    # frame 1's payload and its 16-byte unit header, and nothing of frames 0 and 2
    assert base[1].length <= read <= base[1].length + 64, (read, {f: u.length for f, u in base.items()})


def test_object_hook_fills_units_and_index(codec, front, images):
    """The detector hook gets the split features and the original sizes; objects land in the index."""
    seen = {}

    def objects(split, sizes):
        seen["shape"], seen["sizes"] = tuple(split.shape), list(sizes)
        boxes = torch.tensor([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 9.0, 9.0]])
        return [{"boxes": boxes + i, "labels": torch.tensor([1, 3]), "scores": torch.tensor([0.9, 0.4])}
                for i in range(len(sizes))]

    data, stats = _encode(codec, front, images, objects=objects, class_names={1: "person", 3: "car"})
    assert seen == {"shape": (3, TINY.in_channels, 37, 37), "sizes": [img.shape[:2] for img in images]}
    assert stats.object_units == 6
    with ssb.open(data) as bs:
        assert bs.header.metadata["classes"] == {"1": "person", "3": "car"}
        people = [u for u in bs.select(classes={1}).units if u.type == UnitType.OBJECT]
        assert [(u.frame, u.object_id) for u in people] == [(0, 0), (1, 0), (2, 0)]
        u = people[2]
        assert u.bbox == pytest.approx((3.0, 4.0, 32.0, 42.0)) and u.score == pytest.approx(0.9)
        cid, box, score = unpack_object(u.payload())
        assert cid == 1 and box == pytest.approx(u.bbox) and score == pytest.approx(0.9)


def test_no_images_is_refused(codec, front):
    with pytest.raises(MalformedFieldError):
        ImageEncoder(codec, front).encode(iter(()), io.BytesIO(), level=0)


def _stream(metadata: dict, payload: bytes) -> bytes:
    buf = io.BytesIO()
    with Writer(buf, SequenceHeader(64, 48, 0, 1, MODEL_ID, metadata)) as w:
        w.begin_frame(0)
        w.add_unit(UnitType.BASE, payload)
        w.end_frame()
    return buf.getvalue()


@pytest.mark.parametrize("meta, field", [
    ({"model": "someone-else.v1", "levels": TINY.num_levels}, "sequence_header.metadata.model"),
    ({"levels": TINY.num_levels}, "sequence_header.metadata.model"),
    ({"model": MODEL_ID, "levels": TINY.num_levels + 1}, "sequence_header.metadata.levels"),
])
def test_stream_from_another_model_is_refused(codec, expected, meta, field):
    with ssb.open(_stream(meta, pack_base(expected[0]))) as bs, pytest.raises(ModelMismatchError) as exc:
        next(decode_features(bs, codec))
    assert exc.value.field == field


def test_bad_base_payload_error_points_into_the_stream(codec):
    bad = bytes([1, TINY.num_levels]) + bytes(16)  # level not below the model's levels
    with ssb.open(_stream({"model": MODEL_ID, "levels": TINY.num_levels}, bad)) as bs:
        [unit] = [u for u in bs.units if u.type == UnitType.BASE]
        with pytest.raises(MalformedFieldError) as exc:
            next(decode_features(bs, codec))
    assert exc.value.offset == unit.offset + 1
    assert exc.value.field == f"unit[{unit.number}].payload.level"
