"""The model zoo: one table of published models, one loader, identities stored in the checkpoints.

Every model SSB ships or trains is a *checkpoint* whose ``"ssb"`` block says what it is::

    {"ssb": {"format": 1, "kind": "codec", "name": "omni-ssd-mbv2.s8", "version": 1,
             "behind": None, "front": "ssd-mbv2.s8", "teacher": "2a8d8a89d695842e"},
     "config": {...}, "state_dict": {...}, "meta": {...}}

``kind`` says which builder makes the module; ``name@version`` is the model's id; ``behind`` is
the id of the codec a head, fusion or pixel decoder was trained behind (its input distribution).
A codec trained behind a user's front (``ssb train --front timm:NAME``) also records the front's
``"front_weights"`` fingerprint and ``"front_card"`` (its features and grid,
:class:`ssb.backbones.features.FrontCard`): :func:`load` registers the card, so decoding needs
neither the front nor its framework, and the streams the codec writes name that front.
A stream names the exact id of the codec that coded it (sequence metadata ``"model"``), and
:data:`ZOO` keeps every published version addressable by that id: retraining publishes a new
version, it never replaces one, so a file coded years ago decodes with the weights it was coded
with.  Checkpoints of release 0.1 (no ``"ssb"`` block) are recognised by their ``model_id`` and,
for models trained behind a codec, by the SHA-256 of the 0.1 codec file they recorded.

>>> codec = load("codec")                                   # doctest: +SKIP
>>> head_ckpt = read("pose", behind=codec.identity.id)       # doctest: +SKIP
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssb.errors import ModelMismatchError

__all__ = ["ModelCard", "Identity", "ZOO", "DEFAULTS", "card", "read", "load", "save", "weights_dir",
           "teacher_fingerprint", "next_version", "MODEL_ID"]

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class Identity:
    """What a checkpoint says it is."""

    kind: str
    name: str
    version: int
    behind: str | None = None

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class ModelCard:
    """A published model: where its weights are and how to build it."""

    kind: str
    name: str
    version: int
    file: str  #: weights file in ``ssb/weights``
    builder: str  #: ``"module:function"`` taking (config dict) -> module (imported when loaded)
    behind: str | None = None  #: the codec id it was trained behind
    front: str | None = None  #: codecs: the backbone front whose split features they code
    aliases: tuple[str, ...] = ()  #: ids streams and checkpoints of release 0.1 used
    legacy_sha256: str | None = None  #: SHA-256 of the 0.1 file, which other 0.1 checkpoints recorded
    levels: int | None = None  #: codecs: quality levels (checked against the checkpoint when it loads)

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"


_CODEC_V1 = "omni-ssd-mbv2.s8@1"
ZOO: dict[str, ModelCard] = {c.id: c for c in (
    ModelCard("codec", "omni-ssd-mbv2.s8", 1, "omni_ssd_s8.pt", "ssb.codec.feature_codec:build",
              front="ssd-mbv2.s8", aliases=("omni-ssd-mbv2.s8",), levels=6,
              legacy_sha256="58be3d803791cae823765533c9bc9779edccc16d219d665bb33a230dd039ea7d"),
    ModelCard("pixels", "pixel-synthesis.s8", 1, "pixel_s8.pt", "ssb.codec.pixels:build", behind=_CODEC_V1,
              aliases=("pixel-synthesis.s8",)),
    ModelCard("fusion", "group-fusion.s8", 1, "fusion_s8.pt", "ssb.codec.fusion:build", behind=_CODEC_V1,
              aliases=("group-fusion.s8",)),
    ModelCard("pose", "pose-roi.s8", 1, "pose_s8.pt", "ssb.tasks.pose:build_net", behind=_CODEC_V1,
              aliases=("pose-roi.s8",)),
    ModelCard("segmentation", "mask-roi.s8", 1, "seg_s8.pt", "ssb.tasks.segmentation:build_net",
              behind=_CODEC_V1, aliases=("mask-roi.s8",)),
    ModelCard("pose_object", "pose-object.s8", 1, "pose_object_s8.pt", "ssb.tasks.pose:build_net",
              behind=_CODEC_V1),
    ModelCard("segmentation_object", "mask-object.s8", 1, "seg_object_s8.pt", "ssb.tasks.segmentation:build_net",
              behind=_CODEC_V1),
    ModelCard("video", "ssvc-residual.s8", 1, "video_s8.pt", "ssb.codec.video.residual:build", behind=_CODEC_V1),
    ModelCard("action", "action-motion.s8", 1, "action_s8.pt", "ssb.tasks.action:build_net", behind=_CODEC_V1),
)}
#: The model of each kind used when none is named.
DEFAULTS: dict[str, str] = {c.kind: c.id for c in ZOO.values()}
#: The default codec's id, written in every stream it codes.
MODEL_ID = DEFAULTS["codec"]
_ALIASES = {a: c.id for c in ZOO.values() for a in (c.aliases + (c.id,))}
_LEGACY_SHA = {c.legacy_sha256: c.id for c in ZOO.values() if c.legacy_sha256}


def next_version(name: str) -> int:
    """The version a newly trained model of ``name`` gets: one past every published one."""
    return 1 + max((c.version for c in ZOO.values() if c.name == name), default=0)


def weights_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "weights"


def known(model_id: str) -> bool:
    """Whether ``model_id`` (an id or a 0.1 alias) is a published model of this release."""
    return str(model_id) in _ALIASES


def card(model_id: str, kind: str | None = None) -> ModelCard:
    """The card of a model id (``name@version``, or a 0.1 alias); a clear error for an unknown one."""
    cid = _ALIASES.get(str(model_id))
    if cid is None:
        known = ", ".join(sorted(c for c in ZOO if kind is None or ZOO[c].kind == kind))
        raise ModelMismatchError(f"model {model_id!r} is not in this release's zoo (known: {known}); a newer "
                                 "release of ssb may know it", field="model")
    c = ZOO[cid]
    if kind is not None and c.kind != kind:
        raise ModelMismatchError(f"{model_id!r} is a {c.kind} model, not a {kind} model", field="model")
    return c


@functools.lru_cache(maxsize=None)
def teacher_fingerprint() -> str:
    """First 16 hex digits of the SHA-256 of the teacher's frozen graph."""
    from ssb.backbones.teacher_weights import teacher_sha256
    from ssb.resources import ssd_mobilenet_v2_files

    return teacher_sha256(ssd_mobilenet_v2_files()[0])[:16]


def _identity(ckpt: dict, path: Path) -> Identity:
    block = ckpt.get("ssb")
    if isinstance(block, dict):
        try:
            return Identity(str(block["kind"]), str(block["name"]), int(block["version"]), block.get("behind"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelMismatchError(f"{path} has a damaged identity block: {exc}", field="weights.ssb") from None
    legacy = ckpt.get("model_id")  # a release-0.1 checkpoint
    if legacy in _ALIASES:
        c = ZOO[_ALIASES[legacy]]
        behind = _LEGACY_SHA.get(ckpt.get("codec_sha256")) if "codec_sha256" in ckpt else None
        if "codec_sha256" in ckpt and behind is None:
            behind = f"unknown codec (SHA-256 {str(ckpt.get('codec_sha256'))[:12]})"
        return Identity(c.kind, c.name, c.version, behind)
    raise ModelMismatchError(f"{path} is not an SSB checkpoint (no identity)", field="weights")


def read(kind: str, name_or_path: str | os.PathLike | None = None, *, behind: str | None = None) -> dict:
    """A validated checkpoint dict of ``kind`` with its :class:`Identity` under ``"identity"``.

    ``name_or_path``: a zoo id (``name@version``), a file path, or ``None`` for the default of
    ``kind`` (``$SSB_WEIGHTS`` overrides the default codec).  ``behind``: the codec id the model
    must have been trained behind (refused otherwise).
    """
    import torch

    if name_or_path is None and kind == "codec" and os.environ.get("SSB_WEIGHTS"):
        name_or_path = os.environ["SSB_WEIGHTS"]
    target = name_or_path if name_or_path is not None else DEFAULTS.get(kind)
    if target is None:
        raise ModelMismatchError(f"no default {kind} model in this release", field="weights")
    path = Path(target)
    if str(target) in _ALIASES and not path.is_file():
        path = weights_dir() / card(str(target), kind).file
    if not path.is_file():
        raise ModelMismatchError(f"no {kind} weights at {path} (train them: docs/training.md)", field="weights")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file
        raise ModelMismatchError(f"cannot read {kind} weights {path}: {exc}", field="weights") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ModelMismatchError(f"{path} is not an SSB checkpoint", field="weights")
    ident = _identity(ckpt, path)
    if ident.kind != kind:
        raise ModelMismatchError(f"{path} holds a {ident.kind} model ({ident.id}), not a {kind} model",
                                 field="weights.kind")
    if behind is not None and ident.behind is not None and ident.behind != behind:
        raise ModelMismatchError(f"{path.name} ({ident.id}) was trained behind {ident.behind}, but the features "
                                 f"come from {behind}: use a {kind} model trained behind {behind}",
                                 field="weights.behind")
    return dict(ckpt, identity=ident, path=str(path))


def _builder(kind: str, ckpt: dict):
    cid = _ALIASES.get(ckpt["identity"].id)
    spec = ZOO[cid].builder if cid else next((c.builder for c in ZOO.values() if c.kind == kind), None)
    if spec is None:
        raise ModelMismatchError(f"no builder for {kind} models", field="weights.kind")
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def load(kind: str, name_or_path: str | os.PathLike | None = None, *, behind: str | None = None):
    """The module of a checkpoint, built, loaded and in eval mode; ``module.identity`` says what it is."""
    ckpt = read(kind, name_or_path, behind=behind)
    model = _builder(kind, ckpt)(dict(ckpt.get("config") or {}))
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(state)
    model.eval()
    model.identity = ckpt["identity"]
    model.meta = dict(ckpt.get("meta") or {})
    model.checkpoint_path = ckpt["path"]
    if kind == "codec":
        known = _ALIASES.get(ckpt["identity"].id)
        if known and ZOO[known].levels not in (None, model.config.num_levels):
            raise ModelMismatchError(f"{ckpt['path']} has {model.config.num_levels} quality levels, its card says "
                                     f"{ZOO[known].levels}", field="weights.config")
        model.front_name = (ckpt.get("ssb") or {}).get("front") or (ZOO[known].front if known else None)
        model.front_weights = None
        _register_front(ckpt, model)
        _check_teacher(ckpt, model)
    return model


def _register_front(ckpt: dict, model) -> None:
    """A codec trained behind a user's front (a timm backbone) carries the front's card: register it, so
    the decoder learns the features and grid without the front, and point the codec at it."""
    block = ckpt.get("ssb") or {}
    data = block.get("front_card")
    if data is None:
        return
    from ssb.backbones.features import FrontCard, register_front

    if not isinstance(data, dict):
        raise ModelMismatchError(f"{ckpt['path']} has a damaged front card", field="weights.ssb.front_card")
    card = FrontCard.from_dict(data)
    if card.name != block.get("front") or card.weights != block.get("front_weights"):
        raise ModelMismatchError(f"{ckpt['path']} names front {block.get('front')} (weights "
                                 f"{block.get('front_weights')}) but holds the card of {card.describe()}",
                                 field="weights.ssb.front_card")
    if card.feature_info[0].channels != model.config.in_channels:
        raise ModelMismatchError(f"{ckpt['path']} codes {model.config.in_channels} channels, its front "
                                 f"{card.describe()} gives {card.feature_info[0].channels}",
                                 field="weights.ssb.front_card")
    card = register_front(card)
    model.front_name = card.id
    model.front_weights = card.weights


def _check_teacher(ckpt: dict, model) -> None:
    want = (ckpt.get("ssb") or {}).get("teacher", ckpt.get("teacher"))
    if want is None:
        return
    try:
        have = teacher_fingerprint()
    except Exception:  # the teacher package is absent: decoding does not need it
        return
    if want != have:
        raise ModelMismatchError(f"{ckpt['path']} was trained on teacher {want}, but the installed teacher is {have}",
                                 field="weights.teacher")


def save(path: str | os.PathLike, module, *, kind: str, name: str, version: int, config: dict,
         behind: str | None = None, meta: dict | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``module``'s weights as a checkpoint with its identity (atomically)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    block = {"format": CHECKPOINT_FORMAT, "kind": kind, "name": name, "version": int(version), "behind": behind}
    block.update(extra or {})
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"ssb": block, "config": dict(config), "state_dict": state, "meta": dict(meta or {})}, tmp)
    tmp.replace(path)
    return path
