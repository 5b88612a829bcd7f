"""Integer probability tables: how they are made, checked and handed to constriction.

A *table* ``t`` describes one discrete distribution over the integers:

* ``offset[t]``: the smallest value it covers,
* ``length[t] = K``: the number of symbols, the last one being the **escape** symbol,
* ``pmf[t, :K]``: integer frequencies, each ``>= 1``, summing to exactly ``2**PRECISION``.

Symbol ``s < K - 1`` stands for the value ``offset + s``; any value outside
``[offset, offset + K - 2]`` is coded as the escape symbol followed by its Exp-Golomb
payload (see :mod:`ssb.entropy.coding`), so every integer with ``|v| <= MAX_ABS_VALUE``
round-trips whatever the table.

``PRECISION`` is 24 bits, the native precision of constriction 0.5's default coders
(32-bit words, 64-bit state), so the smallest probability is ``2**-24``: wide tables waste
almost no probability mass on their far tails.

Tables are computed from floats once, by a model's ``update()``, and stored as integer
buffers in its ``state_dict``; decoding only ever reads these integers.  constriction's
``Categorical(probabilities, perfect=False)`` turns float probabilities ``p`` into its
fixed-point table as ``cdf[i] = floor(sum(p[:i]) * (2**24 - K) / sum(p)) + i``.  We pass
``p = pmf - 1`` (exact small integers in float64, whose sum is exactly ``2**24 - K``), so the
scale factor is exactly 1.0 and constriction's table *is* ``pmf``, bit for bit
(``tests/entropy/test_entropy_tables.py`` checks this through code lengths).  Even without
that property the model would be a deterministic function of the stored integers: IEEE-754
additions and multiplications of identical inputs give identical results on every machine.
"""

from __future__ import annotations

import numpy as np

from ssb._optional import require
from ssb.errors import ModelMismatchError, SSBError

PRECISION = 24
#: Symbols per table, escape included.
MAX_TABLE_LENGTH = 1 << 16
#: Tables per model (EntropyBottleneck channels or GaussianConditional scales).
MAX_TABLES = 1 << 15
#: Largest magnitude of a coded value (and of a table offset); keeps every payload below 32 bits.
MAX_ABS_VALUE = (1 << 30) - 1

__all__ = ["PRECISION", "MAX_TABLE_LENGTH", "MAX_TABLES", "MAX_ABS_VALUE", "quantize_pmf", "CodingTables"]


def quantize_pmf(pmf: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """Integer frequencies ``>= 1`` summing to ``2**precision``, close to the float ``pmf``.

    Each symbol first gets 1, the remaining ``2**precision - K`` units are shared in
    proportion to ``pmf`` by the largest-remainder method (ties broken by position, so the
    result is a deterministic function of the input).
    """
    p = np.asarray(pmf, dtype=np.float64)
    k = p.shape[0] if p.ndim == 1 else -1
    if not 2 <= k <= min(MAX_TABLE_LENGTH, 1 << precision):
        raise SSBError(f"a table needs 2..{MAX_TABLE_LENGTH} symbols, got shape {p.shape}", field="pmf")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise SSBError("pmf must be finite, non-negative and not all zero", field="pmf")
    free = (1 << precision) - k
    scaled = p / p.sum() * free
    base = np.floor(scaled).astype(np.int64)
    rest = free - int(base.sum())
    if rest > 0:
        base[np.argsort(base - scaled, kind="stable")[:rest]] += 1
    elif rest < 0:  # float rounding pushed the floors over: take from the largest entries
        base[np.argsort(-base, kind="stable")[:-rest]] -= 1
    freq = base + 1
    assert int(freq.sum()) == 1 << precision and freq.min() >= 1
    return freq.astype(np.int32)


class CodingTables:
    """Validated integer tables plus the constriction models built from them (lazily, cached).

    Parameters
    ----------
    pmf, lengths, offsets:
        ``(T, Kmax)``, ``(T,)`` and ``(T,)`` integer arrays as described in the module
        docstring (rows padded with zeros after ``length``).
    source:
        Name used in error messages (``"EntropyBottleneck"``...).

    Raises
    ------
    ModelMismatchError
        If the arrays are not valid tables (e.g. a corrupted or foreign ``state_dict``).
    """

    def __init__(self, pmf: np.ndarray, lengths: np.ndarray, offsets: np.ndarray, source: str = "tables"):
        pmf = np.asarray(pmf)
        lengths = np.asarray(lengths).astype(np.int64)
        offsets = np.asarray(offsets).astype(np.int64)
        if pmf.ndim != 2 or lengths.shape != (pmf.shape[0],) or offsets.shape != (pmf.shape[0],):
            raise ModelMismatchError(f"{source}: table buffers have inconsistent shapes",
                                     field=f"{source}._pmf")
        n_tables, k_max = pmf.shape
        if not 1 <= n_tables <= MAX_TABLES or k_max > MAX_TABLE_LENGTH:
            raise ModelMismatchError(f"{source}: {n_tables} tables of {k_max} symbols are out of limits",
                                     field=f"{source}._pmf")
        pmf = pmf.astype(np.int64)
        if np.any(lengths < 2) or np.any(lengths > k_max):
            raise ModelMismatchError(f"{source}: table lengths out of [2, {k_max}]",
                                     field=f"{source}._pmf_length")
        used = np.arange(k_max)[None, :] < lengths[:, None]
        if np.any(pmf[used] < 1) or np.any(pmf[~used] != 0) or np.any(pmf.sum(axis=1) != 1 << PRECISION):
            raise ModelMismatchError(f"{source}: frequencies must be >= 1 and sum to 2**{PRECISION}",
                                     field=f"{source}._pmf")
        if np.any(np.abs(offsets) > MAX_ABS_VALUE) or np.any(np.abs(offsets + lengths - 2) > MAX_ABS_VALUE):
            raise ModelMismatchError(f"{source}: table offsets out of range", field=f"{source}._offset")
        self.pmf = pmf
        self.lengths = lengths
        self.offsets = offsets
        self._models: list = [None] * n_tables

    @property
    def num_tables(self) -> int:
        return len(self._models)

    def model(self, t: int):
        """constriction ``Categorical`` model of table ``t`` (see the module docstring)."""
        m = self._models[t]
        if m is None:
            constriction = require("constriction", "entropy coding")
            probs = (self.pmf[t, : self.lengths[t]] - 1).astype(np.float64)
            m = self._models[t] = constriction.stream.model.Categorical(probs, perfect=False)
        return m

    def code_lengths(self, t: int) -> np.ndarray:
        """Ideal code length in bits of each symbol of table ``t`` (``PRECISION - log2 pmf``)."""
        return PRECISION - np.log2(self.pmf[t, : self.lengths[t]].astype(np.float64))
