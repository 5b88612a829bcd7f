"""The SSB container: a documented, indexed, streamable bitstream (standard library + numpy only).

Write::

    from ssb.format import Writer, SequenceHeader, UnitType
    with Writer("clip.ssb", SequenceHeader(768, 576, 25, 1, codec="ssb-ref")) as w:
        w.begin_frame(0, pts=0)
        w.add_unit(UnitType.BASE, base_bytes)
        w.add_unit(UnitType.OBJECT, obj_bytes, object_id=3, class_id=1, bbox=(10, 20, 80, 200), score=0.9)
        w.end_frame()

Read lazily (only headers and indexes are parsed; payloads are zero-copy views)::

    from ssb.format import open
    with open("clip.ssb") as bs:
        sel = bs.select(classes={1}, frames=range(0, 100))
        for unit in sel.units:
            data = unit.payload()

The normative specification is ``docs/format.md``.
"""

from ssb.format.layout import MAGIC, VERSION, UnitType
from ssb.format.limits import DEFAULT_LIMITS, Limits
from ssb.format.model import FrameEntry, SequenceHeader, UnitEntry
from ssb.format.reader import Bitstream, open_bitstream
from ssb.format.select import Selection
from ssb.format.summary import class_names, summarize
from ssb.format.writer import Writer, recover

open = open_bitstream  # noqa: A001 - the public name is ssb.format.open

__all__ = [
    "open",
    "Writer",
    "recover",
    "UnitType",
    "Limits",
    "DEFAULT_LIMITS",
    "SequenceHeader",
    "FrameEntry",
    "UnitEntry",
    "Bitstream",
    "Selection",
    "summarize",
    "class_names",
    "MAGIC",
    "VERSION",
]
