"""Codec payload syntax (docs/format.md sections 14-15, ssb.format.payloads): round trips, every refusal
against the model's context, the 1.x payloads of release 0.1, fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssb.codec.feature_codec import CompressedFeatures, latent_sizes
from ssb.codec.payload import pack_features, pack_window, unpack_features, unpack_window
from ssb.errors import MalformedFieldError, SSBError, TruncatedError

OFFSET = 1000  # where the payload sits in an imaginary stream: errors report absolute offsets
CTX = {"levels": 2, "grid": (38, 38)}


def _item(rows=38, cols=38, level=1, z=b"Z" * 8, y=b"Y" * 12) -> CompressedFeatures:
    lat, hyp = latent_sizes((rows, cols))
    return CompressedFeatures(y=y, z=z, level=level, latent_hw=lat, hyper_hw=hyp, out_hw=(rows, cols))


def _unpack(payload, ctx=CTX) -> CompressedFeatures:
    return unpack_features(payload, ctx=ctx, offset=OFFSET, field="unit[7]")


def _v1_base(**fields) -> bytes:
    """A 1.x BASE payload (written by release 0.1) with some header fields overwritten."""
    values = {"version": 1, "level": 1, "out_h": 38, "out_w": 38, "latent_h": 19, "latent_w": 19,
              "hyper_h": 5, "hyper_w": 5, "z_length": 8}
    values.update(fields)
    return struct.pack("<BBHHHHHHI", *values.values()) + b"Z" * 8 + b"Y" * 12


def test_features_round_trip_and_layout():
    item = _item()
    payload = pack_features(item)
    assert payload[:5] == bytes([2, 1, 38, 38, 8]) and payload[5:] == item.z + item.y  # 5-byte header
    assert _unpack(payload) == item
    assert _unpack(memoryview(bytearray(payload))) == item


def test_release_0_1_base_payloads_still_parse():
    assert _unpack(_v1_base()) == _item()


@pytest.mark.parametrize("rows, cols", [(4096, 4096), (39, 38), (38, 1), (1, 1)])
def test_a_payload_cannot_declare_another_grid_than_the_model(rows, cols):
    """The 4096 case of issue 13: sizes are checked against the model before anything is allocated."""
    with pytest.raises(MalformedFieldError) as e:
        _unpack(pack_features(_item(rows, cols)))
    assert e.value.field == "unit[7].payload.rows" and e.value.offset == OFFSET + 2
    lat, hyp = latent_sizes((rows, cols))
    with pytest.raises(MalformedFieldError) as e:  # the 1.x syntax, sizes made consistent
        _unpack(_v1_base(out_h=rows, out_w=cols, latent_h=lat[0], latent_w=lat[1], hyper_h=hyp[0], hyper_w=hyp[1]))
    assert e.value.field == "unit[7].payload.out_h"


# name -> (payload, error class, field after "unit[7].payload", offset inside the payload)
CORRUPTIONS = {
    "empty": (b"", TruncatedError, "", 0),
    "unknown_version": (b"\x07" + pack_features(_item())[1:], MalformedFieldError, ".version", 0),
    "level_too_high": (pack_features(_item(level=2)), MalformedFieldError, ".level", 1),
    "rows_zero": (bytes([2, 1, 0, 38, 0]), MalformedFieldError, ".rows", 2),
    "z_past_end": (bytes([2, 1, 38, 38, 100]) + b"Z", MalformedFieldError, ".z", 5),
    "varint_cut": (bytes([2, 1, 38, 38, 0x80]), MalformedFieldError, ".z_length", 4),
    "varint_overlong": (bytes([2, 1, 0xA6, 0x00, 38, 0]), MalformedFieldError, ".rows", 2),
    "v1_short_header": (_v1_base()[:17], MalformedFieldError, ".z_length", 14),
    "v1_bad_latent": (_v1_base(latent_h=18), MalformedFieldError, ".latent_h", 6),
    "v1_bad_hyper": (_v1_base(hyper_w=4), MalformedFieldError, ".hyper_h", 10),
    "v1_z_past_end": (_v1_base(z_length=1000), MalformedFieldError, ".z", 18),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_every_refusal_names_field_and_offset(name):
    payload, exc, field, rel = CORRUPTIONS[name]
    with pytest.raises(exc) as e:
        _unpack(payload)
    assert e.value.field.startswith("unit[7].payload") and e.value.field.endswith(field or "payload"), e.value.field
    assert e.value.offset is not None and OFFSET <= e.value.offset <= OFFSET + len(payload) + 4


def test_window_round_trip_and_grid_check():
    item = _item(6, 4, level=0)
    payload = pack_window(30, 34, item)
    assert unpack_window(payload, ctx=CTX, offset=OFFSET) == (30, 34, item)
    with pytest.raises(MalformedFieldError) as e:  # rows 30..36 fit, columns 35..39 leave the 38-cell grid
        unpack_window(pack_window(30, 35, item), ctx=CTX, offset=OFFSET, field="unit[3]")
    assert e.value.field == "unit[3].payload.row0" and e.value.offset == OFFSET + 1
    with pytest.raises(MalformedFieldError):
        unpack_window(pack_window(0, 0, _item(4096, 4096, level=0)), ctx=CTX)


def test_release_0_1_window_payloads_still_parse():
    v1 = struct.pack("<BBHH", 1, 0, 30, 34) + _v1_base(out_h=6, out_w=4, latent_h=3, latent_w=2, hyper_h=1,
                                                        hyper_w=1, level=0)
    row0, col0, item = unpack_window(v1, ctx=CTX, offset=OFFSET)
    assert (row0, col0, item.out_hw, item.level) == (30, 34, (6, 4), 0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.sampled_from([pack_features(_item()), pack_window(2, 2, _item(6, 6, 0))]))
def test_fuzzed_payloads_only_ever_raise_ssb_errors(noise, base):
    for payload in (noise, base[: len(noise) % (len(base) + 1)], bytes(a ^ b for a, b in zip(base, noise)) + base[len(noise):]):
        for fn in (_unpack, lambda p: unpack_window(p, ctx=CTX)):
            try:
                fn(payload)
            except SSBError:
                pass
