"""Payload-level fuzzing (issue 13): the structure-aware fuzzer of ``scripts/fuzz_payloads.py`` on real
streams in CI, and a regression test for each bug it found.

The fuzz run (``teacher``, ``media``) codes real vtest.avi frames with the shipped models, mutates
the payloads, the index and the frame headers past the container's CRCs and runs the analysis and
pixel paths in a worker subprocess under time and memory limits: every case must end in a clean
``SSBError`` or a bounded result, and each mutation family must really reach the codec's payload
decoders (not stop at a checksum).  The regression tests below it use the tiny codec (no teacher).
"""

from __future__ import annotations

import importlib.util
import io
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import ssb
from ssb.codec import registry
from ssb.errors import LimitExceededError, MalformedFieldError, SSBError, TruncatedError
from ssb.format import UnitType, Writer
from ssb.format.edit import replace_payloads, rewrite_frame
from ssb.format.payloads import FEATURES, GROUP_MASK, OBJECT_GROUP, OBJECT_SCALE, mask_min_bytes
from ssb.media import Frame

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


fuzz = _load("fuzz_payloads", ROOT / "scripts" / "fuzz_payloads.py")
tiny = _load("tiny_codec", ROOT / "tests" / "codec" / "tiny_codec.py")

#: the CI run: cases 0..CI_CASES-1 of this seed (deterministic: same seed streams, same mutations)
CI_SEED = 13
CI_CASES = 320


pytestmark = pytest.mark.usefixtures("torch_one_thread")


# ============================================================================ the fuzzer, real models
@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """One fuzz worker (shipped models, loaded once) and the real seed streams."""
    pytest.importorskip("cv2")
    from ssb.errors import MissingDependencyError
    from ssb.resources import ssd_mobilenet_v2_files, vtest_path

    try:
        vtest_path(), ssd_mobilenet_v2_files()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    with fuzz.Session(1, findings=tmp_path_factory.mktemp("fuzz_findings")) as s:
        yield s


@pytest.mark.teacher
@pytest.mark.media
def test_payload_fuzz_finds_nothing_and_reaches_the_codec(session):
    report = fuzz.run(CI_CASES, CI_SEED, session=session)
    print(report.table())
    assert report.cases == CI_CASES and report.generator_errors == []
    assert report.findings == [], report.table()
    for family in fuzz.FAMILIES:
        c = report.families[family]
        assert c["cases"] == CI_CASES // len(fuzz.FAMILIES)
        # past the CRCs: the codec refused the case (or decoded it), not the container
        assert c["codec"] + c["ok"] >= c["cases"] // 3, (family, dict(c))
        # payload parsing / entropy decoding inside ssb.codec refused the mutation
        assert c["payload"] >= (1 if family == "index" else c["cases"] // 5), (family, dict(c))
    fams = report.families
    assert sum(c["entropy"] for c in fams.values()) >= 20  # the entropy decoders were reached
    assert fams["index"]["ok"] >= 10  # index edits that decode are bounded successes
    assert sum(c["ok"] for c in fams.values()) >= 30
    assert report.outcomes[("analyze", "SSBError:ChecksumError")] == 0  # CRCs always recomputed
    fields = set(report.fields)
    for want in ("unit[*].payload.rows", "unit[*].payload.mask", "unit[*].payload.moving", "unit[*].payload.y",
                 "unit[*].payload.z", "unit[*].payload.level"):
        assert want in fields, sorted(fields)
    assert report.slowest < fuzz.DEFAULT_TIME_LIMIT


def _set_fields(syn, payload: bytes, **changes) -> bytes:
    rec, _ = syn.decode(payload)
    values = {k: (bytes(v) if isinstance(v, memoryview) else v) for k, v in rec.items()}
    values.update(changes)
    for f in syn.fields:  # re-derive the counts of bytes fields that were changed
        if f.count is not None and f.name in changes:
            values[f.count] = None
    return syn.pack(values, validate=False)


def _unit(data: bytes, type_: UnitType, k: int = 0):
    return [u for u in fuzz._units(data) if u.type == type_][k]


def _frame_meta(data: bytes, position: int, meta: dict) -> bytes:
    def mutate(values, payloads):
        values["flags"] |= 2
        values["metadata"] = meta
    return rewrite_frame(data, position, mutate)


@pytest.mark.teacher
@pytest.mark.media
def test_issue_13_cases_on_real_streams(session):
    """The 4096 case of the issue and each fuzz finding, on the real seed streams, both paths."""
    image, grouped = session.raw_seeds["image"], session.raw_seeds["grouped"]
    base = _unit(image, UnitType.BASE)
    bomb = replace_payloads(image, {base.number: _set_fields(FEATURES, base.payload, rows=4096, cols=4096)})
    res = session.run_stream(bomb)
    for path in ("analyze", "pixels"):
        assert res[path]["cls"] == "MalformedFieldError" and res[path]["field"] == f"unit[{base.number}].payload.rows"
    # fuzz seed 2, cases 146, 438, 422, 470: a frame size in the frame metadata reached cv2.resize
    # (cv2.error), np.arange (MemoryError) and the pixel decoder (over 2 GB); now the reader refuses it
    for meta in ({"height": 0}, {"width": -1}, {"height": 10 ** 12, "width": 65535}, {"height": 576.0},
                 {"width": True}, {"height": "576"}):
        for seed in (image, grouped):
            res = session.run_stream(_frame_meta(seed, 0, meta))
            n = fuzz._frame_count(seed)
            assert res["analyze"] == {**res["analyze"], "kind": "ok", "frames": n - 1}, (meta, res)
            assert res["pixels"]["kind"] == "ok" and res["pixels"]["frames"] == n - 1, (meta, res)
    res = session.run_stream(_frame_meta(image, 0, {"height": 32768, "width": 32768}))
    assert res["analyze"]["kind"] == "ok"
    assert res["pixels"]["cls"] == "LimitExceededError" and res["pixels"]["field"] == "image_size"
    # an object-scale unit declaring a 4096 x 4096 grid, or a window far off the frame: refused by field
    objects = session.raw_seeds["objects"]
    view = _unit(objects, UnitType.OBJECT_SCALE)
    for change, field in (({"rows": 4096, "cols": 4096}, "rows"), ({"x0": 10 ** 6}, "x0")):
        res = session.run_stream(replace_payloads(objects, {view.number: _set_fields(OBJECT_SCALE, view.payload,
                                                                                     **change)}))
        assert res["analyze"]["cls"] == "MalformedFieldError", res
        assert res["analyze"]["field"] == f"unit[{view.number}].payload.{field}", res
    # a 16.7 M pixel mask box declared by a few bytes (inside a frame made that large): refused at once
    mask = _unit(grouped, UnitType.GROUP_MASK)
    big = _frame_meta(replace_payloads(grouped, {mask.number: _set_fields(GROUP_MASK, mask.payload, x0=0, y0=0,
                                                                          width=4096, height=4096)}),
                      0, {"height": 4096, "width": 4096})
    res = session.run_stream(big)
    for path in ("analyze", "pixels"):
        assert res[path]["field"] == f"unit[{mask.number}].payload.mask" and res[path]["seconds"] < 2, res
    # entropy decoder errors name the payload field and the absolute offset
    obj = _unit(grouped, UnitType.OBJECT)
    rec, _ = OBJECT_GROUP.decode(obj.payload)
    bad = _set_fields(OBJECT_GROUP, obj.payload, z=bytes(rec["z"])[:-1])
    res = session.run_stream(replace_payloads(grouped, {obj.number: bad}))
    assert res["analyze"]["field"] == f"unit[{obj.number}].payload.z", res
    assert res["analyze"]["cls"] == "TruncatedError" and res["analyze"]["offset"] is not None


# ============================================================================ regression tests, tiny codec
@pytest.fixture(scope="module")
def models():
    return tiny.TinyModels()


@pytest.fixture(scope="module")
def image_stream(models) -> bytes:
    """Two 120 x 160 frames coded by the tiny codec as an ``ssb.image`` stream."""
    rng = np.random.default_rng(0)
    enc = registry.encoder("ssb.image", models, quality=1)
    frames = [Frame(i, rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)) for i in range(2)]
    buf = io.BytesIO()
    with Writer(buf, enc.header(frames[0])) as w:
        for f in frames:
            enc.encode(w, f)
    return buf.getvalue()


def _decode_all(models, data: bytes) -> list:
    with ssb.open(data) as bs:
        dec = registry.decoder(bs, models)
        return [dec.decode(step) for step in dec.plan()]


@pytest.mark.parametrize("value, exc", [(0, MalformedFieldError), (-1, MalformedFieldError),
                                        (1.5, MalformedFieldError), (576.0, MalformedFieldError),
                                        (True, MalformedFieldError), ("576", MalformedFieldError),
                                        (None, MalformedFieldError), ([576], MalformedFieldError),
                                        (32769, LimitExceededError), (10 ** 12, LimitExceededError)])
@pytest.mark.parametrize("key", ["height", "width"])
def test_the_reader_refuses_a_bad_frame_size_in_the_frame_metadata(image_stream, key, value, exc):
    """Fuzz seed 2 cases 146, 422, 438: ``{"height": 0}`` reached ``cv2.resize`` (cv2.error) and
    ``{"height": 10**12}`` ``np.arange`` (MemoryError); the frame is now malformed for the reader."""
    data = _frame_meta(image_stream, 0, {key: value})
    with ssb.open(data) as bs:
        assert [f.frame_index for f in bs.frames] == [1]
        err = bs.errors[0]  # (then END's counts: a fragment was lost)
        assert type(err) is exc and err.field == f"unit[1].payload.metadata.{key}" and err.offset is not None


def test_the_writer_refuses_a_bad_frame_size_in_the_frame_metadata():
    w = Writer(io.BytesIO(), ssb.format.SequenceHeader(160, 120))
    with pytest.raises(MalformedFieldError) as e:
        w.begin_frame(0, metadata={"height": 0, "width": 4})
    assert e.value.field == "frame[0].metadata.height"
    with pytest.raises(LimitExceededError):
        w.begin_frame(0, metadata={"width": 1 << 20})
    w.begin_frame(0, metadata={"height": 90, "width": 4})


@pytest.mark.parametrize("size", [(1, 1), (300, 400), (32768, 32768)])
def test_a_frame_size_within_the_limits_is_read(models, image_stream, size):
    data = _frame_meta(image_stream, 1, {"height": size[0], "width": size[1]})
    with ssb.open(data) as bs:
        assert not bs.errors and bs.frames[1].metadata == {"height": size[0], "width": size[1]}
    assert [df.image_size for df in _decode_all(models, data)] == [(120, 160), size]


def test_the_pixel_decoder_refuses_sizes_it_cannot_make_before_allocating():
    """Fuzz seed 2 case 470: a 32768 x 32768 frame (within the container's limits) took the pixel
    decoder past 2 GB; :func:`ssb.codec.pixels.render` refuses it, and sizes that are no size."""
    from ssb.codec.pixels import MAX_RENDER_PIXELS, PixelSynthesis, render

    net = PixelSynthesis(in_channels=8, width=8).eval()
    split = torch.zeros(1, 8, 38, 38)
    assert render(net, split, (30, 40)).shape == (30, 40, 3)
    for size in [(0, 10), (10, -1), (10.0, 10), (True, 10), (10,)]:
        with pytest.raises(MalformedFieldError):
            render(net, split, size)
    tracemalloc.start()
    try:
        for size in [(32768, 32768), (MAX_RENDER_PIXELS + 1, 1), (1 << 40, 1 << 40)]:
            with pytest.raises(LimitExceededError) as e:
                render(net, split, size)
            assert e.value.field == "image_size"
        assert tracemalloc.get_traced_memory()[1] < 16 << 20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("string", ["z", "y"])
def test_entropy_decoder_errors_name_the_payload_field_and_offset(models, image_stream, string):
    """The entropy decoders knew neither the unit nor where their string starts (``field
    GaussianConditional.payload, byte offset 0``); the image and grouped decoders now say both."""
    base = _unit(image_stream, UnitType.BASE, 1)
    rec, _ = FEATURES.decode(base.payload)
    cut = bytes(rec[string])[:-1] if len(rec[string]) else b"\x01"  # not whole u32 words
    data = replace_payloads(image_stream, {base.number: _set_fields(FEATURES, base.payload, **{string: cut})})
    with ssb.open(data) as bs:
        u = next(x for x in bs.units if x.number == base.number)
        start = u.offset + rec.offsets[string]
        dec = registry.decoder(bs, models)
        steps = list(dec.plan())
        dec.decode(steps[0])
        with pytest.raises(TruncatedError) as e:
            dec.decode(steps[1])
    assert e.value.field == f"unit[{base.number}].payload.{string}"
    assert start <= e.value.offset <= start + len(cut)


def test_mutations_are_deterministic_and_keep_the_crcs(image_stream):
    """Case ``i`` of seed ``s`` is the same bytes every time, and every unit's CRC still verifies."""
    seeds = {name: fuzz.Seed(name, image_stream) for name in fuzz.SEED_NAMES}
    for i in range(200):
        a, b = fuzz.make_case(seeds, 5, i), fuzz.make_case(seeds, 5, i)
        assert a.data == b.data and a.steps == b.steps and a.family == fuzz.FAMILIES[i % 4]
        try:
            with ssb.open(a.data) as bs:
                for u in bs.units:
                    if u.header_size == 0:
                        assert zlib.crc32(u.payload()) == u.crc
        except SSBError:
            pass  # an index edit may break the frame header's syntax: refused cleanly


def test_a_few_mask_bytes_cannot_make_the_decoder_scan_a_huge_box():
    """A GROUP_MASK of a few bytes over a 4096 x 4096 box (in a frame that large) made the mask decoder
    scan 16.7 M pixels in Python (seconds per unit) before refusing it: decoding time was not bounded by
    the payload's size.  The syntax now asks for at least half the cheapest coding of a tight box."""
    from ssb.codec.mask_coding import pack_group_mask, unpack_group_mask

    assert mask_min_bytes(4096, 4096) == 732 and mask_min_bytes(768, 576) == 12 and mask_min_bytes(38, 38) == 0
    for n in (12, 728):
        payload = GROUP_MASK.pack({"version": 1, "coder": 1, "x0": 0, "y0": 0, "width": 4096, "height": 4096,
                                   "mask": bytes(range(n % 256)) * (n // 256) + bytes(n % 256)}, validate=False)
        t0 = time.perf_counter()
        with pytest.raises(MalformedFieldError) as e:
            unpack_group_mask(payload, (4096, 4096), unit_offset=100, field="unit[3]")
        assert e.value.field == "unit[3].payload.mask" and e.value.offset == 110
        assert time.perf_counter() - t0 < 0.5
    # the cheapest masks there are (solid; empty but for the corners; thin lines) are well above the bound
    for shape, fill in [((600, 800), "solid"), ((800, 600), "corners"), ((2000, 3), "solid"), ((3, 2000), "corners"),
                        ((4000, 1), "solid")]:
        mask = np.ones(shape, bool) if fill == "solid" else np.zeros(shape, bool)
        mask[0, 0] = mask[0, -1] = mask[-1, 0] = mask[-1, -1] = True
        payload = pack_group_mask(mask)
        rec, _ = GROUP_MASK.decode(payload)
        assert len(rec["mask"]) >= 2 * mask_min_bytes(shape[1], shape[0])
        assert np.array_equal(unpack_group_mask(payload, shape).mask, mask)
