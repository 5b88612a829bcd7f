"""What a task head declares, checked: the features it reads and whether it needs group masks.

Every head, SSB's own or a third party's (``ssb.tasks`` entry points), declares two class
attributes the pipeline relies on to decode only what is needed:

``required_features``
    ``{feature name: {"channels": C, "stride": S}}``, e.g. ``{"split": {"channels": 32,
    "stride": 8}}`` for the stride-8 split features every SSB stream carries;
``needs_group_masks``
    ``True`` when the head reads the group (object) masks of the bitstream.

A head is called as ``head(features, image_sizes=[(h, w), ...])`` with ``features`` a mapping of
the decoded tensors, and returns one dict per image.

>>> from ssb.tasks.spec import head_spec
>>> head_spec("detection").required_features          # doctest: +SKIP
{'split': {'channels': 32, 'stride': 8}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ssb.errors import MalformedFieldError, ModelMismatchError
from ssb.tasks import registry

__all__ = ["HeadSpec", "check_features", "declarations", "head_spec"]


@dataclass(frozen=True)
class HeadSpec:
    """A head's declarations and where it comes from (``builtin``, ``registered`` or ``entry point ...``)."""

    name: str
    required_features: dict[str, dict[str, int]]
    needs_group_masks: bool
    source: str


def declarations(head: Any, name: str = "head") -> tuple[dict[str, dict[str, int]], bool]:
    """Validated ``(required_features, needs_group_masks)`` of a head class or instance."""
    feats = getattr(head, "required_features", None)
    field = f"task[{name}].required_features"
    reads_features = "features" in tuple(getattr(head, "needs", ("features",)))
    if not isinstance(feats, Mapping) or (not feats and reads_features):
        raise MalformedFieldError(f"head {name!r} must declare required_features "
                                  "({name: {'channels': C, 'stride': S}})", field=field)
    out: dict[str, dict[str, int]] = {}
    for key, spec in feats.items():
        if not isinstance(key, str) or not isinstance(spec, Mapping):
            raise MalformedFieldError(f"head {name!r}: required_features[{key!r}] must map a name to a dict",
                                      field=field)
        vals = {}
        for attr in ("channels", "stride"):
            v = spec.get(attr)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise MalformedFieldError(f"head {name!r}: required_features[{key!r}][{attr!r}] must be an "
                                          f"integer >= 1, got {v!r}", field=f"{field}.{key}.{attr}")
            vals[attr] = v
        out[key] = vals
    masks = getattr(head, "needs_group_masks", False)
    if not isinstance(masks, bool):
        raise MalformedFieldError(f"head {name!r}: needs_group_masks must be a bool, got {masks!r}",
                                  field=f"task[{name}].needs_group_masks")
    return out, masks


def _source(name: str) -> str:
    if name in registry._REGISTERED:
        return "registered"
    if name in registry.BUILTIN:
        return "builtin"
    ep = registry._entry_points().get(name)
    dist = getattr(getattr(ep, "dist", None), "name", None)
    return f"entry point {ep.value}" + (f" ({dist})" if dist else "") if ep else "unknown"


def head_spec(name: str) -> HeadSpec:
    """The declarations of head ``name`` (imports its module, builds nothing)."""
    feats, masks = declarations(registry.resolve(name), name)
    return HeadSpec(name, feats, masks, _source(name))


def check_features(head: Any, features: Mapping[str, Any], name: str = "head") -> None:
    """Raise :class:`~ssb.errors.ModelMismatchError` unless ``features`` hold what ``head`` declares.

    Each declared tensor must be present, 4-D ``[B, C, h, w]`` with the declared channel count.
    """
    feats, _ = declarations(head, name)
    for key, spec in feats.items():
        t = features.get(key)
        if t is None:
            raise ModelMismatchError(f"head {name!r} needs features {key!r}; the stream gives "
                                     f"{sorted(features)}", field=f"features.{key}")
        shape = tuple(getattr(t, "shape", ()))
        if len(shape) != 4 or shape[1] != spec["channels"]:
            raise ModelMismatchError(f"head {name!r} needs {key!r} with {spec['channels']} channels, got shape "
                                     f"{shape}", field=f"features.{key}")
