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
from ssb.format.layout import markdown_tables

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
    dump = section[section.index("is 219 bytes:") :]
    dump = dump[dump.index("```") + 3 :]
    dump = dump[: dump.index("```")]
    data = bytearray()
    for line in dump.strip().splitlines():
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
# An independent reader written from docs/format.md only: it must account for every byte.
def spec_reader(data: bytes) -> dict:
    assert data[:8] == b"\x89SSB\r\n\x1a\n"
    major, minor, crc = struct.unpack_from("<HHI", data, 8)
    assert crc == zlib.crc32(data[:12]) and major == 1
    pos, units, frames, complete = 16, [], [], False

    def header(p):
        t, fl, n, pcrc, hcrc = struct.unpack_from("<HHIII", data, p)
        assert hcrc == zlib.crc32(data[p : p + 12])
        assert pcrc == zlib.crc32(data[p + 16 : p + 16 + n])
        return t, fl, n

    def json32(buf, p):
        (n,) = struct.unpack_from("<I", buf, p)
        value = json.loads(buf[p + 4 : p + 4 + n].decode())
        assert isinstance(value, dict)
        return value, p + 4 + n

    t, _, n = header(pos)
    assert t == 1
    w, h, fnum, fden, clen = struct.unpack_from("<IIIIH", data, pos + 16)
    codec = data[pos + 34 : pos + 34 + clen].decode()
    seq_meta, _ = json32(data, pos + 34 + clen)
    units.append(("SEQ", pos, n))
    pos += 16 + n
    while pos < len(data):
        t, fl, n = header(pos)
        if t == 2:  # fragment
            fh = data[pos + 16 : pos + 16 + n]
            frame_index, fflags, _, pts, frag_len = struct.unpack_from("<IHHqI", fh, 0)
            meta, _ = json32(fh, 20)
            start = pos
            units.append(("FH", pos, n))
            pos += 16 + n
            it, _, ilen = header(pos)
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
                ut, ufl, un = header(pos)
                assert (ut, ufl, un) == (etype, eflags, length)
                entries.append({"type": etype, "class": e[7] if present & 2 else None})
                units.append((etype, pos, un))
                pos += 16 + un
            assert pos == start + frag_len
            frames.append(
                {"frame": frame_index, "pts": pts if fflags & 1 else None, "meta": meta, "entries": entries}
            )
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
    return {
        "size": (w, h),
        "fps": (fnum, fden),
        "codec": codec,
        "meta": seq_meta,
        "frames": frames,
        "units": units,
        "complete": complete,
        "version": (major, minor),
    }


@pytest.mark.parametrize("name", ["basic", "empty", "future_minor"])
def test_a_reader_written_from_the_spec_parses_every_byte(name, ssb_cases):
    from ssb.format import open as ssb_open

    data = ssb_cases.golden[name]()
    ours = spec_reader(data)
    with ssb_open(data) as bs:
        assert ours["size"] == (bs.header.width, bs.header.height)
        assert ours["codec"] == bs.header.codec and ours["meta"] == bs.header.metadata
        assert ours["complete"] == bs.complete and ours["version"] == bs.version
        assert [f["frame"] for f in ours["frames"]] == [f.frame_index for f in bs.frames]
        assert [f["pts"] for f in ours["frames"]] == [f.pts for f in bs.frames]
        assert [(u[1] + 16, u[2]) for u in ours["units"]] == [
            (u.offset, u.length) for u in bs.units if u.type != UnitType.END
        ]
