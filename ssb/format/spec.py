"""The tables of ``docs/format.md``: every structure of the container and of the reference codecs'
payloads, rendered from the definitions the reader and writer execute (a test keeps them equal)."""

from __future__ import annotations

__all__ = ["markdown_tables"]


def markdown_tables() -> dict[str, str]:
    """{structure name: normative markdown table}."""
    from ssb.format.layout import ALL_STRUCTS, V1_STRUCTS
    from ssb.format.payloads import PAYLOAD_STRUCTS

    return {s.name: s.markdown() for s in ALL_STRUCTS + V1_STRUCTS + PAYLOAD_STRUCTS}
