"""``ssb.video``: GOP structure, closed-loop prediction, random access, motion-only reads, cut streams,
the integer warp, motion coding, tracks.  Tiny codec, tiny video model, synthetic clips (unit tests)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from tiny_codec import TinyModels, tiny_video_coder

import ssb
from ssb.codec import registry
from ssb.codec.video.motion import MotionField, latent_motion, pack_motion, unpack_motion, warp_latent
from ssb.errors import MalformedFieldError, SSBError
from ssb.format import UnitType, Writer
from ssb.media import Frame

H, W = 120, 160
GOP = 5


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def models():
    return TinyModels(extra={"video": tiny_video_coder()})


def clip(n: int = 12, seed: int = 0) -> list[Frame]:
    """A textured static background and a bright square moving right by 4 px a frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    bg = np.stack([xx * 255 / W, yy * 255 / H, 128 + 60 * np.sin(xx / 7.0)], -1) + rng.normal(0, 8, (H, W, 3))
    out = []
    for t in range(n):
        img = bg + rng.normal(0, 2, bg.shape)  # sensor noise
        x0 = 20 + 4 * t
        img[40:80, x0 : x0 + 30] = [250, 40, 40]
        out.append(Frame(t, np.clip(img, 0, 255).astype(np.uint8), pts=t * 100_000, fps=10.0, video=True))
    return out


def _encode(models, frames, **options) -> tuple[bytes, object]:
    enc = registry.encoder("ssb.video", models, quality=1, gop=GOP, **options)
    buf = io.BytesIO()
    with Writer(buf, enc.header(frames[0])) as w:
        for f in frames:
            enc.encode(w, f)
    return buf.getvalue(), enc


@pytest.fixture(scope="module")
def stream(models):
    return _encode(models, clip())


def _decode(models, data, frames=None, need=("features",)):
    with ssb.open(data) as bs:
        dec = registry.decoder(bs, models)
        out = {}
        for step in dec.plan(frames=frames, need=need):
            df = dec.decode(step)
            if step.output:
                out[df.frame_index] = df
        return out, bs.bytes_read


def test_gop_structure_and_units(stream):
    data, enc = stream
    with ssb.open(data) as bs:
        assert bs.header.codec == "ssb.video" and bs.header.metadata["object_ids"] == "tracks"
        assert bs.header.metadata["video"] == {"model": "tiny-video.s8@1"}
        keys = [f.frame_index for f in bs.frames if f.key]
        assert keys == [0, 5, 10] and enc.key_frames == 3
        for f in bs.frames:
            kinds = [u.type for u in f.units]
            assert f.refs == (() if f.key else (f.frame_index - 1,))
            assert (UnitType.BASE in kinds) == f.key and (UnitType.RESIDUAL in kinds) == (not f.key)
            assert (UnitType.MOTION in kinds) == (f.frame_index > 0)
            assert f.pts == f.frame_index * 100_000


def test_closed_loop_sequential_and_random_access_decode_agree(models, stream):
    data, enc = stream
    seq, _ = _decode(models, data)
    assert sorted(seq) == list(range(12))
    for k in (3, 7, 11):  # a predicted frame decodes alone from its chain, to the very same features
        one, _ = _decode(models, data, frames=[k])
        assert list(one) == [k] and torch.equal(one[k].features["split"], seq[k].features["split"])
    # the decoder's latent of the last frame is the encoder's reference: nothing drifts
    with ssb.open(data) as bs:
        dec = registry.decoder(bs, models)
        for step in dec.plan(frames=[11]):
            dec.decode(step)
        assert torch.equal(dec._refs[11][0], enc._ref)


def test_prediction_saves_bits_on_a_static_camera(models):
    frames = clip()
    video, _ = _encode(models, frames)
    intra, _ = _encode(models, frames, intra_ratio=0.0)  # every prediction refused: all key frames
    with ssb.open(intra) as bs:
        assert all(f.key for f in bs.frames)
    assert len(video) < 0.8 * len(intra)


def test_random_access_reads_only_the_dependency_chain(models, stream):
    data, _ = stream
    with ssb.open(data) as bs:
        chain = sum(u.length for f in bs.frames if 5 <= f.frame_index <= 8 for u in f.units)
        other = sum(u.length for f in bs.frames if not 5 <= f.frame_index <= 8 for u in f.units)
        opened = bs.bytes_read
    _, read = _decode(models, data, frames=[8])
    assert read - opened == chain and chain < other


def test_motion_only_plan_reads_motion_units_alone(models, stream):
    data, _ = stream
    with ssb.open(data) as bs:
        motion_bytes = sum(u.length for f in bs.frames if f.frame_index in (3, 4) for u in f.units
                           if u.type == UnitType.MOTION)
        opened = bs.bytes_read
    got, read = _decode(models, data, frames=[3, 4], need=("motion",))
    assert read - opened == motion_bytes and sorted(got) == [3, 4]
    for df in got.values():
        assert df.features == {} and df.motion is not None
        dx, dy, share = df.motion.displacement((20 + 4 * df.frame_index, 40, 50 + 4 * df.frame_index, 80))
        assert share > 0 and dx > 1.5 and abs(dy) < 1.5  # the square moves right by 4 px a frame


def test_a_stream_cut_mid_gop_reads_up_to_its_last_complete_frame(models, stream):
    data, _ = stream
    with ssb.open(data) as bs:
        cut = bs.frame(8).offset + bs.frame(8).length // 2
    got, _ = _decode(models, data[:cut])
    assert sorted(got) == list(range(8))
    with ssb.open(data[:cut]) as bs, pytest.raises(SSBError):
        dec = registry.decoder(bs, models)
        list(dec.plan(frames=[9]))  # frame 9 is gone: nothing to plan, or its reference is missing
        raise SSBError("frame 9 was not in the cut stream", field="frames")


def test_a_predicted_frame_whose_reference_was_not_decoded_is_refused(models, stream):
    data, _ = stream
    with ssb.open(data) as bs:
        dec = registry.decoder(bs, models)
        step = next(s for s in dec.plan(frames=[7]) if s.frame.frame_index == 7)
        with pytest.raises(MalformedFieldError, match="not decoded first"):
            dec.decode(step)


def test_tracks_keep_their_ids_across_frames(models):
    def detector(split, sizes):
        t = detector.t
        detector.t += 1
        boxes = torch.tensor([[20.0 + 4 * t, 40, 50 + 4 * t, 80], [120, 10, 150, 50]])
        return [{"boxes": boxes, "labels": torch.tensor([1, 3]), "scores": torch.tensor([0.9, 0.8])}]

    detector.t = 0
    data, enc = _encode(models, clip(6), detector=detector)
    with ssb.open(data) as bs:
        ids = [[(d.class_id, d.object_id) for d in f.descriptors] for f in bs.frames]
        from ssb.format import summarize

        tracks = summarize(bs)["tracks"]
    assert all(frame == ids[0] for frame in ids) and len({i for _, i in ids[0]}) == 2
    assert [(t["first"], t["last"], t["frames"]) for t in tracks] == [(0, 5, 6), (0, 5, 6)]
    assert tracks[0]["path"][-1][1] > tracks[0]["path"][0][1]  # the person moved right


def test_warp_is_integer_exact_and_shifts_by_whole_cells():
    ref = torch.arange(2 * 6 * 6, dtype=torch.float32).reshape(1, 2, 6, 6)
    mv = torch.zeros(2, 6, 6, dtype=torch.int64)
    mv[0] = 64  # one latent cell right: content comes from x + 1
    out = warp_latent(ref, mv)
    assert torch.equal(out[..., :-1], ref[..., 1:]) and torch.equal(out[..., -1], ref[..., -1])
    mv[0] = 32  # half a cell: the integer mean, rounded half up
    half = warp_latent(ref, mv)
    assert torch.equal(half[..., :-1], torch.floor((ref[..., :-1] + ref[..., 1:]) / 2 + 0.5))
    assert half.dtype == ref.dtype and torch.equal(half, torch.round(half))


def test_motion_payload_round_trip_and_checks():
    coder = tiny_video_coder()
    v = np.zeros((2, 38, 38), dtype=np.int16)
    v[:, 10:14, 20:23] = [[[12]], [[-3]]]
    field = MotionField(v, (576, 768))
    payload = pack_motion(field, coder.gaussian_conditional)
    got = unpack_motion(payload, ctx={"grid": (38, 38)}, gaussian=coder.gaussian_conditional, frame_size=(576, 768),
                        input_size=300, stride=8)
    assert np.array_equal(got.vectors, v)
    assert latent_motion(got, (19, 19))[0, 5, 10].item() == 12  # 2x2 cells averaged
    with pytest.raises(MalformedFieldError, match="motion grid"):
        unpack_motion(payload, ctx={"grid": (19, 19)}, gaussian=coder.gaussian_conditional, frame_size=(576, 768),
                      input_size=300, stride=8)
    with pytest.raises(SSBError):
        unpack_motion(payload[:-3] + b"\xff\xff\xff", ctx={"grid": (38, 38)}, gaussian=coder.gaussian_conditional,
                      frame_size=(576, 768), input_size=300, stride=8)


def _decode_all(models, data):
    with ssb.open(data) as bs:
        dec = registry.decoder(bs, models)
        for step in dec.plan():
            dec.decode(step)


@pytest.mark.parametrize("unit_type,key", [(UnitType.RESIDUAL, "y"), (UnitType.RESIDUAL, "z"), (UnitType.BASE, "y"),
                                          (UnitType.MOTION, "vectors")])
def test_a_cut_string_is_refused_with_its_field_and_stream_offset(models, unit_type, key):
    """Fuzz findings: entropy errors inside video payloads named the entropy model, at an offset in the string."""
    from ssb.format.edit import replace_payloads
    from ssb.format.payloads import UNIT_PAYLOADS

    data, _ = _encode(models, clip(4))
    with ssb.open(data) as bs:
        u = next(u for f in bs.frames for u in f.units if u.type == unit_type and (unit_type != UnitType.MOTION
                                                                                or f.frame_index > 1))
        rec, _ = UNIT_PAYLOADS[int(unit_type)].decode(bytes(u.payload()))
        start = u.offset + rec.offsets[key]
        cut = bytearray(u.payload())
        del cut[rec.offsets[key] + 1]  # one byte less in the string: no longer whole u32 words
        number = u.number
    bad = replace_payloads(data, {number: bytes(cut)})
    with pytest.raises(SSBError) as e:
        _decode_all(models, bad)
    assert e.value.field == f"unit[{number}].payload.{key}"
    assert start <= e.value.offset <= start + len(cut)


def test_two_frame_level_units_of_a_kind_are_refused(models):
    """Fuzz finding: a key frame with two BASE units decoded silently with the last one."""
    data, enc = _encode(models, clip(1))
    with ssb.open(data) as bs:
        base = bytes(next(u for u in bs.frames[0].units if u.type == UnitType.BASE).payload())
        header, meta = bs.header, bs.frames[0].metadata
    buf = io.BytesIO()
    with Writer(buf, header) as w:
        w.begin_frame(0, metadata=meta)
        w.add_unit(UnitType.BASE, base)
        w.add_unit(UnitType.BASE, base)
        w.end_frame()
    with pytest.raises(MalformedFieldError, match="more than one frame-level BASE"):
        _decode_all(models, buf.getvalue())
