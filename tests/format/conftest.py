"""Shared builders for the container tests: deterministic sample streams and a reader exerciser.

Exposed through the ``ssb_cases`` fixture (conftest modules are not imported directly).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
import struct
import zlib
from types import SimpleNamespace

import pytest

from ssb.errors import SSBError
from ssb.format import SequenceHeader, UnitType, Writer, summarize
from ssb.format import open as ssb_open
from ssb.format.layout import (
    FRAME_V2,
    INDEX_ENTRY_V2,
    PRESENT_BBOX,
    PRESENT_CLASS,
    PRESENT_OBJECT,
    SEQUENCE_HEADER,
    pack_preamble,
    pack_unit_header,
)
from ssb.format.wire import write_uv

GOLDEN_V1 = Path(__file__).parent / "golden" / "v1"

CLASSES = {"1": "person", "3": "car", "18": "dog"}


def basic_stream() -> bytes:
    """Three frames using every content type, frame/sequence metadata, an unknown type id, described
    objects (no unit), frame references, and entries repeating their predecessor's attributes."""
    buf = io.BytesIO()
    header = SequenceHeader(
        width=320,
        height=240,
        fps_num=25,
        fps_den=1,
        codec="ssb-test",
        metadata={"classes": CLASSES, "model": "unit-test"},
    )
    with Writer(buf, header) as w:
        w.add_unit(UnitType.METADATA, b'{"note":"sequence-level"}')
        for f in range(3):
            w.begin_frame(f * 2, pts=f * 80_000, metadata={"scene": f}, refs=[2 * f - 2] if f else ())
            w.add_unit(UnitType.BASE, bytes(range(40 + f)))
            w.add_unit(UnitType.BACKGROUND, b"bg" * (5 + f))
            w.add_unit(UnitType.MOTION, b"mv" * 3, flags=1)
            for k in range(2 + f):
                cls = (1, 3, 18)[k % 3]
                box = (10.0 * k, 5.0 + k, 10.0 * k + 30.0, 60.0 + k)
                w.add_unit(
                    UnitType.OBJECT,
                    b"obj%d-%d" % (f, k),
                    object_id=100 + k,
                    class_id=cls,
                    bbox=box,
                    score=0.5 + 0.125 * k,
                )
                w.add_unit(
                    UnitType.GROUP_MASK,
                    b"\x01\x02" * (k + 1),
                    object_id=100 + k,
                    class_id=cls,
                    group_id=k,
                    bbox=box,
                )
            w.add_object(object_id=200 + f, class_id=1, bbox=(1, 2, 3, 4), score=0.75)
            w.add_unit(UnitType.RESIDUAL, b"res")
            w.add_unit(UnitType.METADATA, b'{"frame":%d}' % f)
            w.add_unit(UnitType.EXTENSION, b"\x0b\x00org.example" + b"payload")
            w.add_unit(0x8001, b"private unit")
            w.end_frame()
    return buf.getvalue()


def empty_stream() -> bytes:
    buf = io.BytesIO()
    with Writer(buf, SequenceHeader(1, 1)):
        pass
    return buf.getvalue()


def future_minor_stream() -> bytes:
    """A stream of version 2.3, built from the specification's tables by hand, that a 2.0 reader must read.

    It appends unknown fields to the sequence header, the frame header and index entries, sets
    reserved frame flags, holds an unknown content type (0x1234) and an unknown sequence-level
    type (0x0100), and has no END (a live stream).
    """
    out = [pack_preamble(2, 3)]

    def unit(type_id: int, payload: bytes, flags: int = 0) -> bytes:
        return pack_unit_header(type_id, flags, payload) + payload

    seq = SEQUENCE_HEADER.pack({"width": 64, "height": 32, "fps_num": 30000, "fps_den": 1001, "codec": "future",
                                "metadata": {"classes": {"1": "person"}}}) + b"FUTURE-FIELDS"
    out.append(unit(UnitType.SEQUENCE_HEADER, seq))
    out.append(unit(0x0100, b"a sequence-level unit of a type this reader does not know"))
    for frame in (5, 9):
        payloads = [b"base-%d" % frame, b"future content", b"object"]
        entries = [
            {"type": int(UnitType.BASE), "present": 0, "length": len(payloads[0]), "crc": zlib.crc32(payloads[0])},
            {"type": 0x1234, "present": PRESENT_OBJECT | PRESENT_CLASS | PRESENT_BBOX | 32, "flags": 7,
             "length": len(payloads[1]), "crc": zlib.crc32(payloads[1]), "object_id": 1, "class_id": 1,
             "x0": 1, "y0": 2, "x1": 3, "y1": 4},
            {"type": int(UnitType.OBJECT), "present": 128, "length": len(payloads[2]), "crc": zlib.crc32(payloads[2])},
        ]
        records = [INDEX_ENTRY_V2.pack(e) + b"\xee\xee" for e in entries]  # + 2 future bytes per entry
        body = b"".join(payloads)

        def frame_payload(length: int) -> bytes:
            head = FRAME_V2.pack({"frame_index": frame, "flags": 0b10 | 0x40, "fragment_length": length,
                                  "ref_count": 0, "refs": [], "metadata": {"future": True}, "entry_count": 0,
                                  "entries": []})[:-1]  # drop the empty entry count: entries follow
            return head + write_uv(len(records)) + b"".join(write_uv(len(r)) + r for r in records) + b"\xff\xff"

        length = 1
        while length != 16 + len(frame_payload(length)) + len(body):  # fragment_length measures itself
            length = 16 + len(frame_payload(length)) + len(body)
        out.append(unit(UnitType.FRAME_HEADER, frame_payload(length)) + body)
    return b"".join(out)


def v1_stream(name: str) -> bytes:
    """A frozen 1.x stream written by the 0.1 release (tests/format/golden/v1), read, never written."""
    return (GOLDEN_V1 / f"{name}.ssb").read_bytes()


def describe(bs) -> dict:
    """Everything a reader exposes about a stream, JSON-able (payload digests included)."""
    units = []
    for u in bs.units:
        try:
            digest = hashlib.sha256(u.payload()).hexdigest()[:16]
        except SSBError as exc:
            digest = f"error: {type(exc).__name__}"
        units.append(
            {
                "number": u.number,
                "type": u.type_name,
                "flags": u.flags,
                "frame": u.frame,
                "object_id": u.object_id,
                "class_id": u.class_id,
                "group_id": u.group_id,
                "bbox": list(u.bbox) if u.bbox else None,
                "score": u.score,
                "offset": u.offset,
                "length": u.length,
                "sha256": digest,
            }
        )
    summary = summarize(bs)
    summary.pop("bytes_read")
    summary.pop("bytes_read_fraction")
    return {
        "version": list(bs.version),
        "complete": bs.complete,
        "errors": [str(e) for e in bs.errors],
        "frames": [
            {
                "frame_index": f.frame_index,
                "pts": f.pts,
                "metadata": f.metadata,
                "offset": f.offset,
                "length": f.length,
                "units": [u.number for u in f.units],
                "refs": list(f.refs),
                "descriptors": [[d.object_id, d.class_id, d.group_id, list(d.bbox) if d.bbox else None, d.score]
                                for d in f.descriptors],
            }
            for f in bs.frames
        ],
        "units": units,
        "summary": summary,
    }


def exercise(data, *, as_file: bool = False) -> None:
    """Use every reader entry point on ``data``; only SSBError may escape."""
    try:
        bs = ssb_open(io.BytesIO(data) if as_file else data)
    except SSBError:
        return
    with bs:
        for u in bs.units:
            try:
                bytes(u.payload())
            except SSBError:
                pass
        bs.select(classes={1}, region=(0, 0, 50, 50))
        bs.select(frames=range(0, 3), types={UnitType.BACKGROUND})
        summarize(bs)
        bs.check()


def fix_header_crc(data: bytearray, pos: int) -> None:
    """Recompute the header CRC of the unit header at ``pos`` (so a corrupted field passes the CRC)."""
    data[pos + 12 : pos + 16] = struct.pack("<I", zlib.crc32(bytes(data[pos : pos + 12])))


def fix_payload_crc(data: bytearray, pos: int) -> None:
    """Recompute payload and header CRCs of the unit whose header is at ``pos``."""
    (length,) = struct.unpack_from("<I", data, pos + 4)
    data[pos + 8 : pos + 12] = struct.pack("<I", zlib.crc32(bytes(data[pos + 16 : pos + 16 + length])))
    fix_header_crc(data, pos)


GOLDEN_CASES = {
    "basic": basic_stream,
    "empty": empty_stream,
    "future_minor": future_minor_stream,
    # cut in the middle of the last fragment, as a killed writer leaves it
    "truncated": lambda: basic_stream()[: len(basic_stream()) - 60],
}


@pytest.fixture(scope="session")
def ssb_cases() -> SimpleNamespace:
    return SimpleNamespace(
        basic_stream=basic_stream,
        empty_stream=empty_stream,
        future_minor_stream=future_minor_stream,
        describe=describe,
        exercise=exercise,
        fix_header_crc=fix_header_crc,
        fix_payload_crc=fix_payload_crc,
        golden=GOLDEN_CASES,
        v1_stream=v1_stream,
        v1_names=("basic", "empty", "future_minor", "truncated"),
        classes=CLASSES,
    )
