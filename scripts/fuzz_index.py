"""The payload fuzzer's ``index`` family (``scripts/fuzz_payloads.py``): a fragment's FRAME_HEADER
fields and index rewritten (entries' type, attributes, presence bits, dropped / duplicated /
swapped entries, references, frame indices, the frame's metadata), or, one case in ten, the
SEQUENCE_HEADER (picture size, codec id, metadata keys); every length and CRC recomputed.
"""

from __future__ import annotations

import json
import random
import zlib

from fuzz_seeds import _pick, _tname


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
