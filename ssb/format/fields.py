"""The rows of a declarative structure (:mod:`ssb.format.syntax`): :class:`Field`, :class:`Check`,
the decoded :class:`Record`, and the per-value checks that decoding and encoding share.

A field's wire type is one of :mod:`ssb.format.wire` (fixed-size, ``uv``/``sv`` varints, the
length-prefixed ``str16``/``json32``) or ``bytes``, ``uv[]``, ``struct[]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from ssb.errors import LimitExceededError, MalformedFieldError
from ssb.format.limits import Limits
from ssb.format.wire import FIXED, UV_MAX, VAR_PREFIX, is_number, zigzag

if TYPE_CHECKING:
    from ssb.format.syntax import Struct

__all__ = ["Field", "Check", "Record"]

_VARINTS = ("uv", "sv")
_OTHER = ("bytes", "uv[]", "struct[]")


@dataclass(frozen=True)
class Field:
    """One field of a structure.

    ``min``/``max`` bound the value (for ``str16``/``json32``/``bytes``: the byte count; for
    ``uv[]``: each element) and are violations of the syntax (:class:`MalformedFieldError`);
    ``limit`` names a :class:`Limits` attribute that bounds it as a reader/writer policy
    (:class:`LimitExceededError`); ``const`` fixes the value.  ``when = (field, mask, set)``:
    the field is present only when ``bool(values[field] & mask) == set``.  ``count`` names the
    field holding the element (or byte) count of a ``uv[]``, ``struct[]`` or ``bytes`` field
    (``None`` for ``bytes``: the rest of the structure); ``of`` is the record type of ``struct[]``.
    """

    name: str
    type: str
    doc: str
    min: int | None = None
    max: int | None = None
    limit: str | None = None
    const: Any = None
    when: tuple[str, int, bool] | None = None
    count: str | None = None
    of: Struct | None = None
    #: struct[] only: each record is preceded by its byte count (``uv``), so later minor versions
    #: can append fields to the record and older readers skip them
    sized: bool = False

    def __post_init__(self) -> None:
        if self.type not in FIXED and self.type not in VAR_PREFIX and self.type not in _VARINTS + _OTHER:
            raise TypeError(f"unknown wire type {self.type!r} for field {self.name!r}")
        if self.type in ("uv[]", "struct[]") and self.count is None:
            raise TypeError(f"{self.name}: a {self.type} field needs count=")
        if (self.type == "struct[]") != (self.of is not None):
            raise TypeError(f"{self.name}: of= goes with struct[] fields only")

    @property
    def fixed(self) -> bool:
        """True for a fixed-size, always-present field."""
        return self.type in FIXED and self.when is None

    def present(self, values: Mapping[str, Any]) -> bool:
        if self.when is None:
            return True
        name, mask, want = self.when
        return bool((values.get(name) or 0) & mask) == want

    def constraint(self) -> str:
        """The constraints in words, for the specification table."""
        parts = []
        if self.const is not None:
            c = self.const
            parts.append("= " + (" ".join(f"{b:02X}" for b in c) if isinstance(c, bytes) else repr(c)))
        what = "byte count" if self.type in VAR_PREFIX or self.type == "bytes" else (
            "each" if self.type == "uv[]" else "value")
        if self.min is not None:
            parts.append(f"{what} ≥ {self.min}")
        if self.max is not None:
            parts.append(f"{what} ≤ {self.max}")
        if self.limit is not None:
            parts.append(f"{what} ≤ `Limits.{self.limit}`")
        if self.type == "f32":
            parts.append("finite")
        if self.type == "json32":
            parts.append("a JSON object")
        if self.when is not None:
            name, mask, want = self.when
            parts.append(f"present only if `{name}` & {mask} {'≠' if want else '='} 0")
        return ", ".join(parts) or "—"


@dataclass(frozen=True)
class Check:
    """A rule over several fields of one record, blamed on ``field``.

    ``test`` receives the field values (and, with ``context=True``, the decoder's context mapping)
    and returns a truth value.  A non-context test must use only ``& | ~ == != < <= > >=`` so it
    also works elementwise on a numpy structured array of records.
    """

    field: str
    message: str
    test: Callable[..., Any]
    context: bool = False


class Record(dict):
    """Decoded field values; ``offsets`` maps each decoded field to its absolute byte offset."""

    offsets: dict[str, int]


# ---------------------------------------------------------------------- helpers
def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _varint(f: Field, v: Any, path: str, signed: bool = False) -> int:
    lo, hi = (-(1 << 62), (1 << 62) - 1) if signed else (0, UV_MAX)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= int(v) <= hi:
        raise MalformedFieldError(f"{f.name} must be an integer in {lo}..{hi}, got {v!r}", field=path)
    return zigzag(int(v)) if signed else int(v)


def _check_type(f: Field, value: Any, path: str) -> None:
    code = FIXED[f.type]
    if f.type == "bytes8":
        ok = isinstance(value, bytes) and len(value) == 8
    elif f.type == "f32":
        ok = is_number(value)
    else:
        ok = isinstance(value, int) and not isinstance(value, bool) and code[3] <= value <= code[4]
    if not ok:
        raise MalformedFieldError(f"{f.name} must be a {f.type}, got {value!r}", field=path)


def _check_value(f: Field, v: Any, limits: Limits, path: str, offset: int | None) -> None:
    if f.const is not None and v != f.const:
        raise MalformedFieldError(f"{f.name} must be {f.const!r}, found {v!r}", offset=offset, field=path)
    if f.type == "f32" and not math.isfinite(v):
        raise MalformedFieldError(f"{f.name} must be finite, found {v!r}", offset=offset, field=path)
    if f.min is not None and v < f.min:
        raise MalformedFieldError(f"{f.name} must be ≥ {f.min}, found {v}", offset=offset, field=path)
    if f.max is not None and v > f.max:
        raise MalformedFieldError(f"{f.name} must be ≤ {f.max}, found {v}", offset=offset, field=path)
    if f.limit is not None and v > getattr(limits, f.limit):
        raise LimitExceededError(f"{f.name} {v} exceeds Limits.{f.limit}={getattr(limits, f.limit)}",
                                 offset=offset, field=path)
