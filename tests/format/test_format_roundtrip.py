"""Property tests: whatever units are written, the reader returns them exactly, and a selection's
byte ranges are all a partial reader needs."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssb.format import SequenceHeader, UnitType, Writer
from ssb.format import open as ssb_open

CONTENT_TYPES = [
    t
    for t in UnitType
    if t
    not in (
        UnitType.SEQUENCE_HEADER,
        UnitType.FRAME_HEADER,
        UnitType.INDEX,
        UnitType.END,
        UnitType.METADATA,
        UnitType.EXTENSION,
    )
]
coord = st.floats(min_value=0, max_value=65535, allow_nan=False) | st.integers(0, 65535)
unit_interval = st.floats(min_value=0, max_value=1, allow_nan=False)
u32 = st.integers(0, 2**32 - 1)


@st.composite
def unit_specs(draw):
    type_id = draw(st.sampled_from(CONTENT_TYPES + [13, 999, 0x8000, 0xFFFF]))
    attrs = {}
    if draw(st.booleans()):
        attrs["object_id"] = draw(u32)
    if draw(st.booleans()):
        attrs["class_id"] = draw(st.integers(0, 90) | u32)
    if draw(st.booleans()):
        attrs["group_id"] = draw(u32)
    if draw(st.booleans()):
        x0, x1 = sorted((draw(coord), draw(coord)))
        y0, y1 = sorted((draw(coord), draw(coord)))
        attrs["bbox"] = (x0, y0, x1, y1)
    if draw(st.booleans()):
        attrs["score"] = draw(unit_interval)
    payload = draw(st.binary(max_size=64))
    return {"type": type_id, "payload": payload, "flags": draw(st.integers(0, 0xFFFF)), "attrs": attrs}


@st.composite
def streams(draw):
    n_frames = draw(st.integers(0, 5))
    indices = sorted(draw(st.sets(st.integers(0, 2**32 - 1), min_size=n_frames, max_size=n_frames)))
    frames = []
    for fi in indices:
        frames.append(
            {
                "frame_index": fi,
                "pts": draw(st.none() | st.integers(-(2**62), 2**62 - 1)),
                "metadata": draw(
                    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=2)
                ),
                "units": draw(st.lists(unit_specs(), max_size=6)),
            }
        )
    header = SequenceHeader(
        draw(st.integers(1, 4096)),
        draw(st.integers(1, 4096)),
        draw(st.integers(0, 120000)),
        draw(st.integers(1, 1001)),
        draw(st.text(max_size=12)),
        draw(st.dictionaries(st.text(max_size=4), st.integers(), max_size=3)),
    )
    return header, frames


def _write(header, frames, target):
    numbers = []
    with Writer(target, header) as w:
        for fr in frames:
            w.begin_frame(fr["frame_index"], pts=fr["pts"], metadata=fr["metadata"])
            for u in fr["units"]:
                numbers.append(w.add_unit(u["type"], u["payload"], flags=u["flags"], **u["attrs"]))
            w.end_frame()
    return numbers


def _px(v):
    return float(round(v))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_roundtrip(stream):
    header, frames = stream
    buf = io.BytesIO()
    numbers = _write(header, frames, buf)
    data = buf.getvalue()
    with ssb_open(data) as bs:
        assert bs.errors == [] and bs.complete
        assert bs.header == header
        assert [f.frame_index for f in bs.frames] == [f["frame_index"] for f in frames]
        got = [u for f in bs.frames for u in f.units]
        want = [u for f in frames for u in f["units"]]
        assert [u.number for u in got] == numbers
        assert all(bs.units[n] is u for n, u in zip(numbers, got))
        for fr, spec in zip(bs.frames, frames):
            assert fr.pts == spec["pts"] and fr.metadata == spec["metadata"]
        for u, spec in zip(got, want):
            a = spec["attrs"]
            assert int(u.type) == int(spec["type"]) and u.flags == spec["flags"]
            assert bytes(u.payload()) == spec["payload"]
            assert u.object_id == a.get("object_id") and u.class_id == a.get("class_id")
            assert u.group_id == a.get("group_id")
            assert u.bbox == (tuple(_px(v) for v in a["bbox"]) if "bbox" in a else None)  # integer pixels
            assert u.score == (round(a["score"] * 65535) / 65535 if "score" in a else None)
        assert bs.check() == []


@settings(max_examples=60, deadline=None)
@given(streams(), st.sets(st.integers(0, 90), max_size=3), st.booleans())
def test_selection_bytes_suffice(stream, classes, include_shared):
    """Zero every byte outside headers, indexes and the selection: the selected payloads still verify."""
    header, frames = stream
    buf = io.BytesIO()
    _write(header, frames, buf)
    data = buf.getvalue()
    with ssb_open(data) as bs:
        sel = bs.select(classes=classes, include_shared=include_shared)
        expected = {u.number for f in bs.frames for u in f.units if u.class_id in classes}
        assert {u.number for u in sel.units if u.class_id is not None} == expected
        assert sel.nbytes == sum(b - a for a, b in sel.byte_ranges)
        assert sorted(sel.byte_ranges) == sel.byte_ranges
        keep = np.zeros(len(data), dtype=bool)
        for a, b in sel.byte_ranges:
            keep[a:b] = True
        for u in bs.units:  # the structural bytes a reader parses before any query
            if u.type in (UnitType.SEQUENCE_HEADER, UnitType.FRAME_HEADER, UnitType.INDEX, UnitType.END):
                keep[slice(*u.span)] = True
            elif u.frame is None:
                keep[u.span[0] : u.offset] = True
        keep[:16] = True
        masked = np.frombuffer(data, dtype=np.uint8).copy()
        masked[~keep] = 0
    with ssb_open(masked.tobytes()) as partial:
        assert partial.errors == []
        psel = partial.select(classes=classes, include_shared=include_shared)
        assert [u.number for u in psel.units] == [u.number for u in sel.units]
        before = partial.bytes_read
        for u in psel.units:
            u.payload()  # verifies header and CRC: fails if any needed byte was zeroed
        assert partial.bytes_read - before <= sel.nbytes


def test_path_and_file_targets_write_identical_bytes(tmp_path):
    header = SequenceHeader(8, 8, codec="x")
    frames = [
        {
            "frame_index": 1,
            "pts": 5,
            "metadata": {},
            "units": [{"type": UnitType.BASE, "payload": b"abc", "flags": 0, "attrs": {}}],
        }
    ]
    buf = io.BytesIO()
    _write(header, frames, buf)
    _write(header, frames, tmp_path / "a.ssb")
    assert (tmp_path / "a.ssb").read_bytes() == buf.getvalue()
    assert not (tmp_path / "a.ssb.part").exists()
