"""Which heads run, in which order, on what: checked against a stream before anything is decoded.

A head may consume other heads' outputs (``consumes``: ``{"detection": "detections"}``, the
upstream task and the keyword it arrives by; a tuple of task names means keyword = name): the
plan adds an upstream head the caller did not ask for (its output is then not reported) and
orders the heads so every one runs after what it consumes.  Each head's declarations
(:mod:`ssb.tasks.spec`) are checked against what the stream's decoder provides: its features
(name, channels, stride), the kinds of input (``needs``: ``"features"``, ``"motion"``,
``"objects"``), and the codec a head's weights were trained behind (``head.behind``).  A head with
an ``adapt(provides)`` method is told first what the stream provides, so it can pick its input
(the pose and mask heads read object-scale units when a stream has them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ssb.errors import MalformedFieldError, ModelMismatchError
from ssb.tasks import registry
from ssb.tasks.spec import declarations

__all__ = ["PlannedHead", "plan_heads", "consumed", "needs_of"]


@dataclass
class PlannedHead:
    name: str
    head: Any
    output: bool  #: asked for by the caller (else run only for a head that consumes it)
    inputs: dict[str, str]  #: upstream task -> keyword


def consumed(head: Any) -> dict[str, str]:
    """``{upstream task: keyword}`` of a head's ``consumes`` declaration."""
    c = getattr(head, "consumes", ()) or ()
    if isinstance(c, Mapping):
        return {str(k): str(v) for k, v in c.items()}
    return {str(t): str(t) for t in c}


def needs_of(head: Any) -> frozenset[str]:
    """What a head reads from the decoder: ``{"features"}`` unless it declares ``needs``."""
    return frozenset(getattr(head, "needs", ("features",)))


def plan_heads(tasks: Iterable[str], *, options: Mapping[str, dict] | None = None, heads: Mapping[str, Any] = (),
               feature_info=(), provides: Iterable[str] = ("features",), model_id: str | None = None
               ) -> list[PlannedHead]:
    """Build (or take from ``heads``) every head the tasks need and order them.

    ``feature_info``: the decoder's :class:`~ssb.backbones.features.FeatureInfo` records;
    ``provides``: what it can decode; ``model_id``: the codec id of the stream.
    """
    wanted = [t for t in dict.fromkeys(tasks)]
    if not wanted:
        raise MalformedFieldError("no task given", field="task")
    built: dict[str, Any] = dict(heads or {})
    provides = frozenset(provides)
    opts = dict(options or {})
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "open":
            raise MalformedFieldError(f"heads consume each other in a cycle: {' -> '.join(chain + (name,))}",
                                      field="task")
        state[name] = "open"
        if name not in built:
            built[name] = registry.create(name, **opts.get(name, {}))
        if callable(getattr(built[name], "adapt", None)):
            built[name].adapt(provides)  # a head that can read several inputs picks the stream's best
        for up in consumed(built[name]):
            visit(up, chain + (name,))
        state[name] = "done"
        order.append(name)

    for t in wanted:
        visit(t, ())
    available = {f.name: f for f in feature_info}
    plan = []
    for name in order:
        head = built[name]
        check_head(name, head, available, provides, model_id)
        plan.append(PlannedHead(name, head, name in wanted, consumed(head)))
    return plan


def check_head(name: str, head: Any, available: Mapping[str, Any], provides: frozenset[str],
               model_id: str | None) -> None:
    """Refuse (before decoding) a head the stream cannot feed."""
    needs = needs_of(head)
    missing = needs - provides
    if missing:
        raise ModelMismatchError(f"head {name!r} needs {sorted(missing)}, which this stream's decoder does not "
                                 f"provide (it provides {sorted(provides)})", field=f"task[{name}]")
    if "features" in needs:
        feats, _ = declarations(head, name)
        for key, spec in feats.items():
            info = available.get(key)
            if info is None:
                raise ModelMismatchError(f"head {name!r} needs features {key!r}; the stream gives "
                                         f"{sorted(available) or 'none'}", field=f"task[{name}].required_features")
            if (info.channels, info.reduction) != (spec["channels"], spec["stride"]):
                raise ModelMismatchError(f"head {name!r} needs {key!r} with {spec['channels']} channels at stride "
                                         f"{spec['stride']}; the stream's are {info.channels} at {info.reduction}",
                                         field=f"task[{name}].required_features.{key}")
    behind = getattr(head, "behind", None)
    if behind is not None and behind != model_id:
        coded = f"coded by {model_id}" if model_id else "not coded by a model this head knows"
        raise ModelMismatchError(f"head {name!r} was trained behind codec {behind}, but the stream was {coded}: use "
                                 f"weights trained behind {model_id or 'its codec'}", field=f"task[{name}].weights")
