"""A small declarative syntax for the fixed-layout structures of the SSB container.

Every structure of the format is written down once, as a :class:`Struct` of
:class:`Field` rows (name, wire type, meaning, constraints) plus cross-field
:class:`Check` rules.  The same object

* decodes bytes (:meth:`Struct.unpack`, and :meth:`Struct.unpack_array` for
  tables of fixed-size records, validated with numpy in one pass),
* encodes values (:meth:`Struct.pack`), applying the very same validation,
* renders the normative field table of ``docs/format.md`` (:meth:`Struct.markdown`),

so the reader, the writer and the specification cannot drift apart.

Wire types are little-endian: ``u8 u16 u32 u64 i64 f32`` (IEEE-754 binary32),
``bytes8`` (8 raw bytes) and two variable-length types that may only follow
the fixed fields: ``str16`` (u16 byte count + UTF-8 text) and ``json32``
(u32 byte count + UTF-8 JSON text of one object).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ssb.errors import LimitExceededError, MalformedFieldError
from ssb.format.limits import DEFAULT_LIMITS, Limits

__all__ = ["Field", "Check", "Struct", "dump_json", "load_json"]

#: wire type -> (struct code, size in bytes, numpy dtype, lowest value, highest value)
_FIXED: dict[str, tuple[str, int, str, int | None, int | None]] = {
    "u8": ("B", 1, "<u1", 0, 0xFF),
    "u16": ("H", 2, "<u2", 0, 0xFFFF),
    "u32": ("I", 4, "<u4", 0, 0xFFFF_FFFF),
    "u64": ("Q", 8, "<u8", 0, 0xFFFF_FFFF_FFFF_FFFF),
    "i64": ("q", 8, "<i8", -(1 << 63), (1 << 63) - 1),
    "f32": ("f", 4, "<f4", None, None),
    "bytes8": ("8s", 8, "S8", None, None),
}
#: variable-length wire type -> (length prefix struct, its size, largest byte count)
_VAR: dict[str, tuple[struct.Struct, int, int]] = {
    "str16": (struct.Struct("<H"), 2, 0xFFFF),
    "json32": (struct.Struct("<I"), 4, 0xFFFF_FFFF),
}
_F32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class Field:
    """One field of a structure.

    ``min``/``max`` bound the value (for ``str16``/``json32``: the byte count) and
    are violations of the syntax (:class:`MalformedFieldError`); ``limit`` names a
    :class:`Limits` attribute that bounds it as a reader/writer policy
    (:class:`LimitExceededError`); ``const`` fixes the value (the magic number).
    """

    name: str
    type: str
    doc: str
    min: int | None = None
    max: int | None = None
    limit: str | None = None
    const: Any = None

    def __post_init__(self) -> None:
        if self.type not in _FIXED and self.type not in _VAR:
            raise TypeError(f"unknown wire type {self.type!r} for field {self.name!r}")

    @property
    def fixed(self) -> bool:
        return self.type in _FIXED

    def constraint(self) -> str:
        """The constraints in words, for the specification table."""
        parts = []
        if self.const is not None:
            parts.append(
                "= "
                + (
                    " ".join(f"{b:02X}" for b in self.const)
                    if isinstance(self.const, bytes)
                    else repr(self.const)
                )
            )
        what = "byte count" if not self.fixed else "value"
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
        return ", ".join(parts) or "—"


@dataclass(frozen=True)
class Check:
    """A rule over several fields of one record, blamed on ``field``.

    ``test`` receives a mapping of field values and returns a truth value; it must
    use only ``& | ~ == != < <= > >=`` so it also works elementwise on a numpy
    structured array of records.
    """

    field: str
    message: str
    test: Callable[[Any], Any]


class Struct:
    """A structure: fixed-size fields first, then optional variable-length fields."""

    def __init__(self, name: str, fields: Iterable[Field], checks: Iterable[Check] = (), doc: str = ""):
        self.name = name
        self.doc = doc
        self.fields = tuple(fields)
        self.checks = tuple(checks)
        fixed = [f for f in self.fields if f.fixed]
        self.var_fields = tuple(f for f in self.fields if not f.fixed)
        if self.fields[: len(fixed)] != tuple(fixed):
            raise TypeError(f"{name}: variable-length fields must follow every fixed field")
        self.fixed_fields = tuple(fixed)
        self._st = struct.Struct("<" + "".join(_FIXED[f.type][0] for f in fixed))
        self.fixed_size = self._st.size
        self.offsets: dict[str, int] = {}
        pos = 0
        for f in fixed:
            self.offsets[f.name] = pos
            pos += _FIXED[f.type][1]
        self.dtype = np.dtype(
            {
                "names": [f.name for f in fixed],
                "formats": [_FIXED[f.type][2] for f in fixed],
                "offsets": [self.offsets[f.name] for f in fixed],
                "itemsize": self.fixed_size,
            }
        )
        self._by_name = {f.name: f for f in self.fields}
        for c in self.checks:
            if c.field not in self.offsets:
                raise TypeError(f"{name}: check blames unknown fixed field {c.field!r}")

    @property
    def size(self) -> int | None:
        """Byte size when every field is fixed, else ``None``."""
        return None if self.var_fields else self.fixed_size

    # ------------------------------------------------------------------ decoding
    def unpack(
        self, buf, *, base: int = 0, path: str = "", limits: Limits = DEFAULT_LIMITS, pos: int = 0
    ) -> tuple[dict[str, Any], int]:
        """Decode and validate one record at ``buf[pos:]``; returns (values, end position).

        ``base`` is the absolute stream offset of ``buf[0]`` (for error offsets),
        ``path`` the field path prefix (``"unit[3].payload"``).  Bytes after the
        last field are left alone (later minor versions may append fields).
        """
        values, end = self.decode(buf, base=base, path=path, limits=limits, pos=pos)
        self.validate(values, base=base + pos, path=path, limits=limits)
        return values, end

    def decode(
        self, buf, *, base: int = 0, path: str = "", limits: Limits = DEFAULT_LIMITS, pos: int = 0
    ) -> tuple[dict[str, Any], int]:
        """Like :meth:`unpack` but without the value checks of the fixed fields.

        Variable-length fields are still bounded (``max``/``limit`` on their byte
        count) before their bytes are touched.
        """
        avail = len(buf) - pos
        if avail < self.fixed_size:
            missing = next(f for f in self.fixed_fields if self.offsets[f.name] + _FIXED[f.type][1] > avail)
            raise MalformedFieldError(
                f"{self.name} needs {self.fixed_size} bytes, only {avail} left",
                offset=base + pos + self.offsets[missing.name],
                field=_join(path, missing.name),
            )
        values = dict(zip((f.name for f in self.fixed_fields), self._st.unpack_from(buf, pos)))
        pos += self.fixed_size
        for f in self.var_fields:
            prefix, psize, _ = _VAR[f.type]
            fpath = _join(path, f.name)
            if len(buf) - pos < psize:
                raise MalformedFieldError(f"{f.name}: byte count missing", offset=base + pos, field=fpath)
            (n,) = prefix.unpack_from(buf, pos)
            self._check_count(f, n, limits, fpath, base + pos)
            pos += psize
            if len(buf) - pos < n:
                raise MalformedFieldError(
                    f"{f.name}: declares {n} bytes, only {len(buf) - pos} left",
                    offset=base + pos - psize,
                    field=fpath,
                )
            raw = bytes(buf[pos : pos + n])
            values[f.name] = (
                load_json(raw, fpath, base + pos) if f.type == "json32" else _load_str(raw, fpath, base + pos)
            )
            pos += n
        return values, pos

    def validate(
        self,
        values: Mapping[str, Any],
        *,
        base: int | None = 0,
        path: str = "",
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        """Check decoded fixed-field values and the cross-field rules."""
        for f in self.fixed_fields:
            _check_value(f, values[f.name], limits, _join(path, f.name), _at(base, self.offsets[f.name]))
        for c in self.checks:
            if not c.test(values):
                raise MalformedFieldError(
                    c.message, offset=_at(base, self.offsets[c.field]), field=_join(path, c.field)
                )

    def unpack_array(
        self, buf, count: int, stride: int, *, base: int = 0, path: str = "", limits: Limits = DEFAULT_LIMITS
    ) -> np.ndarray:
        """Decode ``count`` records spaced ``stride`` bytes apart, validated vectorially.

        The caller has checked that ``buf`` holds ``count * stride`` bytes.  Returns a
        read-only numpy structured array viewing ``buf`` (no copy).  Errors name the
        first bad record as ``path[i].field``.
        """
        if self.var_fields:
            raise TypeError(f"{self.name} has variable-length fields")
        if count == 0:
            return np.zeros(0, dtype=self.dtype)
        arr = np.ndarray((count,), dtype=self.dtype, buffer=buf, offset=0, strides=(stride,))

        def fail(bad: np.ndarray, name: str, message: str, exc=MalformedFieldError) -> None:
            i = int(np.flatnonzero(bad)[0])
            raise exc(
                message.format(value=arr[name][i].item()),
                offset=base + i * stride + self.offsets[name],
                field=f"{path}[{i}].{name}",
            )

        for f in self.fixed_fields:
            col = arr[f.name]
            if f.type == "f32":
                bad = ~np.isfinite(col)
                if bad.any():
                    fail(bad, f.name, f"{f.name} must be finite, found {{value}}")
            if f.min is not None and (bad := col < f.min).any():
                fail(bad, f.name, f"{f.name} must be ≥ {f.min}, found {{value}}")
            if f.max is not None and (bad := col > f.max).any():
                fail(bad, f.name, f"{f.name} must be ≤ {f.max}, found {{value}}")
            if f.limit is not None:
                lim = getattr(limits, f.limit)
                if (bad := col > lim).any():
                    fail(
                        bad, f.name, f"{f.name} {{value}} exceeds Limits.{f.limit}={lim}", LimitExceededError
                    )
        for c in self.checks:
            bad = ~np.asarray(c.test(arr), dtype=bool)
            if bad.any():
                fail(bad, c.field, c.message + f" ({c.field}={{value}})")
        return arr

    # ------------------------------------------------------------------ encoding
    def pack(
        self,
        values: Mapping[str, Any],
        *,
        path: str = "",
        limits: Limits = DEFAULT_LIMITS,
        validate: bool = True,
    ) -> bytes:
        """Encode one record, applying the same checks as :meth:`unpack` first."""
        if validate:
            for f in self.fixed_fields:
                _check_type(f, values.get(f.name), _join(path, f.name))
            self.validate(values, base=None, path=path, limits=limits)
        out = [self._st.pack(*(values[f.name] for f in self.fixed_fields))]
        for f in self.var_fields:
            fpath = _join(path, f.name)
            value = values.get(f.name)
            raw = dump_json(value, fpath) if f.type == "json32" else _dump_str(value, fpath)
            self._check_count(f, len(raw), limits, fpath, None)
            out.append(_VAR[f.type][0].pack(len(raw)))
            out.append(raw)
        return b"".join(out)

    def _check_count(self, f: Field, n: int, limits: Limits, path: str, offset: int | None) -> None:
        if f.min is not None and n < f.min:
            raise MalformedFieldError(
                f"{f.name} must hold ≥ {f.min} bytes, has {n}", offset=offset, field=path
            )
        hi = _VAR[f.type][2] if f.max is None else f.max
        if n > hi:
            raise MalformedFieldError(f"{f.name} must hold ≤ {hi} bytes, has {n}", offset=offset, field=path)
        if f.limit is not None and n > getattr(limits, f.limit):
            raise LimitExceededError(
                f"{f.name} declares {n} bytes, over Limits.{f.limit}={getattr(limits, f.limit)}",
                offset=offset,
                field=path,
            )

    # ------------------------------------------------------------------ documentation
    def markdown(self) -> str:
        """The normative field table of this structure (GitHub markdown)."""
        rows = ["| Offset | Size | Field | Type | Constraint | Meaning |", "|---:|---:|---|---|---|---|"]
        pos: int | None = 0
        for f in self.fields:
            if f.fixed:
                size = str(_FIXED[f.type][1])
                where = str(pos)
                pos = pos + _FIXED[f.type][1] if pos is not None else None
            else:
                size = f"{_VAR[f.type][1]} + n"
                where = str(pos) if pos is not None else "next"
                pos = None
            rows.append(f"| {where} | {size} | `{f.name}` | {f.type} | {f.constraint()} | {f.doc} |")
        for c in self.checks:
            rows.append(f"| | | *rule* | | `{c.field}`: {c.message} | |")
        return "\n".join(rows)


# ---------------------------------------------------------------------- helpers
def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _at(base: int | None, rel: int) -> int | None:
    return None if base is None else base + rel


def _check_type(f: Field, value: Any, path: str) -> None:
    code = _FIXED[f.type]
    if f.type == "bytes8":
        ok = isinstance(value, bytes) and len(value) == 8
    elif f.type == "f32":
        ok = (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and (not math.isfinite(value) or abs(value) <= _F32_MAX)
        )
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
        raise LimitExceededError(
            f"{f.name} {v} exceeds Limits.{f.limit}={getattr(limits, f.limit)}", offset=offset, field=path
        )


def _load_str(raw: bytes, path: str, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedFieldError(
            f"invalid UTF-8 at byte {exc.start}", offset=offset + exc.start, field=path
        ) from None


def _dump_str(value: Any, path: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedFieldError(f"must be a str, got {type(value).__name__}", field=path)
    return value.encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_json(raw: bytes, path: str, offset: int) -> dict:
    """Parse UTF-8 JSON text that must hold one object (NaN/Infinity refused)."""
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise MalformedFieldError(
            f"invalid UTF-8 at byte {exc.start}", offset=offset + exc.start, field=path
        ) from None
    except (ValueError, RecursionError) as exc:
        raise MalformedFieldError(f"invalid JSON: {str(exc)[:80]}", offset=offset, field=path) from None
    if not isinstance(value, dict):
        raise MalformedFieldError(
            f"must be a JSON object, found {type(value).__name__}", offset=offset, field=path
        )
    return value


def dump_json(value: Any, path: str) -> bytes:
    """Canonical JSON of one object: sorted keys, no spaces, UTF-8, no NaN (deterministic bytes)."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise MalformedFieldError(f"must be a dict, got {type(value).__name__}", field=path)
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise MalformedFieldError(f"not JSON-serialisable: {exc}", field=path) from None
    return text.encode("utf-8")
