"""Encode here, decode in fresh processes with 1 and 2 threads: bit-identical tensors and bytes."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import torch

CHILD = Path(__file__).with_name("entropy_cross_process_child.py")
_spec = importlib.util.spec_from_file_location("entropy_cross_process_child", CHILD)
child = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(child)


def test_decode_in_other_processes_and_thread_counts_is_bit_identical(tmp_path):
    modules = child.build(seed=0)
    for m in modules.values():
        m.update()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, child.N_Z, 6, 5, generator=g) * 4
    z[0, 0, 0, 0] = 1e5  # escape in z
    z_hat = torch.round(z)
    indexes = modules["gc"].build_indexes(modules["hs"].codes(z_hat))
    assert len(torch.unique(indexes)) > 10  # the test exercises many tables
    y = torch.randn(1, child.N_Y, 24, 20, generator=g) * 30
    y[0, 0, 0, :3] = torch.tensor([7e4, -7e4, 2.5e6])  # escapes in y
    z_data = modules["eb"].compress(z)
    y_data = modules["gc"].compress(y, indexes)
    expected = child.decode(modules, z_data, y_data, z.shape)
    assert torch.equal(expected["z_hat"], z_hat) and torch.equal(expected["y_hat"], torch.round(y))

    src = tmp_path / "enc.pt"
    torch.save({"state": {k: m.state_dict() for k, m in modules.items()}, "z_data": z_data, "y_data": y_data,
                "z_shape": tuple(z.shape)}, src)
    for threads in (1, 2):
        dst = tmp_path / f"dec{threads}.pt"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        run = subprocess.run([sys.executable, str(CHILD), str(threads), str(src), str(dst)], env=env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        got = torch.load(dst)
        assert got["threads"] == threads
        for key in ("z_hat", "codes", "indexes", "y_hat"):
            assert got[key].dtype == expected[key].dtype and torch.equal(got[key], expected[key]), key
        assert got["z_data"] == z_data and got["y_data"] == y_data
