"""ssb.tasks registry: builtins, @register, entry points, lazy torch import."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import metadata

import pytest

import ssb.tasks
from ssb.errors import SSBError
from ssb.tasks import registry


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTERED", {})
    return registry


def test_public_api():
    assert set(ssb.tasks.__all__) >= {"create", "list", "register"}
    assert ssb.tasks.list is registry.list_tasks
    assert "detection" in ssb.tasks.list()


def test_importing_ssb_tasks_does_not_import_torch():
    code = "import sys, ssb.tasks; ssb.tasks.list(); assert 'torch' not in sys.modules, 'torch imported'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_builtins_are_a_static_table_of_lazy_targets():
    for name, target in registry.BUILTIN.items():
        module, _, attr = target.partition(":")
        assert module.startswith("ssb.tasks.") and attr, (name, target)


def test_unknown_task_is_an_ssb_error_naming_the_choices(clean_registry):
    with pytest.raises(SSBError, match="unknown task head 'nope'.*detection") as info:
        ssb.tasks.create("nope")
    assert isinstance(info.value, registry.UnknownTaskError)
    assert info.value.field == "task"


def test_register_decorator_and_create_passes_config(clean_registry):
    @ssb.tasks.register("toy")
    class Toy:
        def __init__(self, *, width=1):
            self.width = width

    assert "toy" in ssb.tasks.list()
    head = ssb.tasks.create("toy", width=7)
    assert isinstance(head, Toy) and head.width == 7
    with pytest.raises(SSBError):
        ssb.tasks.register("")


def test_register_overrides_builtin(clean_registry):
    sentinel = object()
    ssb.tasks.register("detection")(lambda **cfg: sentinel)
    assert ssb.tasks.create("detection") is sentinel


class _FakeEntryPoint:
    def __init__(self, name, obj):
        self.name, self.obj, self.loaded = name, obj, 0

    def load(self):
        self.loaded += 1
        return self.obj


def test_entry_points_are_listed_and_loaded_lazily(clean_registry, monkeypatch):
    ep = _FakeEntryPoint("thirdparty", lambda **cfg: ("made", cfg))
    seen_groups = []

    def fake_entry_points(*, group):
        seen_groups.append(group)
        return [ep]

    monkeypatch.setattr(registry.metadata, "entry_points", fake_entry_points)
    assert ssb.tasks.list() == sorted(set(registry.BUILTIN) | {"thirdparty"})
    assert ep.loaded == 0  # listing does not import the plugin
    assert ssb.tasks.create("thirdparty", k=1) == ("made", {"k": 1})
    assert ep.loaded == 1 and set(seen_groups) == {"ssb.tasks"}


def test_builtin_wins_over_entry_point_of_same_name(clean_registry, monkeypatch):
    ep = _FakeEntryPoint("detection", lambda **cfg: "plugin")
    monkeypatch.setattr(registry.metadata, "entry_points", lambda *, group: [ep])
    assert registry.resolve("detection") is not ep.obj
    assert ep.loaded == 0


def test_real_distribution_entry_point_is_discovered(clean_registry, tmp_path, monkeypatch):
    """An installed-looking distribution (dist-info on sys.path) adds a head without mocks."""
    (tmp_path / "ssb_toy_plugin.py").write_text(
        textwrap.dedent(
            """
            class ToyHead:
                required_features = {"split": {"channels": 32, "stride": 8}}
                def __init__(self, **cfg):
                    self.cfg = cfg
            """
        )
    )
    info = tmp_path / "ssb_toy_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ssb-toy-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[ssb.tasks]\ntoyhead = ssb_toy_plugin:ToyHead\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert any(ep.name == "toyhead" for ep in metadata.entry_points(group="ssb.tasks"))
    assert "toyhead" in ssb.tasks.list()
    head = ssb.tasks.create("toyhead", score_thresh=0.5)
    assert type(head).__name__ == "ToyHead" and head.cfg == {"score_thresh": 0.5}
    monkeypatch.delitem(sys.modules, "ssb_toy_plugin", raising=False)
