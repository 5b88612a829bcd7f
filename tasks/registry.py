"""The task-head registry (timm style): ``create(name, **cfg)``, ``list_tasks()``, ``@register``.

Three sources, looked up in this order:

1. heads registered at run time with the :func:`register` decorator;
2. SSB's own heads, listed in the static :data:`BUILTIN` table as ``"module:attr"`` strings
   and imported only when created (nothing registers itself by import side effect, and this
   module never imports torch);
3. third-party heads published through the ``ssb.tasks`` entry-point group, e.g. in a
   ``pyproject.toml``: ``[project.entry-points."ssb.tasks"] mytask = "mypkg.heads:MyHead"``.

A head is any callable returning the head object (usually an ``nn.Module`` class); it is
called with the keyword configuration given to :func:`create`.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any, Callable

from ssb.errors import SSBError

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "UnknownTaskError", "create", "list_tasks", "register", "resolve"]

#: Entry-point group that third-party packages use to add heads.
ENTRY_POINT_GROUP = "ssb.tasks"
#: SSB's own heads: name -> "module:attribute", resolved lazily.
BUILTIN: dict[str, str] = {
    "detection": "ssb.tasks.detection:DetectionHead",
    "pose": "ssb.tasks.pose:PoseHead",
    "segmentation": "ssb.tasks.segmentation:SegmentationHead",
    "motion": "ssb.tasks.motion:MotionHead",
    "action": "ssb.tasks.action:ActionHead",
}
_REGISTERED: dict[str, Callable[..., Any]] = {}


class UnknownTaskError(SSBError):
    """No head of that name in the registry, the builtins or the ``ssb.tasks`` entry points."""


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator adding a head factory under ``name`` (overrides a builtin or entry point)."""
    if not isinstance(name, str) or not name:
        raise SSBError("a task name must be a non-empty string", field="name")

    def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTERED[name] = factory
        return factory

    return deco


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _load_target(target: str) -> Callable[..., Any]:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def resolve(name: str) -> Callable[..., Any]:
    """The factory (class) of head ``name``, importing its module if needed."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in BUILTIN:
        return _load_target(BUILTIN[name])
    eps = _entry_points()
    if name in eps:
        return eps[name].load()
    available = ", ".join(list_tasks()) or "none"
    raise UnknownTaskError(f"unknown task head {name!r}; available: {available}", field="task")


def create(name: str, **cfg: Any) -> Any:
    """Build head ``name`` with keyword configuration ``cfg`` (e.g. ``score_thresh=0.5``)."""
    return resolve(name)(**cfg)


def list_tasks() -> list[str]:
    """Sorted names of every available head (registered, builtin and entry points)."""
    return sorted(set(_REGISTERED) | set(BUILTIN) | set(_entry_points()))
