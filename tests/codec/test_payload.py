"""BASE / OBJECT payload syntax (docs/format.md section 14): round trips, every refusal, fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssb.codec.feature_codec import CompressedFeatures
from ssb.codec.payload import BASE_VERSION, pack_base, pack_object, unpack_base, unpack_object
from ssb.errors import MalformedFieldError, SSBError, TruncatedError

HEADER = 18  # bytes before the z string (docs/format.md, BASE table)
UNIT_OFFSET = 1000  # where the payload sits in an imaginary stream: errors report absolute offsets
ITEM = CompressedFeatures(y=b"Y" * 12, z=b"Z" * 8, level=1, latent_hw=(19, 23), hyper_hw=(5, 6),
                          out_hw=(38, 45))


def _base(**fields) -> bytes:
    """A BASE payload of ``ITEM`` with some header fields overwritten."""
    values = {"version": BASE_VERSION, "level": 1, "out_h": 38, "out_w": 45, "latent_h": 19, "latent_w": 23,
              "hyper_h": 5, "hyper_w": 6, "z_length": 8}
    values.update(fields)
    return struct.pack("<BBHHHHHHI", *values.values()) + ITEM.z + ITEM.y


def _unpack(payload: bytes, num_levels: int = 2) -> CompressedFeatures:
    return unpack_base(payload, num_levels=num_levels, unit_offset=UNIT_OFFSET, field="unit[7]")


def test_base_layout_matches_the_documented_table():
    payload = pack_base(ITEM)
    assert payload == _base()
    assert len(payload) == HEADER + len(ITEM.z) + len(ITEM.y)
    assert payload[HEADER : HEADER + 8] == ITEM.z and payload[HEADER + 8 :] == ITEM.y


@pytest.mark.parametrize("item", [
    ITEM,
    CompressedFeatures(y=b"", z=b"", level=0, latent_hw=(1, 1), hyper_hw=(1, 1), out_hw=(1, 1)),
    CompressedFeatures(y=bytes(range(256)), z=b"\0" * 4, level=5, latent_hw=(2048, 2048), hyper_hw=(512, 512),
                       out_hw=(4096, 4095)),
])
def test_base_round_trip(item):
    payload = pack_base(item)
    assert unpack_base(payload, num_levels=6) == item
    assert unpack_base(memoryview(bytearray(payload)), num_levels=6) == item  # zero-copy views work too


# name -> (payload, error class, field (after "unit[7].payload"), offset inside the payload)
CORRUPTIONS = {
    "empty": (b"", TruncatedError, "", 0),
    "short_header": (_base()[: HEADER - 1], TruncatedError, "", 0),
    "bad_version": (_base(version=2), MalformedFieldError, ".version", 0),
    "version_zero": (_base(version=0), MalformedFieldError, ".version", 0),
    "level_too_high": (_base(level=2), MalformedFieldError, ".level", 1),
    "level_255": (_base(level=255), MalformedFieldError, ".level", 1),
    "out_h_zero": (_base(out_h=0, latent_h=0, hyper_h=0), MalformedFieldError, ".out_h", 2),
    "out_w_too_big": (_base(out_w=4097, latent_w=2049, hyper_w=513), MalformedFieldError, ".out_h", 2),
    "latent_h_mismatch": (_base(latent_h=20), MalformedFieldError, ".latent_h", 6),
    "latent_w_mismatch": (_base(latent_w=22), MalformedFieldError, ".latent_h", 6),
    "hyper_h_mismatch": (_base(hyper_h=4), MalformedFieldError, ".hyper_h", 10),
    "hyper_w_mismatch": (_base(hyper_w=7), MalformedFieldError, ".hyper_h", 10),
    "z_length_past_end": (_base(z_length=8 + 12 + 1), TruncatedError, ".z_length", 14),
    "z_length_huge": (_base(z_length=0xFFFFFFFF), TruncatedError, ".z_length", 14),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupt_base_names_field_and_absolute_offset(name):
    payload, error, field, offset = CORRUPTIONS[name]
    with pytest.raises(error) as exc:
        _unpack(payload)
    assert exc.value.field == f"unit[7].payload{field}"
    assert exc.value.offset == UNIT_OFFSET + offset
    assert f"byte offset {UNIT_OFFSET + offset}" in str(exc.value)


def test_z_length_may_take_the_whole_rest():
    item = _unpack(_base(z_length=20))
    assert item.z == ITEM.z + ITEM.y and item.y == b""


def test_object_round_trip_and_size():
    payload = pack_object(1, (10.5, 20.25, 300.0, 400.75), 0.875)
    assert len(payload) == 22
    assert unpack_object(payload) == (1, (10.5, 20.25, 300.0, 400.75), 0.875)


@pytest.mark.parametrize("size", [0, 21, 23])
def test_object_of_wrong_size_is_refused(size):
    with pytest.raises(MalformedFieldError) as exc:
        unpack_object(bytes(size), unit_offset=UNIT_OFFSET, field="unit[3]")
    assert (exc.value.field, exc.value.offset) == ("unit[3].payload", UNIT_OFFSET)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.integers(1, 255))
def test_random_bytes_only_raise_ssb_errors(data, num_levels):
    try:
        item = unpack_base(data, num_levels=num_levels, unit_offset=UNIT_OFFSET)
    except SSBError as exc:
        assert exc.offset is not None and UNIT_OFFSET <= exc.offset < UNIT_OFFSET + max(len(data), 1)
        assert exc.field and exc.field.startswith("unit.payload")
        return
    assert pack_base(item) == data  # an accepted payload has one canonical form


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_base()) - 1), st.integers(1, 255))
def test_one_byte_damage_is_refused_or_canonical(position, xor):
    data = bytearray(_base())
    data[position] ^= xor
    try:
        item = _unpack(bytes(data))
    except SSBError:
        return
    assert pack_base(item) == bytes(data)
