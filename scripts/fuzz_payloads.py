#!/usr/bin/env python
"""Structure-aware fuzzer of SSB codec payloads, past the container's checksums (issue 13).

The seed streams are real: vtest.avi frames coded with the shipped models as an ``ssb.image``
stream (2 frames, level 0), an ``ssb.grouped`` stream (``groups="auto"``, 1 frame) and an
``ssb.video`` stream (5 frames, GOP 3).  Each case mutates one seed, then recomputes every length
and CRC (:func:`ssb.format.edit.replace_payloads`, :func:`~ssb.format.edit.rewrite_frame`) so the
mutation reaches the codec's payload decoders instead of the container's checksum test.  The
mutation families (case ``i`` uses ``FAMILIES[i % 4]``, on seed ``SEED_NAMES[i // 4 % 3]``):

* ``field``: a payload decoded with its declarative syntax (:data:`ssb.format.payloads.UNIT_PAYLOADS`),
  one field set to a boundary value (0, 1, grid +- 1, 255, 4096, 65535, 2**31, ..., random) or,
  for a bytes field, truncated / extended / zeroed / randomized, then re-packed without validation;
* ``bytes``: bit flips, byte values, truncations, insertions, deletions inside one payload;
* ``index``: the frame header and its index rewritten: entries' type, attributes (class, box,
  object and group ids), presence bits, dropped / duplicated / swapped entries, references to
  missing or future frames, frame indices, the frame's size in its metadata; one case in ten
  edits the SEQUENCE_HEADER instead (picture size, codec id, metadata keys);
* ``splice``: a payload replaced by (or joined with) another unit's, of any type and seed stream.

Every case runs the whole analysis path (``ssb.pipeline.analyze(tasks=["detection"])``, every
frame) and the pixel path (``ssb.pipeline.iter_pixels``) in a worker subprocess that loads the
models once and takes many cases over a pipe.  The parent enforces a time limit per case and a
memory limit (the worker's resident size, polled in ``/proc``: the CUDA build of torch reserves
too much address space for ``RLIMIT_AS``), kills the worker above it and starts a fresh one.
Accepted: a clean :class:`ssb.errors.SSBError` or a bounded result.  Anything else (another
exception, a crash, a hang, memory over the limit, an unbounded result) is a *finding*, saved with
its reproducer (the mutated stream) under ``--findings``.

    python scripts/fuzz_payloads.py --cases 100000 --seed 1 --workers 2 [--minutes 25]
    python scripts/fuzz_payloads.py --replay /tmp/fuzz_findings/exception-s1-c42.ssb

The engine is importable (``tests/test_payload_fuzz.py`` runs a few hundred cases through
:func:`run`); the parent side needs no torch.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import random
import re
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

FAMILIES = ("field", "bytes", "index", "splice")
#: the seed streams: vtest.avi frames [a, b), coded at level QUALITY with the shipped models
SEEDS = {
    "image": {"codec": "ssb.image", "frames": (620, 622)},
    "grouped": {"codec": "ssb.grouped", "groups": "auto", "frames": (640, 641)},
    "video": {"codec": "ssb.video", "frames": (620, 625), "gop": 3},
}
SEED_NAMES = tuple(SEEDS)
QUALITY = 0
DEFAULT_TIME_LIMIT = 20.0
DEFAULT_MEMORY_LIMIT = 2 << 30
DEFAULT_FINDINGS = "/tmp/fuzz_findings"
STARTUP_LIMIT = 900.0
#: the split grid of the shipped model (38 x 38 cells of stride 8 over a 300 x 300 input)
GRID = 38
#: bounds of a "bounded" result: no decode of these seeds may give more
MAX_DETECTIONS = 1000
MAX_IMAGE_BYTES = 1 << 30
ACCEPTED = ("ok", "ssb")


# =============================================================================== mutations
@dataclass
class Unit:
    position: int  # fragment position in stream order
    k: int  # content unit index inside the fragment
    number: int
    type: int
    payload: bytes


def _units(data: bytes) -> list[Unit]:
    from ssb.format.reader import open_bitstream

    out = []
    with open_bitstream(data, verify=False) as bs:
        for pos, fr in enumerate(bs.frames):
            for k, u in enumerate(fr.units):
                out.append(Unit(pos, k, u.number, int(u.type), bytes(u.payload())))
    return out


def _frame_count(data: bytes) -> int:
    from ssb.format.reader import open_bitstream

    with open_bitstream(data, verify=False) as bs:
        return len(bs.frames)


def _tname(t: int) -> str:
    from ssb.format.layout import type_name

    return type_name(t)


def _pick(rng: random.Random, pool):
    return pool[rng.randrange(len(pool))]


def _int_range(f) -> tuple[int, int]:
    from ssb.format.wire import FIXED, UV_MAX

    if f.type in FIXED:
        return FIXED[f.type][3], FIXED[f.type][4]
    if f.type == "sv":
        return -(1 << 62), (1 << 62) - 1
    return 0, UV_MAX


def _boundary(rng: random.Random, old: int, lo: int, hi: int) -> int:
    """A boundary value for an integer field (clamped to its wire type)."""
    pool = [0, 1, 2, 3, old - 1, old + 1, old * 2, old + rng.randint(-8, 8), GRID - 1, GRID, GRID + 1, GRID // 2,
            GRID // 2 + 1, 5, 6, 7, 8, 63, 64, 127, 128, 255, 256, 575, 576, 577, 767, 768, 769, 4095, 4096,
            4097, 65535, 65536,
            (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 62, (1 << 63) - 1, -1,
            rng.getrandbits(_pick(rng, [4, 8, 16, 32, 63]))]
    return min(max(_pick(rng, pool), lo), hi)


def _blob(rng: random.Random, b: bytes, other: bytes = b"") -> tuple[bytes, str]:
    """A mutated byte string (a payload's bytes field, or a whole payload)."""
    n = len(b)
    op = _pick(rng, ["truncate", "truncate_words", "extend", "extend_words", "zero", "randomize", "empty",
                     "double", "reverse_words", "flip", "last_word", "swap", "one_word"])
    if op == "truncate":
        return b[: rng.randrange(n + 1)], op
    if op == "truncate_words":
        return b[: max(0, (n // 4 - rng.randint(1, 4)) * 4)], op
    if op == "extend":
        return b + rng.randbytes(rng.randint(1, 64)), op
    if op == "extend_words":
        return b + _pick(rng, [b"\0", b"\xff", rng.randbytes(1)]) * (4 * rng.randint(1, 64)), op
    if op == "zero":
        return bytes(n), op
    if op == "randomize":
        return rng.randbytes(n), op
    if op == "empty":
        return b"", op
    if op == "double":
        return b + b, op
    if op == "reverse_words":
        words = [b[i: i + 4] for i in range(0, n - n % 4, 4)]
        return b"".join(reversed(words)) + b[n - n % 4:], op
    if op == "flip" and n:
        i = rng.randrange(n)
        return b[:i] + bytes([b[i] ^ (1 << rng.randrange(8))]) + b[i + 1:], op
    if op == "last_word" and n >= 4:
        return b[:-4] + _pick(rng, [bytes(4), b"\xff" * 4, b"\x01\0\0\0"]), op
    if op == "swap":
        return other, op
    return rng.randbytes(4), "one_word"


def mutate_field(rng: random.Random, data: bytes, seeds: dict) -> tuple[bytes, str]:
    """One field of one payload, through the payload's declarative syntax."""
    from ssb.errors import SSBError
    from ssb.format.edit import replace_payloads
    from ssb.format.payloads import UNIT_PAYLOADS

    units = [u for u in _units(data) if u.type in UNIT_PAYLOADS]
    if not units:
        return mutate_bytes(rng, data, seeds)
    u = _pick(rng, units)
    syn = UNIT_PAYLOADS[u.type]
    try:
        rec, _ = syn.decode(u.payload)
    except SSBError:
        return mutate_bytes(rng, data, seeds, unit=u)
    values = {k: (bytes(v) if isinstance(v, memoryview) else v) for k, v in rec.items()}
    fields = [f for f in syn.fields if values.get(f.name) is not None]
    f = _pick(rng, fields)
    if f.const is not None and rng.random() < 0.7:  # a constant's refusal is one test: draw again, mostly
        f = _pick(rng, fields)
    where = f"{_tname(u.type)} unit[{u.number}]"
    if f.type == "bytes":
        others = [values[g.name] for g in syn.fields if g.type == "bytes" and g.name != f.name]
        new, how = _blob(rng, values[f.name], others[0] if others else b"")
        values[f.name] = new
        keep = f.count is not None and rng.random() < 0.2  # leave the declared count stale
        if f.count is not None and not keep:
            values[f.count] = None
        desc = f"field {where}.{f.name}: {how} {len(rec[f.name])} -> {len(new)} bytes" + (
            f" ({f.count} kept)" if keep else "")
    else:
        lo, hi = _int_range(f)
        old = values[f.name]
        values[f.name] = _boundary(rng, old, lo, hi)
        desc = f"field {where}.{f.name}: {old} -> {values[f.name]}"
        pair = {"rows": "cols", "cols": "rows", "width": "height", "height": "width", "row0": "col0",
                "col0": "row0", "x0": "y0", "y0": "x0"}.get(f.name)
        if pair in values and rng.random() < 0.35:  # both sizes at once (e.g. the 4096 x 4096 case of issue 13)
            g = syn.field(pair)
            values[pair] = min(max(values[f.name], _int_range(g)[0]), _int_range(g)[1])
            desc += f", {pair} -> {values[pair]}"
    payload = syn.pack(values, validate=False)
    return replace_payloads(data, {u.number: payload}), desc


def mutate_bytes(rng: random.Random, data: bytes, seeds: dict, unit: Unit | None = None) -> tuple[bytes, str]:
    """Raw byte edits inside one payload (half of them in its first 16 bytes, where the sizes are)."""
    from ssb.format.edit import replace_payloads

    u = unit or _pick(rng, _units(data))
    p = bytearray(u.payload)
    n = len(p)

    def pos(extra: int = 0) -> int:
        span = n + extra
        if span <= 0:
            return 0
        return rng.randrange(min(span, 16)) if rng.random() < 0.5 else rng.randrange(span)

    op = _pick(rng, ["flip", "flip", "set", "truncate", "insert", "delete", "overwrite", "duplicate", "append"])
    if op == "flip" and n:
        for _ in range(rng.randint(1, 4)):
            i = pos()
            p[i] ^= 1 << rng.randrange(8)
    elif op == "set" and n:
        i = pos()
        p[i] = _pick(rng, [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x26, 0x27, 0x25, rng.randrange(256)])
    elif op == "truncate":
        del p[pos(1):]
    elif op == "insert":
        i = pos(1)
        p[i:i] = _pick(rng, [b"\x80", b"\xff\xff\xff\x7f", bytes(4), rng.randbytes(rng.randint(1, 8))])
    elif op == "delete" and n:
        i = pos()
        del p[i: i + rng.randint(1, 8)]
    elif op == "overwrite" and n:
        i = pos()
        k = rng.randint(1, 8)
        p[i: i + k] = rng.randbytes(k)
    elif op == "duplicate" and n:
        i = pos()
        p[i:i] = p[i: i + rng.randint(1, 16)]
    else:
        op = "append"
        p += rng.randbytes(rng.randint(1, 16))
    desc = f"bytes {_tname(u.type)} unit[{u.number}]: {op} ({n} -> {len(p)})"
    return replace_payloads(data, {u.number: bytes(p)}), desc


def mutate_splice(rng: random.Random, data: bytes, seeds: dict) -> tuple[bytes, str]:
    """A payload replaced by another unit's (any type, any seed stream), or joined with it."""
    from ssb.format.edit import replace_payloads

    units = _units(data)
    u = _pick(rng, units)
    donor_seed = _pick(rng, SEED_NAMES)
    donor = _pick(rng, seeds[donor_seed].units)
    how = _pick(rng, ["replace", "replace", "prefix", "concat", "swap"])
    if how == "swap" and len(units) > 1:
        v = _pick(rng, [x for x in units if x.number != u.number])
        return (replace_payloads(data, {u.number: v.payload, v.number: u.payload}),
                f"splice swap {_tname(u.type)} unit[{u.number}] <-> {_tname(v.type)} unit[{v.number}]")
    if how == "prefix":
        new = donor.payload[:16] + u.payload[16:]
    elif how == "concat":
        new = u.payload + donor.payload
    else:
        how, new = "replace", donor.payload
    desc = f"splice {how} {_tname(u.type)} unit[{u.number}] with {donor_seed} {_tname(donor.type)} unit[{donor.number}]"
    return replace_payloads(data, {u.number: new}), desc


# --------------------------------------------------------------------- index / frame header
_ATTRS = {"object_id": 1, "class_id": 2, "group_id": 4, "bbox": 8, "score": 16}
_ID_VALUES = [0, 1, 2, 3, 5, 6, 7, 90, 91, 255, 256, 65535, 65536, (1 << 31), (1 << 32) - 1]
_SIZE_VALUES = [0, -1, 1, 2, 7, 8, 38, 299, 300, 576, 577, 768, 769, 4096, 16384, 32767, 32768, 32769, 65535,
                65536, 1 << 31, 10 ** 12, 1.5, 576.0, "576", None, True, [576], {}]
_TYPES = [4, 5, 6, 7, 8, 9, 10, 11, 13, 999, 32768, 65535, 0, 1, 2, 3, 12]


def _fill_attrs(rng: random.Random, e: dict) -> None:
    """Give every attribute the ``present`` bits announce a value (random when missing)."""
    p = e["present"]
    for name, bit in (("object_id", 1), ("class_id", 2), ("group_id", 4)):
        if p & bit and e.get(name) is None:
            e[name] = _pick(rng, _ID_VALUES)
    if p & 8 and e.get("x0") is None:
        x0, y0 = rng.randrange(768), rng.randrange(576)
        e.update(x0=x0, y0=y0, x1=min(x0 + rng.randrange(200), 65535), y1=min(y0 + rng.randrange(300), 65535))
    if p & 16 and e.get("score") is None:
        e["score"] = rng.randrange(65536)
    if p & 32 and e.get("flags") is None:
        e["flags"] = rng.randrange(65536)


def _own_attrs(entries: list[dict], i: int) -> None:
    """Make entry ``i`` carry its (inherited) attributes itself, so it can be edited alone."""
    e = entries[i]
    if not e["present"] & 128:
        return
    j = i
    while j > 0 and entries[j]["present"] & 128:
        j -= 1
    src = entries[j]
    e["present"] = (e["present"] & ~128 & ~0x1F) | (src["present"] & 0x1F)
    for name in ("object_id", "class_id", "group_id", "x0", "y0", "x1", "y1", "score"):
        e[name] = src.get(name)


def mutate_index(rng: random.Random, data: bytes, seeds: dict) -> tuple[bytes, str]:
    """Edit a fragment's FRAME_HEADER fields and index; lengths and CRCs stay consistent."""
    from ssb.format.edit import rewrite_frame
    from ssb.format.layout import PRESENT_NO_UNIT
    from ssb.format.reader import open_bitstream

    if rng.random() < 0.1:
        return mutate_sequence(rng, data)
    with open_bitstream(data, verify=False) as bs:
        indices = [fr.frame_index for fr in bs.frames]
    position = rng.randrange(len(indices))
    op = _pick(rng, ["attr", "attr", "type", "type", "present", "drop", "dup", "swap", "refs", "refs",
                     "frame_index", "metadata", "metadata", "describe", "pts"])
    notes: list[str] = []

    def entry(pairs: list) -> int:
        """An entry, a unit's more often than a described object's."""
        units = [i for i, (_, p) in enumerate(pairs) if p is not None]
        return _pick(rng, units) if units and rng.random() < 0.7 else rng.randrange(len(pairs))

    def mutate(values: dict, payloads: list) -> None:
        entries = values["entries"]
        pairs, k = [], 0
        for e in entries:
            if e["present"] & PRESENT_NO_UNIT:
                pairs.append([e, None])
            else:
                pairs.append([e, bytes(payloads[k]) if k < len(payloads) else b""])
                k += 1
        fi = values["frame_index"]
        if op in ("attr", "type", "present", "drop", "dup", "swap") and not pairs:
            notes.append("no entries")
        elif op == "attr":
            i = entry(pairs)
            _own_attrs(entries, i)
            e = pairs[i][0]
            name = _pick(rng, list(_ATTRS))
            bit = _ATTRS[name]
            if e["present"] & bit and rng.random() < 0.25:
                e["present"] &= ~bit
                notes.append(f"entries[{i}] drops {name}")
            else:
                e["present"] |= bit
                if name == "bbox":
                    box = _pick(rng, [(0, 0, 0, 0), (0, 0, 65535, 65535), (767, 575, 768, 576), (768, 576, 768, 576),
                                      (65535, 65535, 65535, 65535), (100, 100, 50, 50)])
                    e.update(x0=box[0], y0=box[1], x1=box[2], y1=box[3])
                    notes.append(f"entries[{i}].bbox = {box}")
                else:
                    e[name] = _pick(rng, _ID_VALUES) if name != "score" else _pick(rng, [0, 1, 65535])
                    notes.append(f"entries[{i}].{name} = {e[name]}")
            _fill_attrs(rng, e)
        elif op == "type":
            i = entry(pairs)
            e = pairs[i][0]
            old, e["type"] = e["type"], _pick(rng, _TYPES)
            notes.append(f"entries[{i}].type {_tname(old)} -> {_tname(e['type'])}")
        elif op == "present":
            i = entry(pairs)
            e = pairs[i][0]
            bit = 1 << rng.randrange(8)
            e["present"] ^= bit
            _fill_attrs(rng, e)
            if bit == PRESENT_NO_UNIT and rng.random() < 0.8:  # keep the tiling right: move the payload too
                if e["present"] & PRESENT_NO_UNIT:
                    pairs[i][1] = None
                else:
                    donor = [p for _, p in pairs if p]
                    pairs[i][1] = (_pick(rng, donor) if donor and rng.random() < 0.7
                                   else rng.randbytes(rng.randrange(64)))
            notes.append(f"entries[{i}].present ^= {bit}")
        elif op == "drop":
            i = entry(pairs)
            notes.append(f"drop entries[{i}] ({_tname(pairs[i][0]['type'])})")
            del pairs[i]
        elif op == "dup":
            i = entry(pairs)
            e, p = pairs[i]
            pairs.insert(i + 1, [dict(e), p])
            notes.append(f"duplicate entries[{i}] ({_tname(e['type'])})")
        elif op == "swap" and len(pairs) > 1:
            i, j = rng.sample(range(len(pairs)), 2)
            pairs[i], pairs[j] = pairs[j], pairs[i]
            notes.append(f"swap entries[{i}] and [{j}]")
        elif op == "refs":
            present = set(indices)
            missing = next(d for d in range(1, fi + 2) if d > fi or fi - d not in present)
            refs = _pick(rng, [[], [1], [2], [1, 2], [fi] if fi else [1], [fi + 1], [0], [1 << 20],
                               [missing] if missing <= fi else [1], [2, 1], [1, 1], list(range(1, 18))])
            values["refs"] = refs
            notes.append(f"refs = {refs}")
        elif op == "frame_index":
            new = _pick(rng, [0, max(fi - 1, 0), fi + 1, fi + 1000, (1 << 32) - 1, indices[max(position - 1, 0)]])
            values["frame_index"] = new
            notes.append(f"frame_index {fi} -> {new}")
        elif op == "metadata":
            if values["flags"] & 2 and rng.random() < 0.2:
                values["flags"] &= ~2
                values["metadata"] = None
                notes.append("metadata removed")
            else:
                meta = {"height": _pick(rng, _SIZE_VALUES), "width": _pick(rng, _SIZE_VALUES)}
                if rng.random() < 0.3:
                    del meta[_pick(rng, ["height", "width"])]
                values["flags"] |= 2
                values["metadata"] = meta
                notes.append(f"metadata = {json.dumps(meta)}")
        elif op == "describe":
            e = {"type": _pick(rng, _TYPES[:8]), "present": PRESENT_NO_UNIT | rng.choice([1, 2, 3, 8, 11, 15, 27, 31])}
            _fill_attrs(rng, e)
            pairs.insert(rng.randrange(len(pairs) + 1), [e, None])
            notes.append(f"describe {json.dumps(e)}")
        else:
            values["flags"] |= 1
            values["pts"] = _pick(rng, [0, -1, 1 << 61, -(1 << 61), rng.getrandbits(40)])
            notes.append(f"pts = {values['pts']}")
        values["entries"] = [e for e, _ in pairs]
        payloads[:] = [bytearray(p) for _, p in pairs if p is not None]
        for e, p in pairs:
            if p is not None:
                e["length"], e["crc"] = len(p), zlib.crc32(p)
            elif not e["present"] & PRESENT_NO_UNIT:  # a unit without its payload (the tiling breaks)
                e["length"], e["crc"] = rng.randrange(64), rng.getrandbits(32)
        values["entry_count"] = len(values["entries"])
        values["ref_count"] = len(values["refs"])

    out = rewrite_frame(data, position, mutate)
    return out, f"index frame {indices[position]}: {op} " + "; ".join(notes)


_META_EDITS = [
    ("model", None), ("model", 7), ("model", "omni-ssd-mbv2.s8@2"), ("model", ""), ("labels", "nope"), ("labels", 3),
    ("classes", {"1": 5}), ("classes", [1, 2]), ("classes", {"x": "person"}), ("object_ids", "tracks"),
    ("object_ids", 1), ("groups", {"margin": 10 ** 9}), ("groups", {"context": -1}), ("groups", {"fill": "nope"}),
    ("groups", []), ("groups", {"margin": "1"}), ("video", None), ("video", {"model": 5}), ("video", {"model": ""}),
    ("video", "x"), ("levels", 5), ("levels", "6"), ("front", "tiny"), ("front_weights", 1),
]


def mutate_sequence(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """The SEQUENCE_HEADER rewritten (picture size, codec id, metadata keys), its CRCs redone."""
    from ssb.format.layout import PREAMBLE_SIZE, SEQUENCE_HEADER, UNIT_HEADER, UNIT_HEADER_SIZE, pack_unit_header

    hdr, _ = UNIT_HEADER.decode(data, pos=PREAMBLE_SIZE)
    start = PREAMBLE_SIZE + UNIT_HEADER_SIZE
    values, _ = SEQUENCE_HEADER.decode(data, pos=start, end=start + hdr["length"])
    values = dict(values)
    values["metadata"] = dict(values["metadata"] or {})
    what = _pick(rng, ["size", "size", "meta", "meta", "meta", "codec"])
    if what == "size":
        key = _pick(rng, ["width", "height"])
        values[key] = _pick(rng, [1, 2, 7, 8, 299, 300, 4096, 32768, 32769, 65535, (1 << 32) - 1])
        desc = f"{key} = {values[key]}"
    elif what == "codec":
        values["codec"] = _pick(rng, ["ssb.image", "ssb.grouped", "ssb.video", "", "omni-ssd-mbv2.s8", "x" * 255])
        desc = f"codec = {values['codec']!r}"
    else:
        key, value = _pick(rng, _META_EDITS)
        if value is None:
            values["metadata"].pop(key, None)
        else:
            values["metadata"][key] = value
        desc = f"metadata.{key} = {json.dumps(value)}"
    payload = SEQUENCE_HEADER.pack(values, validate=False)
    end = start + hdr["length"]
    return data[:PREAMBLE_SIZE] + pack_unit_header(1, hdr["flags"], payload) + payload + data[end:], f"sequence {desc}"


MUTATORS = {"field": mutate_field, "bytes": mutate_bytes, "index": mutate_index, "splice": mutate_splice}


class Seed:
    """A seed stream and its content units."""

    def __init__(self, name: str, data: bytes):
        self.name = name
        self.data = data
        self.units = _units(data)
        self.frames = _frame_count(data)


@dataclass
class Case:
    index: int
    family: str
    seed: str
    data: bytes
    steps: list[str]


def make_case(seeds: dict[str, Seed], seed: int, index: int) -> Case:
    """Case ``index`` of run ``seed``: a function of both (and of the seed streams) only."""
    rng = random.Random(f"ssb-payload-fuzz:{seed}:{index}")
    family = FAMILIES[index % len(FAMILIES)]
    name = SEED_NAMES[(index // len(FAMILIES)) % len(SEED_NAMES)]
    data = seeds[name].data
    steps: list[str] = []
    for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3)):
        try:
            data, desc = MUTATORS[family](rng, data, seeds)
        except Exception as exc:  # a stacked mutation on a stream the previous one broke: stop stacking
            if not steps:
                raise
            steps.append(f"(stacking stopped: {type(exc).__name__})")
            break
        steps.append(desc)
    if rng.random() < 0.1:  # now and then another family on top (e.g. a frame size and a mask box)
        other = _pick(rng, [f for f in FAMILIES if f != family])
        try:
            data, desc = MUTATORS[other](rng, data, seeds)
            steps.append(desc)
        except Exception as exc:  # noqa: BLE001 - the stream is as the first mutation left it
            steps.append(f"({other} on top failed: {type(exc).__name__})")
    return Case(index, family, name, data, steps)


# =============================================================================== worker side
def _outcome(exc: BaseException | None, **extra) -> dict:
    if exc is None:
        return {"kind": "ok", **extra}
    from ssb.errors import SSBError

    chain = [exc]  # an error re-raised with its location (ssb.codec.payload.located): count where it arose
    while isinstance(chain[-1].__cause__, SSBError) and len(chain) < 8:
        chain.append(chain[-1].__cause__)
    mods = [m for e in chain for m in map(_module_of, (f.filename for f in traceback.extract_tb(e.__traceback__))) if m]
    inner = [m for m in map(_module_of, (f.filename for f in traceback.extract_tb(chain[-1].__traceback__))) if m]
    out = {"kind": "ssb" if isinstance(exc, SSBError) else "exception", "cls": type(exc).__name__,
           "field": getattr(exc, "field", None), "offset": getattr(exc, "offset", None),
           "message": str(exc)[:300], "origin": inner[-1] if inner else (mods[-1] if mods else None),
           "codec": any(m.startswith(("ssb.codec", "ssb.entropy")) for m in mods), **extra}
    if out["kind"] != "ssb":
        out["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:]
    return out


def _module_of(path: str) -> str | None:
    p = path.replace(os.sep, "/")
    i = p.rfind("/ssb/")
    if i < 0:
        return None
    return p[i + 1: -3].replace("/", ".") if p.endswith(".py") else None


def run_case(data: bytes, models) -> dict:
    """Both decode paths on one stream, in this process: ``{"analyze": outcome, "pixels": outcome}``."""
    import numpy as np

    from ssb import pipeline

    try:
        nframes = _frame_count(data)
    except Exception:  # noqa: BLE001 - the container refuses it: run_case says how
        nframes = 0
    res = {}
    t0 = time.perf_counter()
    try:
        r = pipeline.analyze(data, tasks=["detection"], models=models)
        bad = None
        if len(r.frames) > nframes:
            bad = f"{len(r.frames)} results for {nframes} frames"
        for fr in r.frames:
            n = len(fr.predictions["detection"]["boxes"])
            if n > MAX_DETECTIONS:
                bad = f"{n} detections in frame {fr.frame_index}"
        res["analyze"] = _outcome(None, frames=len(r.frames)) if bad is None else {"kind": "unbounded", "message": bad}
    except Exception as exc:  # noqa: BLE001 - every exception is an outcome (SSBError) or a finding
        res["analyze"] = _outcome(exc)
    res["analyze"]["seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        n, bad = 0, None
        for _, img in pipeline.iter_pixels(data, models=models):
            n += 1
            if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3
                    and img.shape[2] in (3, 4) and img.nbytes <= MAX_IMAGE_BYTES):
                bad = f"image {getattr(img, 'shape', None)} {getattr(img, 'dtype', None)}"
        if n > nframes:
            bad = f"{n} images for {nframes} frames"
        res["pixels"] = _outcome(None, frames=n) if bad is None else {"kind": "unbounded", "message": bad}
    except Exception as exc:  # noqa: BLE001 - every exception is an outcome (SSBError) or a finding
        res["pixels"] = _outcome(exc)
    res["pixels"]["seconds"] = time.perf_counter() - t0
    return res


def build_seeds(models) -> dict[str, bytes]:
    """The seed streams (deterministic: real frames, shipped models, one thread)."""
    from ssb import pipeline
    from ssb.resources import vtest_path

    src = str(vtest_path())
    out = {}
    for name, spec in SEEDS.items():
        opts = dict(spec)
        a, b = opts.pop("frames")
        buf = io.BytesIO()
        pipeline.encode(src, buf, quality=QUALITY, frames=range(a, b), models=models, **opts)
        out[name] = buf.getvalue()
    return out


def _send(f, obj) -> None:
    raw = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(struct.pack("<Q", len(raw)) + raw)
    f.flush()


def _recv_blocking(f):
    head = f.read(8)
    if len(head) < 8:
        return None
    (n,) = struct.unpack("<Q", head)
    return pickle.loads(f.read(n))


def _rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in bytes (0 when gone)."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, hwm


def worker_main() -> int:
    """The worker: load the models once, then answer requests on stdin until it closes."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints of libraries go to stderr, never into the message pipe
    inp = os.fdopen(0, "rb")
    import torch

    torch.set_num_threads(1)
    from ssb import pipeline

    models = pipeline.Models()
    _send(out, {"op": "ready", "pid": os.getpid()})
    while True:
        msg = _recv_blocking(inp)
        if msg is None:
            return 0
        op = msg["op"]
        if op == "seeds":
            _send(out, {"op": "seeds", "seeds": build_seeds(models)})
        elif op == "warm":
            res = {name: run_case(data, models) for name, data in msg["seeds"].items()}
            _send(out, {"op": "warm", "results": res, "rss": _rss(os.getpid())[0]})
        elif op == "case":
            _send(out, {"op": "case", "result": run_case(msg["data"], models)})
        else:
            _send(out, {"op": "error", "message": f"unknown op {op!r}"})


# =============================================================================== parent side
class WorkerDied(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


class Worker:
    """One worker subprocess, watched for time and memory."""

    def __init__(self, memory_limit: int, log_dir: str):
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - the worker's stderr, for its life
            prefix="fuzz-worker-", suffix=".log", dir=log_dir, delete=False)
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=env, bufsize=0)
        self.memory_limit = memory_limit
        self.peak = 0
        self.request(None, STARTUP_LIMIT)  # waits for "ready"

    def _stderr_tail(self) -> str:
        try:
            with open(self.log.name, "rb") as fh:
                fh.seek(0, 2)
                fh.seek(max(fh.tell() - 4000, 0))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _reset_peak(self) -> None:
        try:
            with open(f"/proc/{self.proc.pid}/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            pass

    def request(self, msg, limit: float):
        """Send ``msg`` (None: only wait) and wait for the answer, enforcing ``limit`` s and the memory limit."""
        self._reset_peak()
        if msg is not None:
            raw = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
            try:
                self.proc.stdin.write(struct.pack("<Q", len(raw)) + raw)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                raise self._died() from None
        fd = self.proc.stdout.fileno()
        buf = bytearray()
        need = 8
        deadline = time.monotonic() + limit
        peak = 0
        while True:
            rss, hwm = _rss(self.proc.pid)
            peak = max(peak, rss, hwm)
            if peak > self.memory_limit:
                self.kill()
                raise WorkerDied("memory", f"resident memory reached {peak / 2**20:.0f} MiB "
                                           f"(limit {self.memory_limit / 2**20:.0f} MiB)")
            now = time.monotonic()
            if now > deadline:
                self.kill()
                raise WorkerDied("hang", f"no answer within {limit:.0f} s")
            ready, _, _ = select.select([fd], [], [], min(0.02, max(deadline - now, 0)))
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise self._died()
            buf += chunk
            if len(buf) >= 8 and need == 8:
                need = 8 + struct.unpack("<Q", bytes(buf[:8]))[0]
            if len(buf) >= need > 8:
                self.peak = max(self.peak, peak)
                return pickle.loads(bytes(buf[8:need]))

    def _died(self) -> WorkerDied:
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = self.proc.returncode
        how = f"signal {-rc}" if rc is not None and rc < 0 else f"exit status {rc}"
        return WorkerDied("crash", f"worker died ({how}); stderr tail:\n{self._stderr_tail()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 - a worker that will not close is killed
            self.kill()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


@dataclass
class Report:
    """What a run found; :meth:`table` renders it."""

    seed: int
    cases: int = 0
    seconds: float = 0.0
    restarts: int = 0
    #: (path, key) -> count; key "ok", "SSBError:<class>" or a finding's
    outcomes: Counter = field(default_factory=Counter)
    worst: Counter = field(default_factory=Counter)  # per case, the worse of both paths
    families: dict = field(default_factory=dict)  # family -> Counter(cases, payload, codec, ok)
    fields: Counter = field(default_factory=Counter)  # normalized error field -> count (analyze path)
    origins: Counter = field(default_factory=Counter)  # innermost ssb module of an SSBError -> count
    findings: list = field(default_factory=list)
    generator_errors: list = field(default_factory=list)  # cases the mutators failed to make (fuzzer bugs)
    slowest: float = 0.0
    peak_rss: int = 0
    baseline_rss: int = 0

    def record(self, case: Case, result: dict) -> None:
        fam = self.families.setdefault(case.family, Counter())
        fam["cases"] += 1
        keys = []
        for path in ("analyze", "pixels"):
            o = result[path]
            key = _key(o)
            keys.append(key)
            self.outcomes[(path, key)] += 1
            self.slowest = max(self.slowest, o.get("seconds", 0.0))
            if o["kind"] == "ssb":
                self.origins[o.get("origin")] += 1
                if path == "analyze":
                    self.fields[_norm_field(o.get("field"))] += 1
            if path == "analyze":
                if o["kind"] == "ok":
                    fam["ok"] += 1
                elif o["kind"] == "ssb" and o.get("codec") and o["cls"] != "ChecksumError":
                    fam["codec"] += 1
                    if reached_payload(o):
                        fam["payload"] += 1
                    if (o.get("origin") or "").startswith("ssb.entropy"):
                        fam["entropy"] += 1
        self.worst[max(keys, key=_severity)] += 1
        self.cases += 1

    def table(self) -> str:
        rate = self.cases / self.seconds if self.seconds else 0.0
        head = (f"cases: {self.cases} (seed {self.seed}), {self.seconds / 60:.1f} min, {rate:.2f} cases/s, "
                f"worker restarts: {self.restarts}, slowest path {self.slowest:.1f} s, "
                f"worker RSS baseline {self.baseline_rss / 2**20:.0f} MiB, peak {self.peak_rss / 2**20:.0f} MiB")
        lines = [head, "", f"{'outcome':44s} {'analyze':>9s} {'pixels':>9s} {'case':>9s}"]
        keys = sorted({k for _, k in self.outcomes} | set(self.worst), key=lambda k: (_severity(k), k))
        for k in keys:
            label = "bounded success" if k == "ok" else k
            lines.append(f"{label:44s} {self.outcomes[('analyze', k)]:9d} {self.outcomes[('pixels', k)]:9d} "
                         f"{self.worst[k]:9d}")
        if self.generator_errors:
            lines += ["", f"cases the mutators could not make (fuzzer bugs): {len(self.generator_errors)}"]
            lines += [f"  {e[:200]}" for e in self.generator_errors[:10]]
        lines += ["", f"findings (crash, hang, memory, other exceptions, unbounded): {len(self.findings)}"]
        for f in self.findings[:50]:
            lines.append(f"  case {f['case']} [{f['family']}/{f['seed']}] {f['path']}: {f['key']}: "
                         f"{f.get('message', '')[:160]}  -> {f.get('reproducer')}")
        lines += ["", (f"{'family':8s} {'cases':>7s} {'codec':>7s} {'payload':>8s} {'entropy':>8s} {'ok':>7s}  "
                       "(analyze path: SSBError raised inside ssb.codec/ssb.entropy, of which in payload fields / "
                       "the entropy decoder; bounded successes)")]
        for name in FAMILIES:
            c = self.families.get(name, Counter())
            lines.append(f"{name:8s} {c['cases']:7d} {c['codec']:7d} {c['payload']:8d} {c['entropy']:8d} {c['ok']:7d}")
        lines += ["", "most frequent error fields (analyze path):"]
        for fld, n in self.fields.most_common(25):
            lines.append(f"  {n:7d}  {fld}")
        lines += ["", "where SSBErrors were raised (innermost ssb module, both paths):"]
        for mod, n in self.origins.most_common(20):
            lines.append(f"  {n:7d}  {mod}")
        return "\n".join(lines)


_SEVERITY = {"ok": 0}


def _key(o: dict) -> str:
    kind = o["kind"]
    if kind == "ok":
        return "ok"
    if kind == "ssb":
        return f"SSBError:{o['cls']}"
    if kind == "exception":
        return f"FINDING exception:{o['cls']}"
    return f"FINDING {kind}"


def _severity(key: str) -> int:
    return 0 if key == "ok" else (1 if key.startswith("SSBError") else 2)


def _norm_field(f: str | None) -> str:
    return re.sub(r"\[\d+\]", "[*]", f) if f else "(none)"


def reached_payload(o: dict) -> bool:
    """An SSBError raised while parsing or entropy-decoding a payload inside the codec (not a CRC)."""
    f = o.get("field") or ""
    return (o.get("kind") == "ssb" and bool(o.get("codec")) and o.get("cls") != "ChecksumError"
            and (".payload" in f or "payload" in f.split(".")[0] or (o.get("origin") or "").startswith(
                ("ssb.entropy", "ssb.codec.mask_coding", "ssb.codec.video.motion"))))


def _save(folder: Path, case: Case, run_seed: int, path: str, key: str, outcome: dict) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    kind = re.sub(r"[^A-Za-z0-9_.-]+", "_", key.replace("FINDING ", ""))
    stem = folder / f"{kind}-s{run_seed}-c{case.index}"
    stem.with_suffix(".ssb").write_bytes(case.data)
    info = {"case": case.index, "seed": run_seed, "family": case.family, "seed_stream": case.seed,
            "mutations": case.steps, "path": path, "key": key, "outcome": outcome,
            "replay": f"python scripts/fuzz_payloads.py --replay {stem.with_suffix('.ssb')}"}
    stem.with_suffix(".json").write_text(json.dumps(info, indent=2, default=str))
    if outcome.get("traceback"):
        stem.with_suffix(".txt").write_text(outcome["traceback"])
    return str(stem.with_suffix(".ssb"))


class Session:
    """Started workers and the seed streams; :meth:`run_stream` runs one stream, surviving a dead worker.

    ``workers`` processes each load the models once (about 1 GB each); the first one builds the
    seed streams, then every one decodes them (they must all decode cleanly)."""

    def __init__(self, workers: int = 1, *, time_limit: float = DEFAULT_TIME_LIMIT,
                 memory_limit: int = DEFAULT_MEMORY_LIMIT, findings: str | Path = DEFAULT_FINDINGS):
        self.folder = Path(findings)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.time_limit, self.memory_limit = time_limit, memory_limit
        self.restarts = 0
        self.baseline_rss = 0
        self._lock = threading.Lock()
        self.workers: list[Worker] = []
        try:
            first = Worker(memory_limit, str(self.folder))
            self.workers.append(first)
            self.raw_seeds = first.request({"op": "seeds"}, STARTUP_LIMIT)["seeds"]
            self.seeds = {name: Seed(name, data) for name, data in self.raw_seeds.items()}
            self._warm(first)
            for _ in range(max(workers, 1) - 1):
                self.workers.append(self._warm(Worker(memory_limit, str(self.folder))))
        except BaseException:
            self.close()
            raise

    def _warm(self, w: Worker) -> Worker:
        ans = w.request({"op": "warm", "seeds": self.raw_seeds}, STARTUP_LIMIT)
        for name, res in ans["results"].items():
            for path, o in res.items():
                if o["kind"] != "ok":
                    raise RuntimeError(f"seed stream {name} does not decode on the {path} path: {o}")
        self.baseline_rss = max(self.baseline_rss, ans["rss"])
        return w

    def _replace(self, k: int) -> Worker:
        self.workers[k].kill()
        self.workers[k].close()
        w = self._warm(Worker(self.memory_limit, str(self.folder)))
        with self._lock:
            self.restarts += 1
            self.workers[k] = w
        return w

    def run_stream(self, data: bytes, k: int = 0, confirm: bool = True) -> dict:
        """``{"analyze": outcome, "pixels": outcome}`` of one stream on worker ``k``.

        A worker that dies, hangs or goes over the memory limit is replaced, and (``confirm``) the
        stream is run again on the fresh one: ``outcome["confirmed"]`` says whether it did it again."""
        try:
            return self.workers[k].request({"op": "case", "data": data}, self.time_limit)["result"]
        except WorkerDied as died:
            self._replace(k)
            confirmed = None
            if confirm:
                try:
                    self.workers[k].request({"op": "case", "data": data}, self.time_limit)
                    confirmed = False
                except WorkerDied:
                    confirmed = True
                    self._replace(k)
            o = {"kind": died.kind, "message": died.message, "confirmed": confirmed}
            return {"analyze": o, "pixels": o}

    @property
    def peak_rss(self) -> int:
        return max((w.peak for w in self.workers), default=0)

    def close(self) -> None:
        for w in self.workers:
            w.close()
        self.workers = []

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run(cases: int = 1000, seed: int = 0, *, workers: int = 1, time_limit: float = DEFAULT_TIME_LIMIT,
        memory_limit: int = DEFAULT_MEMORY_LIMIT, findings: str | Path = DEFAULT_FINDINGS,
        minutes: float | None = None, start: int = 0, progress: bool = False, confirm: bool = True,
        session: Session | None = None) -> Report:
    """Run cases ``start .. start + cases - 1`` of run ``seed`` (or as many as fit in ``minutes``) on
    ``session`` (started here, and closed, when not given)."""
    t0 = time.monotonic()
    own = session is None
    if own:
        session = Session(workers, time_limit=time_limit, memory_limit=memory_limit, findings=findings)
    report = Report(seed)
    stop_at = None if minutes is None else t0 + 60.0 * minutes
    lock = threading.Lock()
    counter = iter(range(start, start + cases))
    last_print = [time.monotonic()]
    restarts0 = session.restarts

    def loop(k: int) -> None:
        while True:
            with lock:
                if stop_at is not None and time.monotonic() > stop_at:
                    return
                i = next(counter, None)
            if i is None:
                return
            try:
                case = make_case(session.seeds, seed, i)
            except Exception as exc:  # noqa: BLE001 - a bug of the fuzzer itself: counted, shown, not fatal
                with lock:
                    report.generator_errors.append(f"case {i}: {type(exc).__name__}: {exc}")
                continue
            result = session.run_stream(case.data, k, confirm)
            with lock:
                report.record(case, result)
                seen = set()
                for path in ("analyze", "pixels"):
                    o = result[path]
                    if o["kind"] in ACCEPTED or id(o) in seen:
                        continue
                    seen.add(id(o))
                    key = _key(o)
                    rep = _save(session.folder, case, seed, path, key, o)
                    report.findings.append({"case": i, "family": case.family, "seed": case.seed, "path": path,
                                            "key": key, "message": o.get("message", ""), "reproducer": rep,
                                            "mutations": case.steps})
                if progress and time.monotonic() - last_print[0] > 30:
                    last_print[0] = time.monotonic()
                    el = time.monotonic() - t0
                    print(f"[{el / 60:5.1f} min] {report.cases} cases, {len(report.findings)} findings, "
                          f"{session.restarts - restarts0} restarts", file=sys.stderr, flush=True)

    try:
        threads = [threading.Thread(target=loop, args=(k,), daemon=True) for k in range(len(session.workers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        report.seconds = time.monotonic() - t0
        report.restarts = session.restarts - restarts0
        report.baseline_rss, report.peak_rss = session.baseline_rss, session.peak_rss
        if own:
            session.close()
    return report


def replay(paths: list[str]) -> int:
    """Run saved cases in this process and print both outcomes of each (with tracebacks)."""
    import torch

    torch.set_num_threads(1)
    from ssb import pipeline

    models = pipeline.Models()
    bad = 0
    for path in paths:
        res = run_case(Path(path).read_bytes(), models)
        print(path)
        for p, o in res.items():
            print(f"  {p}: {_key(o)} {o.get('field') or ''} {o.get('message', '')}")
            if o.get("traceback"):
                print(o["traceback"])
        bad += not all(o["kind"] in ACCEPTED for o in res.values())
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1000, help="cases to run (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="run seed: case i of seed S is always the same bytes")
    ap.add_argument("--start", type=int, default=0, help="first case index (to resume or replay a range)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes (one model set each, ~1 GB)")
    ap.add_argument("--minutes", type=float, default=None, help="stop after this wall time")
    ap.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, help="seconds per case (both paths)")
    ap.add_argument("--memory-limit-mb", type=int, default=DEFAULT_MEMORY_LIMIT >> 20,
                    help="worker resident memory limit (MiB)")
    ap.add_argument("--findings", default=DEFAULT_FINDINGS, help="folder for the reproducers of findings")
    ap.add_argument("--json", help="also write the counts as JSON here")
    ap.add_argument("--replay", nargs="+", help="run saved .ssb cases in this process and print the outcomes")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main()
    if args.replay:
        return replay(args.replay)
    report = run(args.cases, args.seed, workers=args.workers, time_limit=args.time_limit,
                 memory_limit=args.memory_limit_mb << 20, findings=args.findings, minutes=args.minutes,
                 start=args.start, progress=True)
    print(report.table())
    if args.json:
        Path(args.json).write_text(json.dumps({
            "seed": report.seed, "cases": report.cases, "seconds": report.seconds, "restarts": report.restarts,
            "outcomes": {f"{p}:{k}": n for (p, k), n in report.outcomes.items()}, "cases_by_worst": dict(report.worst),
            "families": {k: dict(v) for k, v in report.families.items()}, "findings": report.findings,
            "fields": dict(report.fields), "origins": {str(k): v for k, v in report.origins.items()},
            "generator_errors": report.generator_errors}, indent=2))
    return 1 if report.findings or report.generator_errors else 0


if __name__ == "__main__":
    sys.exit(main())
