"""ssb.format is standard library + numpy only (it must load where torch and cv2 are absent)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ssb

ROOT = str(Path(ssb.__file__).resolve().parents[1])


def test_format_imports_only_stdlib_and_numpy():
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import ssb.format\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "extra = sorted(new - set(sys.stdlib_module_names) - {'ssb', 'numpy', '_distutils_hack'})\n"
        "print(','.join(extra))\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"ssb.format imported {proc.stdout.strip()}"
