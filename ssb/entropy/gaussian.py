"""Gaussian conditional for a scale hyperprior, with integer tables and exact table selection.

Model: ``y ~ N(means, scales**2)`` quantized to integers around ``means`` (``means`` default
to 0; when given they must be bit-identical at encoder and decoder, e.g. the output of an
:class:`~ssb.entropy.exact.ExactSequential`).

Exact table selection
---------------------
``update()`` builds one integer table per entry of a fixed, log-spaced ``scale_table`` and
the integer thresholds ``thr[i] = ceil(sqrt(s[i] * s[i+1]) * 2**scale_code_bits)`` (the
geometric midpoints of neighbouring scales; IEEE-754 ``*``, ``sqrt`` and ``ceil`` are
correctly rounded, and the integers are stored in ``state_dict`` anyway).  The decoder holds
*scale codes*, integers ``c`` meaning ``scale = c / 2**scale_code_bits`` (the integer output of
the exact hyper-synthesis), and :meth:`build_indexes` picks ``index = #{i : thr[i] <= c}``
with integer comparisons only, so encoder and decoder select the same table on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ssb.entropy.base import EntropyModel, TablesNotReadyError, rounded_integers
from ssb.entropy.coding import MAX_SYMBOLS, check_count, decode_integers, encode_integers
from ssb.entropy.quantization import lower_bound, quantize
from ssb.entropy.tables import MAX_TABLE_LENGTH, MAX_TABLES, quantize_pmf
from ssb.errors import MalformedFieldError, SSBError

__all__ = ["GaussianConditional", "default_scale_table"]

#: Largest scale a table may have: its support must fit ``MAX_TABLE_LENGTH`` symbols.
MAX_SCALE = 4096.0


def default_scale_table(min_scale: float = 0.11, max_scale: float = 256.0, levels: int = 64) -> list[float]:
    """``levels`` scales log-spaced from ``min_scale`` to ``max_scale`` (CompressAI's table)."""
    return [float(s) for s in np.exp(np.linspace(math.log(min_scale), math.log(max_scale), levels))]


def _is_integer(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


def _standard_cumulative(x: Tensor) -> Tensor:
    return 0.5 * torch.erfc(x * (-(2**-0.5)))


class GaussianConditional(EntropyModel):
    """Scale-conditioned Gaussian entropy model (mean 0, or caller-supplied exact means).

    Parameters
    ----------
    scale_table:
        Increasing positive scales, one integer table each (default: 64 scales from 0.11 to
        256).  At most ``MAX_TABLES`` entries, each at most ``MAX_SCALE``.
    scale_bound:
        Lower bound on the scales in ``forward`` (default: the smallest table scale).
    scale_code_bits:
        Fractional bits of the integer scale codes given to :meth:`build_indexes`.
    quant_mode, likelihood_bound, tail_mass:
        See :class:`~ssb.entropy.base.EntropyModel`; a table covers ``+-ceil(z * scale)`` with
        ``2 * Q(z) = tail_mass``, values beyond go through the escape symbol.
    """

    _resizable_buffers = (*EntropyModel._resizable_buffers, "scale_table", "_scale_thresholds")

    def __init__(self, scale_table: Sequence[float] | None = None, *, scale_bound: float | None = None,
                 scale_code_bits: int = 8, quant_mode: str = "noise", likelihood_bound: float = 1e-9,
                 tail_mass: float = 1e-6):
        super().__init__(quant_mode=quant_mode, likelihood_bound=likelihood_bound, tail_mass=tail_mass)
        table = np.asarray(default_scale_table() if scale_table is None else scale_table, dtype=np.float64)
        if (table.ndim != 1 or not 1 <= table.size <= MAX_TABLES or not np.all(np.isfinite(table))
                or np.any(table <= 0) or np.any(table > MAX_SCALE) or np.any(np.diff(table) <= 0)):
            raise SSBError(f"scale_table must hold 1..{MAX_TABLES} increasing scales in (0, {MAX_SCALE}]",
                           field="scale_table")
        if not 0 <= scale_code_bits <= 16:
            raise SSBError(f"scale_code_bits must be in [0, 16], got {scale_code_bits}",
                           field="scale_code_bits")
        self.scale_code_bits = int(scale_code_bits)
        self.scale_bound = float(table[0] if scale_bound is None else scale_bound)
        self.register_buffer("scale_table", torch.from_numpy(table))
        self.register_buffer("_scale_thresholds", torch.zeros(0, dtype=torch.int64))

    # -- training ------------------------------------------------------------------------
    def _likelihood(self, y_hat: Tensor, scales: Tensor, means: Tensor | None) -> Tensor:
        values = torch.abs(y_hat if means is None else y_hat - means)
        scales = lower_bound(scales, self.scale_bound)
        upper = _standard_cumulative((0.5 - values) / scales)
        lower = _standard_cumulative((-0.5 - values) / scales)
        return upper - lower

    def forward(self, y: Tensor, scales: Tensor, means: Tensor | None = None,
                quant_mode: str | None = None) -> tuple[Tensor, Tensor]:
        """Return ``(y_hat, likelihoods)``; ``likelihoods >= likelihood_bound``.

        ``quant_mode`` overrides :attr:`quant_mode`; in eval mode the default is ``"hard"``.
        """
        y_hat = quantize(y, self._resolve_mode(quant_mode), means)
        return y_hat, lower_bound(self._likelihood(y_hat, scales, means), self.likelihood_bound)

    # -- integer tables ------------------------------------------------------------------
    @torch.no_grad()
    def update(self, force: bool = False) -> bool:
        """Build one integer table per scale and the integer scale-code thresholds.

        Returns False (and changes nothing) if tables exist and ``force`` is False.
        """
        if self.updated and not force:
            return False
        scales = self.scale_table.detach().cpu().to(torch.float64)
        z = -float(torch.special.ndtri(torch.tensor(self.tail_mass / 2, dtype=torch.float64)))
        pmfs, offsets = [], []
        for s in scales.tolist():
            half = min(math.ceil(z * s), (MAX_TABLE_LENGTH - 2) // 2)
            v = torch.arange(-half, half + 1, dtype=torch.float64).abs()
            p = (_standard_cumulative((0.5 - v) / s) - _standard_cumulative((-0.5 - v) / s)).numpy()
            pmfs.append(quantize_pmf(np.append(p, max(1.0 - p.sum(), 0.0))))
            offsets.append(-half)
        unit = 2.0**self.scale_code_bits
        s = scales.numpy()
        thresholds = [math.ceil(math.sqrt(a * b) * unit) for a, b in zip(s[:-1], s[1:])]
        self._scale_thresholds = torch.tensor(thresholds, dtype=torch.int64, device=self._pmf.device)
        self._set_tables(pmfs, offsets)
        return True

    def quantize_scales(self, scales: Tensor) -> Tensor:
        """Integer scale codes ``floor(scales * 2**scale_code_bits + 0.5)`` (clamped to ``[0, 2**31)``).

        Only exact if ``scales`` are; the decoder should get its codes from an exact
        network (:meth:`ExactSequential.codes`) instead.
        """
        codes = torch.floor(scales.detach().to(torch.float64) * 2.0**self.scale_code_bits + 0.5)
        return codes.clamp(0, 2**31 - 1).to(torch.int64)

    def build_indexes(self, scale_codes: Tensor) -> Tensor:
        """Table index of each integer scale code (int64, same shape), by integer comparisons only."""
        if not self.updated:
            raise TablesNotReadyError("GaussianConditional.build_indexes needs update() (scale thresholds)")
        if not _is_integer(scale_codes.dtype):
            raise SSBError(f"scale codes must be an integer tensor, got {scale_codes.dtype}",
                           field="scale_codes")
        codes = scale_codes.to(torch.int64)
        return torch.bucketize(codes, self._scale_thresholds.to(codes.device), right=True)

    # -- coding --------------------------------------------------------------------------
    def _checked_indexes(self, indexes: Tensor, num_tables: int) -> np.ndarray:
        if not _is_integer(indexes.dtype):
            raise MalformedFieldError(f"indexes must be an integer tensor, got {indexes.dtype}",
                                      field="indexes")
        ids = indexes.detach().cpu().to(torch.int64).numpy().ravel()
        if ids.size and (ids.min() < 0 or ids.max() >= num_tables):
            raise MalformedFieldError(f"indexes must lie in [0, {num_tables})", field="indexes")
        return ids

    def compress(self, y: Tensor, indexes: Tensor, means: Tensor | None = None) -> bytes:
        """Entropy-code ``round(y - means)`` with table ``indexes[i]`` for element ``i``.

        ``indexes`` (from :meth:`build_indexes`) must have ``y``'s shape.  Raises
        :class:`TablesNotReadyError` before ``update()`` and :class:`LimitExceededError` for
        more than ``MAX_SYMBOLS`` elements or a value beyond ``MAX_ABS_VALUE``.
        """
        tables = self.coding_tables()
        if tuple(indexes.shape) != tuple(y.shape):
            raise MalformedFieldError(f"indexes shape {tuple(indexes.shape)} != y shape {tuple(y.shape)}",
                                      field="indexes")
        check_count(y.numel(), MAX_SYMBOLS, field="y")
        values = rounded_integers(y if means is None else y - means, "y")
        return encode_integers(values, self._checked_indexes(indexes, tables.num_tables), tables)

    def decompress(self, data: bytes, indexes: Tensor, means: Tensor | None = None, *,
                   dtype: torch.dtype = torch.float32, max_symbols: int = MAX_SYMBOLS,
                   field: str = "GaussianConditional.payload", offset: int = 0) -> Tensor:
        """Decode a :meth:`compress` payload; the result has ``indexes``' shape and device.

        Returns ``symbols + means`` (``means`` in ``dtype``).  At most ``max_symbols`` elements
        are accepted, before anything is allocated.  Errors name ``field`` and the byte offset in
        the stream (``offset``: where ``data`` starts).
        """
        tables = self.coding_tables()
        check_count(indexes.numel(), max_symbols, field="indexes")
        ids = self._checked_indexes(indexes, tables.num_tables)
        values = decode_integers(data, ids, tables, field=field, offset=offset)
        out = torch.from_numpy(values.reshape(tuple(indexes.shape))).to(dtype=dtype, device=indexes.device)
        return out if means is None else out + means.to(dtype)
