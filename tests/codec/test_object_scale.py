"""Object-scale units (OBJECT_SCALE, format 2.1): each person's window coded at its own scale, read alone.

The tiny codec and stand-in front of ``tiny_codec`` with a fixed detector (two people and a car
per frame): these tests are about units, windows, partial reads, independence and hostile
payloads; the trained heads on real frames are tested in ``tests/tasks/test_object_heads.py``.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from tiny_codec import TINY, TinyModels

import ssb
from ssb.backbones.ssd_mobilenet_v2 import preprocess
from ssb.codec import registry
from ssb.codec.object_scale import DEFAULT_LAYOUT, ObjectScaleLayout, crop_window, object_window
from ssb.codec.payload import pack_object_scale, parse_object_scale
from ssb.errors import MalformedFieldError
from ssb.format import UnitType, Writer
from ssb.format.payloads import OBJECT_SCALE
from ssb.format.wire import write_uv, zigzag
from ssb.media import Frame

pytestmark = pytest.mark.usefixtures("torch_one_thread")

BOXES = torch.tensor([[10.0, 20.0, 40.0, 100.0], [90.0, 15.0, 130.0, 110.0], [60.0, 70.0, 100.0, 110.0]])
LABELS = torch.tensor([1, 1, 3])
SCORES = torch.tensor([0.9, 0.7, 0.8])


def detector(split, sizes):
    return [{"boxes": BOXES.clone(), "labels": LABELS.clone(), "scores": SCORES.clone()} for _ in sizes]


@pytest.fixture(scope="module")
def models():
    return TinyModels()


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(2)]


def _encode(models, images, **kw) -> bytes:
    enc = registry.encoder("ssb.image", models, quality=1, detector=detector, **kw)
    buf = io.BytesIO()
    frames = [Frame(i, im) for i, im in enumerate(images)]
    with Writer(buf, enc.header(frames[0])) as w:
        for f in frames:
            enc.encode(w, f)
    return buf.getvalue()


@pytest.fixture(scope="module")
def streams(models, images):
    return _encode(models, images), _encode(models, images, object_scale=[1], object_quality=1)


def test_window_rule_and_crop():
    assert object_window((10, 20, 40, 100)) == (-13, 10, 76, 100)  # 30x80 -> 60x80 (4:3) -> x1.25, outwards
    x0, y0, w, h = object_window((0, 0, 90, 30))  # wide box: the height grows to 4:3
    assert abs(h / w - 4 / 3) < 0.05
    img = np.zeros((10, 10, 3), np.uint8)
    img[:, :5] = 200
    crop = crop_window(img, (-10, 0, 20, 10), (8, 16))  # left half outside the frame: grey fill
    assert crop.shape == (8, 16, 3) and crop[0, 0, 0] == 128 and crop[0, 9, 0] == 200 and crop[0, 15, 0] == 0
    with pytest.raises(MalformedFieldError):
        ObjectScaleLayout(input_size=(100, 96))  # not a multiple of the stride
    with pytest.raises(MalformedFieldError):
        object_window((0, 0, float("nan"), 5))


def test_people_get_units_the_car_a_descriptor_base_unchanged(models, streams):
    plain, scaled = streams
    with ssb.open(plain) as a, ssb.open(scaled) as b:
        assert a.version == (2, 1) and b.header.metadata["object_scale"] == [1]
        assert "object_scale" not in a.header.metadata
        for fa, fb in zip(a.frames, b.frames):
            units = [u for u in fb.units if u.type == UnitType.OBJECT_SCALE]
            assert [(u.object_id, u.class_id) for u in units] == [(0, 1), (1, 1)]
            assert [d.class_id for d in fb.descriptors] == [3]  # the car: described, no unit
            base_a = [u.payload() for u in fa.units if u.type == UnitType.BASE]
            base_b = [u.payload() for u in fb.units if u.type == UnitType.BASE]
            assert base_a == base_b  # the base layer is the same stream's
            for u, box in zip(units, BOXES[:2].tolist()):
                window, item, _ = parse_object_scale(u.payload(), ctx={"levels": TINY.num_levels, "frame": (120, 160)})
                assert window == object_window(box) and item.out_hw == DEFAULT_LAYOUT.grid and item.level == 1
                assert u.bbox == pytest.approx(tuple(box), abs=1)


def test_an_object_query_reads_its_units_and_the_index_only(models, streams):
    _, scaled = streams
    with ssb.open(scaled) as bs:
        opened = bs.bytes_read
        units = [u for u in bs.units if u.type == UnitType.OBJECT_SCALE]
        dec = registry.decoder(bs, models)
        assert dec.provides == {"features", "objects", "objects:1"}
        frames = [dec.decode(s) for s in dec.plan(need={"objects"})]
        assert bs.bytes_read == opened + sum(u.length for u in units)  # no BASE byte
        assert all("split" not in f.features for f in frames)
        views = frames[1].features["objects"]
        assert [v.object_id for v in views] == [0, 1] and views[0].features.shape == (1, TINY.in_channels, 16, 12)
        before = bs.bytes_read
        [one] = [dec.decode(s) for s in dec.plan(frames=[0], objects=[1], need={"objects"})]
        assert [v.object_id for v in one.features["objects"]] == [1]
        assert bs.bytes_read - before == next(u.length for u in units if u.frame == 0 and u.object_id == 1)


def test_a_unit_depends_on_its_window_only_and_decodes_alone(models, images, streams):
    _, scaled = streams
    changed = [im.copy() for im in images]
    x0, y0, w, h = object_window(BOXES[0].tolist())
    mask = np.ones(changed[0].shape[:2], bool)
    mask[max(y0, 0): y0 + h, max(x0, 0): x0 + w] = False
    changed[0][mask] = 7  # every pixel outside person 0's window
    again = _encode(models, changed, object_scale=[1], object_quality=1)

    def unit(data, oid):
        with ssb.open(data) as bs:
            return next(u.payload() for u in bs.frames[0].units if u.type == UnitType.OBJECT_SCALE
                        and u.object_id == oid)

    assert unit(again, 0) == unit(scaled, 0)
    assert unit(again, 1) != unit(scaled, 1)
    # its features are the window through the front and the codec, batch 1
    crop = crop_window(images[0], (x0, y0, w, h), DEFAULT_LAYOUT.input_size)
    with torch.no_grad():
        item = models.codec().compress(models.front()(preprocess([crop], size=DEFAULT_LAYOUT.input_size)), 1)[0]
    assert unit(scaled, 0) == pack_object_scale((x0, y0, w, h), item)


def test_plain_streams_provide_no_objects(models, streams):
    plain, _ = streams
    with ssb.open(plain) as bs:
        dec = registry.decoder(bs, models)
        assert dec.provides == {"features"}
        with pytest.raises(MalformedFieldError, match="objects"):
            list(dec.plan(need={"objects"}))


@pytest.mark.parametrize("change, field", [
    ({"rows": 65, "cols": 64}, "rows"),  # more cells than the limit: refused before any allocation
    ({"x0": 5000}, "x0"),  # a window far outside the frame
    ({"y0": -400, "height": 10}, "y0"),
    ({"level": 9}, "level"),
    ({"width": 0}, "width"),
])
def test_hostile_payloads_are_refused_by_field(change, field):
    r = {"level": 0, "x0": 0, "y0": 0, "width": 20, "height": 30, "rows": 16, "cols": 12, **change}
    # written by hand: the writer refuses to pack any of these
    data = bytes([1, r["level"]]) + write_uv(zigzag(r["x0"])) + write_uv(zigzag(r["y0"])) + b"".join(
        write_uv(r[k]) for k in ("width", "height", "rows", "cols")) + write_uv(4) + b"\x00" * 8
    with pytest.raises(MalformedFieldError):
        OBJECT_SCALE.pack({"version": 1, **r, "z": b"\x00" * 4, "y": b"\x00" * 4},
                          ctx={"levels": 2, "frame": (120, 160)})
    with pytest.raises(MalformedFieldError) as err:
        parse_object_scale(data, ctx={"levels": 2, "frame": (120, 160)}, offset=100, field="unit[3]")
    assert err.value.field.startswith("unit[3].payload") and field in err.value.field
    assert err.value.offset is not None and err.value.offset >= 100


def test_encoder_options_are_checked(models):
    with pytest.raises(MalformedFieldError, match="detector"):
        registry.encoder("ssb.image", models, quality=1, object_scale=[1])


def test_object_size_sets_the_coded_grid_default_quality_follows_the_base(models, images):
    from ssb.codec.image import default_object_quality

    data = _encode(models, images[:1], object_scale=[1], object_size="small")
    with ssb.open(data) as bs:
        u = next(u for u in bs.units if u.type == UnitType.OBJECT_SCALE)
        _, item, _ = parse_object_scale(u.payload(), ctx={"levels": TINY.num_levels, "frame": (120, 160)})
    assert item.out_hw == (8, 6) and item.level == default_object_quality(1) == 0
    assert [default_object_quality(q) for q in range(6)] == [0, 0, 0, 0, 1, 2]
    with pytest.raises(MalformedFieldError, match="object size"):
        registry.encoder("ssb.image", models, quality=1, detector=detector, object_scale=[1], object_size="huge")


def test_a_codec_refuses_options_it_does_not_take_by_name(models):
    with pytest.raises(MalformedFieldError, match="ssb.video takes no option object_scale") as err:
        registry.encoder("ssb.video", models, quality=1, object_scale=[1])
    assert err.value.field == "object_scale"


@pytest.mark.parametrize("bad, field", [("unicorn", "object_scale"), ([1.5], "object_scale"), (True, "object_scale"),
                                        ([999], "object_scale"), ([], "object_scale")])
def test_object_classes_are_checked(models, bad, field):
    with pytest.raises(MalformedFieldError) as err:
        registry.encoder("ssb.image", models, quality=1, detector=detector, object_scale=bad)
    assert err.value.field == field


def test_object_options_without_object_scale_are_refused(models):
    for kw, field in (({"object_quality": 1}, "object_quality"), ({"object_size": "small"}, "object_size")):
        with pytest.raises(MalformedFieldError) as err:
            registry.encoder("ssb.image", models, quality=1, detector=detector, **kw)
        assert err.value.field == field
    with pytest.raises(MalformedFieldError) as err:
        registry.encoder("ssb.image", models, quality=1, detector=detector, object_scale="person", object_quality=7)
    assert err.value.field == "object_quality"
    enc = registry.encoder("ssb.image", models, quality=1, detector=detector, object_scale=["person", 3])
    assert enc.object_classes == (1, 3)


def test_a_query_reads_only_the_units_of_the_classes_it_needs(models, images):
    data = _encode(models, images[:1], object_scale=[1, 3])
    with ssb.open(data) as bs:
        opened = bs.bytes_read
        people = sum(u.length for u in bs.units if u.type == UnitType.OBJECT_SCALE and u.class_id == 1)
        dec = registry.decoder(bs, models)
        assert dec.provides == {"features", "objects", "objects:1", "objects:3"}
        [f] = [dec.decode(s) for s in dec.plan(need={"objects:1"})]
        assert [v.class_id for v in f.features["objects"]] == [1, 1]
        assert bs.bytes_read == opened + people
