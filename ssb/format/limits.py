"""Declared limits: the largest sizes and counts a reader accepts and a writer emits.

A reader compares every declared size or count with these limits *before* it
allocates anything for it, and raises :class:`~ssb.errors.LimitExceededError`
when one is over.  The writer enforces the same limits, so a file written
with default limits is readable with default limits.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["Limits", "DEFAULT_LIMITS"]


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what one SSB stream may declare (all inclusive).

    Attributes
    ----------
    max_width, max_height:
        Picture size in pixels declared by the sequence header.
    max_frames:
        Number of frames (fragments) in one stream.
    max_units:
        Number of units in one stream, structural units included.  Each unit costs
        the reader one small Python object (about 250 bytes), so this bounds memory.
    max_units_per_frame:
        Index entries (content units) in one fragment.
    max_unit_size:
        Payload bytes of one unit.
    max_objects:
        Index entries carrying an object id in one fragment.
    max_metadata_size:
        Bytes of one JSON metadata field (sequence or frame header) or METADATA unit.
    max_refs:
        Reference frames one frame may be predicted from (2.x FRAME_HEADER ``ref_count``).
    max_dependency_depth:
        Frames a reader follows back through references from one frame (bounds the work of a
        random-access decode: a GOP longer than this is refused for random access).
    """

    max_width: int = 1 << 15
    max_height: int = 1 << 15
    max_frames: int = 1_000_000
    max_units: int = 2_000_000
    max_units_per_frame: int = 1 << 16
    max_unit_size: int = 256 << 20
    max_objects: int = 1 << 14
    max_metadata_size: int = 1 << 20
    max_refs: int = 16
    max_dependency_depth: int = 1 << 16

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Limits.{f.name} must be a non-negative int, got {value!r}")


DEFAULT_LIMITS = Limits()
