"""The tables of ``docs/format.md``: every structure of the container and of the reference codecs'
payloads, rendered from the definitions the reader and writer execute (a test keeps them equal)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ssb.format.fields import _VARINTS
from ssb.format.wire import FIXED, VAR_PREFIX

if TYPE_CHECKING:
    from ssb.format.syntax import Struct

__all__ = ["markdown_tables", "struct_table"]


def markdown_tables() -> dict[str, str]:
    """{structure name: normative markdown table}."""
    from ssb.format.layout import ALL_STRUCTS, V1_STRUCTS
    from ssb.format.payloads import PAYLOAD_STRUCTS

    return {s.name: s.markdown() for s in ALL_STRUCTS + V1_STRUCTS + PAYLOAD_STRUCTS}


def struct_table(s: Struct) -> str:
    """The normative field table of one structure (GitHub markdown): :meth:`Struct.markdown`."""
    rows = ["| Offset | Size | Field | Type | Constraint | Meaning |", "|---:|---:|---|---|---|---|"]
    pos: int | None = 0
    for f in s.fields:
        where = str(pos) if pos is not None else "next"
        if f.type in FIXED:
            size, typ = str(FIXED[f.type][1]), f.type
        elif f.type in _VARINTS:
            size, typ = "1–9", f.type
        elif f.type in VAR_PREFIX:
            size, typ = f"{VAR_PREFIX[f.type][1]} + n", f.type
        elif f.type == "bytes":
            size, typ = (f"`{f.count}`" if f.count else "rest"), "bytes"
        elif f.type == "uv[]":
            size, typ = f"`{f.count}` × (1–9)", "uv[]"
        else:
            size = f"`{f.count}` × ({'uv byte count + ' if f.sized else ''}record)"
            typ = f"{f.of.name}[]"
        pos = pos + FIXED[f.type][1] if (pos is not None and f.fixed) else None
        rows.append(f"| {where} | {size} | `{f.name}` | {typ} | {f.constraint()} | {f.doc} |")
    for c in s.checks:
        rows.append(f"| | | *rule* | | `{c.field}`: {c.message} | |")
    return "\n".join(rows)
