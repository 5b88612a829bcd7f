"""Fuzzing: truncated, bit-flipped and length-corrupted streams raise only SSBError, quickly and
without allocating what they declare."""

from __future__ import annotations

import contextlib
import random
import resource
import signal
import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssb.errors import SSBError
from ssb.format import open as ssb_open
from ssb.format.edit import rewrite_frame

#: A hang guard, not a performance assertion: one case on a 3 kB stream takes milliseconds.
HANG_SECONDS = 20
#: The streams are 3 kB; a reader allocating what a corrupted field declares (up to 4 GiB) would blow this.
PEAK_BYTES = 8 << 20


@contextlib.contextmanager
def bounded(trace: bool = False):
    """Fail on a hang, and on memory growth: traced Python allocations (``trace``, slow but exact)
    or else the process' peak resident size."""

    def timeout(signum, frame):
        raise AssertionError(f"a fuzz run took over {HANG_SECONDS} s: the reader hangs")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(HANG_SECONDS)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if trace:
        tracemalloc.start()
    try:
        yield
        if trace:
            _, peak = tracemalloc.get_traced_memory()
            assert peak < PEAK_BYTES, f"a fuzz case allocated {peak} bytes"
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
        assert grown < 8 * PEAK_BYTES, f"peak resident memory grew by {grown} bytes"
    finally:
        if trace:
            tracemalloc.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _unit_header_positions(data: bytes):
    """Offsets of every unit header of a valid stream (walking it the way the spec describes)."""
    from ssb.format import open as o

    with o(data) as bs:
        return [u.span[0] for u in bs.units]


def _basic(ssb_cases, version):
    return ssb_cases.v1_stream("basic") if version == 1 else ssb_cases.basic_stream()


@pytest.mark.parametrize("version", [1, 2])
def test_every_truncation(ssb_cases, version):
    data = _basic(ssb_cases, version)
    with bounded():
        for cut in range(len(data)):
            ssb_cases.exercise(data[:cut])
        for cut in range(0, len(data), 7):
            ssb_cases.exercise(data[:cut], as_file=True)


@pytest.mark.parametrize("version", [1, 2])
def test_bit_flips(ssb_cases, version):
    data = _basic(ssb_cases, version)
    rng = random.Random(1234)
    with bounded():
        for pos in range(len(data)):
            corrupt = bytearray(data)
            corrupt[pos] ^= 1 << rng.randrange(8)
            ssb_cases.exercise(bytes(corrupt), as_file=pos % 5 == 0)


BAD_LENGTHS = [0, 1, 16, 48, 0x7FFF_FFFF, 0xFFFF_FFFF]


def test_corrupted_lengths_with_valid_checksums_v2(ssb_cases):
    """2.x: entry lengths, CRCs, counts and references rewritten with every checksum fixed."""
    data = ssb_cases.basic_stream()
    with ssb_open(data) as bs:
        n_frames = len(bs.frames)
        n_entries = [len(f.units) + len(f.descriptors) for f in bs.frames]

    def cases(n):
        for value in BAD_LENGTHS:
            yield lambda v, p, value=value: v["entries"][0].__setitem__("length", value)
            yield lambda v, p, value=value: v.__setitem__("entry_count", value)
            yield lambda v, p, value=value: v.__setitem__("ref_count", value % 1000)
            yield lambda v, p, value=value: v.__setitem__("refs", [value] * 3)
            yield lambda v, p, value=value: v.__setitem__("fragment_length", value)
            yield lambda v, p, value=value: v["entries"][n - 1].__setitem__("object_id", value)
        yield lambda v, p: v["entries"][0].__setitem__("present", 0x80)  # repeats a predecessor it lacks
        yield lambda v, p: v["entries"].reverse()

    with bounded(trace=True):
        for position in range(n_frames):
            for mutate in cases(n_entries[position]):
                try:
                    corrupt = rewrite_frame(data, position, mutate)
                except (SSBError, OverflowError):
                    continue  # not even encodable
                ssb_cases.exercise(corrupt)
                ssb_cases.exercise(corrupt, as_file=True)


def test_corrupted_lengths_with_valid_checksums(ssb_cases):
    """Lengths and counts rewritten *and* their checksums fixed, so only the syntax checks can catch them."""
    data = ssb_cases.v1_stream("basic")
    headers = _unit_header_positions(data)
    with bounded(trace=True):
        for pos in headers:
            for value in BAD_LENGTHS:
                corrupt = bytearray(data)
                struct.pack_into("<I", corrupt, pos + 4, value)
                ssb_cases.fix_header_crc(corrupt, pos)
                ssb_cases.exercise(bytes(corrupt))
                ssb_cases.exercise(bytes(corrupt), as_file=True)
        with ssb_open(data) as bs:
            frames = [(f.header_unit.span[0], f.index_unit.span[0]) for f in bs.frames]
        for fh, ix in frames:
            # FRAME_HEADER payload: fragment_length at +16, metadata byte count at +20
            for rel in (16, 20):
                for value in BAD_LENGTHS:
                    corrupt = bytearray(data)
                    struct.pack_into("<I", corrupt, fh + 16 + rel, value)
                    ssb_cases.fix_payload_crc(corrupt, fh)
                    ssb_cases.exercise(bytes(corrupt))
            # INDEX payload: entry_size (u16) at +0, entry_count at +4, entry offsets/lengths
            for rel, fmt in ((0, "<H"), (4, "<I"), (8 + 8, "<I"), (8 + 12, "<I"), (8 + 48 + 8, "<I")):
                for value in BAD_LENGTHS:
                    corrupt = bytearray(data)
                    struct.pack_into(
                        fmt, corrupt, ix + 16 + rel, value & (0xFFFF if fmt == "<H" else 0xFFFFFFFF)
                    )
                    ssb_cases.fix_payload_crc(corrupt, ix)
                    ssb_cases.exercise(bytes(corrupt))
                    ssb_cases.exercise(bytes(corrupt), as_file=True)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_mutations(ssb_cases, data):
    base = bytearray(_basic(ssb_cases, data.draw(st.sampled_from([1, 2]))))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(base) - 1))
        base[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        base = base[: data.draw(st.integers(0, len(base)))]
    with bounded(trace=True):
        ssb_cases.exercise(bytes(base), as_file=data.draw(st.booleans()))


@pytest.mark.parametrize("name", ["future_minor", "empty"])
def test_other_streams_survive_bit_flips(name, ssb_cases):
    data = ssb_cases.golden[name]()
    with bounded():
        for pos in range(len(data)):
            corrupt = bytearray(data)
            corrupt[pos] ^= 0x80
            ssb_cases.exercise(bytes(corrupt))
