"""Lossless group-mask coder (ssb.codec.mask_coding): round trips, the documented model, damage -> SSBError."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssb.codec import mask_coding as mc
from ssb.errors import LimitExceededError, MalformedFieldError, SSBError, TruncatedError


def _ellipse(h: int = 40, w: int = 30) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((yy - h / 2) ** 2 / (h / 2) ** 2 + (xx - w / 2) ** 2 / (w / 2) ** 2) < 1


def _frame_with(mask: np.ndarray, shape=(60, 50), at=(5, 10)) -> np.ndarray:
    full = np.zeros(shape, dtype=bool)
    full[at[0] : at[0] + mask.shape[0], at[1] : at[1] + mask.shape[1]] = mask
    return full


def _model_bits(mask: np.ndarray) -> float:
    """Ideal code length of ``mask`` under the model the module documents, re-implemented naively."""
    h, w = mask.shape
    n = {}
    bits = 0.0
    m = mask.astype(int)

    def px(y, x):
        return m[y, x] if 0 <= y and 0 <= x < w else 0

    for y in range(h):
        for x in range(w):
            ctx = 0
            for dy, dx in mc.TEMPLATE:
                ctx = (ctx << 1) | px(y + dy, x + dx)
            n0, n1 = n.get(ctx, (0, 0))
            p1 = min(max(((2 * n1 + 1) << 16) // (2 * (n0 + n1) + 2), mc.P_MIN), 65536 - mc.P_MIN) / 65536
            bits -= math.log2(p1 if m[y, x] else 1 - p1)
            n0, n1 = (n0, n1 + 1) if m[y, x] else (n0 + 1, n1)
            if n0 + n1 >= mc.HALVE_AT:
                n0, n1 = (n0 + 1) >> 1, (n1 + 1) >> 1
            n[ctx] = (n0, n1)
    return bits


@pytest.mark.parametrize("mask", [
    np.ones((1, 1), bool),
    np.ones((1, 17), bool),
    np.ones((23, 1), bool),
    np.ones((9, 7), bool),
    _ellipse(),
    (np.indices((16, 16)).sum(0) % 2).astype(bool),  # checkerboard: the worst case for the contexts
    np.random.default_rng(0).random((31, 29)) < 0.5,
    np.random.default_rng(1).random((64, 48)) < 0.03,
], ids=["1x1", "row", "column", "full", "ellipse", "checkerboard", "noise", "sparse"])
def test_bits_round_trip(mask):
    data = mc.encode_mask_bits(mask)
    assert len(data) % 4 == 0
    assert np.array_equal(mc.decode_mask_bits(data, *mask.shape), mask)
    assert mc.encode_mask_bits(mask) == data  # deterministic


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 24), st.integers(1, 24), st.floats(0.0, 1.0), st.integers(0, 2**32 - 1))
def test_bits_round_trip_random(h, w, p, seed):
    mask = np.random.default_rng(seed).random((h, w)) < p
    assert np.array_equal(mc.decode_mask_bits(mc.encode_mask_bits(mask), h, w), mask)


def test_length_matches_the_documented_model():
    """The string is the documented adaptive model's ideal code length plus at most the coder's state."""
    for mask in (_ellipse(), np.random.default_rng(2).random((20, 30)) < 0.2):
        ideal = _model_bits(mask)
        actual = 8 * len(mc.encode_mask_bits(mask))
        assert ideal - 1 <= actual <= ideal + 64 + 32, (ideal, actual)


def test_smooth_shapes_are_cheap():
    mask = _ellipse(120, 60)
    bpp = 8 * len(mc.encode_mask_bits(mask)) / mask.size
    assert bpp < 0.1, bpp


def test_group_mask_payload_round_trip():
    full = _frame_with(_ellipse())
    payload = mc.pack_group_mask(full)
    unit = mc.unpack_group_mask(payload, full.shape)
    assert unit.bbox == mc.mask_bbox(full)
    assert np.array_equal(unit.full(*full.shape), full)
    version, coder, x0, y0, w, h = struct.unpack_from("<BBHHHH", payload)
    assert (version, coder, x0, y0, w + x0, h + y0) == (1, 1, *unit.bbox)


def test_mask_bbox():
    assert mc.mask_bbox(np.zeros((4, 4), bool)) is None
    m = np.zeros((5, 6), bool)
    m[1, 2] = m[3, 4] = True
    assert mc.mask_bbox(m) == (2, 1, 5, 4)


def test_empty_mask_is_refused():
    with pytest.raises(MalformedFieldError):
        mc.pack_group_mask(np.zeros((8, 8), bool))
    with pytest.raises(MalformedFieldError):
        mc.encode_mask_bits(np.zeros((0, 3), bool))


def test_every_bit_flip_of_the_string_is_an_error():
    full = _frame_with(_ellipse())
    payload = mc.pack_group_mask(full)
    head = struct.calcsize("<BBHHHH")
    for i in range(head, len(payload)):
        for b in range(8):
            bad = bytearray(payload)
            bad[i] ^= 1 << b
            with pytest.raises(SSBError):
                mc.unpack_group_mask(bytes(bad), full.shape)


def test_every_truncation_is_an_error():
    full = _frame_with(_ellipse())
    payload = mc.pack_group_mask(full)
    for n in range(len(payload)):
        with pytest.raises(SSBError) as err:
            mc.unpack_group_mask(payload[:n], full.shape, unit_offset=1000, field="unit[4]")
        assert err.value.offset is not None and err.value.offset >= 1000
        assert err.value.field.startswith("unit[4].payload")


@pytest.mark.parametrize("offset,value,exc,field", [
    (0, 2, MalformedFieldError, "version"),
    (1, 9, MalformedFieldError, "coder"),
])
def test_bad_header_fields_are_named(offset, value, exc, field):
    payload = bytearray(mc.pack_group_mask(_frame_with(_ellipse())))
    payload[offset] = value
    with pytest.raises(exc) as err:
        mc.unpack_group_mask(bytes(payload), (60, 50), unit_offset=100, field="unit[1]")
    assert err.value.field == f"unit[1].payload.{field}" and err.value.offset == 100 + offset


def test_box_outside_the_frame_is_refused():
    payload = mc.pack_group_mask(_frame_with(_ellipse()))
    with pytest.raises(MalformedFieldError, match="inside the frame"):
        mc.unpack_group_mask(payload, (40, 50))  # rows 5..45 do not fit 40 rows
    with pytest.raises(MalformedFieldError, match="inside the frame") as e:
        mc.unpack_group_mask(payload, (60, 30), unit_offset=100, field="unit[4]")
    assert e.value.field == "unit[4].payload.width" and e.value.offset == 106


def test_huge_declared_mask_is_refused_before_decoding():
    head = struct.pack("<BBHHHH", 1, 1, 0, 0, 65535, 65535)
    with pytest.raises(MalformedFieldError, match="at most"):  # the payload syntax bounds the box
        mc.unpack_group_mask(head + b"\0" * 8, (65535, 65535))
    with pytest.raises(LimitExceededError):
        mc.decode_mask_bits(b"\0" * 8, 65535, 65535)
    with pytest.raises(MalformedFieldError, match="longer than any coding"):
        mc.decode_mask_bits(b"\1\0\0\0" * 16, 2, 2)
    with pytest.raises(TruncatedError):
        mc.decode_mask_bits(b"\1\0\0", 2, 2)


def test_decoded_mask_must_touch_its_box():
    """A string that decodes to a mask not filling its declared box is refused (a tight box is the syntax)."""
    inner = np.zeros((6, 6), bool)
    inner[2:4, 2:4] = True
    head = struct.pack("<BBHHHH", 1, 1, 0, 0, 6, 6)
    with pytest.raises(MalformedFieldError, match="edge"):
        mc.unpack_group_mask(head + mc.encode_mask_bits(inner), (10, 10))
