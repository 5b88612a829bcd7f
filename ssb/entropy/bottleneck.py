"""Factorized learned prior (Ballé et al., 2018, "Variational image compression with a scale
hyperprior", appendix 6.1), with integer tables and constriction coding.

Quantization is around 0 (no learned medians): ``z_hat`` is integer-valued, so it can feed
the exact integer hyper-synthesis (:mod:`ssb.entropy.exact`) directly.  Each channel's
density may still sit anywhere: ``update()`` locates its support by bisection of the learned
CDF and codes values beyond it through the escape symbol.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssb.entropy.base import EntropyModel, rounded_integers
from ssb.entropy.coding import MAX_SYMBOLS, check_count, decode_integers, encode_integers
from ssb.entropy.quantization import lower_bound, quantize
from ssb.entropy.tables import MAX_ABS_VALUE, MAX_TABLE_LENGTH, MAX_TABLES, quantize_pmf
from ssb.errors import MalformedFieldError, ModelMismatchError, SSBError

__all__ = ["EntropyBottleneck"]

_BISECTION_STEPS = 64
_EVAL_CHUNK = 1 << 20  # density evaluations per batch in update()


def _channel_axis(ndim: int, field: str) -> int:
    """Channel axis of a ``[B, C, H, W]`` or ``[C, H, W]`` tensor."""
    if ndim not in (3, 4):
        raise SSBError(f"expected a [B, C, H, W] or [C, H, W] tensor, got {ndim} dimensions", field=field)
    return ndim - 3


class EntropyBottleneck(EntropyModel):
    """Per-channel factorized density with integer-table entropy coding.

    Parameters
    ----------
    channels:
        Number of channels ``C`` (one density, hence one table, per channel).
    filters:
        Hidden widths of the per-channel monotone MLP that models the CDF.
    init_scale:
        Initial spread of the densities (as in Ballé 2018 / CompressAI).
    quant_mode, likelihood_bound, tail_mass:
        See :class:`~ssb.entropy.base.EntropyModel`.
    search_bound:
        ``update()`` looks for each channel's support inside ``[-search_bound, search_bound]``.

    Training: ``z_hat, likelihoods = eb(z)``.  After training: ``eb.update()``, then
    ``data = eb.compress(z)`` and ``eb.decompress(data, z.shape)`` gives ``round(z)``
    exactly (``torch.round``, half to even).
    """

    def __init__(self, channels: int, filters: Sequence[int] = (3, 3, 3), init_scale: float = 10.0, *,
                 quant_mode: str = "noise", likelihood_bound: float = 1e-9, tail_mass: float = 1e-6,
                 search_bound: float = float(1 << 20)):
        super().__init__(quant_mode=quant_mode, likelihood_bound=likelihood_bound, tail_mass=tail_mass)
        if not 1 <= int(channels) <= MAX_TABLES:
            raise SSBError(f"channels must be in [1, {MAX_TABLES}], got {channels}", field="channels")
        self.channels = int(channels)
        self.filters = tuple(int(f) for f in filters)
        self.init_scale = float(init_scale)
        self.search_bound = float(search_bound)
        widths = (1, *self.filters, 1)
        scale = self.init_scale ** (1.0 / (len(widths) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(widths) - 1):
            init = math.log(math.expm1(1.0 / scale / widths[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, widths[i + 1], widths[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, widths[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(widths) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, widths[i + 1], 1)))

    # -- density -------------------------------------------------------------------------
    def _logits_cumulative(self, x: Tensor, rows: slice = slice(None)) -> Tensor:
        """Logit of the CDF of channels ``rows`` at ``x`` (``(len(rows), 1, N)``), in ``x``'s dtype/device."""
        logits = x
        for i, matrix in enumerate(self.matrices):
            logits = torch.matmul(F.softplus(matrix[rows].to(x)), logits) + self.biases[i][rows].to(x)
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i][rows].to(x)) * torch.tanh(logits)
        return logits

    def _likelihood(self, values: Tensor, rows: slice = slice(None)) -> Tensor:
        """P(value - 0.5 < Z <= value + 0.5) for ``values`` of shape ``(len(rows), 1, N)``."""
        lower = self._logits_cumulative(values - 0.5, rows)
        upper = self._logits_cumulative(values + 0.5, rows)
        sign = -torch.sign(lower + upper).detach()  # evaluate on the flat side of the sigmoid
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    def forward(self, z: Tensor, quant_mode: str | None = None) -> tuple[Tensor, Tensor]:
        """Quantize ``z`` (``[B, C, H, W]`` or ``[C, H, W]``) and return ``(z_hat, likelihoods)``.

        ``quant_mode`` overrides :attr:`quant_mode`; in eval mode the default is ``"hard"``.
        Likelihoods have ``z``'s shape and are bounded below by ``likelihood_bound``.
        """
        axis = _channel_axis(z.dim(), "z")
        self._check_channels(z.shape[axis])
        z_hat = quantize(z, self._resolve_mode(quant_mode))
        perm = (axis, *[d for d in range(z.dim()) if d != axis])
        flat = z_hat.permute(perm).reshape(self.channels, 1, -1)
        lik = self._likelihood(flat).reshape([z.shape[d] for d in perm])
        lik = lik.permute(tuple(int(i) for i in np.argsort(perm)))
        return z_hat, lower_bound(lik, self.likelihood_bound)

    def _check_channels(self, c: int) -> None:
        if c != self.channels:
            raise ModelMismatchError(f"tensor has {c} channels, EntropyBottleneck has {self.channels}",
                                     field="channels")

    # -- integer tables ------------------------------------------------------------------
    @torch.no_grad()
    def _bisect(self, target_logit: float) -> Tensor:
        """Per channel, the ``x`` in ``[-search_bound, search_bound]`` with CDF logit ``target_logit``."""
        lo = torch.full((self.channels, 1, 1), -self.search_bound, dtype=torch.float64)
        hi = -lo
        for _ in range(_BISECTION_STEPS):
            mid = (lo + hi) / 2
            below = self._logits_cumulative(mid) < target_logit
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return ((lo + hi) / 2).flatten()

    @torch.no_grad()
    def update(self, force: bool = False) -> bool:
        """Compute the integer tables from the learned densities (float64, CPU).

        Each channel's table covers the integers between its ``tail_mass / 2`` and
        ``1 - tail_mass / 2`` quantiles (capped to ``MAX_TABLE_LENGTH - 1`` values around the
        median); the escape symbol gets the remaining mass.  Returns False (and changes
        nothing) if tables exist and ``force`` is False.
        """
        if self.updated and not force:
            return False
        tail = math.log(self.tail_mass / 2) - math.log1p(-self.tail_mass / 2)
        q_lo, q_hi, median = self._bisect(tail), self._bisect(-tail), self._bisect(0.0)
        bound = MAX_ABS_VALUE - MAX_TABLE_LENGTH
        lo = torch.round(q_lo).clamp(-bound, bound).to(torch.int64)
        hi = torch.maximum(torch.round(q_hi).clamp(-bound, bound).to(torch.int64), lo)
        too_wide = hi - lo + 1 > MAX_TABLE_LENGTH - 1
        centre = torch.round(median).clamp(-bound, bound).to(torch.int64)
        lo = torch.where(too_wide, centre - (MAX_TABLE_LENGTH - 1) // 2, lo)
        hi = torch.where(too_wide, lo + MAX_TABLE_LENGTH - 2, hi)
        pmfs = []
        lengths = (hi - lo + 1).tolist()
        rows = max(1, _EVAL_CHUNK // max(lengths))
        for start in range(0, self.channels, rows):
            sl = slice(start, min(start + rows, self.channels))
            width = max(lengths[sl])
            values = (lo[sl, None] + torch.arange(width)).to(torch.float64)[:, None, :]
            lik = self._likelihood(values, sl)[:, 0].numpy()
            for r, c in enumerate(range(sl.start, sl.stop)):
                p = lik[r, : lengths[c]]
                pmfs.append(quantize_pmf(np.append(p, max(1.0 - p.sum(), 0.0))))
        self._set_tables(pmfs, lo.tolist())
        return True

    # -- coding --------------------------------------------------------------------------
    def _table_ids(self, shape: Sequence[int]) -> np.ndarray:
        axis = len(shape) - 3
        view = [-1 if d == axis else 1 for d in range(len(shape))]
        ids = np.arange(self.channels, dtype=np.int64).reshape(view)
        return np.broadcast_to(ids, tuple(shape)).ravel()

    def compress(self, z: Tensor) -> bytes:
        """Entropy-code ``round(z)`` (``z``: ``[B, C, H, W]`` or ``[C, H, W]``) with the integer tables.

        Raises :class:`TablesNotReadyError` before ``update()``, :class:`LimitExceededError` for
        more than ``MAX_SYMBOLS`` elements or a value with magnitude above ``MAX_ABS_VALUE``.
        """
        tables = self.coding_tables()
        axis = _channel_axis(z.dim(), "z")
        self._check_channels(z.shape[axis])
        check_count(z.numel(), MAX_SYMBOLS, field="z")
        return encode_integers(rounded_integers(z, "z"), self._table_ids(z.shape), tables)

    def decompress(self, data: bytes, shape: Sequence[int], *, dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None, max_symbols: int = MAX_SYMBOLS,
                   field: str = "EntropyBottleneck.payload", offset: int = 0) -> Tensor:
        """Decode a :meth:`compress` payload into a tensor of ``shape`` (``[B, C, H, W]`` or ``[C, H, W]``).

        ``shape`` is checked (dimensions, channel count, at most ``max_symbols`` elements)
        before anything is allocated; malformed payloads raise an :class:`SSBError` subclass
        naming ``field`` and the byte offset in the stream (``offset``: where ``data`` starts).
        """
        tables = self.coding_tables()
        shape = _checked_shape(shape)
        self._check_channels(shape[_channel_axis(len(shape), "shape")])
        check_count(math.prod(shape), max_symbols)
        values = decode_integers(data, self._table_ids(shape), tables, field=field, offset=offset)
        return torch.from_numpy(values.reshape(shape)).to(dtype=dtype, device=device)


def _checked_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative ints, or :class:`MalformedFieldError`."""
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError) as exc:
        raise MalformedFieldError(f"shape must be a sequence of integers, got {shape!r}",
                                  field="shape") from exc
    if any(d < 0 for d in dims) or any(d != s for d, s in zip(dims, shape)):
        raise MalformedFieldError(f"shape must hold non-negative integers, got {shape!r}", field="shape")
    return dims
