"""Writer API: validation, atomic creation, abort, append and recovery."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from ssb.errors import MalformedFieldError
from ssb.format import SequenceHeader, UnitType, Writer, recover
from ssb.format import open as ssb_open

HEADER = SequenceHeader(64, 48, 25, 1, "w", {"classes": {"1": "person"}})


def _frame(w, index, n=2):
    w.begin_frame(index, pts=index * 40_000)
    w.add_unit(UnitType.BASE, b"base%d" % index)
    for k in range(n):
        w.add_unit(UnitType.OBJECT, b"o%d" % k, object_id=k, class_id=1, bbox=(k, k, k + 5, k + 5), score=0.9)
    w.end_frame()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"bbox": (5, 0, 1, 1)}, "index.x0"),
        ({"bbox": (0, 0, math.nan, 1)}, "bbox"),
        ({"bbox": (0, 0, 1)}, "bbox"),
        ({"bbox": (-1, 0, 1, 1)}, "bbox"),
        ({"bbox": (0, 0, 70000, 1)}, "bbox"),
        ({"score": math.inf}, "score"),
        ({"score": 1.5}, "score"),
        ({"object_id": -1}, "object_id"),
        ({"class_id": 2**32}, "class_id"),
        ({"group_id": "a"}, "group_id"),
        ({"flags": 1 << 16}, "flags"),
    ],
)
def test_bad_attributes_are_refused_and_the_writer_stays_usable(kwargs, field):
    buf = io.BytesIO()
    with Writer(buf, HEADER) as w:
        w.begin_frame(0)
        with pytest.raises(MalformedFieldError) as e:
            w.add_unit(UnitType.OBJECT, b"x", **kwargs)
        assert e.value.field.startswith("frame[0].unit[0]") and e.value.field.endswith(field)
        assert w.add_unit(UnitType.OBJECT, b"ok", object_id=1) == 2  # after SEQUENCE_HEADER, FRAME_HEADER
        w.end_frame()
    with ssb_open(buf.getvalue()) as bs:
        assert [bytes(u.payload()) for u in bs.frames[0].units] == [b"ok"]


def test_type_and_payload_rules():
    with Writer(io.BytesIO(), HEADER) as w:
        for t in (0, UnitType.SEQUENCE_HEADER, UnitType.FRAME_HEADER, UnitType.INDEX, UnitType.END, 1 << 16):
            with pytest.raises(MalformedFieldError):
                w.add_unit(t, b"")
        with pytest.raises(MalformedFieldError):
            w.add_unit(UnitType.METADATA, b"[1, 2]")  # not an object
        with pytest.raises(MalformedFieldError):
            w.add_unit(UnitType.METADATA, b"\xff")
        with pytest.raises(MalformedFieldError):
            w.add_unit(UnitType.EXTENSION, b"\x00\x00")  # empty namespace
        with pytest.raises(MalformedFieldError):
            w.add_unit(UnitType.BASE, b"x", class_id=1)  # outside a frame: no attributes
        assert w.add_unit(UnitType.EXTENSION, b"\x03\x00abc" + b"data") == 1


def test_call_order_and_frame_order():
    w = Writer(io.BytesIO(), HEADER)
    with pytest.raises(RuntimeError):
        w.end_frame()
    w.begin_frame(3)
    with pytest.raises(RuntimeError):
        w.begin_frame(4)
    w.end_frame()
    for index in (3, 2):
        with pytest.raises(MalformedFieldError):
            w.begin_frame(index)
    with pytest.raises(MalformedFieldError):
        w.begin_frame(5, metadata={"x": math.nan})
    with pytest.raises(MalformedFieldError):
        w.begin_frame(5, metadata={"x": object()})
    w.begin_frame(np.int64(5), pts=np.int32(7))
    w.add_unit(
        UnitType.OBJECT,
        np.arange(4, dtype=np.uint8),
        object_id=np.uint32(2),
        class_id=np.int64(1),
        bbox=np.array([0, 0, 1, 1], dtype=np.float32),
        score=np.float32(0.5),
    )
    w.close()  # ends the open frame
    with pytest.raises(RuntimeError):
        w.begin_frame(9)


def test_sequence_header_is_validated(tmp_path):
    for header in (
        SequenceHeader(0, 10),
        SequenceHeader(10, 10, fps_den=0),
        SequenceHeader(10, 10, codec="x" * 300),
        SequenceHeader(10, 10, metadata={"a": {1, 2}}),
    ):
        with pytest.raises(MalformedFieldError):
            Writer(tmp_path / "h.ssb", header)
    with pytest.raises(TypeError):
        Writer(tmp_path / "h.ssb", {"width": 1})


def test_atomic_creation_and_abort(tmp_path):
    path = tmp_path / "clip.ssb"
    with pytest.raises(KeyError):
        with Writer(path, HEADER) as w:
            _frame(w, 0)
            _frame(w, 1)
            w.begin_frame(2)
            w.add_unit(UnitType.BASE, b"never written")
            assert not path.exists()
            raise KeyError("boom")
    assert not path.exists()
    part = tmp_path / "clip.ssb.part"
    with ssb_open(part) as bs:
        assert [f.frame_index for f in bs.frames] == [0, 1] and not bs.complete and bs.errors == []
    assert recover(part) == str(path)
    assert not part.exists()
    with ssb_open(path) as bs:
        assert bs.complete and bs.errors == [] and len(bs.frames) == 2


def test_append(tmp_path):
    path = tmp_path / "a.ssb"
    with Writer(path, HEADER) as w:
        _frame(w, 0)
        w.add_unit(UnitType.METADATA, b'{"between": true}')
        _frame(w, 1)
    with ssb_open(path) as bs:
        before = [(u.number, u.offset) for u in bs.units if u.type != UnitType.END]
    with Writer(path, append=True) as w:
        with pytest.raises(MalformedFieldError):
            w.begin_frame(1)
        w.begin_frame(7)
        number = w.add_unit(UnitType.OBJECT, b"late", object_id=9, class_id=1)
        w.end_frame()
    with ssb_open(path) as bs:
        assert bs.complete and bs.errors == []
        assert [f.frame_index for f in bs.frames] == [0, 1, 7]
        assert [(u.number, u.offset) for u in bs.units][: len(before)] == before
        assert bytes(bs.units[number].payload()) == b"late"
    with pytest.raises(MalformedFieldError):
        Writer(path, SequenceHeader(1, 1), append=True)
    with pytest.raises(TypeError):
        Writer(io.BytesIO(), append=True)


def test_writing_to_a_non_seekable_stream():
    class Pipe:
        def __init__(self):
            self.chunks = []

        def write(self, data):
            self.chunks.append(bytes(data))
            return len(data)

        def flush(self):
            pass

    pipe = Pipe()
    with Writer(pipe, HEADER) as w:
        _frame(w, 0)
    with ssb_open(b"".join(pipe.chunks)) as bs:
        assert bs.complete and len(bs.units) == 6  # SEQUENCE_HEADER, FRAME_HEADER, 3 content units, END


def test_end_frame_flushes_each_fragment(tmp_path):
    path = tmp_path / "live.ssb"
    w = Writer(path, HEADER)
    sizes = []
    for i in range(3):
        _frame(w, i)
        with ssb_open(w.part_path) as bs:  # a concurrent reader sees every finished fragment
            sizes.append(len(bs.frames))
    w.close()
    assert sizes == [1, 2, 3]


def test_described_objects_and_references():
    """2.x: objects described without a unit, frame references checked against what was written."""
    buf = io.BytesIO()
    with Writer(buf, HEADER) as w:
        w.begin_frame(0)
        w.add_object(object_id=7, class_id=1, bbox=(1.4, 2.6, 10, 20), score=0.5)
        with pytest.raises(MalformedFieldError):
            w.add_object()  # no attribute at all
        w.end_frame()
        with pytest.raises(MalformedFieldError) as e:
            w.begin_frame(1, refs=[5])  # frame 5 was never written
        assert e.value.field == "frame[1].refs"
        w.begin_frame(2, refs=[0])
        w.add_unit(UnitType.RESIDUAL, b"r")
        w.end_frame()
        with pytest.raises(RuntimeError):
            w.add_object(object_id=1)  # outside a frame
    with ssb_open(buf.getvalue()) as bs:
        d = bs.frames[0].descriptors[0]
        assert (d.object_id, d.class_id, d.bbox) == (7, 1, (1.0, 3.0, 10.0, 20.0))
        assert abs(d.score - 0.5) < 1 / 65535 and bs.frames[0].units == []
        assert bs.frames[1].refs == (0,) and not bs.frames[1].key and bs.frames[0].key
