"""Machinery shared by :class:`EntropyBottleneck` and :class:`GaussianConditional`.

An entropy model is trained on floats and *frozen* into integer tables by ``update()``.
The tables live in three registered buffers, saved in ``state_dict``:

``_pmf`` (int32, ``(T, Kmax)``), ``_pmf_length`` (int32, ``(T,)``), ``_offset`` (int32, ``(T,)``)

(layout in :mod:`ssb.entropy.tables`).  Their shapes depend on the trained density, so
``load_state_dict`` resizes them to the incoming tensors instead of failing on a shape
mismatch.  ``compress``/``decompress`` build constriction models from these integers only
(cached until the next ``update()`` or ``load_state_dict``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ssb.entropy.quantization import check_quant_mode
from ssb.entropy.tables import MAX_ABS_VALUE, CodingTables
from ssb.errors import LimitExceededError, MalformedFieldError, SSBError

__all__ = ["EntropyModel", "TablesNotReadyError", "rounded_integers"]


class TablesNotReadyError(SSBError):
    """``compress``/``decompress``/``build_indexes`` called before ``update()`` built the integer tables."""


def rounded_integers(x: torch.Tensor, field: str) -> np.ndarray:
    """``torch.round(x)`` (half to even) as a flat int64 array, checked for coding.

    Raises :class:`MalformedFieldError` for NaN/inf and :class:`LimitExceededError` for a
    magnitude above ``MAX_ABS_VALUE``.
    """
    x = x.detach()
    if not bool(torch.isfinite(x).all()):
        raise MalformedFieldError(f"{field} holds NaN or infinite values", field=field)
    values = torch.round(x).cpu().to(torch.float64).numpy().ravel()
    if values.size and np.abs(values).max() > MAX_ABS_VALUE:
        raise LimitExceededError(f"a value of {field} exceeds the codable magnitude {MAX_ABS_VALUE}",
                                 field=field)
    return values.astype(np.int64)


class EntropyModel(nn.Module):
    """Base class: ``quant_mode`` handling, integer table buffers, coding-table cache.

    Parameters
    ----------
    quant_mode:
        Default quantization proxy in training mode (``"noise"``, ``"ste"`` or ``"hard"``,
        see :mod:`ssb.entropy.quantization`); in eval mode ``forward`` always uses ``"hard"``
        unless a mode is passed explicitly.
    likelihood_bound:
        Lower bound applied to the likelihoods returned by ``forward`` (keeps the rate finite).
    tail_mass:
        Probability mass a table leaves outside its support (coded through the escape symbol).
    """

    #: Buffers whose shape is set by ``update()``; ``load_state_dict`` resizes them.
    _resizable_buffers: tuple[str, ...] = ("_pmf", "_pmf_length", "_offset")

    def __init__(self, *, quant_mode: str = "noise", likelihood_bound: float = 1e-9, tail_mass: float = 1e-6):
        super().__init__()
        if not 0.0 < tail_mass < 0.5:
            raise SSBError(f"tail_mass must be in (0, 0.5), got {tail_mass}", field="tail_mass")
        self.quant_mode = quant_mode
        self.likelihood_bound = float(likelihood_bound)
        self.tail_mass = float(tail_mass)
        self.register_buffer("_pmf", torch.zeros(0, 0, dtype=torch.int32))
        self.register_buffer("_pmf_length", torch.zeros(0, dtype=torch.int32))
        self.register_buffer("_offset", torch.zeros(0, dtype=torch.int32))
        self._tables: CodingTables | None = None

    @property
    def quant_mode(self) -> str:
        """Quantization proxy used by ``forward`` in training mode."""
        return self._quant_mode

    @quant_mode.setter
    def quant_mode(self, mode: str) -> None:
        self._quant_mode = check_quant_mode(mode)

    def _resolve_mode(self, quant_mode: str | None) -> str:
        if quant_mode is not None:
            return check_quant_mode(quant_mode)
        return self._quant_mode if self.training else "hard"

    @property
    def updated(self) -> bool:
        """True once ``update()`` (or ``load_state_dict`` of an updated model) filled the tables."""
        return self._pmf.numel() > 0

    def _set_tables(self, pmfs: Sequence[np.ndarray], offsets: Sequence[int]) -> None:
        """Store integer tables (one ``pmf`` per table, escape last) as the buffers."""
        k_max = max(len(p) for p in pmfs)
        padded = np.zeros((len(pmfs), k_max), dtype=np.int32)
        for t, p in enumerate(pmfs):
            padded[t, : len(p)] = p
        device = self._pmf.device
        self._pmf = torch.from_numpy(padded).to(device)
        self._pmf_length = torch.tensor([len(p) for p in pmfs], dtype=torch.int32, device=device)
        self._offset = torch.tensor(list(offsets), dtype=torch.int32, device=device)
        self._tables = None
        self.coding_tables()  # validate now: a bad table is a bug in update(), not a decode error

    def coding_tables(self) -> CodingTables:
        """The validated integer tables (and constriction models) ``compress``/``decompress`` use."""
        if not self.updated:
            raise TablesNotReadyError(
                f"{type(self).__name__} has no integer tables: call update() after training "
                "(or load an updated state_dict) before compress()/decompress()"
            )
        if self._tables is None:
            self._tables = CodingTables(
                self._pmf.cpu().numpy(), self._pmf_length.cpu().numpy(), self._offset.cpu().numpy(),
                source=type(self).__name__,
            )
        return self._tables

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        for name in self._resizable_buffers:
            key = prefix + name
            if key in state_dict:
                incoming = state_dict[key]
                current = getattr(self, name)
                setattr(self, name, torch.empty(incoming.shape, dtype=current.dtype, device=current.device))
        self._tables = None
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
