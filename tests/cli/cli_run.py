"""``ssb`` in a subprocess, as a user runs it (one thread), for the command-line tests."""

from __future__ import annotations

import os
import subprocess
import sys


def ssb_cli(*args, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ssb.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
