"""The normative layout of the SSB container (versions 1 and 2): magic, version, unit types, structures.

``docs/format.md`` embeds the tables rendered from these definitions by
:func:`ssb.format.spec.markdown_tables`; ``tests/format/test_format_spec.py`` checks that they
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
    "FRAME_V2",
    "INDEX_ENTRY_V2",
    "ALL_STRUCTS",
    "V1_STRUCTS",
    "pack_preamble",
    "pack_unit_header",
    "type_name",
    "as_unit_type",
]

#: File signature: a non-ASCII first byte, "SSB", CR LF, Ctrl-Z, LF (catches text-mode mangling).
MAGIC = b"\x89SSB\r\n\x1a\n"
#: (major, minor) written by this implementation. Readers refuse a newer major and read any minor.
VERSION = (2, 1)
#: Majors this reader implements (1.x streams are read, never written).
READ_MAJORS = (1, 2)


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
    OBJECT_SCALE = 13  #: 2.1: one object's own window of the frame, coded at the object's own scale


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
#: 2.x only: the FRAME_HEADER carries a `metadata` object.
FRAME_HAS_METADATA = 2
# Bits of the 2.x INDEX entry's `present` beyond the five attribute bits above.
PRESENT_FLAGS = 32
#: the entry describes an object and has no unit (no payload bytes)
PRESENT_NO_UNIT = 64
#: the entry repeats the attributes of the entry before it
PRESENT_SAME = 128
#: largest value of a 2.x box coordinate (u16 pixels) and the score scale (u16 = score * 65535)
SCORE_SCALE = 65535


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
    "FRAME_HEADER payload (1.x)",
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
    "INDEX payload header (1.x)",
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
    "INDEX entry (1.x)",
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

def _v2_content_type(r):
    t = r["type"]
    return t >= 4 and t != int(UnitType.END)


def _v2_box_ordered(r):
    return r["x0"] is None or (r["x0"] <= r["x1"] and r["y0"] <= r["y1"])


def _v2_same_alone(r):
    return not (r["present"] & PRESENT_SAME) or (r["present"] & 0x1F) == 0


def _v2_descriptor_says_something(r):
    return not (r["present"] & PRESENT_NO_UNIT) or bool(r["present"] & (0x1F | PRESENT_SAME))


def _has(bit: int) -> tuple[str, int, bool]:
    return ("present", bit, True)


_HAS_UNIT = ("present", PRESENT_NO_UNIT, False)

INDEX_ENTRY_V2 = Struct(
    "INDEX entry (2.x)",
    [
        Field("type", "uv", "unit type id of the unit (or of the object, for an entry with no unit)"),
        Field("present", "u8", "bits 0–4: object_id, class_id, group_id, bbox, score follow; bit 5: flags "
              "follow; bit 6: no unit (the entry only describes an object); bit 7: same attributes as the "
              "previous entry"),
        Field("flags", "uv", "the unit's 16 producer-owned flag bits (0 when absent)", max=0xFFFF,
              when=_has(PRESENT_FLAGS)),
        Field("length", "uv", "payload byte count of the unit", limit="max_unit_size", when=_HAS_UNIT),
        Field("crc", "u32", "CRC-32 of the unit's payload", when=_HAS_UNIT),
        Field("object_id", "uv", "object (instance / track) id", max=0xFFFF_FFFF, when=_has(PRESENT_OBJECT)),
        Field("class_id", "uv", "class id (in the stream's label set)", max=0xFFFF_FFFF, when=_has(PRESENT_CLASS)),
        Field("group_id", "uv", "irregular pixel group id", max=0xFFFF_FFFF, when=_has(PRESENT_GROUP)),
        Field("x0", "u16", "box left, integer pixels", when=_has(PRESENT_BBOX)),
        Field("y0", "u16", "box top", when=_has(PRESENT_BBOX)),
        Field("x1", "u16", "box right", when=_has(PRESENT_BBOX)),
        Field("y1", "u16", "box bottom", when=_has(PRESENT_BBOX)),
        Field("score", "u16", f"confidence × {SCORE_SCALE}, rounded", when=_has(PRESENT_SCORE)),
    ],
    checks=[
        Check("type", "a content unit cannot have a structural type (1, 2, 3, 12) or 0", _v2_content_type),
        Check("x0", "a present bbox has x0 ≤ x1 and y0 ≤ y1", _v2_box_ordered),
        Check("present", "an entry repeating the previous attributes carries none of its own", _v2_same_alone),
        Check("present", "an entry with no unit must carry attributes", _v2_descriptor_says_something),
    ],
    doc="Fields follow in this order; a field whose condition is false takes no bytes.",
)


def _refs_increase(r):
    refs = r["refs"]
    return all(a < b for a, b in zip(refs, refs[1:])) and all(d <= r["frame_index"] for d in refs)


FRAME_V2 = Struct(
    "FRAME_HEADER payload (2.x)",
    [
        Field("frame_index", "uv", "frame number, strictly increasing along the stream", max=0xFFFF_FFFF),
        Field("flags", "u8", "bit 0: `pts` follows; bit 1: `metadata` follows; others reserved (written 0)"),
        Field("fragment_length", "uv", "bytes of the whole fragment: this unit, header included, and the "
              "content payloads after it", min=1, max=0xFFFF_FFFF),
        Field("pts", "sv", "presentation time in microseconds", when=("flags", FRAME_HAS_PTS, True)),
        Field("ref_count", "uv", "frames this frame is predicted from; 0: it decodes alone (a random-access "
              "point)", limit="max_refs"),
        Field("refs", "uv[]", "per reference, `frame_index` minus the reference's frame index", min=1,
              count="ref_count"),
        Field("metadata", "json32", "frame metadata", limit="max_metadata_size",
              when=("flags", FRAME_HAS_METADATA, True)),
        Field("entry_count", "uv", "index entries that follow", limit="max_units_per_frame"),
        Field("entries", "struct[]", "the frame's semantic index, one entry per content unit or described "
              "object, in stream order; each entry is preceded by its byte count (a reader skips the bytes "
              "after the fields it knows)", count="entry_count", of=INDEX_ENTRY_V2, sized=True),
    ],
    checks=[Check("refs", "references are distinct, increasing distances no larger than frame_index",
                  _refs_increase)],
    doc="A 2.x fragment is this one unit followed by the content payloads its entries describe.",
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

#: Every structure of the current version, in specification order.
ALL_STRUCTS = (PREAMBLE, UNIT_HEADER, SEQUENCE_HEADER, FRAME_V2, INDEX_ENTRY_V2, END, EXTENSION_HEADER)
#: The 1.x fragment structures (read only).
V1_STRUCTS = (FRAME_HEADER, INDEX_HEADER, INDEX_ENTRY)

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
