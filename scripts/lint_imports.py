"""Run the import-linter contracts of setup.cfg on the package as it installs.

``tasks/`` and ``adapters/`` install as ``ssb.tasks`` and ``ssb.adapters`` (setuptools
package-dir); import-linter reads packages from the file system, so the tree is staged in a
temporary folder with the installed layout (``ssb/tasks``, ``ssb/adapters``) and linted there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    with tempfile.TemporaryDirectory(prefix="ssb-lint-") as tmp:
        stage = Path(tmp)
        for pkg, folder in sorted(mapping.items(), key=lambda kv: kv[0].count(".")):
            shutil.copytree(ROOT / folder, stage / Path(*pkg.split(".")), ignore=ignore, dirs_exist_ok=True)
        shutil.copy(ROOT / "setup.cfg", stage / "setup.cfg")
        env = dict(os.environ, PYTHONPATH=str(stage))
        exe = shutil.which("lint-imports") or "lint-imports"
        return subprocess.run([exe, "setup.cfg", "--no-cache"], cwd=stage, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
