"""docs/format.md is the normative spec: its tables are the code's tables, its example is real,
and a reader written from it alone (below: struct + zlib, no ssb import) parses every byte."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import zlib
from pathlib import Path

import pytest

from ssb.format import SequenceHeader, UnitType, Writer
from ssb.format.spec import markdown_tables

SPEC = Path(__file__).resolve().parents[2] / "docs" / "format.md"
BLOCK = re.compile(r"<!-- table: (?P<name>[^>]+?) -->\n(?P<body>.*?)<!-- end table -->", re.S)


def test_spec_tables_are_the_layout_tables():
    text = SPEC.read_text()
    tables = markdown_tables()
    if os.environ.get("SSB_REGEN_GOLDEN") == "1":
        text = BLOCK.sub(
            lambda m: f"<!-- table: {m['name']} -->\n{tables[m['name']]}\n<!-- end table -->", text
        )
        SPEC.write_text(text)
    found = {m["name"]: m["body"].strip() for m in BLOCK.finditer(text)}
    assert found == tables


def test_spec_example_is_what_the_writer_writes():
    text = SPEC.read_text()
    section = text[text.index("## 13. Example") :]
    dump = section[section.index("is 128 bytes:") :]
    dump = dump[dump.index("```") + 3 :]
    dump = dump[: dump.index("```")]
    data = bytearray()
    for line in dump.strip().splitlines():
        if ":" not in line[:6]:  # a continued annotation
            continue
        offset, rest = line.split(":", 1)
        cells = rest[:49]  # 16 hex cells in their columns, then the annotation
        present = [i for i in range(16) if cells[1 + 3 * i : 3 + 3 * i].strip()]
        # the label is the address of the first byte shown, which sits in column address % 16
        assert int(offset, 16) == len(data) and present[0] == len(data) % 16, f"bad hex dump line {line!r}"
        data.extend(int(cells[1 + 3 * i : 3 + 3 * i], 16) for i in present)
    buf = io.BytesIO()
    with Writer(buf, SequenceHeader(2, 2)) as w:
        w.begin_frame(0)
        w.add_unit(UnitType.OBJECT, b"\x2a", object_id=7, class_id=1, bbox=(0, 0, 1, 1))
        w.end_frame()
    assert bytes(data) == buf.getvalue()
    assert zlib.crc32(b"123456789") == 0xCBF43926  # the check value the spec quotes


# ---------------------------------------------------------------------------------------------
# Independent readers written from docs/format.md only: they must account for every byte.
def _uv(buf: bytes, p: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[p]
        p += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, p


def _json32(buf, p):
    (n,) = struct.unpack_from("<I", buf, p)
    value = json.loads(buf[p + 4 : p + 4 + n].decode())
    assert isinstance(value, dict)
    return value, p + 4 + n


def _header(data, p, check_payload=True):
    t, fl, n, pcrc, hcrc = struct.unpack_from("<HHIII", data, p)
    assert hcrc == zlib.crc32(data[p : p + 12])
    if check_payload:
        assert pcrc == zlib.crc32(data[p + 16 : p + 16 + n])
    return t, fl, n


def _sequence(data, pos):
    t, _, n = _header(data, pos)
    assert t == 1
    w, h, fnum, fden, clen = struct.unpack_from("<IIIIH", data, pos + 16)
    codec = data[pos + 34 : pos + 34 + clen].decode()
    seq_meta, _ = _json32(data, pos + 34 + clen)
    return (w, h), (fnum, fden), codec, seq_meta, pos + 16 + n, n


def _entry_v2(rec: bytes) -> dict:
    """One 2.x index entry (section 7.2), its byte count already stripped."""
    t, p = _uv(rec, 0)
    present = rec[p]
    p += 1
    e = {"type": t, "present": present, "flags": 0}
    if present & 32:
        e["flags"], p = _uv(rec, p)
    if not present & 64:
        e["length"], p = _uv(rec, p)
        (e["crc"],) = struct.unpack_from("<I", rec, p)
        p += 4
    for bit, name in ((1, "object"), (2, "class"), (4, "group")):
        if present & bit:
            e[name], p = _uv(rec, p)
    if present & 8:
        e["bbox"] = struct.unpack_from("<HHHH", rec, p)
        p += 8
    if present & 16:
        (e["score"],) = struct.unpack_from("<H", rec, p)
    return e


def spec_reader(data: bytes) -> dict:
    assert data[:8] == b"\x89SSB\r\n\x1a\n"
    major, minor, crc = struct.unpack_from("<HHI", data, 8)
    assert crc == zlib.crc32(data[:12]) and major in (1, 2)
    if major == 1:
        return spec_reader_v1(data)
    units, frames, complete = [], [], False
    size, fps, codec, seq_meta, pos, n = _sequence(data, 16)
    units.append(("SEQ", 16, n))
    while pos < len(data):
        t, fl, n = _header(data, pos)
        if t == 2:  # fragment: FRAME_HEADER (frame fields + index), then bare payloads
            fh = data[pos + 16 : pos + 16 + n]
            frame_index, p = _uv(fh, 0)
            fflags = fh[p]
            frag_len, p = _uv(fh, p + 1)
            pts = None
            if fflags & 1:
                zz, p = _uv(fh, p)
                pts = (zz >> 1) if not zz & 1 else -((zz + 1) >> 1)
            nrefs, p = _uv(fh, p)
            refs = []
            for _ in range(nrefs):
                d, p = _uv(fh, p)
                refs.append(frame_index - d)
            meta = {}
            if fflags & 2:
                meta, p = _json32(fh, p)
            count, p = _uv(fh, p)
            start = pos
            units.append(("FH", pos, n))
            pos += 16 + n
            entries, prev = [], None
            for _ in range(count):
                rlen, p = _uv(fh, p)
                e = _entry_v2(fh[p : p + rlen])
                p += rlen
                if e["present"] & 128:
                    e["class"] = prev.get("class")
                prev = e
                if not e["present"] & 64:
                    payload = data[pos : pos + e["length"]]
                    assert len(payload) == e["length"] and zlib.crc32(payload) == e["crc"], "payload CRC"
                    units.append((e["type"], pos - 16, e["length"]))  # (no header: offset - 16 by convention)
                    pos += e["length"]
                entries.append({"type": e["type"], "class": e.get("class")})
            assert pos == start + frag_len, "tiling rule"
            frames.append({"frame": frame_index, "pts": pts, "meta": meta, "entries": entries, "refs": refs})
        elif t == 12:
            fc, uc = struct.unpack_from("<QQ", data, pos + 16)
            assert (fc, uc) == (len(frames), len(units))
            pos += 16 + n
            complete = True
            break
        else:
            units.append((t, pos, n))
            pos += 16 + n
    assert pos == len(data), "every byte belongs to a unit"
    return {"size": size, "fps": fps, "codec": codec, "meta": seq_meta, "frames": frames, "units": units,
            "complete": complete, "version": (major, minor)}


def spec_reader_v1(data: bytes) -> dict:
    """Format 1.x (section 17)."""
    major, minor, _ = struct.unpack_from("<HHI", data, 8)
    units, frames, complete = [], [], False
    size, fps, codec, seq_meta, pos, n = _sequence(data, 16)
    units.append(("SEQ", 16, n))
    while pos < len(data):
        t, fl, n = _header(data, pos)
        if t == 2:  # fragment
            fh = data[pos + 16 : pos + 16 + n]
            frame_index, fflags, _, pts, frag_len = struct.unpack_from("<IHHqI", fh, 0)
            meta, _ = _json32(fh, 20)
            start = pos
            units.append(("FH", pos, n))
            pos += 16 + n
            it, _, ilen = _header(data, pos)
            assert it == 3
            ip = data[pos + 16 : pos + 16 + ilen]
            esize, _, count = struct.unpack_from("<HHI", ip, 0)
            units.append(("INDEX", pos, ilen))
            pos += 16 + ilen
            entries = []
            for i in range(count):
                e = struct.unpack_from("<HHHHIIIIIfffff", ip, 8 + i * esize)
                etype, eflags, present, _, off, length = e[:6]
                assert start + off == pos, "tiling rule"
                ut, ufl, un = _header(data, pos)
                assert (ut, ufl, un) == (etype, eflags, length)
                entries.append({"type": etype, "class": e[7] if present & 2 else None})
                units.append((etype, pos, un))
                pos += 16 + un
            assert pos == start + frag_len
            frames.append({"frame": frame_index, "pts": pts if fflags & 1 else None, "meta": meta,
                           "entries": entries, "refs": []})
        elif t == 12:
            fc, uc = struct.unpack_from("<QQ", data, pos + 16)
            assert (fc, uc) == (len(frames), len(units))
            pos += 16 + n
            complete = True
            break
        else:
            units.append((t, pos, n))
            pos += 16 + n
    assert pos == len(data), "every byte belongs to a unit"
    return {"size": size, "fps": fps, "codec": codec, "meta": seq_meta, "frames": frames, "units": units,
            "complete": complete, "version": (major, minor)}


@pytest.mark.parametrize("name", ["basic", "empty", "future_minor", "v1:basic", "v1:empty", "v1:future_minor"])
def test_a_reader_written_from_the_spec_parses_every_byte(name, ssb_cases):
    from ssb.format import open as ssb_open

    data = ssb_cases.v1_stream(name[3:]) if name.startswith("v1:") else ssb_cases.golden[name]()
    ours = spec_reader(data)
    with ssb_open(data) as bs:
        assert ours["size"] == (bs.header.width, bs.header.height)
        assert ours["codec"] == bs.header.codec and ours["meta"] == bs.header.metadata
        assert ours["complete"] == bs.complete and ours["version"] == bs.version
        assert [f["frame"] for f in ours["frames"]] == [f.frame_index for f in bs.frames]
        assert [f["pts"] for f in ours["frames"]] == [f.pts for f in bs.frames]
        assert [f["refs"] for f in ours["frames"]] == [list(f.refs) for f in bs.frames]
        assert [(u[1] + 16, u[2]) for u in ours["units"]] == [
            (u.offset, u.length) for u in bs.units if u.type != UnitType.END
        ]
