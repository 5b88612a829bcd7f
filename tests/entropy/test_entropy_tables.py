"""Integer tables, the constriction bridge and the escape-coded payload format."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssb.entropy import MAX_ABS_VALUE, PRECISION, CodingTables, decode_integers, encode_integers, quantize_pmf
from ssb.errors import LimitExceededError, MalformedFieldError, ModelMismatchError, SSBError, TruncatedError


def _tables(rng: np.random.Generator, n_tables: int = 3) -> CodingTables:
    pmfs = [quantize_pmf(rng.random(int(rng.integers(2, 40))) ** 3) for _ in range(n_tables)]
    k_max = max(len(p) for p in pmfs)
    padded = np.zeros((n_tables, k_max), dtype=np.int32)
    for t, p in enumerate(pmfs):
        padded[t, : len(p)] = p
    offsets = rng.integers(-20, 20, n_tables)
    return CodingTables(padded, np.array([len(p) for p in pmfs]), offsets)


def test_quantize_pmf_is_normalized_positive_and_close():
    p = np.array([0.5, 0.25, 1e-12, 0.0, 0.25 - 1e-12])
    q = quantize_pmf(p)
    assert q.sum() == 1 << PRECISION and q.min() >= 1
    assert np.allclose(q / q.sum(), p, atol=1e-6)
    assert np.array_equal(q, quantize_pmf(p.copy()))  # deterministic


@pytest.mark.parametrize("bad", [np.array([1.0]), np.array([1.0, np.nan]), np.array([-1.0, 2.0]),
                                 np.zeros(3)])
def test_quantize_pmf_rejects_bad_input(bad):
    with pytest.raises(SSBError):
        quantize_pmf(bad)


def test_constriction_codes_with_our_integer_table_exactly():
    """Code lengths reveal the frequencies constriction uses: ours (1, 2, 3), not a re-quantization."""
    pmf = np.array([[1, 2, 3, (1 << PRECISION) - 6]])
    tables = CodingTables(pmf, np.array([4]), np.array([0]))
    n = 2000
    for symbol, freq in ((1, 2), (2, 3)):
        bits = 8 * len(encode_integers(np.full(n, symbol), np.zeros(n, dtype=np.int64), tables))
        ours = n * (PRECISION - np.log2(freq))
        assert abs(bits - ours) < 64, (symbol, bits, ours)
    # passing the frequencies themselves would make constriction use 3 for symbol 1: ~1170 bits fewer
    assert abs(8 * len(encode_integers(np.full(n, 1), np.zeros(n, dtype=np.int64), tables))
               - n * (PRECISION - np.log2(3))) > 1000


def _zero_first_frequency(p: np.ndarray) -> np.ndarray:
    """Same row sums, but symbol 0 of table 0 gets frequency 0 (not codable)."""
    p[0, 1] += p[0, 0]
    p[0, 0] = 0
    return p


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p, k, o: (p * 2, k, o),  # sums to 2**25
        lambda p, k, o: (_zero_first_frequency(p), k, o),
        lambda p, k, o: (p, k + 100, o),  # length beyond the row
        lambda p, k, o: (p, k, o + MAX_ABS_VALUE),  # offset out of range
    ],
)
def test_corrupted_tables_are_rejected(mutate):
    good = _tables(np.random.default_rng(0))
    p, k, o = mutate(good.pmf.copy(), good.lengths.copy(), good.offsets.copy())
    with pytest.raises(ModelMismatchError):
        CodingTables(p, k, o)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300), outliers=st.integers(0, 5))
def test_round_trip_with_escapes(seed, n, outliers):
    rng = np.random.default_rng(seed)
    tables = _tables(rng)
    ids = rng.integers(0, tables.num_tables, n)
    values = tables.offsets[ids] + rng.integers(0, 30, n)
    if n:
        pos = rng.integers(0, n, outliers)
        values[pos] = rng.choice([MAX_ABS_VALUE, -MAX_ABS_VALUE, 70000, -70000, 1 << 17, 65, -66], outliers)
    data = encode_integers(values, ids, tables)
    assert len(data) % 4 == 0
    assert np.array_equal(decode_integers(data, ids, tables), values)


def test_value_beyond_codable_magnitude_is_refused():
    tables = _tables(np.random.default_rng(1))
    with pytest.raises(LimitExceededError):
        encode_integers(np.array([MAX_ABS_VALUE + 1]), np.array([0]), tables)


def test_malformed_payloads_raise_ssb_errors():
    rng = np.random.default_rng(2)
    tables = _tables(rng)
    n = 500
    ids = rng.integers(0, tables.num_tables, n)
    values = tables.offsets[ids] + rng.integers(0, 30, n)
    values[::50] = 10**6  # escapes
    data = encode_integers(values, ids, tables)
    with pytest.raises(TruncatedError):
        decode_integers(data[:-1], ids, tables)
    with pytest.raises(MalformedFieldError):
        decode_integers(data[:-4], ids, tables)  # drops the top of the ANS stack
    with pytest.raises(MalformedFieldError):
        decode_integers(data[4:], ids, tables)  # drops the bottom
    with pytest.raises(MalformedFieldError):
        decode_integers(data + b"\x01\x00\x00\x00", ids, tables)
    with pytest.raises(MalformedFieldError):
        decode_integers(data + b"\x00\x00\x00\x00", ids, tables)  # ANS data never ends in a zero word
    with pytest.raises(MalformedFieldError):
        decode_integers(b"\xff" * (4 * 2 * n + 16), ids, tables)  # longer than any encoding of n elements
    with pytest.raises(MalformedFieldError):
        decode_integers(b"\x00" * 8, np.zeros(0, dtype=np.int64), tables)
    # random garbage of plausible length: an SSBError or (rarely, no checksum here) some values, never a crash
    for seed in range(20):
        junk_words = np.random.default_rng(seed).integers(1, 2**32, len(data) // 4, dtype=np.uint64)
        junk = junk_words.astype("<u4").tobytes()
        try:
            out = decode_integers(junk, ids, tables)
        except SSBError:
            continue
        assert out.shape == (n,) and np.abs(out).max() <= MAX_ABS_VALUE


def test_all_zero_symbols_give_an_empty_but_valid_payload():
    """constriction's ANS starts from state 0: symbol 0 of every table costs nothing at the stack bottom."""
    tables = _tables(np.random.default_rng(3))
    ids = np.array([0, 1, 2, 2, 0])
    values = tables.offsets[ids]  # symbol 0 everywhere
    assert encode_integers(values, ids, tables) == b""
    assert np.array_equal(decode_integers(b"", ids, tables), values)
