"""Declared limits: refused by the writer, and by the reader before it allocates or reads."""

from __future__ import annotations

import io
import struct
import tracemalloc

import pytest

from ssb.errors import LimitExceededError, TruncatedError
from ssb.format import Limits, SequenceHeader, UnitType, Writer
from ssb.format import open as ssb_open
from ssb.format.layout import SEQUENCE_HEADER, pack_preamble, pack_unit_header


def _stream(frames=3, units=3, payload=100, objects=True, header=None) -> bytes:
    header = header or SequenceHeader(640, 480)
    buf = io.BytesIO()
    with Writer(buf, header) as w:
        for f in range(frames):
            w.begin_frame(f)
            for k in range(units):
                w.add_unit(UnitType.OBJECT, bytes(payload), **({"object_id": k} if objects else {}))
            w.end_frame()
    return buf.getvalue()


def test_limits_validate_themselves():
    with pytest.raises(ValueError):
        Limits(max_width=-1)
    with pytest.raises(ValueError):
        Limits(max_units=1.5)


def test_writer_refuses_over_limit():
    with pytest.raises(LimitExceededError) as e:
        Writer(io.BytesIO(), SequenceHeader(5000, 10), limits=Limits(max_width=4096))
    assert e.value.field == "sequence_header.width"
    small = Limits(max_unit_size=120, max_units_per_frame=2, max_objects=1, max_frames=1, max_metadata_size=8)
    with Writer(io.BytesIO(), SequenceHeader(8, 8), limits=small) as w:
        w.begin_frame(0)
        with pytest.raises(LimitExceededError):
            w.add_unit(UnitType.BASE, bytes(121))
        w.add_unit(UnitType.OBJECT, b"a", object_id=1)
        with pytest.raises(LimitExceededError):
            w.add_unit(UnitType.OBJECT, b"b", object_id=2)
        w.add_unit(UnitType.BASE, b"c")
        with pytest.raises(LimitExceededError):
            w.add_unit(UnitType.BASE, b"d")
        w.end_frame()
        with pytest.raises(LimitExceededError):
            w.begin_frame(1)
        with pytest.raises(LimitExceededError):
            w.add_unit(UnitType.METADATA, b'{"abcdefgh": 1}')
    # the FRAME_HEADER (which holds the index) is a unit too: end_frame refuses one over max_unit_size
    w = Writer(io.BytesIO(), SequenceHeader(8, 8), limits=Limits(max_unit_size=40))
    w.begin_frame(0)
    for k in range(4):
        w.add_unit(UnitType.OBJECT, b"a", object_id=k, class_id=1, bbox=(0, 0, 1, 1), score=0.5)
    with pytest.raises(LimitExceededError):
        w.end_frame()
    w.abort()


def test_sequence_header_limits_are_fatal():
    data = _stream(header=SequenceHeader(640, 480, metadata={"k": "v" * 100}))
    with pytest.raises(LimitExceededError) as e:
        ssb_open(data, limits=Limits(max_width=320))
    assert e.value.field == "unit[0].payload.width" and e.value.offset == 16 + 16
    with pytest.raises(LimitExceededError) as e:
        ssb_open(data, limits=Limits(max_metadata_size=50))
    assert e.value.field == "unit[0].payload.metadata"


def test_per_fragment_limits_skip_the_fragment_without_reading_it():
    data = _stream(frames=3, units=3, payload=100)
    big = bytearray(_stream(frames=1, units=1, payload=5000))
    for limits, field in (
        (Limits(max_units_per_frame=2), "payload.entry_count"),
        (Limits(max_objects=2), "payload.entries"),
        (Limits(max_unit_size=50), ".length"),
    ):
        with ssb_open(data, limits=limits) as bs:
            assert bs.frames == [] and len(bs.errors) == 4  # three fragments, then END's counts
            assert all(isinstance(e, LimitExceededError) for e in bs.errors[:3])
            assert bs.errors[0].field.endswith(field)
    with ssb_open(bytes(big), limits=Limits(max_unit_size=1000)) as bs:
        assert bs.frames == [] and isinstance(bs.errors[0], LimitExceededError)
        assert bs.bytes_read < 1000  # the 5000-byte payload was never touched


def test_stream_wide_limits_stop_the_reader():
    data = _stream(frames=3, units=3)
    with pytest.raises(LimitExceededError):
        ssb_open(data, limits=Limits(max_frames=2))
    with pytest.raises(LimitExceededError):
        ssb_open(data, limits=Limits(max_units=8))
    with ssb_open(data, limits=Limits(max_frames=3, max_units=1 + 3 * 5)) as bs:
        assert len(bs.frames) == 3


@pytest.mark.parametrize("as_file", [False, True])
def test_huge_declarations_allocate_nothing(as_file):
    """Sizes declared far beyond the data (checksums valid) fail before anything that large exists."""
    seq = SEQUENCE_HEADER.pack(
        {"width": 8, "height": 8, "fps_num": 0, "fps_den": 1, "codec": "", "metadata": {}}
    )
    cases = []
    # 1. a unit declaring 200 MB (under the 256 MiB default limit) in a 100-byte file
    fake = bytearray(pack_unit_header(UnitType.SEQUENCE_HEADER, 0, seq))
    struct.pack_into("<I", fake, 4, 200 << 20)
    cases.append(
        pack_preamble() + pack_unit_header(UnitType.SEQUENCE_HEADER, 0, seq) + seq + _rehash(fake) + bytes(64)
    )
    # 2. a metadata field declaring 0xFFFFFFFF bytes inside a valid unit
    bad_seq = bytearray(seq)
    struct.pack_into("<I", bad_seq, len(seq) - 6, 0xFFFF_FFFF)
    cases.append(
        pack_preamble() + pack_unit_header(UnitType.SEQUENCE_HEADER, 0, bytes(bad_seq)) + bytes(bad_seq)
    )
    for data in cases:
        tracemalloc.start()
        try:
            try:
                with ssb_open(io.BytesIO(data) if as_file else data) as bs:
                    assert isinstance(bs.errors[0], TruncatedError)
            except (LimitExceededError, TruncatedError, ValueError):
                pass
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20


def _rehash(header: bytearray) -> bytes:
    import zlib

    header[12:16] = struct.pack("<I", zlib.crc32(bytes(header[:12])))
    return bytes(header)
