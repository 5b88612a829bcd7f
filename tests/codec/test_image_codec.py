"""``ssb.image`` over the container: the encoder writes BASE units and index descriptors, the stateless
decoder reads only the BASE units of the frames asked for.

A tiny codec and a stand-in front (a stride-8 convolution, 3 -> 8 channels) on synthetic images:
these tests are about units, indexes, partial reads and model checks, not about the teacher.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from tiny_codec import TINY, TINY_ID, TinyModels

import ssb
from ssb.backbones.ssd_mobilenet_v2 import preprocess
from ssb.codec import registry
from ssb.codec.payload import pack_features, unpack_features
from ssb.errors import MalformedFieldError, ModelMismatchError
from ssb.format import SequenceHeader, UnitType, Writer
from ssb.media import Frame

LEVEL = 1
CTX = {"levels": TINY.num_levels, "grid": (38, 38)}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def models():
    return TinyModels()


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
def expected(models, images):
    """What the encoder must have coded: each image through the same front and codec."""
    with torch.no_grad():
        return [models.codec().compress(models.front()(preprocess([img])), LEVEL)[0] for img in images]


def _encode(models, images, **kwargs) -> tuple[bytes, object]:
    enc = registry.encoder("ssb.image", models, quality=LEVEL, **kwargs)
    frames = [Frame(i, img) for i, img in enumerate(images)]
    buf = io.BytesIO()
    with Writer(buf, enc.header(frames[0])) as w:
        for f in frames:
            enc.encode(w, f)
    return buf.getvalue(), enc.stats


def _decode(models, data, **plan):
    with ssb.open(data) as bs:
        dec = registry.decoder(bs, models)
        return [dec.decode(step) for step in dec.plan(**plan)]


def test_one_base_unit_per_frame_with_the_codec_bytes(models, images, expected):
    data, stats = _encode(models, images)
    with ssb.open(data) as bs:
        assert bs.header.codec == "ssb.image" and bs.header.metadata == {"model": TINY_ID, "labels": "coco"}
        assert (bs.header.width, bs.header.height) == (64, 48)
        assert [f.frame_index for f in bs.frames] == [0, 1, 2]
        assert bs.frames[0].metadata == {} and bs.frames[1].metadata == {"height": 60, "width": 80}  # said once
        base = [u for u in bs.units if u.type == UnitType.BASE]
        assert [u.frame for u in base] == [0, 1, 2]
        for u, item in zip(base, expected):
            assert unpack_features(u.payload(), ctx=CTX) == item
        assert stats.frames == 3 and stats.objects == 0
        assert stats.bytes_by_type == {"BASE": sum(u.length for u in base)}
        assert stats.pixels == sum(img.shape[0] * img.shape[1] for img in images)


def test_decode_equals_codec_decompress(models, images, expected):
    data, _ = _encode(models, images)
    frames = _decode(models, data)
    assert [f.frame_index for f in frames] == [0, 1, 2]
    for f, item, img in zip(frames, expected, images):
        assert f.image_size == img.shape[:2] and f.level == LEVEL and f.key
        assert f.features["split"].shape == (1, TINY.in_channels, 38, 38)
        assert torch.equal(f.features["split"], models.codec().decompress(item))


def test_one_frame_reads_only_its_base_unit(models, images, expected, tmp_path):
    path = tmp_path / "three.ssb"
    path.write_bytes(_encode(models, images)[0])
    with ssb.open(path) as bs:
        base = {u.frame: u for u in bs.units if u.type == UnitType.BASE}
        assert min(u.length for u in base.values()) > 500  # big enough for the byte count to tell
        dec = registry.decoder(bs, models)
        before = bs.bytes_read
        [frame] = [dec.decode(s) for s in dec.plan(frames=[1])]
        read = bs.bytes_read - before
    assert frame.frame_index == 1 and torch.equal(frame.features["split"], models.codec().decompress(expected[1]))
    assert read == base[1].length, (read, {f: u.length for f, u in base.items()})  # its payload, nothing else


def test_detector_hook_describes_objects_in_the_index(models, images):
    """The detector hook gets the split features and the original size; objects cost index entries only."""
    seen = []

    def detector(split, sizes):
        seen.append((tuple(split.shape), list(sizes)))
        i = len(seen) - 1
        boxes = torch.tensor([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 9.0, 9.0]])
        return [{"boxes": boxes + i, "labels": torch.tensor([1, 3]), "scores": torch.tensor([0.9, 0.4])}]

    data, stats = _encode(models, images, detector=detector)
    assert [s for s, _ in seen] == [(1, TINY.in_channels, 38, 38)] * 3
    assert [z for _, z in seen] == [[img.shape[:2]] for img in images]
    assert stats.objects == 6
    with ssb.open(data) as bs:
        assert not [u for u in bs.units if u.type == UnitType.OBJECT]  # no unit per object any more
        sel = bs.select(classes=["person"])
        assert [(d.frame, d.object_id) for d in sel.descriptors] == [(0, 0), (1, 0), (2, 0)]
        d = sel.descriptors[2]
        assert d.bbox == (3.0, 4.0, 32.0, 42.0) and d.score == pytest.approx(0.9, abs=1e-4)
        assert sel.targets == [0, 1, 2]


def _stream(metadata: dict, payload: bytes, codec: str = "ssb.image") -> bytes:
    buf = io.BytesIO()
    with Writer(buf, SequenceHeader(64, 48, 0, 1, codec, metadata)) as w:
        w.begin_frame(0)
        w.add_unit(UnitType.BASE, payload)
        w.end_frame()
    return buf.getvalue()


@pytest.mark.parametrize("meta, field", [
    ({"model": "someone-else.v1@3"}, "weights"),
    ({}, "sequence_header.metadata.model"),
])
def test_stream_from_another_model_is_refused(models, expected, meta, field):
    with ssb.open(_stream(meta, pack_features(expected[0]))) as bs, pytest.raises(ModelMismatchError) as exc:
        registry.decoder(bs, models)
    assert exc.value.field == field


def test_unknown_codec_is_refused_with_the_known_ones(models, expected):
    with ssb.open(_stream({"model": TINY_ID}, pack_features(expected[0]), codec="acme.v9")) as bs:
        with pytest.raises(ModelMismatchError) as exc:
            registry.decoder(bs, models)
    assert exc.value.field == "sequence_header.codec" and "ssb.image" in str(exc.value)


def test_bad_payload_error_points_into_the_stream(models):
    bad = bytes([2, TINY.num_levels, 38, 38, 0])  # level not below the model's levels
    with ssb.open(_stream({"model": TINY_ID}, bad)) as bs:
        [unit] = [u for u in bs.units if u.type == UnitType.BASE]
        dec = registry.decoder(bs, models)
        with pytest.raises(MalformedFieldError) as exc:
            dec.decode(next(dec.plan()))
    assert exc.value.offset == unit.offset + 1
    assert exc.value.field == f"unit[{unit.number}].payload.level"
