"""Entropy coding of integer tensors with per-element integer tables (constriction ANS).

Payload format
--------------
A payload is the compressed data of one constriction ``AnsCoder`` (32-bit words, 64-bit
state, ``PRECISION`` = 24) written as **unsigned 32-bit little-endian words**; its length is
therefore a multiple of 4 and it never ends in a zero word.  constriction's coder starts
from state 0, so symbols 0 pushed first cost nothing: zero elements, or elements that all
map to symbol 0 of their tables, give ``b""`` (a valid payload).
There is no header: the element count and the table of each element (``table_ids``) come
from outside (the tensor shape and the channel / scale index), exactly as at encode time.

Decoding order (ANS is a stack: the encoder pushes these in reverse):

1. for every table ``t = 0 .. T-1`` in increasing order, the symbols of the elements whose
   table is ``t``, in raster (flattened C-order) order, each with table ``t``'s model;
2. for the ``E`` elements that decoded to the escape symbol, in raster order:
   ``E`` side bits (``Uniform(2)``: 0 = above the table, 1 = below), then ``E`` Exp-Golomb
   exponents ``nb`` (``Uniform(32)``), then, for each escape with ``nb >= 1``, the low
   ``min(nb, 16)`` mantissa bits (``Uniform(2**min(nb, 16))``), then, for each escape with
   ``nb > 16``, the high ``nb - 16`` mantissa bits.

An escaped value ``v`` of a table covering ``[lo, hi]`` is coded through
``d = v - hi - 1`` (above) or ``d = lo - 1 - v`` (below), ``n = d + 1 = 2**nb + mantissa``.

Robustness
----------
The decoder allocates only from the declared element count (bounded by the caller), refuses
payloads longer than any encoder could produce for that count, runs in time linear in the
count, and after decoding checks that the coder is back in its initial state (true for
every payload this encoder writes, false for most corrupted or truncated ones).  Any
failure is a :class:`~ssb.errors.SSBError` subclass.  This check is not a checksum: the
container's unit checksums are what detect corruption reliably.
"""

from __future__ import annotations

import numpy as np

from ssb._optional import require
from ssb.entropy.tables import MAX_ABS_VALUE, CodingTables
from ssb.errors import LimitExceededError, MalformedFieldError, SSBError, TruncatedError

#: Default bound on the number of elements of one payload (about 134 MB of int32 symbols).
MAX_SYMBOLS = 1 << 25
_NB_ALPHABET = 32  # Exp-Golomb exponents 0..31: n = d + 1 < 2**32 since |v|, |offset| < 2**30
_LOW_BITS = 16
#: No payload of N symbols is longer than this many 32-bit words: a symbol costs at most
#: 24 bits (probability >= 2**-24) plus 1 + 5 + 31 escape bits, i.e. < 2 words, plus the state.
_MAX_WORDS_PER_SYMBOL = 2
_STATE_WORDS = 2

__all__ = ["MAX_SYMBOLS", "encode_integers", "decode_integers", "check_count"]


def check_count(count: int, max_symbols: int = MAX_SYMBOLS, field: str = "shape") -> int:
    """Raise :class:`LimitExceededError` if ``count`` elements are more than a payload may hold."""
    if count > max_symbols:
        raise LimitExceededError(f"{count} elements exceed the limit of {max_symbols} per payload",
                                 field=field)
    return count


def _constriction():
    return require("constriction", "entropy coding")


def _groups(table_ids: np.ndarray, num_tables: int) -> tuple[np.ndarray, np.ndarray]:
    """Element order grouped by table (stable: raster order within a table) and each run's bounds."""
    order = np.argsort(table_ids.astype(np.int16), kind="stable")  # radix sort; MAX_TABLES fits int16
    bounds = np.zeros(num_tables + 1, dtype=np.int64)
    np.cumsum(np.bincount(table_ids, minlength=num_tables), out=bounds[1:])
    return order, bounds


def _push_escapes(coder, values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """Push the escape payloads of ``values`` (outside ``[lo, hi]``, raster order); see the module doc."""
    uniform = _constriction().stream.model.Uniform
    side = (values < lo).astype(np.int32)
    n = np.where(side == 1, lo - values, values - hi)  # d + 1 >= 1
    nb = (np.frexp(n.astype(np.float64))[1] - 1).astype(np.int64)  # floor(log2 n), exact: n < 2**53
    mant = n - (np.int64(1) << nb)
    low_bits = np.minimum(nb, _LOW_BITS)
    has_low, has_high = nb >= 1, nb > _LOW_BITS
    if has_high.any():
        coder.encode_reverse((mant[has_high] >> _LOW_BITS).astype(np.int32), uniform(),
                             (np.int64(1) << (nb[has_high] - _LOW_BITS)).astype(np.int32))
    if has_low.any():
        coder.encode_reverse((mant[has_low] & ((np.int64(1) << low_bits[has_low]) - 1)).astype(np.int32),
                             uniform(), (np.int64(1) << low_bits[has_low]).astype(np.int32))
    coder.encode_reverse(nb.astype(np.int32), uniform(_NB_ALPHABET))
    coder.encode_reverse(side, uniform(2))


def _pop_escapes(coder, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_push_escapes`: the escaped values of tables covering ``[lo, hi]``."""
    uniform = _constriction().stream.model.Uniform
    side = coder.decode(uniform(2), lo.size)
    nb = coder.decode(uniform(_NB_ALPHABET), lo.size).astype(np.int64)
    mant = np.zeros(lo.size, dtype=np.int64)
    low_bits = np.minimum(nb, _LOW_BITS)
    has_low, has_high = nb >= 1, nb > _LOW_BITS
    if has_low.any():
        mant[has_low] = coder.decode(uniform(), (np.int64(1) << low_bits[has_low]).astype(np.int32))
    if has_high.any():
        high = coder.decode(uniform(), (np.int64(1) << (nb[has_high] - _LOW_BITS)).astype(np.int32))
        mant[has_high] += high.astype(np.int64) << _LOW_BITS
    n = (np.int64(1) << nb) + mant
    return np.where(side == 1, lo - n, hi + n)


def _escape_bounds(tables: CodingTables, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = tables.offsets[ids]
    return lo, lo + tables.lengths[ids] - 2


def encode_integers(values: np.ndarray, table_ids: np.ndarray, tables: CodingTables) -> bytes:
    """Encode the integers ``values`` (1-D), element ``i`` with table ``table_ids[i]``.

    Raises :class:`LimitExceededError` if a value's magnitude exceeds ``MAX_ABS_VALUE``.
    """
    values = np.asarray(values, dtype=np.int64).ravel()
    table_ids = np.asarray(table_ids, dtype=np.int64).ravel()
    if values.shape != table_ids.shape:
        raise SSBError("values and table_ids differ in size", field="table_ids")
    if values.size == 0:
        return b""
    if np.abs(values).max() > MAX_ABS_VALUE:
        raise LimitExceededError(f"a value exceeds the codable magnitude {MAX_ABS_VALUE}", field="values")
    order, bounds = _groups(table_ids, tables.num_tables)
    grouped = values[order]
    symbols = np.empty(values.size, dtype=np.int32)
    runs, escaped = [], []
    for t in range(tables.num_tables):
        start, end = bounds[t], bounds[t + 1]
        if end == start:
            continue
        seg = grouped[start:end] - tables.offsets[t]
        escape = tables.lengths[t] - 1
        out = (seg < 0) | (seg >= escape)
        if out.any():
            seg[out] = escape
            escaped.append(order[start:end][out])
        symbols[start:end] = seg
        runs.append((t, start, end))

    coder = _constriction().stream.stack.AnsCoder()
    if escaped:
        pos = np.sort(np.concatenate(escaped))
        _push_escapes(coder, values[pos], *_escape_bounds(tables, table_ids[pos]))
    for t, start, end in reversed(runs):
        coder.encode_reverse(symbols[start:end], tables.model(t))
    return coder.get_compressed().astype("<u4").tobytes()


def decode_integers(data: bytes, table_ids: np.ndarray, tables: CodingTables,
                    field: str = "payload", offset: int = 0) -> np.ndarray:
    """Decode the integers :func:`encode_integers` wrote for the same ``table_ids`` and tables.

    The caller bounds ``table_ids.size`` (see :func:`check_count`) and checks that every id
    is in ``[0, tables.num_tables)``.  Returns an ``int64`` array of ``table_ids.size`` values.
    Errors name ``field`` and the byte offset of the problem in the stream (``offset``: where
    ``data`` starts in it).
    """
    table_ids = np.asarray(table_ids, dtype=np.int64).ravel()
    count = table_ids.size
    data = bytes(data)
    if count == 0:
        if data:
            raise MalformedFieldError(f"{len(data)} bytes of payload for zero elements",
                                      offset=offset, field=field)
        return np.zeros(0, dtype=np.int64)
    if len(data) % 4:
        raise TruncatedError(f"payload length {len(data)} is not a multiple of 4 bytes",
                             offset=offset + len(data) - len(data) % 4, field=field)
    if len(data) // 4 > _STATE_WORDS + _MAX_WORDS_PER_SYMBOL * count:
        raise MalformedFieldError(f"payload of {len(data)} bytes is longer than any encoding of "
                                  f"{count} elements", offset=offset, field=field)
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    order, bounds = _groups(table_ids, tables.num_tables)
    grouped = np.empty(count, dtype=np.int64)
    escaped = []
    try:
        coder = _constriction().stream.stack.AnsCoder(words)
        for t in range(tables.num_tables):
            start, end = bounds[t], bounds[t + 1]
            if end == start:
                continue
            seg = coder.decode(tables.model(t), int(end - start))
            out = seg == tables.lengths[t] - 1
            if out.any():
                escaped.append(order[start:end][out])
            grouped[start:end] = seg + tables.offsets[t]
        values = np.empty(count, dtype=np.int64)
        values[order] = grouped
        if escaped:
            pos = np.sort(np.concatenate(escaped))
            values[pos] = _pop_escapes(coder, *_escape_bounds(tables, table_ids[pos]))
        empty = coder.is_empty()
    except SSBError:
        raise
    except Exception as exc:  # constriction reports invalid data as ValueError / RuntimeError
        raise MalformedFieldError(f"entropy decoder rejected the payload: {exc}",
                                  offset=offset, field=field) from exc
    if not empty:
        raise MalformedFieldError("payload is corrupted, truncated or was coded with other tables "
                                  "(coder not exhausted after the last element)", offset=offset, field=field)
    if np.abs(values).max() > MAX_ABS_VALUE:
        raise MalformedFieldError(f"a decoded value exceeds the codable magnitude {MAX_ABS_VALUE}",
                                  offset=offset, field=field)
    return values
