"""Grouped streams (ssb.codec.groups): group independence, partial decoding, class queries, composition.

Unit tests run the real SSD-MobileNetV2 front ARCHITECTURE with seeded random weights (the crop
geometry is what they check, so the real TF-SAME padding matters, not the teacher's weights) and
a small seeded FeatureCodec on synthetic images.  The tests marked ``teacher``/``media`` repeat
the two independence properties on real vtest.avi frames with the shipped codec and the teacher.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from tiny_codec import TinyModels, with_identity

import ssb
from ssb.backbones.features import FRONTS, FeatureInfo, FrontCard
from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front, preprocess
from ssb.codec.feature_codec import FeatureCodec, FeatureCodecConfig
from ssb.codec.group_masks import (
    GroupInfo,
    check_labels,
    describe_groups,
    labels_from_detections,
    read_label_image,
)
from ssb.codec.groups import (
    DecodedGroup,
    GroupedFrame,
    GroupEncoder,
    GroupLayout,
    compose,
    decode_groups,
    front_window,
    group_window,
)
from ssb.codec.mask_coding import MaskUnit
from ssb.codec.payload import pack_window, unpack_features, unpack_window
from ssb.errors import LimitExceededError, MalformedFieldError, SSBError, TruncatedError
from ssb.format import UnitType, Writer
from ssb.media import Frame

LAYOUT = GroupLayout(input_size=108)  # 14x14 split grid: small and fast, same geometry rules as 300
#: the random SSD front at the small input size, registered as the tiny codec's front
SMALL_FRONT = FrontCard("ssd-mbv2-random.s8-108", "ssb.backbones.ssd_mobilenet_v2:SSDMobileNetV2Front", 108,
                        (FeatureInfo("split", 32, 8, "blocks.5"),))
FRONTS.setdefault(SMALL_FRONT.name, SMALL_FRONT)
CTX = {"levels": 2, "grid": LAYOUT.grid}
LEVEL = 1
H, W = 96, 128


@pytest.fixture(autouse=True)
def _setup():
    """One thread; the thread count and autograd mode are restored afterwards (the CLI commands switch
    autograd off)."""
    before, grad = torch.get_num_threads(), torch.is_grad_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
    torch.set_grad_enabled(grad)


@pytest.fixture(scope="module")
def front() -> SSDMobileNetV2Front:
    """Random weights, batch norms calibrated on synthetic pictures so the features are O(1)."""
    with torch.random.fork_rng():
        torch.manual_seed(5)
        f = SSDMobileNetV2Front(pretrained=False)
    for m in f.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average: one pass sets the statistics
    with torch.no_grad():
        f.train()(preprocess([_texture(s) for s in range(4)], size=LAYOUT.input_size))
    f = f.eval().requires_grad_(False)
    assert 0.1 < float(f(preprocess([_texture(5)], size=LAYOUT.input_size)).std()) < 10
    return f


@pytest.fixture(scope="module")
def codec() -> FeatureCodec:
    """A small codec on the 32 split channels, weights spread so latents and tables vary."""
    cfg = FeatureCodecConfig(in_channels=32, hidden=16, latent=8, hyper=4, num_levels=2, lambdas=(1.0, 4.0))
    with torch.random.fork_rng():
        torch.manual_seed(7)
        c = FeatureCodec(cfg)
        with torch.no_grad():
            c.g_a[-1].weight.mul_(6.0)
            c.h_a[-1].weight.mul_(8.0)
            for layer in c.h_s.net.layers:
                layer.weight.mul_(3.0)
            c.h_s.net.layers[-1].bias.uniform_(0.5, 8.0)
    c.update()
    c = with_identity(c.eval(), "tiny-groups.s8@1")
    c.front_name = SMALL_FRONT.name
    return c


@pytest.fixture(scope="module")
def models(codec, front) -> TinyModels:
    m = TinyModels(codec)
    m._front = front
    return m


def _texture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([xx * 255 / W, yy * 255 / H, 128 + 100 * np.sin(xx / 5.0 + seed)], axis=-1)
    return np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return _texture(0)


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    """Group 1: an ellipse on the left (a "person"); group 2: a rectangle on the right (a "car")."""
    lab = np.zeros((H, W), dtype=np.uint16)
    yy, xx = np.mgrid[0:H, 0:W]
    lab[((yy - 50) / 30.0) ** 2 + ((xx - 30) / 12.0) ** 2 < 1] = 1
    lab[20:60, 80:120] = 2
    return lab


def fake_detector(split, sizes):
    """Boxes around the two groups of ``labels``: person (1) and car (3)."""
    return [{"boxes": torch.tensor([[16.0, 18.0, 44.0, 82.0], [78.0, 18.0, 122.0, 62.0]]),
             "labels": torch.tensor([1, 3]), "scores": torch.tensor([0.9, 0.8])} for _ in sizes]


def _frame_in(index: int, image, labels=None) -> Frame:
    return Frame(index, image, info={} if labels is None else {"labels": labels})


def _encode(models, frames, *, objects=fake_detector, **options) -> bytes:
    enc = GroupEncoder(models, quality=options.pop("quality", LEVEL), detector=objects, **options)
    assert enc.layout == LAYOUT
    buf = io.BytesIO()
    with Writer(buf, enc.header(frames[0])) as w:
        for f in frames:
            enc.encode(w, f)
    return buf.getvalue()


@pytest.fixture(scope="module")
def stream(models, image, labels) -> bytes:
    return _encode(models, [_frame_in(0, image, labels), _frame_in(1, _texture(1), labels)])


def _units(data: bytes, frame: int = 0) -> dict[tuple[int, int], bytes]:
    """``(type, group_id) -> payload`` of one frame."""
    with ssb.open(data) as bs:
        return {(int(u.type), u.group_id): bytes(u.payload()) for u in bs.frame(frame).units}


def _partial(data: bytes, keep: list[tuple[int, int]]) -> bytes:
    """``data`` with every byte zeroed except the structure (preamble, headers, indexes, END) and ``keep``."""
    out = bytearray(len(data))
    with ssb.open(data) as bs:
        spans = [(0, 16)] + [u.span for u in bs.units
                             if u.type in (UnitType.SEQUENCE_HEADER, UnitType.FRAME_HEADER, UnitType.END)]
    for a, b in spans + keep:
        out[a:b] = data[a:b]
    return bytes(out)


# ---------------------------------------------------------------------------------- geometry
def test_front_window_is_the_full_frame_features_of_the_window(front):
    """On an unmasked picture a window's features equal the full-frame ones: the crop is on the grid."""
    x = preprocess([_texture(3)], size=LAYOUT.input_size)
    full = front(x)
    gh, gw = LAYOUT.grid
    for win in [(0, 0, 3, 4), (4, 6, 5, 3), (gh - 3, gw - 2, 3, 2), (0, gw - 5, gh, 5), (0, 0, gh, gw)]:
        r0, c0, rows, cols = win
        got = front_window(front, x, win, LAYOUT)
        ref = full[..., r0 : r0 + rows, c0 : c0 + cols]
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_front_window_needs_the_8k_plus_4_crop(front):
    """The check above can fail: a crop of 8k pixels (TF pads it differently) shifts the features."""
    x = preprocess([_texture(3)], size=LAYOUT.input_size)
    full = front(x)[..., 3:7, 3:7]
    assert (front(x[..., :80, :80])[..., 3:7, 3:7] - full).abs().max() > 0.1  # 80 = 8 * 10
    torch.testing.assert_close(front(x[..., :84, :84])[..., 3:7, 3:7], full, rtol=1e-4, atol=1e-4)  # 84 = 8 * 10 + 4


@pytest.mark.parametrize("box,size", [((0, 0, 1, 1), (96, 128)), ((50, 30, 70, 90), (96, 128)),
                                      ((100, 80, 128, 96), (96, 128)), ((0, 0, 768, 576), (576, 768))])
def test_group_window(box, size):
    lay = GroupLayout(input_size=300)
    r0, c0, rows, cols = group_window(box, size, lay)
    gh, gw = lay.grid
    assert r0 % 2 == 0 and c0 % 2 == 0 and rows >= 1 and cols >= 1
    assert r0 + rows <= gh and c0 + cols <= gw
    x0, y0, x1, y1 = box
    s = lay.input_size / 8
    assert r0 <= y0 * s / size[0] and (r0 + rows) >= min(y1 * s / size[0], gh)
    assert c0 <= x0 * s / size[1] and (c0 + cols) >= min(x1 * s / size[1], gw)


def test_layout_refuses_geometry_it_cannot_align(codec):
    with pytest.raises(MalformedFieldError):
        GroupLayout(input_size=320)
    with pytest.raises(MalformedFieldError):
        GroupLayout.from_json({"version": 9})
    legacy = {"version": 1, "input_size": 108, "stride": 8, "margin": 1, "context": 4}  # 1.x metadata
    assert GroupLayout.from_json(legacy) == LAYOUT
    assert GroupLayout.for_codec(codec) == LAYOUT and LAYOUT.metadata() is None  # defaults are not repeated
    assert GroupLayout.for_codec(codec, fill="pushpull").metadata() == {"fill": "pushpull"}


# ---------------------------------------------------------------------------------- the stream
def test_stream_layout_and_index(stream, labels):
    with ssb.open(stream) as bs:
        assert bs.header.codec == "ssb.grouped" and "groups" not in bs.header.metadata  # defaults: said by the codec
        units = bs.frame(0).units
        assert [u.type for u in units] == [UnitType.BACKGROUND, UnitType.GROUP_MASK, UnitType.OBJECT,
                                           UnitType.GROUP_MASK, UnitType.OBJECT]
        assert units[0].group_id == 0 and units[0].class_id is None and units[0].bbox is None
        person = [u for u in units if u.group_id == 1]
        assert {u.class_id for u in person} == {1} and person[0].bbox == person[1].bbox
        ys, xs = np.nonzero(labels == 1)
        assert person[0].bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert {u.class_id for u in units if u.group_id == 2} == {3}


def test_groups_carry_real_information(stream):
    """Sanity for the independence tests: latent strings are not empty and the groups differ."""
    u = _units(stream)
    for key in ((UnitType.OBJECT, 1), (UnitType.OBJECT, 2)):
        _, _, item = unpack_window(u[key], ctx=CTX)
        assert len(item.y) > 8 and len(item.z) > 0
    assert u[(UnitType.OBJECT, 1)] != u[(UnitType.OBJECT, 2)]


def test_pixels_outside_a_group_do_not_change_its_units(models, image, labels, stream):
    """Property 2: another background and another second object leave group 1's units byte-identical."""
    other = _texture(9)
    changed = np.where((labels == 1)[..., None], image, other)
    data = _encode(models, [_frame_in(0, changed, labels)])
    before, after = _units(stream), _units(data)
    assert after[(UnitType.OBJECT, 1)] == before[(UnitType.OBJECT, 1)]
    assert after[(UnitType.GROUP_MASK, 1)] == before[(UnitType.GROUP_MASK, 1)]
    # the property is not vacuous: the other groups did change
    assert after[(UnitType.BACKGROUND, 0)] != before[(UnitType.BACKGROUND, 0)]
    assert after[(UnitType.OBJECT, 2)] != before[(UnitType.OBJECT, 2)]


def test_pixels_inside_a_group_change_its_units(models, image, labels, stream):
    changed = image.copy()
    changed[labels == 1] = 255 - changed[labels == 1]
    after = _units(_encode(models, [_frame_in(0, changed, labels)]))
    before = _units(stream)
    assert after[(UnitType.OBJECT, 1)] != before[(UnitType.OBJECT, 1)]
    assert after[(UnitType.OBJECT, 2)] == before[(UnitType.OBJECT, 2)]


@pytest.mark.parametrize("group", [1, 2])
def test_a_group_decodes_from_its_own_units_alone(models, stream, group):
    """Property 1: a stream holding only the structure and group g's units decodes g to the same features."""
    with ssb.open(stream) as bs:
        full = {g.group_id: g for fr in decode_groups(bs, models, frames=[0], masks=True) for g in fr.groups}
        sel = bs.select(groups=[group], frames=[0], include_shared=False)
        assert {u.type for u in sel.units} == {UnitType.OBJECT, UnitType.GROUP_MASK}
    partial = _partial(stream, sel.byte_ranges)
    with ssb.open(partial) as bs:
        (fr,) = decode_groups(bs, models, frames=[0], groups=[group], masks=True)
    (g,) = fr.groups
    ref = full[group]
    assert torch.equal(g.features, ref.features) and g.window == ref.window
    assert np.array_equal(g.mask.mask, ref.mask.mask) and g.mask.bbox == ref.mask.bbox
    assert fr.background is None


def test_group_pixels_decode_from_its_units_alone(models, stream):
    """Property 1 for pixels: the pixel decoder renders the group alone identically from both streams."""
    from ssb.codec.pixels import PixelSynthesis

    with torch.random.fork_rng():
        torch.manual_seed(0)
        synth = PixelSynthesis(in_channels=32, width=8).eval()
    pictures = []
    for data in (stream, _partial(stream, ssb.open(stream).select(groups=[1], frames=[0]).byte_ranges)):
        with ssb.open(data) as bs:
            (fr,) = decode_groups(bs, models, frames=[0], groups=[1], masks=True)
        with torch.no_grad():
            pictures.append(synth(compose(fr, layout=LAYOUT)))
    assert torch.equal(*pictures)


def test_reading_another_unit_would_be_caught(models, stream):
    """The partial-stream check is real: decoding the background from it fails its checksum."""
    with ssb.open(stream) as bs:
        sel = bs.select(groups=[1], frames=[0], include_shared=False)
    with ssb.open(_partial(stream, sel.byte_ranges)) as bs, pytest.raises(SSBError):
        list(decode_groups(bs, models, frames=[0]))


def test_class_query_byte_ranges_exclude_other_groups(models, stream):
    with ssb.open(stream) as bs:
        sel = bs.select(classes=[1])
        others = [u for u in bs.units if u.frame is not None and u.type in
                  (UnitType.BACKGROUND, UnitType.OBJECT, UnitType.GROUP_MASK) and u.class_id != 1]
        assert others
        assert {u.type for u in sel.units} == {UnitType.SEQUENCE_HEADER, UnitType.FRAME_HEADER, UnitType.OBJECT,
                                               UnitType.GROUP_MASK}
        for u in others:
            a, b = u.span
            assert all(b <= lo or a >= hi for lo, hi in sel.byte_ranges), u
        assert sel.nbytes < bs.size / 2
        # the decoder of a class query reads exactly those units' payloads (the index holds their CRCs)
        opened = bs.bytes_read
        frames = list(decode_groups(bs, models, classes=["person"], masks=True))
        assert bs.bytes_read - opened == sum(u.size for u in sel.units if u.type in
                                             (UnitType.OBJECT, UnitType.GROUP_MASK))
    assert [len(f.groups) for f in frames] == [1, 1] and all(f.background is None for f in frames)
    assert all(g.class_id == 1 for f in frames for g in f.groups)


def test_full_decode_composes_every_part(models, codec, stream):
    with ssb.open(stream) as bs:
        (fr,) = decode_groups(bs, models, frames=[0], masks=True)
        bg = codec.decompress(unpack_features(bs.frame(0).units[0].payload(), ctx=CTX))
    assert fr.background is not None and torch.equal(fr.background, bg)
    assert sorted(g.group_id for g in fr.groups) == [1, 2]
    canvas = compose(fr, layout=LAYOUT)
    assert canvas.shape == (1, 32, *LAYOUT.grid) and not torch.equal(canvas, bg)


def test_decoding_refuses_streams_of_other_models(models):
    from ssb.format import SequenceHeader

    buf = io.BytesIO()
    with Writer(buf, SequenceHeader(4, 4, codec="ssb.grouped", metadata={"model": "other@1"})):
        pass
    with ssb.open(buf.getvalue()) as bs, pytest.raises(SSBError):
        list(decode_groups(bs, models))


def test_encoder_needs_labels_or_a_detector(models, image):
    with pytest.raises(MalformedFieldError, match="detector"):
        _encode(models, [_frame_in(0, image)], objects=None)


def test_auto_groups_from_detections(models, image):
    data = _encode(models, [_frame_in(0, image)])  # no labels: the boxes become the masks
    with ssb.open(data) as bs:
        units = bs.frame(0).units
        assert [u.class_id for u in units if u.type == UnitType.OBJECT] == [1, 3]
        assert units[1].bbox == (16.0, 18.0, 44.0, 82.0)


# ---------------------------------------------------------------------------------- payloads
def test_object_group_payload_errors(stream):
    payload = _units(stream)[(UnitType.OBJECT, 1)]
    r0, c0, item = unpack_window(payload, ctx=CTX)
    assert pack_window(r0, c0, item) == payload
    with pytest.raises((TruncatedError, MalformedFieldError)):
        unpack_window(payload[:3], ctx=CTX)
    bad = bytearray(payload)
    bad[0] = 7
    with pytest.raises(MalformedFieldError, match="version"):
        unpack_window(bytes(bad), ctx=CTX)
    moved = pack_window(LAYOUT.grid[0] - 1, c0, item)
    with pytest.raises(MalformedFieldError, match="inside the model's split grid") as err:
        unpack_window(moved, ctx=CTX, offset=50, field="unit[3]")
    assert err.value.offset == 51 and err.value.field == "unit[3].payload.row0"


# ---------------------------------------------------------------------------------- composition
def _frame(features, window, mask=None, background=None) -> GroupedFrame:
    g = DecodedGroup(1, 0, 1, 0.9, None, window, features, mask)
    return GroupedFrame(0, (8 * 14, 8 * 14), (14, 14), 2, 0, background, [g])


def test_compose_modes():
    lay = GroupLayout(input_size=108)
    feats = torch.ones(1, 2, 4, 4)
    bg = torch.full((1, 2, 14, 14), 5.0)
    # window paste on zeros: exactly the window
    out = compose(_frame(feats, (2, 4)), paste="window", layout=lay)
    assert out[..., 2:6, 4:8].eq(1).all() and out.sum() == feats.sum()
    # soft paste: fully covered cells take the group, uncovered cells keep the background
    mask = np.zeros((8 * 14, 8 * 14), bool)
    mask[16:32, 32:48] = True  # split cells 2..3 x 4..5 once resized to 108 pixels
    unit = MaskUnit(32, 16, mask[16:32, 32:48])
    out = compose(_frame(feats, (2, 4), unit, bg), layout=lay)
    assert out[..., 6:, :].eq(5).all() and out[..., :2, :].eq(5).all()
    assert out[..., 2, 4].eq(1).all()  # a fully covered cell
    with pytest.raises(MalformedFieldError):
        compose(_frame(feats, (2, 4)), base="background", layout=lay)
    with pytest.raises(MalformedFieldError):
        compose(_frame(feats, (2, 4)), paste="soft", layout=lay)  # needs the mask
    with pytest.raises(MalformedFieldError):
        compose(_frame(feats, (2, 4)), base="neutral", layout=lay)


# ---------------------------------------------------------------------------------- mask sources
def test_labels_from_detections_priority_and_fallback():
    dets = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0], [0.0, 0.0, 2.0, 2.0]]),
            "labels": torch.tensor([1, 1, 3]), "scores": torch.tensor([0.6, 0.9, 0.4])}
    labels, infos = labels_from_detections(dets, (20, 20))
    assert infos == [GroupInfo(1, 1, pytest.approx(0.9)), GroupInfo(2, 1, pytest.approx(0.6))]
    assert (labels[5:15, 5:15] == 1).all()  # the better detection keeps the overlap
    assert (labels[0:5, 0:10] == 2).all() and labels[16:, 16:].max() == 0
    fg = np.zeros((20, 20), bool)
    fg[6:14, 8:12] = True  # foreground inside the best box: its mask is the foreground only
    labels, _ = labels_from_detections(dets, (20, 20), fg)
    assert (labels == 1).sum() == fg.sum()
    # no foreground in its unclaimed part: the box fallback (minus the pixels group 1 took)
    assert (labels == 2).sum() == 100 - (labels[:10, :10] == 1).sum() and (labels[:10, :10] == 1).sum() == 8


def test_describe_groups_and_checks(tmp_path, labels):
    infos = describe_groups(labels, fake_detector(None, [(H, W)])[0])
    assert [(i.group_id, i.class_id) for i in infos] == [(1, 1), (2, 3)]
    assert [i.class_id for i in describe_groups(labels)] == [None, None]
    with pytest.raises(MalformedFieldError):
        check_labels(labels, (H + 1, W))
    with pytest.raises(MalformedFieldError):
        check_labels(labels.astype(np.float32), (H, W))
    with pytest.raises(LimitExceededError):
        check_labels(np.full((2, 2), 60000, np.uint16), (2, 2))
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "masks.png"
    cv2.imwrite(str(path), labels)
    assert np.array_equal(read_label_image(path), labels)
    with pytest.raises(MalformedFieldError):
        read_label_image(tmp_path / "missing.png")
    colour = tmp_path / "colour.png"
    cv2.imwrite(str(colour), np.dstack([labels.astype(np.uint8), np.zeros((H, W), np.uint8), labels.astype(np.uint8)]))
    with pytest.raises(MalformedFieldError, match="one channel"):
        read_label_image(colour)


# ---------------------------------------------------------------------------------- real frames
@pytest.fixture(scope="module")
def real():
    """Shipped codec, teacher front and head, vtest frame 640 grouped automatically (MOG2 from frame 600)."""
    from ssb.errors import MissingDependencyError

    try:
        from ssb.media import frames
        from ssb.pipeline import Models
        from ssb.resources import vtest_path

        video = list(frames(vtest_path(), frames=range(600, 641)))
        models = Models()
        enc = GroupEncoder(models.zoo, quality=3, detector=models.detector())
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    for f in video[:-1]:
        enc.observe(f)
    item = video[-1]
    labels, infos = enc.groups_of(item.image, enc.observe(item))
    data = _encode_real(enc, Frame(item.index, item.image, info={"labels": labels}))
    return models, enc, item, labels, infos, data, video[0].image


def _encode_real(enc, frame) -> bytes:
    buf = io.BytesIO()
    with Writer(buf, enc.header(frame)) as w:
        enc.encode(w, frame)
    return buf.getvalue()


@pytest.mark.teacher
@pytest.mark.media
def test_real_frame_independence(real):
    models, enc, item, labels, infos, data, other = real
    assert sum(i.class_id == 1 for i in infos) >= 2  # several people in this frame
    before = _units(data, item.index)
    g = next(i.group_id for i in infos if i.class_id == 1)
    changed = np.where((labels == g)[..., None], item.image, other)  # another frame around the person
    after = _units(_encode_real(enc, Frame(item.index, changed, info={"labels": labels})), item.index)
    assert after[(UnitType.OBJECT, g)] == before[(UnitType.OBJECT, g)]
    assert after[(UnitType.GROUP_MASK, g)] == before[(UnitType.GROUP_MASK, g)]
    assert after[(UnitType.BACKGROUND, 0)] != before[(UnitType.BACKGROUND, 0)]
    with ssb.open(data) as bs:
        full = {x.group_id: x for x in next(decode_groups(bs, models.zoo, masks=True)).groups}
        ranges = bs.select(groups=[g]).byte_ranges
    with ssb.open(_partial(data, ranges)) as bs:
        (alone,) = next(decode_groups(bs, models.zoo, groups=[g], masks=True)).groups
    assert torch.equal(alone.features, full[g].features)
    assert np.array_equal(alone.mask.full(*labels.shape), labels == g)


@pytest.mark.teacher
@pytest.mark.media
def test_real_person_query_reads_only_person_units(real):
    from ssb.pipeline import analyze

    models, _, _, _, _, data, _ = real
    full = analyze(data, classes=["person"], models=models)
    with ssb.open(data) as bs:
        person = sum(u.size for u in bs.units if u.class_id == 1)
        structure = sum(u.size for u in bs.units if u.frame is None or u.type == UnitType.FRAME_HEADER)
    assert full.bytes_read <= 16 + structure + person < full.file_size
    dets = full.frames[0].predictions["detection"]
    assert len(dets["labels"]) >= 1 and set(dets["labels"].tolist()) == {1}


@pytest.mark.teacher
@pytest.mark.media
def test_cli_grouped_encode_analyze_and_selective_decode(tmp_path, capsys):
    """``ssb encode --groups auto`` -> ``ssb analyze --classes person`` -> ``ssb decode --classes person``.

    The pixel decoder is a throwaway random one stamped as trained behind the shipped codec: this checks
    the selective path (which units, which pixels are opaque), not picture quality.
    """
    from ssb.cli import main
    from ssb.codec import zoo
    from ssb.codec.pixels import PixelSynthesis
    from ssb.errors import MissingDependencyError
    from ssb.resources import vtest_path

    try:
        video = vtest_path()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    out = tmp_path / "g.ssb"
    assert main(["encode", str(video), "--frames", "640:641", "--groups", "auto", "-o", str(out)]) == 0
    assert "group(s)" in capsys.readouterr().out
    assert main(["analyze", str(out), "--classes", "person"]) == 0
    printed = capsys.readouterr()
    assert "person" in printed.out and "read " in printed.err
    with ssb.open(out) as bs:
        person = [u for u in bs.units if u.class_id == 1]
        assert {u.type for u in person} == {UnitType.OBJECT, UnitType.GROUP_MASK}
        person_masks = np.zeros((bs.header.height, bs.header.width), bool)
        for u in person:
            if u.type == UnitType.GROUP_MASK:
                from ssb.codec.mask_coding import unpack_group_mask

                person_masks |= unpack_group_mask(u.payload(), person_masks.shape).full(*person_masks.shape)
    pixel_weights = zoo.save(tmp_path / "pixels.pt", PixelSynthesis(32, 8), kind="pixels", name="pixels-test",
                             version=1, config={"in_channels": 32, "width": 8}, behind=zoo.MODEL_ID)
    png = tmp_path / "people.png"
    assert main(["decode", str(out), "--frames", "640", "--classes", "person", "--pixel-weights",
                 str(pixel_weights), "-o", str(png)]) == 0
    from PIL import Image

    with Image.open(png) as im:
        assert im.mode == "RGBA" and im.size == (person_masks.shape[1], person_masks.shape[0])
        alpha = np.asarray(im)[..., 3]
    assert np.array_equal(alpha > 0, person_masks)


def test_untrained_fusion_is_the_plain_composition_and_a_trained_one_changes_it(models, stream):
    from ssb.codec.fusion import GroupFusion
    from ssb.codec.groups import GroupedDecoder, fuse, fusion_inputs

    with ssb.open(stream) as bs:
        (fr,) = decode_groups(bs, models, frames=[0], masks=True)
    pasted, bg, groups, coverage = fusion_inputs(fr, LAYOUT)
    assert torch.equal(pasted, compose(fr, layout=LAYOUT)) and torch.equal(bg, fr.background)
    assert coverage.shape == (1, 1, *LAYOUT.grid) and 0 < float(coverage.max()) <= 1.0
    assert float(groups.abs().sum()) > 0 and float(groups[..., coverage[0, 0] == 0].abs().sum()) == 0
    fusion = GroupFusion(32, 8)
    assert torch.equal(fuse(fr, fusion, LAYOUT), pasted)
    with torch.no_grad():
        fusion.net[-1].bias.fill_(0.5)
    assert torch.allclose(fuse(fr, fusion, LAYOUT), pasted + 0.5)

    def features(fusion, **query):
        with ssb.open(stream) as bs:
            dec = GroupedDecoder(bs, models, fusion=fusion)
            return [dec.decode(s).features["split"] for s in dec.plan(**query)]

    # whole-frame decodes go through the fusion; a class query (no background) does not
    whole, query = features(fusion, frames=[0]), features(fusion, frames=[0], classes=[1])
    assert torch.allclose(whole[0], pasted + 0.5)
    with ssb.open(stream) as bs:
        (qfr,) = decode_groups(bs, models, frames=[0], classes=[1], masks=True)
    assert torch.equal(query[0], compose(qfr, layout=LAYOUT))  # trained for whole frames only
    # a fusion trained for queries too also serves them, on the groups alone
    both = GroupFusion(32, 8, modes=("whole", "query"))
    with torch.no_grad():
        both.net[-1].bias.fill_(0.25)
    q_in = fusion_inputs(qfr, LAYOUT)
    assert torch.equal(q_in[0], q_in[2]) and not q_in[1].any()
    assert torch.allclose(features(both, frames=[0], classes=[1])[0], compose(qfr, layout=LAYOUT) + 0.25)


def test_fusion_weights_are_bound_to_the_codec_they_were_trained_behind(tmp_path):
    from ssb.codec import zoo
    from ssb.codec.fusion import GroupFusion
    from ssb.errors import ModelMismatchError

    ckpt = zoo.save(tmp_path / "fusion.pt", GroupFusion(32, 8), kind="fusion", name="fusion-test", version=1,
                    config={"channels": 32, "width": 8}, behind="omni-ssd-mbv2.s8@1")
    assert isinstance(zoo.load("fusion", ckpt, behind="omni-ssd-mbv2.s8@1"), GroupFusion)
    with pytest.raises(ModelMismatchError, match="trained behind"):
        zoo.load("fusion", ckpt, behind="omni-ssd-mbv2.s8@2")
    with pytest.raises(ModelMismatchError, match="no fusion weights"):
        zoo.load("fusion", tmp_path / "absent.pt")
    with pytest.raises(ModelMismatchError, match="not a pose model"):
        zoo.load("pose", ckpt)


def test_background_at_its_own_level(models, codec, image, labels, stream):
    low, same = _units(_encode(models, [_frame_in(0, image, labels)], background_quality=0)), _units(stream)
    assert unpack_features(low[(int(UnitType.BACKGROUND), 0)], ctx=CTX).level == 0
    assert unpack_features(same[(int(UnitType.BACKGROUND), 0)], ctx=CTX).level == LEVEL
    # the groups are untouched by the background's level
    assert {k: v for k, v in low.items() if k[1]} == {k: v for k, v in same.items() if k[1]}


@pytest.mark.teacher
@pytest.mark.media
def test_shipped_fusion_brings_a_real_frame_closer_to_the_teacher(real):
    """On a held-out frame, the shipped fusion's features are nearer the teacher's whole-frame features."""
    from ssb.codec.groups import fuse

    models, _, item, _, _, data, _ = real
    fusion = models.zoo.get("fusion", behind=models.zoo.codec().identity.id)
    with torch.no_grad():
        target = models.zoo.front()(preprocess([item.image]))
    with ssb.open(data) as bs:
        (fr,) = decode_groups(bs, models.zoo, masks=True)
    plain = float((compose(fr) - target).pow(2).mean())
    fused = float((fuse(fr, fusion) - target).pow(2).mean())
    assert fused < 0.9 * plain
