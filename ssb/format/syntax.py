"""A small declarative syntax: every structure of SSB (container and codec payloads) written once.

A :class:`Struct` is a sequence of :class:`Field` rows (name, wire type, meaning, constraints,
an optional presence condition, an optional count) plus cross-field :class:`Check` rules.
The same object

* decodes bytes (:meth:`Struct.unpack`; :meth:`Struct.unpack_array` decodes a table of
  fixed-size records with numpy in one pass),
* encodes values (:meth:`Struct.pack`), applying the very same validation,
* renders the normative field table of ``docs/format.md`` (:meth:`Struct.markdown`),

so the reader, the writer and the specification cannot drift apart.  Wire types are described in
:mod:`ssb.format.wire`; beyond them a field may be ``bytes`` (its byte count in another field, or
the rest of the structure), ``uv[]`` (varints, their count in another field) or ``struct[]``
(records of another :class:`Struct`).

Checks marked ``context=True`` compare fields with what the *decoder* knows (a model's split
grid, its number of quality levels ...): they run when the caller passes ``ctx``, so a payload
field can never ask for more than the model it is decoded with allows, before anything is
allocated for it.
"""

from __future__ import annotations

import struct
from typing import Any, Iterable, Mapping

import numpy as np

from ssb.errors import LimitExceededError, MalformedFieldError
from ssb.format.fields import (
    _VARINTS,
    Check,
    Field,
    Record,
    _check_type,
    _check_value,
    _join,
    _varint,
)
from ssb.format.limits import DEFAULT_LIMITS, Limits
from ssb.format.wire import (
    FIXED,
    VAR_PREFIX,
    dump_json,
    dump_str,
    load_json,
    load_str,
    read_uv,
    unzigzag,
    write_uv,
)

# Field, Check and Record live in ssb.format.fields; the field tables are rendered by ssb.format.spec.
__all__ = ["Field", "Check", "Struct", "Record", "dump_json", "load_json"]


class Struct:
    """A structure: fields decoded in order (a leading run of fixed fields in one ``struct`` call)."""

    def __init__(self, name: str, fields: Iterable[Field], checks: Iterable[Check] = (), doc: str = ""):
        self.name = name
        self.doc = doc
        self.fields = tuple(fields)
        self.checks = tuple(checks)
        n = 0
        while n < len(self.fields) and self.fields[n].fixed:
            n += 1
        self._prefix = self.fields[:n]
        self._rest = self.fields[n:]
        self._st = struct.Struct("<" + "".join(FIXED[f.type][0] for f in self._prefix))
        self.offsets: dict[str, int] = {}  # static offsets of the fixed prefix
        pos = 0
        for f in self._prefix:
            self.offsets[f.name] = pos
            pos += FIXED[f.type][1]
        self.fixed_size = self._st.size
        self.fixed_fields = self._prefix
        self.dtype = np.dtype({
            "names": [f.name for f in self._prefix],
            "formats": [FIXED[f.type][2] for f in self._prefix],
            "offsets": [self.offsets[f.name] for f in self._prefix],
            "itemsize": self.fixed_size,
        })
        self._by_name = {f.name: f for f in self.fields}
        for c in self.checks:
            if c.field not in self._by_name:
                raise TypeError(f"{name}: check blames unknown field {c.field!r}")
        for f in self.fields:
            for ref in ([f.when[0]] if f.when else []) + ([f.count] if f.count else []):
                if ref not in self._by_name or self.fields.index(self._by_name[ref]) >= self.fields.index(f):
                    raise TypeError(f"{name}.{f.name}: {ref!r} must be an earlier field")

    @property
    def size(self) -> int | None:
        """Byte size when every field is fixed, else ``None``."""
        return None if self._rest else self.fixed_size

    def field(self, name: str) -> Field:
        return self._by_name[name]

    # ------------------------------------------------------------------ decoding
    def unpack(self, buf, *, base: int = 0, path: str = "", limits: Limits = DEFAULT_LIMITS, pos: int = 0,
               end: int | None = None, ctx: Mapping[str, Any] | None = None) -> tuple[Record, int]:
        """Decode and validate one record at ``buf[pos:end]``; returns (values, end position).

        ``base`` is the absolute stream offset of ``buf[0]`` (for error offsets), ``path`` the
        field path prefix (``"unit[3].payload"``).  Bytes after the last field are left alone
        (later minor versions may append fields).
        """
        values, stop = self.decode(buf, base=base, path=path, limits=limits, pos=pos, end=end, ctx=ctx)
        self.validate(values, path=path, limits=limits, ctx=ctx)
        return values, stop

    def decode(self, buf, *, base: int = 0, path: str = "", limits: Limits = DEFAULT_LIMITS, pos: int = 0,
               end: int | None = None, ctx: Mapping[str, Any] | None = None) -> tuple[Record, int]:
        """Like :meth:`unpack` without the value checks, but every count and length is still bounded
        (against the bytes left, ``max`` and ``limit``) before anything is read or allocated."""
        end = len(buf) if end is None else end
        avail = end - pos
        values = Record()
        offsets: dict[str, int] = {}
        values.offsets = offsets
        if avail < self.fixed_size:
            missing = next(f for f in self._prefix if self.offsets[f.name] + FIXED[f.type][1] > avail)
            raise MalformedFieldError(f"{self.name} needs {self.fixed_size} bytes, only {avail} left",
                                      offset=base + pos + self.offsets[missing.name], field=_join(path, missing.name))
        if self._prefix:
            values.update(zip((f.name for f in self._prefix), self._st.unpack_from(buf, pos)))
            for f in self._prefix:
                offsets[f.name] = base + pos + self.offsets[f.name]
            pos += self.fixed_size
        for f in self._rest:
            fpath = _join(path, f.name)
            if not f.present(values):
                values[f.name] = None
                continue
            offsets[f.name] = base + pos
            values[f.name], pos = self._decode_field(f, buf, pos, end, base, fpath, limits, values, ctx)
        return values, pos

    def _decode_field(self, f: Field, buf, pos: int, end: int, base: int, fpath: str, limits: Limits,
                      values: Mapping[str, Any], ctx) -> tuple[Any, int]:
        t = f.type
        if t in FIXED:
            size = FIXED[t][1]
            if end - pos < size:
                raise MalformedFieldError(f"{f.name}: needs {size} bytes, only {end - pos} left",
                                          offset=base + pos, field=fpath)
            return struct.unpack_from("<" + FIXED[t][0], buf, pos)[0], pos + size
        if t in _VARINTS:
            v, pos2 = read_uv(buf, pos, end, offset=base + pos, field=fpath)
            return (unzigzag(v) if t == "sv" else v), pos2
        if t in VAR_PREFIX:
            prefix, psize, _ = VAR_PREFIX[t]
            if end - pos < psize:
                raise MalformedFieldError(f"{f.name}: byte count missing", offset=base + pos, field=fpath)
            (n,) = prefix.unpack_from(buf, pos)
            self._check_count(f, n, limits, fpath, base + pos)
            pos += psize
            if end - pos < n:
                raise MalformedFieldError(f"{f.name}: declares {n} bytes, only {end - pos} left",
                                          offset=base + pos - psize, field=fpath)
            raw = bytes(buf[pos: pos + n])
            value = load_json(raw, fpath, base + pos) if t == "json32" else load_str(raw, fpath, base + pos)
            return value, pos + n
        n = end - pos if (t == "bytes" and f.count is None) else values[f.count]
        if t == "bytes":
            self._check_count(f, n, limits, fpath, base + pos)
            if n > end - pos:
                raise MalformedFieldError(f"{f.name}: {f.count} declares {n} bytes, only {end - pos} left",
                                          offset=base + pos, field=fpath)
            return memoryview(buf)[pos: pos + n], pos + n
        if n > end - pos:  # every element takes at least one byte: refuse before looping
            raise MalformedFieldError(f"{f.name}: {f.count} declares {n} elements, only {end - pos} bytes left",
                                      offset=base + pos, field=fpath)
        out = []
        for i in range(n):
            epath = f"{fpath}[{i}]"
            if t == "uv[]":
                v, pos = read_uv(buf, pos, end, offset=base + pos, field=epath)
            elif f.sized:
                size, start = read_uv(buf, pos, end, offset=base + pos, field=f"{epath}.size")
                if size > end - start:
                    raise MalformedFieldError(f"record of {size} bytes runs past the end of its structure "
                                              f"({end - start} left)", offset=base + pos, field=f"{epath}.size")
                v, _ = f.of.unpack(buf, base=base, path=epath, limits=limits, pos=start, end=start + size, ctx=ctx)
                pos = start + size
            else:
                v, pos = f.of.unpack(buf, base=base, path=epath, limits=limits, pos=pos, end=end, ctx=ctx)
            out.append(v)
        return out, pos

    def validate(self, values: Mapping[str, Any], *, base: int | None = 0, path: str = "",
                 limits: Limits = DEFAULT_LIMITS, ctx: Mapping[str, Any] | None = None) -> None:
        """Check decoded values and the cross-field rules (context rules only when ``ctx`` is given)."""
        offsets = getattr(values, "offsets", None)

        def at(name: str) -> int | None:
            if offsets is not None and name in offsets:
                return offsets[name]
            return None if base is None or name not in self.offsets else base + self.offsets[name]

        for f in self.fields:
            v = values.get(f.name)
            if v is None or f.type in VAR_PREFIX or f.type in ("bytes", "struct[]"):
                continue
            for item in (v if f.type == "uv[]" else (v,)):
                _check_value(f, item, limits, _join(path, f.name), at(f.name))
        for c in self.checks:
            if c.context and ctx is None:
                continue
            if not (c.test(values, ctx) if c.context else c.test(values)):
                raise MalformedFieldError(c.message, offset=at(c.field), field=_join(path, c.field))

    def unpack_array(self, buf, count: int, stride: int, *, base: int = 0, path: str = "",
                     limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
        """Decode ``count`` fixed records spaced ``stride`` bytes apart, validated vectorially.

        The caller has checked that ``buf`` holds ``count * stride`` bytes.  Returns a read-only
        numpy structured array viewing ``buf`` (no copy).  Errors name the first bad record as
        ``path[i].field``.
        """
        if self._rest:
            raise TypeError(f"{self.name} has variable-length fields")
        if count == 0:
            return np.zeros(0, dtype=self.dtype)
        arr = np.ndarray((count,), dtype=self.dtype, buffer=buf, offset=0, strides=(stride,))

        def fail(bad: np.ndarray, name: str, message: str, exc=MalformedFieldError) -> None:
            i = int(np.flatnonzero(bad)[0])
            raise exc(message.format(value=arr[name][i].item()), offset=base + i * stride + self.offsets[name],
                      field=f"{path}[{i}].{name}")

        for f in self._prefix:
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
                    fail(bad, f.name, f"{f.name} {{value}} exceeds Limits.{f.limit}={lim}", LimitExceededError)
        for c in self.checks:
            bad = ~np.asarray(c.test(arr), dtype=bool)
            if bad.any():
                fail(bad, c.field, c.message + f" ({c.field}={{value}})")
        return arr

    # ------------------------------------------------------------------ encoding
    def pack(self, values: Mapping[str, Any], *, path: str = "", limits: Limits = DEFAULT_LIMITS,
             validate: bool = True, ctx: Mapping[str, Any] | None = None) -> bytes:
        """Encode one record, applying the same checks as :meth:`unpack` first.

        A count field left out (or ``None``) is filled with the length of the field it counts.
        """
        values = dict(values)
        for f in self.fields:
            values.setdefault(f.name, None)
            if f.count is not None and values.get(f.count) is None and values.get(f.name) is not None:
                values[f.count] = len(values[f.name])
        if validate:
            for f in self.fields:
                if f.present(values) and f.type in FIXED:
                    _check_type(f, values.get(f.name), _join(path, f.name))
            self.validate(values, base=None, path=path, limits=limits, ctx=ctx)
        out = [self._st.pack(*(values[f.name] for f in self._prefix))] if self._prefix else []
        for f in self._rest:
            if f.present(values):
                out.append(self._pack_field(f, values, _join(path, f.name), limits, ctx, validate))
        return b"".join(out)

    def _pack_field(self, f: Field, values: Mapping[str, Any], fpath: str, limits: Limits, ctx, validate) -> bytes:
        v = values.get(f.name)
        t = f.type
        if t in FIXED:
            return struct.pack("<" + FIXED[t][0], v)
        if t in _VARINTS:
            return write_uv(_varint(f, v, fpath, signed=t == "sv"))
        if t in VAR_PREFIX:
            raw = dump_json(v, fpath) if t == "json32" else dump_str(v, fpath)
            self._check_count(f, len(raw), limits, fpath, None)
            return VAR_PREFIX[t][0].pack(len(raw)) + raw
        if t == "bytes":
            raw = bytes(v if v is not None else b"")
            self._check_count(f, len(raw), limits, fpath, None)
            if validate and f.count is not None and values[f.count] != len(raw):
                raise MalformedFieldError(f"{f.count} is {values[f.count]}, {f.name} holds {len(raw)} bytes",
                                          field=fpath)
            return raw
        items = list(v or ())
        if validate and values[f.count] != len(items):
            raise MalformedFieldError(f"{f.count} is {values[f.count]}, {f.name} holds {len(items)}", field=fpath)
        if t == "uv[]":
            return b"".join(write_uv(_varint(f, x, f"{fpath}[{i}]")) for i, x in enumerate(items))
        packed = [f.of.pack(x, path=f"{fpath}[{i}]", limits=limits, validate=validate, ctx=ctx)
                  for i, x in enumerate(items)]
        return b"".join((write_uv(len(p)) + p) if f.sized else p for p in packed)

    def _check_count(self, f: Field, n: int, limits: Limits, path: str, offset: int | None) -> None:
        if f.min is not None and n < f.min:
            raise MalformedFieldError(f"{f.name} must hold ≥ {f.min} bytes, has {n}", offset=offset, field=path)
        hi = VAR_PREFIX[f.type][2] if (f.max is None and f.type in VAR_PREFIX) else f.max
        if hi is not None and n > hi:
            raise MalformedFieldError(f"{f.name} must hold ≤ {hi} bytes, has {n}", offset=offset, field=path)
        if f.limit is not None and n > getattr(limits, f.limit):
            raise LimitExceededError(f"{f.name} declares {n} bytes, over Limits.{f.limit}="
                                     f"{getattr(limits, f.limit)}", offset=offset, field=path)

    # ------------------------------------------------------------------ documentation
    def markdown(self) -> str:
        """The normative field table of this structure (GitHub markdown; :func:`ssb.format.spec.struct_table`)."""
        from ssb.format.spec import struct_table

        return struct_table(self)
