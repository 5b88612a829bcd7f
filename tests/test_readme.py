"""What the README shows works on the README's install: every option of every `ssb` command it
names exists, the API example runs as written, and the main job runs on the real clip."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _commands() -> list[str]:
    """Every inline `ssb ...` command of the README (templates included)."""
    return [m.group(1) for m in re.finditer(r"`(ssb [a-z]+[^`]*)`", README)]


def test_the_readme_shows_the_commands():
    names = {c.split()[1] for c in _commands()}
    assert {"encode", "info", "analyze", "decode", "codecs", "train", "eval", "batch"} <= names


@pytest.mark.parametrize("command", sorted(set(_commands())))
def test_every_option_the_readme_names_exists(command):
    from ssb.cli import build_parser

    words = command.split()
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[words[1]]  # argparse keeps them here
    if words[1] == "batch":
        sub = sub._subparsers._group_actions[0].choices[words[2]]
    known = {o for a in sub._actions for o in a.option_strings}
    for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])\b", command):
        assert flag in known, f"README: `{command}` names {flag}, which `ssb {words[1]}` does not have"


@pytest.mark.teacher
@pytest.mark.media
def test_the_api_example_runs(tmp_path, monkeypatch):
    code = re.search(r"## Using the API\n\n```python\n(.*?)```", README, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    import torch

    torch.set_num_threads(1)
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    assert (tmp_path / "clip.ssb").is_file()


@pytest.mark.teacher
@pytest.mark.media
@pytest.mark.slow
def test_the_main_job_runs_and_writes_outside_the_tree(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                                                            os.environ.get("PATH", "")])}
    run = subprocess.run(["bash", str(ROOT / "scripts" / "main-job.sh"), str(tmp_path)], env=env, capture_output=True,
                         text=True, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    assert "codec 'ssb.video', 40 frames" in out and "tracks (from the index)" in out
    assert "frame 39 detection:" in out and "track 1" in out and "frame 39 motion:" in out
    assert (tmp_path / "vtest.detections.json").is_file() and (tmp_path / "vtest.tracks.txt").read_text()
    assert "read " in run.stderr and "headers and indexes only" in out
    tracked = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                             text=True).stdout
    assert "vtest" not in tracked  # nothing generated in the repository
