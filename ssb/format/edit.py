"""Editing a 2.x stream in memory: replace payloads or frame fields, with every length and CRC redone.

Used to strip or replace units (e.g. drop a frame's background before sharing a stream) and by the
structure-aware fuzzers, which must reach the codec payloads *past* the container's checksums.
Edits are written without validation, so an edited stream may violate the syntax on purpose:
readers must then refuse it cleanly.
"""

from __future__ import annotations

import zlib
from typing import Callable, Mapping

from ssb.errors import UnsupportedVersionError
from ssb.format.layout import FRAME_V2, PRESENT_NO_UNIT, UNIT_HEADER_SIZE, UnitType, pack_unit_header
from ssb.format.reader import open_bitstream

__all__ = ["replace_payloads", "rewrite_frame"]


def _frame_unit(values: dict, payload_sizes: int) -> bytes:
    """A FRAME_HEADER unit (header + payload) for ``values``, ``fragment_length`` made consistent."""
    length = 1
    for _ in range(4):
        payload = FRAME_V2.pack(dict(values, fragment_length=length), validate=False)
        total = UNIT_HEADER_SIZE + len(payload) + payload_sizes
        if total == length:
            break
        length = total
    return pack_unit_header(UnitType.FRAME_HEADER, 0, payload)[:UNIT_HEADER_SIZE] + payload


def _check(bs) -> None:
    if bs.version[0] < 2:
        raise UnsupportedVersionError("editing needs a 2.x stream", field="preamble.major")


def rewrite_frame(data: bytes, position: int, mutate: Callable[[dict, list[bytearray]], None]) -> bytes:
    """The stream with fragment number ``position`` (0-based, stream order) rewritten.

    ``mutate(values, payloads)`` edits the decoded FRAME_HEADER fields (``values["entries"]`` are
    the index entries) and the content payloads (one ``bytearray`` per entry that has a unit,
    in order) in place; lengths and CRCs of the payloads are then recomputed, unless the mutation
    set an entry's ``length``/``crc`` itself (compare with the returned stream to fuzz them).
    """
    with open_bitstream(data, verify=False) as bs:
        _check(bs)
        fr = bs.frames[position]
        hu = fr.header_unit
        values, _ = FRAME_V2.decode(bytes(hu.payload()))
        payloads = [bytearray(u.payload()) for u in fr.units]
        start, stop = fr.offset, fr.offset + fr.length
    values = dict(values)
    values["entries"] = [dict(e) for e in values["entries"]]
    before = [(e.get("length"), e.get("crc")) for e in values["entries"]]
    mutate(values, payloads)
    k = 0
    for e, (length, crc) in zip(values["entries"], before):
        if e["present"] & PRESENT_NO_UNIT or k >= len(payloads):
            continue
        if e.get("length") == length:
            e["length"] = len(payloads[k])
        if e.get("crc") == crc:
            e["crc"] = zlib.crc32(payloads[k])
        k += 1
    body = b"".join(bytes(p) for p in payloads)
    return bytes(data[:start]) + _frame_unit(values, len(body)) + body + bytes(data[stop:])


def replace_payloads(data: bytes, changes: Mapping[int, bytes]) -> bytes:
    """The stream with the payloads of the content units numbered in ``changes`` replaced."""
    out = bytes(data)
    with open_bitstream(data, verify=False) as bs:
        _check(bs)
        plan = []
        for position, fr in enumerate(bs.frames):
            hits = {k: changes[u.number] for k, u in enumerate(fr.units) if u.number in changes}
            if hits:
                plan.append((position, hits))
        missing = set(changes) - {fr.units[k].number for p, h in plan for k in h for fr in [bs.frames[p]]}
    if missing:
        raise KeyError(f"no content units numbered {sorted(missing)}")
    for position, hits in reversed(plan):  # later fragments first: earlier offsets stay valid

        def mutate(values, payloads, hits=hits):
            for k, new in hits.items():
                payloads[k][:] = new

        out = rewrite_frame(out, position, mutate)
    return out
