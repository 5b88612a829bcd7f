"""Wire types of the SSB syntax: how one value is laid out in bytes (little-endian throughout).

Fixed-size types: ``u8 u16 u32 u64 i64 f32`` (IEEE-754 binary32) and ``bytes8``.
Variable-size types:

* ``uv``: an unsigned LEB128 varint (7 bits a byte, least significant group first, high bit set
  on every byte but the last), at most 9 bytes (values below 2**63), in its shortest form;
* ``sv``: a signed integer zigzag-mapped to ``uv`` (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...);
* ``str16``: a ``u16`` byte count n, then n bytes of UTF-8;
* ``json32``: a ``u32`` byte count n, then n bytes of UTF-8 JSON text of one object;
* ``bytes``: raw bytes whose count is another field's value, or the rest of the structure.

Every reader here is bounded: it checks the bytes it needs are there before it touches them.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any, Mapping

from ssb.errors import MalformedFieldError

__all__ = [
    "FIXED",
    "VAR_PREFIX",
    "VARINT_MAX_BYTES",
    "read_uv",
    "write_uv",
    "zigzag",
    "unzigzag",
    "load_json",
    "dump_json",
    "load_str",
    "dump_str",
    "F32_MAX",
]

#: wire type -> (struct code, size in bytes, numpy dtype, lowest value, highest value)
FIXED: dict[str, tuple[str, int, str, int | None, int | None]] = {
    "u8": ("B", 1, "<u1", 0, 0xFF),
    "u16": ("H", 2, "<u2", 0, 0xFFFF),
    "u32": ("I", 4, "<u4", 0, 0xFFFF_FFFF),
    "u64": ("Q", 8, "<u8", 0, 0xFFFF_FFFF_FFFF_FFFF),
    "i64": ("q", 8, "<i8", -(1 << 63), (1 << 63) - 1),
    "f32": ("f", 4, "<f4", None, None),
    "bytes8": ("8s", 8, "S8", None, None),
}
#: length-prefixed type -> (length prefix struct, its size, largest byte count)
VAR_PREFIX: dict[str, tuple[struct.Struct, int, int]] = {
    "str16": (struct.Struct("<H"), 2, 0xFFFF),
    "json32": (struct.Struct("<I"), 4, 0xFFFF_FFFF),
}
VARINT_MAX_BYTES = 9
UV_MAX = (1 << 63) - 1
F32_MAX = 3.4028234663852886e38


def read_uv(buf, pos: int, end: int, *, offset: int, field: str) -> tuple[int, int]:
    """Decode the ``uv`` at ``buf[pos:]`` (not past ``end``); returns (value, next position).

    ``offset`` is the absolute stream offset of ``buf[pos]`` for error messages.
    """
    value = shift = 0
    start = pos
    while True:
        if pos >= end:
            raise MalformedFieldError("varint runs past the end of its structure", offset=offset, field=field)
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if b == 0 and pos - start > 1:
                raise MalformedFieldError("varint is not in its shortest form", offset=offset, field=field)
            return value, pos
        shift += 7
        if pos - start >= VARINT_MAX_BYTES:
            raise MalformedFieldError(f"varint longer than {VARINT_MAX_BYTES} bytes", offset=offset, field=field)


def write_uv(value: int) -> bytes:
    """The shortest ``uv`` encoding of ``0 <= value < 2**63``."""
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(value: int) -> int:
    """Signed -> unsigned: 0, -1, 1, -2 ... -> 0, 1, 2, 3 ..."""
    return (value << 1) if value >= 0 else ((-value << 1) - 1)


def unzigzag(value: int) -> int:
    return (value >> 1) if not value & 1 else -((value + 1) >> 1)


def load_str(raw: bytes, path: str, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedFieldError(
            f"invalid UTF-8 at byte {exc.start}", offset=offset + exc.start, field=path
        ) from None


def dump_str(value: Any, path: str) -> bytes:
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


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and (
        not math.isfinite(value) or abs(value) <= F32_MAX
    )
