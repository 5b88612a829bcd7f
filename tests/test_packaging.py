"""The distribution installs one top-level package, `ssb`, with tasks/ and adapters/ mapped under it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _config():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _folder_of(package: str, package_dir: dict[str, str]) -> Path:
    parts = package.split(".")
    for i in range(len(parts), 0, -1):
        head = ".".join(parts[:i])
        if head in package_dir:
            return ROOT / package_dir[head] / Path(*parts[i:])
    return ROOT / Path(*parts)


def test_every_package_folder_is_listed():
    cfg = _config()
    listed = set(cfg["packages"])
    mapping = cfg["package-dir"]
    found = set()
    for top, folder in (("ssb", "ssb"), ("ssb.tasks", "tasks"), ("ssb.adapters", "adapters")):
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            name = ".".join([top, *rel.parts]) if rel.parts else top
            found.add(name)
    assert found == listed, f"packages missing from pyproject: {found - listed}; listed but absent: {listed - found}"
    for pkg in listed:
        assert (_folder_of(pkg, mapping) / "__init__.py").is_file(), pkg


@pytest.mark.slow
def test_wheel_has_only_ssb_top_level(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("ssb-*.whl"))
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist() if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"ssb"}, tops
    names = zipfile.ZipFile(wheel).namelist()
    assert "ssb/tasks/__init__.py" in names and "ssb/adapters/__init__.py" in names
