"""Encode here, decode in fresh processes with 1 and 2 threads: bit-identical symbols, features, bytes.

The codec's promise (``ssb.codec.feature_codec``, issue 3): after ``update()`` everything that
feeds the entropy coder is integer, so a decoder in another process, with another thread
count, parses the same symbols, picks the same tables, synthesizes the same split features,
and an encoder there writes the same bytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from codec_cross_process_child import decode_all
from tiny_codec import split_features, tiny_codec

from ssb.codec.payload import pack_features

CHILD = Path(__file__).with_name("codec_cross_process_child.py")
THREADS = (1, 2)


@pytest.fixture(scope="module")
def decodes(tmp_path_factory) -> tuple[list[bytes], dict, dict[int, dict]]:
    """(features payloads coded here, this process's decode, {threads: a fresh process's decode})."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        codec = tiny_codec(seed=0)
        # Two frames per level, and one with odd sizes (padding and cropping paths).
        inputs = [(split_features(2, 38, 38, seed=10 + lv), lv) for lv in range(codec.config.num_levels)]
        inputs += [(split_features(1, 37, 45, seed=20), 1)]
        payloads = [pack_features(item) for x, level in inputs for item in codec.compress(x, level)]
        expected = decode_all(codec, payloads)
    finally:
        torch.set_num_threads(before)
    tmp = tmp_path_factory.mktemp("cross_process")
    src = tmp / "enc.pt"
    torch.save({"state": codec.state_dict(), "payloads": payloads, "inputs": inputs}, src)
    here = str(Path(__file__).resolve().parent)
    procs = {}
    for threads in THREADS:  # both decoders at once: the wall time of one
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
        cmd = [sys.executable, str(CHILD), str(threads), str(src), str(tmp / f"{threads}.pt")]
        procs[threads] = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          text=True)
    got = {}
    for threads, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        got[threads] = torch.load(tmp / f"{threads}.pt")
        assert got[threads]["threads"] == threads
    return payloads, expected, got


def _assert_equal_lists(got: list, expected: list, what: str) -> None:
    assert len(got) == len(expected), what
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a.dtype == b.dtype and torch.equal(a, b), f"{what}[{i}]"


def test_the_streams_exercise_many_tables_and_escapes(decodes):
    _, expected, _ = decodes
    assert len(torch.unique(torch.cat([i.flatten() for i in expected["indexes"]]))) > 10
    assert len(torch.unique(torch.cat([z.flatten() for z in expected["z_hat"]]))) > 3
    assert max(float(y.abs().max()) for y in expected["y_hat"]) > 20


@pytest.mark.parametrize("threads", THREADS)
def test_symbols_and_tables_are_bit_identical(decodes, threads):
    _, expected, got = decodes
    for key in ("z_hat", "indexes", "y_hat"):
        _assert_equal_lists(got[threads][key], expected[key], f"{threads} threads: {key}")


@pytest.mark.parametrize("threads", THREADS)
def test_bytes_are_identical(decodes, threads):
    """Decoded symbols re-code to the same strings; compressing the same input gives the same bytes."""
    payloads, _, got = decodes
    for i, ((z, y), payload) in enumerate(zip(got[threads]["recoded"], payloads)):
        assert payload.endswith(z + y), (threads, i)
    assert got[threads]["reencoded"] == payloads


def test_decoded_features_in_one_thread_are_bit_identical(decodes):
    _, expected, got = decodes
    _assert_equal_lists(got[1]["split"], expected["split"], "1 thread: split")


def test_decoded_features_in_two_threads_are_bit_identical(decodes):
    _, expected, got = decodes
    _assert_equal_lists(got[2]["split"], expected["split"], "2 threads: split")
