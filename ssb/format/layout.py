"""The normative layout of SSB container version 1: magic, version, unit type table, structures.

``docs/format.md`` embeds the tables rendered from these definitions by
:func:`markdown_tables`; ``tests/format/test_format_spec.py`` checks that they
match (and rewrites them when ``SSB_REGEN_GOLDEN=1``).  Unit type ids are published once and never change.
"""

from __future__ import annotations

import enum
import zlib

from ssb.format.limits import DEFAULT_LIMITS, Limits
from ssb.format.syntax import Check, Field, Struct

__all__ = [
    "MAGIC",
    "VERSION",
    "UnitType",
    "STRUCTURAL_TYPES",
    "PRESENT_OBJECT",
    "PRESENT_CLASS",
    "PRESENT_GROUP",
    "PRESENT_BBOX",
    "PRESENT_SCORE",
    "FRAME_HAS_PTS",
    "PREAMBLE",
    "UNIT_HEADER",
    "SEQUENCE_HEADER",
    "FRAME_HEADER",
    "INDEX_HEADER",
    "INDEX_ENTRY",
    "END",
    "EXTENSION_HEADER",
    "ALL_STRUCTS",
    "pack_preamble",
    "pack_unit_header",
    "type_name",
    "as_unit_type",
]

#: File signature: a non-ASCII first byte, "SSB", CR LF, Ctrl-Z, LF (catches text-mode mangling).
MAGIC = b"\x89SSB\r\n\x1a\n"
#: (major, minor) written by this implementation. Readers refuse a newer major and read any minor.
VERSION = (1, 0)


class UnitType(enum.IntEnum):
    """The fixed table of unit type ids (u16). Published ids never change meaning."""

    SEQUENCE_HEADER = 1  #: stream-wide parameters; the first unit of every stream
    FRAME_HEADER = 2  #: opens a fragment: one frame's header, its index and its units
    INDEX = 3  #: the semantic index of one fragment
    BASE = 4  #: shared features every decode of the frame needs
    OBJECT = 5  #: features of one object or irregular pixel group
    GROUP_MASK = 6  #: the pixel mask of one object / group
    BACKGROUND = 7  #: background features
    MOTION = 8  #: motion information relative to earlier frames
    RESIDUAL = 9  #: residual refinement
    METADATA = 10  #: a UTF-8 JSON object
    EXTENSION = 11  #: namespaced private data (str16 namespace + opaque bytes)
    END = 12  #: closes a stream that was finished cleanly


#: Types the container itself writes; never allowed as content units inside a fragment.
STRUCTURAL_TYPES = frozenset({UnitType.SEQUENCE_HEADER, UnitType.FRAME_HEADER, UnitType.INDEX, UnitType.END})
_BY_ID = {int(t): t for t in UnitType}

# Bits of INDEX_ENTRY.present: which optional attributes an entry carries.
PRESENT_OBJECT = 1
PRESENT_CLASS = 2
PRESENT_GROUP = 4
PRESENT_BBOX = 8
PRESENT_SCORE = 16
# Bits of FRAME_HEADER.flags.
FRAME_HAS_PTS = 1


def as_unit_type(type_id: int) -> UnitType | int:
    """The :class:`UnitType` for a known id, else the id itself (an unknown, future type)."""
    return _BY_ID.get(type_id, type_id)


_NAMES = {int(t): t.name for t in UnitType}


def type_name(type_id: int) -> str:
    """``"OBJECT"`` for 5, ``"TYPE_4660"`` for an unknown id."""
    name = _NAMES.get(type_id)
    return name if name is not None else f"TYPE_{int(type_id)}"


PREAMBLE = Struct(
    "preamble",
    [
        Field("magic", "bytes8", "file signature", const=MAGIC),
        Field("major", "u16", "major version; a reader refuses a major it does not implement"),
        Field("minor", "u16", "minor version; a reader reads every minor of a major it implements"),
        Field("crc", "u32", "CRC-32 of bytes 0–11 of the preamble"),
    ],
    doc="The first 16 bytes of every stream. Its layout is the same in every version.",
)

UNIT_HEADER = Struct(
    "unit header",
    [
        Field("type", "u16", "unit type id (table above); unknown ids are skipped as raw bytes", min=1),
        Field("flags", "u16", "16 bits owned by the producer of the unit; the container copies them"),
        Field("length", "u32", "payload byte count n (the header is not counted)", limit="max_unit_size"),
        Field("payload_crc", "u32", "CRC-32 of the n payload bytes"),
        Field("header_crc", "u32", "CRC-32 of bytes 0–11 of this header"),
    ],
    doc="Precedes every payload. The payload is the n bytes that follow.",
)

SEQUENCE_HEADER = Struct(
    "SEQUENCE_HEADER payload",
    [
        Field("width", "u32", "picture width in pixels", min=1, limit="max_width"),
        Field("height", "u32", "picture height in pixels", min=1, limit="max_height"),
        Field("fps_num", "u32", "frame rate numerator; 0 when unknown or for still images"),
        Field("fps_den", "u32", "frame rate denominator", min=1),
        Field("codec", "str16", "identifier of the codec that produced the content payloads", max=255),
        Field(
            "metadata",
            "json32",
            "stream metadata (e.g. `classes`: {id: name}, model ids)",
            limit="max_metadata_size",
        ),
    ],
)

FRAME_HEADER = Struct(
    "FRAME_HEADER payload",
    [
        Field("frame_index", "u32", "frame number, strictly increasing along the stream"),
        Field("flags", "u16", "bit 0: `pts` is present; other bits reserved (written 0, ignored)"),
        Field("reserved", "u16", "written 0, ignored"),
        Field("pts", "i64", "presentation time in microseconds (0 when bit 0 of `flags` is clear)"),
        Field(
            "fragment_length",
            "u32",
            "bytes of the whole fragment, from the first byte of this unit's header to the end "
            "of its last unit",
            min=1,
        ),
        Field("metadata", "json32", "frame metadata", limit="max_metadata_size"),
    ],
)

INDEX_HEADER = Struct(
    "INDEX payload header",
    [
        Field("entry_size", "u16", "bytes per entry; a reader uses the first 48 and skips the rest", min=48),
        Field("reserved", "u16", "written 0, ignored"),
        Field(
            "entry_count",
            "u32",
            "number of entries = content units of the fragment",
            limit="max_units_per_frame",
        ),
    ],
    doc="Followed by `entry_count` entries of `entry_size` bytes, then bytes a reader ignores.",
)


def _is_content_type(r):
    t = r["type"]
    return (t >= 4) & (t != int(UnitType.END))


def _bbox_ordered(r):
    return ((r["present"] & PRESENT_BBOX) == 0) | ((r["x0"] <= r["x1"]) & (r["y0"] <= r["y1"]))


INDEX_ENTRY = Struct(
    "INDEX entry",
    [
        Field("type", "u16", "unit type id of the unit"),
        Field("flags", "u16", "copy of the unit header's `flags`"),
        Field("present", "u16", "bit 0 object_id, 1 class_id, 2 group_id, 3 bbox, 4 score; others reserved"),
        Field("reserved", "u16", "written 0, ignored"),
        Field("offset", "u32", "byte offset of the unit's header from the fragment's first byte"),
        Field(
            "length",
            "u32",
            "payload byte count of the unit (equals its header's `length`)",
            limit="max_unit_size",
        ),
        Field("object_id", "u32", "object (instance / track) id; 0 when absent"),
        Field("class_id", "u32", "class id (COCO category id for the reference codec); 0 when absent"),
        Field("group_id", "u32", "irregular pixel group id; 0 when absent"),
        Field("x0", "f32", "box left, pixels; 0 when absent"),
        Field("y0", "f32", "box top, pixels; 0 when absent"),
        Field("x1", "f32", "box right, pixels; 0 when absent"),
        Field("y1", "f32", "box bottom, pixels; 0 when absent"),
        Field("score", "f32", "confidence; 0 when absent"),
    ],
    checks=[
        Check("type", "a content unit cannot have a structural type (1, 2, 3, 12) or 0", _is_content_type),
        Check("x0", "a present bbox has x0 ≤ x1 and y0 ≤ y1", _bbox_ordered),
    ],
)

END = Struct(
    "END payload",
    [
        Field("frame_count", "u64", "number of fragments in the stream"),
        Field("unit_count", "u64", "number of units before this one, structural units included"),
    ],
)

EXTENSION_HEADER = Struct(
    "EXTENSION payload",
    [
        Field(
            "namespace", "str16", "reverse-DNS owner of the data, e.g. `org.example.depth`", min=1, max=255
        ),
    ],
    doc="Followed by the extension's own bytes up to the end of the payload.",
)

#: Every structure, in specification order.
ALL_STRUCTS = (
    PREAMBLE,
    UNIT_HEADER,
    SEQUENCE_HEADER,
    FRAME_HEADER,
    INDEX_HEADER,
    INDEX_ENTRY,
    END,
    EXTENSION_HEADER,
)

UNIT_HEADER_SIZE = UNIT_HEADER.fixed_size  # 16
PREAMBLE_SIZE = PREAMBLE.fixed_size  # 16
INDEX_ENTRY_SIZE = INDEX_ENTRY.fixed_size  # 48


def pack_preamble(major: int = VERSION[0], minor: int = VERSION[1]) -> bytes:
    head = PREAMBLE.pack({"magic": MAGIC, "major": major, "minor": minor, "crc": 0})[:12]
    return head + zlib.crc32(head).to_bytes(4, "little")


def pack_unit_header(
    type_id: int, flags: int, payload, *, limits: Limits = DEFAULT_LIMITS, path: str = "unit.header"
) -> bytes:
    """The 16-byte header of a unit holding ``payload``."""
    values = {
        "type": int(type_id),
        "flags": flags,
        "length": len(payload),
        "payload_crc": zlib.crc32(payload),
        "header_crc": 0,
    }
    head = UNIT_HEADER.pack(values, path=path, limits=limits)[:12]
    return head + zlib.crc32(head).to_bytes(4, "little")


def markdown_tables() -> dict[str, str]:
    """{structure name: normative markdown table} for docs/format.md."""
    return {s.name: s.markdown() for s in ALL_STRUCTS}
