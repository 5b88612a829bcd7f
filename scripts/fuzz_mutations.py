"""The payload fuzzer's cases (``scripts/fuzz_payloads.py``): the ``field``, ``bytes`` and ``splice``
mutation families, :data:`MUTATORS` (with ``index``, :mod:`fuzz_index`) and :func:`make_case`.

Case ``i`` of run ``s`` is a function of both and of the seed streams only (deterministic).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from fuzz_index import mutate_index
from fuzz_seeds import FAMILIES, GRID, SEED_NAMES, Seed, Unit, _pick, _tname, _units


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


MUTATORS = {"field": mutate_field, "bytes": mutate_bytes, "index": mutate_index, "splice": mutate_splice}


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
