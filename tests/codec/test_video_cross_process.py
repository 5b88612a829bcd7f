"""A video stream encoded here decodes bit-identically in fresh processes with 1 and 2 threads, over
more than a whole GOP: the latents (prediction + residual, integers), the motion fields and the
synthesized features.  What feeds the coder's tables is integer, and the prediction is computed
from what the decoder has (closed loop), so nothing can drift across processes or thread counts."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_video_codec import GOP, clip
from tiny_codec import TinyModels, tiny_video_coder
from video_cross_process_child import decode_all

from ssb.codec import registry
from ssb.format import Writer

CHILD = Path(__file__).with_name("video_cross_process_child.py")
THREADS = (1, 2)


@pytest.fixture(scope="module")
def decodes(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        models = TinyModels(extra={"video": tiny_video_coder()})
        enc = registry.encoder("ssb.video", models, quality=1, gop=GOP)
        frames = clip(2 * GOP + 2)
        buf = io.BytesIO()
        with Writer(buf, enc.header(frames[0])) as w:
            for f in frames:
                enc.encode(w, f)
        tmp = tmp_path_factory.mktemp("video_cross_process")
        src = tmp / "clip.ssb"
        src.write_bytes(buf.getvalue())
        torch.save({"codec": models.codec().state_dict(), "video": models.get("video").state_dict()},
                   str(src) + ".state.pt")
        expected = decode_all(models, str(src))
        expected["encoder_ref"] = enc._ref
    finally:
        torch.set_num_threads(before)
    here = str(Path(__file__).resolve().parent)
    procs = {}
    for threads in THREADS:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
        procs[threads] = subprocess.Popen([sys.executable, str(CHILD), str(threads), str(src), str(tmp / f"{threads}.pt")],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    got = {}
    for threads, proc in procs.items():
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        got[threads] = torch.load(tmp / f"{threads}.pt")
        assert got[threads]["threads"] == threads
    return expected, got


def test_the_stream_spans_more_than_a_gop_with_real_residuals(decodes):
    expected, _ = decodes
    assert expected["frames"] == list(range(2 * GOP + 2))
    assert torch.equal(expected["latents"][-1], expected["encoder_ref"])  # closed loop, same process
    moved = [m for m in expected["motion"] if m is not None and m.any()]
    assert len(moved) >= GOP  # the motion fields are not empty


@pytest.mark.parametrize("threads", THREADS)
def test_latents_motion_and_features_are_bit_identical_across_processes(decodes, threads):
    expected, got = decodes
    g = got[threads]
    assert g["frames"] == expected["frames"]
    for key in ("latents", "split"):
        for i, (a, b) in enumerate(zip(g[key], expected[key])):
            assert a.dtype == b.dtype and torch.equal(a, b), f"{threads} threads: {key}[{i}]"
    for a, b in zip(g["motion"], expected["motion"]):
        assert (a is None and b is None) or torch.equal(a, b)
