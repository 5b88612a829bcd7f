"""Damage handling: every problem names its byte offset and field; damage stays local.

The byte-level tests run on both versions: the frozen 1.0 stream (16-byte unit headers, a
separate INDEX unit) and today's 2.x stream (one FRAME_HEADER unit with a compact index, bare
payloads whose CRCs the index holds).
"""

from __future__ import annotations

import struct
import zlib

import pytest

from ssb.errors import ChecksumError, MalformedFieldError, SSBError, TruncatedError, UnsupportedVersionError
from ssb.format import UnitType
from ssb.format import open as ssb_open
from ssb.format.edit import rewrite_frame
from ssb.format.layout import pack_preamble


def _stream(ssb_cases, version: int = 1):
    data = ssb_cases.v1_stream("basic") if version == 1 else ssb_cases.basic_stream()
    with ssb_open(data) as bs:
        layout = {
            "frames": [
                (f.frame_index, f.header_unit.span[0], f.index_unit.span[0] if f.index_unit else None,
                 f.offset + f.length)
                for f in bs.frames
            ],
            "objects": [u for u in bs.units if u.type == UnitType.OBJECT],
            "n_units": len(bs.units),
        }
    return data, layout


def test_not_ssb_empty_and_short():
    with pytest.raises(MalformedFieldError) as e:
        ssb_open(b"GIF89a" + bytes(100))
    assert e.value.field == "preamble.magic" and e.value.offset == 0
    with pytest.raises(TruncatedError) as e:
        ssb_open(b"")
    assert e.value.field == "preamble"
    with pytest.raises(TruncatedError):
        ssb_open(pack_preamble())


@pytest.mark.parametrize("version", [1, 2])
def test_preamble_checksum_and_versions(ssb_cases, version):
    data = bytearray(_stream(ssb_cases, version)[0])
    bad = bytearray(data)
    bad[10] ^= 0x05  # minor changed without fixing the CRC
    with pytest.raises(ChecksumError) as e:
        ssb_open(bytes(bad))
    assert e.value.field == "preamble.crc" and e.value.offset == 12
    for major in (0, 3):
        newer = pack_preamble(major, 0) + bytes(data[16:])
        with pytest.raises(UnsupportedVersionError) as e:
            ssb_open(newer)
        assert e.value.field == "preamble.major" and e.value.offset == 8
    with ssb_open(pack_preamble(version, 9) + bytes(data[16:])) as bs:  # a newer minor reads
        assert bs.version == (version, 9) and bs.errors == [] and len(bs.frames) == 3


@pytest.mark.parametrize("version", [1, 2])
def test_damaged_payload_loses_only_its_unit(ssb_cases, version):
    data, layout = _stream(ssb_cases, version)
    victim = layout["objects"][3]
    corrupt = bytearray(data)
    corrupt[victim.offset] ^= 0xFF
    with ssb_open(bytes(corrupt)) as bs:
        assert bs.errors == [] and bs.complete  # payloads are not read while opening
        with pytest.raises(ChecksumError) as e:
            bs.units[victim.number].payload()
        assert e.value.offset == victim.offset and e.value.field == f"unit[{victim.number}].payload"
        assert f"unit {victim.number} (OBJECT" in str(e.value)
        problems = bs.check()
        assert [p.field for p in problems] == [f"unit[{victim.number}].payload"]
        for u in bs.units:
            if u.number != victim.number:
                u.payload()
    with ssb_open(bytes(corrupt), verify=False) as bs:
        assert bytes(bs.units[victim.number].payload())[0] == data[victim.offset] ^ 0xFF
        assert len(bs.check()) == 1  # check() always verifies


def test_damaged_unit_header_is_caught_on_read(ssb_cases):
    data, layout = _stream(ssb_cases)
    victim = layout["objects"][0]
    corrupt = bytearray(data)
    corrupt[victim.span[0] + 5] ^= 0x01  # its length field
    with ssb_open(bytes(corrupt)) as bs:
        with pytest.raises(ChecksumError) as e:
            bs.units[victim.number].payload()
        assert e.value.field == f"unit[{victim.number}].header.header_crc"
    # the same header with a repaired CRC disagrees with the index instead
    ssb_cases.fix_header_crc(corrupt, victim.span[0])
    with ssb_open(bytes(corrupt)) as bs:
        with pytest.raises(MalformedFieldError) as e:
            bs.units[victim.number].payload()
        assert e.value.field == f"unit[{victim.number}].header.length"


@pytest.mark.parametrize("version,where", [(1, "fh_header"), (1, "fh_payload"), (1, "index_payload"),
                                           (1, "index_header"), (2, "fh_header"), (2, "fh_payload"),
                                           (2, "index_payload")])
def test_damaged_fragment_loses_only_its_frame(ssb_cases, version, where):
    data, layout = _stream(ssb_cases, version)
    frame_index, fh, ix, end = layout["frames"][1]
    if version == 2:  # the index is inside the FRAME_HEADER payload
        ix = fh + 16 - 16 + 8
    offset = {"fh_header": fh + 1, "fh_payload": fh + 16, "index_payload": ix + 40, "index_header": (ix or 0) + 2}[
        where
    ]
    corrupt = bytearray(data)
    corrupt[offset] ^= 0x10
    with ssb_open(bytes(corrupt)) as bs:
        assert [f.frame_index for f in bs.frames] == [0, 4]
        assert bs.complete
        first = bs.errors[0]
        assert (
            isinstance(first, ChecksumError) and first.offset is not None and first.field.startswith("unit[")
        )
        assert any("fragments were lost" in str(e) for e in bs.errors)  # END's counts disagree
        assert bs.check() == []
        assert all(isinstance(e, SSBError) and e.offset is not None and e.field for e in bs.errors)
    with pytest.raises(ChecksumError):
        ssb_open(bytes(corrupt), strict=True)


def test_index_that_breaks_the_tiling_rule(ssb_cases):
    data, layout = _stream(ssb_cases, 1)
    _, fh, ix, end = layout["frames"][0]
    corrupt = bytearray(data)
    # entry 1's offset off by one, checksums repaired: only the tiling rule catches it
    off_pos = ix + 16 + 8 + 48 + 8
    (value,) = struct.unpack_from("<I", corrupt, off_pos)
    struct.pack_into("<I", corrupt, off_pos, value + 1)
    ssb_cases.fix_payload_crc(corrupt, ix)
    with ssb_open(bytes(corrupt)) as bs:
        assert [f.frame_index for f in bs.frames] == [2, 4]
        err = bs.errors[0]
        assert isinstance(err, MalformedFieldError)
        assert err.field.endswith("payload.entries[1].offset") and err.offset == off_pos


def test_index_v2_that_breaks_the_tiling_rule(ssb_cases):
    """2.x: an entry length off by one (every CRC repaired) breaks the tiling of the fragment."""
    data = ssb_cases.basic_stream()

    def longer(values, payloads):
        values["entries"][1]["length"] += 1

    corrupt = rewrite_frame(data, 0, longer)
    with ssb_open(corrupt) as bs:
        assert [f.frame_index for f in bs.frames] == [2, 4]
        err = bs.errors[0]
        assert isinstance(err, MalformedFieldError) and err.offset is not None
        assert err.field.endswith("payload.fragment_length") or "entries[" in err.field


def test_bad_bbox_in_index_v2_is_named(ssb_cases):
    data = ssb_cases.basic_stream()

    new_x0 = []

    def flip(values, payloads):
        e = values["entries"][3]  # the first OBJECT, which has a box
        e["x0"], e["x1"] = e["x1"] + 5, e["x0"]
        new_x0.append(e["x0"])

    corrupt = rewrite_frame(data, 0, flip)
    with ssb_open(corrupt) as bs:
        err = bs.errors[0]
        assert isinstance(err, MalformedFieldError) and err.field.endswith("entries[3].x0")
        assert err.offset is not None and corrupt[err.offset] == new_x0[0]  # x0's low byte, little-endian


def test_bad_bbox_in_index_is_named(ssb_cases):
    data, layout = _stream(ssb_cases)
    _, fh, ix, end = layout["frames"][0]
    corrupt = bytearray(data)
    entry = ix + 16 + 8 + 48 * 3  # entry 3: the first OBJECT, which has a box
    struct.pack_into("<f", corrupt, entry + 28, 1e9)  # x0 > x1
    ssb_cases.fix_payload_crc(corrupt, ix)
    with ssb_open(bytes(corrupt)) as bs:
        err = bs.errors[0]
        assert err.field.endswith("entries[3].x0") and err.offset == entry + 28


@pytest.mark.parametrize("version", [1, 2])
def test_garbage_after_end_and_trailing_bytes(ssb_cases, version):
    data = _stream(ssb_cases, version)[0]
    with ssb_open(data + b"xyz") as bs:
        assert bs.complete and len(bs.frames) == 3
        assert "after the END unit" in str(bs.errors[-1])
    with ssb_open(data[:-32] + b"\x01\x02") as bs:  # END cut off, 2 stray bytes
        assert not bs.complete and len(bs.frames) == 3
        assert isinstance(bs.errors[-1], TruncatedError)


@pytest.mark.parametrize("version", [1, 2])
def test_resync_skips_garbage_between_fragments(ssb_cases, version):
    data, layout = _stream(ssb_cases, version)
    _, fh, _, _ = layout["frames"][1]
    junk = bytes(range(256)) * 3 + b"\x02\x00" * 40  # false FRAME_HEADER candidates without valid CRCs
    with ssb_open(data[:fh] + junk + data[fh:]) as bs:
        # the junk shifts every offset, so END's counts still agree; the junk is reported once
        assert [f.frame_index for f in bs.frames] == [0, 2, 4]
        assert (
            len(bs.errors) == 1 and isinstance(bs.errors[0], ChecksumError) and bs.errors[0].offset == fh + 12
        )
        assert bs.check() == []


def test_closed_bitstream(ssb_cases):
    bs = ssb_open(ssb_cases.basic_stream())
    unit = bs.units[5]
    bs.close()
    with pytest.raises(SSBError):
        unit.payload()


def test_payload_is_a_zero_copy_view(tmp_path, ssb_cases):
    path = tmp_path / "s.ssb"
    path.write_bytes(ssb_cases.basic_stream())
    with ssb_open(path) as bs:
        view = bs.units[4].payload()
        assert isinstance(view, memoryview) and view.readonly
        assert zlib.crc32(view) == zlib.crc32(bytes(view))
        del view
    data = bytearray(ssb_cases.basic_stream())
    with ssb_open(data) as bs:
        view = bs.units[4].payload()
        assert view.obj is data  # a slice of the caller's buffer, not a copy
        del view
