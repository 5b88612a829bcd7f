"""Shared builders for the container tests: deterministic sample streams and a reader exerciser.

Exposed through the ``ssb_cases`` fixture (conftest modules are not imported directly).
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from types import SimpleNamespace

import pytest

from ssb.errors import SSBError
from ssb.format import SequenceHeader, UnitType, Writer, summarize
from ssb.format import open as ssb_open
from ssb.format.layout import (
    FRAME_HEADER,
    INDEX_ENTRY,
    INDEX_HEADER,
    PRESENT_BBOX,
    PRESENT_CLASS,
    PRESENT_OBJECT,
    SEQUENCE_HEADER,
    pack_preamble,
    pack_unit_header,
)

CLASSES = {"1": "person", "3": "car", "18": "dog"}


def basic_stream() -> bytes:
    """Three frames using every content type, frame/sequence metadata and an unknown type id."""
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
            w.begin_frame(f * 2, pts=f * 80_000, metadata={"scene": f})
            w.add_unit(UnitType.BASE, bytes(range(40 + f)))
            w.add_unit(UnitType.BACKGROUND, b"bg" * (5 + f))
            w.add_unit(UnitType.MOTION, b"mv" * 3, flags=1)
            for k in range(2 + f):
                cls = (1, 3, 18)[k % 3]
                box = (10.0 * k, 5.0 + k, 10.0 * k + 30.5, 60.25 + k)
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
    """A stream of version 1.3, built from the specification's tables by hand, that a 1.0 reader must read.

    It appends unknown fields to the sequence and frame headers, uses 56-byte index
    entries, holds an unknown content type (0x1234) and an unknown sequence-level type
    (0x0100), sets reserved bits, and has no END (a live stream).
    """
    out = [pack_preamble(1, 3)]

    def unit(type_id: int, payload: bytes, flags: int = 0) -> bytes:
        return pack_unit_header(type_id, flags, payload) + payload

    seq = (
        SEQUENCE_HEADER.pack(
            {
                "width": 64,
                "height": 32,
                "fps_num": 30000,
                "fps_den": 1001,
                "codec": "future",
                "metadata": {"classes": {"1": "person"}},
            }
        )
        + b"FUTURE-FIELDS"
    )
    out.append(unit(UnitType.SEQUENCE_HEADER, seq))
    out.append(unit(0x0100, b"a sequence-level unit of a type this reader does not know"))
    for frame in (5, 9):
        contents = [
            (UnitType.BASE, b"base-%d" % frame, 0, {}),
            (0x1234, b"future content", 7, {"object_id": 1, "class_id": 1, "bbox": (1.0, 2.0, 3.0, 4.0)}),
            (UnitType.OBJECT, b"object", 0, {"object_id": 1, "class_id": 1, "bbox": (1.0, 2.0, 3.0, 4.0)}),
        ]
        entry_size = 56
        fh_values = {
            "frame_index": frame,
            "flags": 0b10,
            "reserved": 0,
            "pts": 0,
            "fragment_length": 1,
            "metadata": {"future": True},
        }
        fh_len = len(FRAME_HEADER.pack(fh_values)) + 4  # + 4 unknown trailing bytes
        index_len = INDEX_HEADER.fixed_size + entry_size * len(contents) + 3  # + 3 ignored trailing bytes
        offset = 16 + fh_len + 16 + index_len
        entries = []
        for type_id, payload, flags, attrs in contents:
            present = (
                (PRESENT_OBJECT if "object_id" in attrs else 0)
                | (PRESENT_CLASS if "class_id" in attrs else 0)
                | (PRESENT_BBOX if "bbox" in attrs else 0)
                | 0x100
            )  # 0x100: a future attribute bit
            x0, y0, x1, y1 = attrs.get("bbox", (0.0, 0.0, 0.0, 0.0))
            entries.append(
                INDEX_ENTRY.pack(
                    {
                        "type": int(type_id),
                        "flags": flags,
                        "present": present,
                        "reserved": 0,
                        "offset": offset,
                        "length": len(payload),
                        "object_id": attrs.get("object_id", 0),
                        "class_id": attrs.get("class_id", 0),
                        "group_id": 0,
                        "x0": x0,
                        "y0": y0,
                        "x1": x1,
                        "y1": y1,
                        "score": 0.0,
                    }
                )
                + b"\xee" * (entry_size - 48)
            )
            offset += 16 + len(payload)
        fh = FRAME_HEADER.pack(dict(fh_values, fragment_length=offset)) + b"\xff\xff\xff\xff"
        index = (
            INDEX_HEADER.pack({"entry_size": entry_size, "reserved": 0, "entry_count": len(contents)})
            + b"".join(entries)
            + b"..."
        )
        out.append(unit(UnitType.FRAME_HEADER, fh))
        out.append(unit(UnitType.INDEX, index))
        out.extend(unit(t, p, fl) for t, p, fl, _ in contents)
    return b"".join(out)


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
        classes=CLASSES,
    )
