"""Bring your own backbone: a timm model created with ``features_only=True`` as the codec's front.

A front is named ``timm:MODEL`` or ``timm:MODEL:INDEX``: the timm model ``MODEL`` cut after the
feature level ``INDEX`` of its ``feature_info`` (an ``out_indices`` entry; negative counts from the
end).  Without ``INDEX`` the cut is the deepest level at the smallest reduction of at least 8 (the
stride-8 level when the model has one, as the teacher's split).  The canonical name, the one
checkpoints and streams record, always has the index (``timm:resnet18:2``).

The level's ``feature_info`` (channels, reduction, module), the square input size (default: the
model's ``pretrained_cfg``) and the measured output grid make the front's
:class:`~ssb.backbones.features.FrontCard`; the codec is sized from it, heads check their
``required_features`` against it, and it is stored in every codec checkpoint trained behind the
front, so decoding needs neither timm nor the front's weights.

Weights always come from the user: a state dict file (``torch.save(model.state_dict(), PATH)`` of the
full timm model, or of the features-only model; a ``{"state_dict": ...}`` or ``{"model": ...}``
checkpoint works too).  Models are created with ``pretrained=False``: nothing is downloaded.  The
card holds the SHA-256 fingerprint of the weights the front actually uses (the levels up to the cut;
:func:`~ssb.backbones.features.weights_fingerprint`), and the weights are checked against it whenever
the front is built again (at encoding).  The path recorded at training is used then, unless
``$SSB_FRONT_WEIGHTS`` names another file (the same weights, moved).

>>> card, front = timm_front("timm:resnet18", "resnet18.pth")       # doctest: +SKIP
>>> card.feature_info[0]                                             # doctest: +SKIP
FeatureInfo(name='split', channels=128, reduction=8, module='layer2')

timm and torch are imported when a front is built, not with this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssb._optional import require
from ssb.backbones.features import FeatureInfo, FrontCard, register_front, weights_fingerprint
from ssb.errors import MalformedFieldError, ModelMismatchError

__all__ = ["PREFIX", "WEIGHTS_ENV", "TimmFront", "parse_name", "resolve", "timm_front", "load_state", "is_timm"]

PREFIX = "timm:"
#: ``ssb.adapters.timm:TimmFront``: how a card names its constructor
TARGET = f"{__name__}:TimmFront"
#: environment variable naming the front's weights file when it is no longer where training read it
WEIGHTS_ENV = "SSB_FRONT_WEIGHTS"
#: the feature name the codec and the heads know the front's output by
FEATURE_NAME = "split"
_WRAPPERS = ("module.", "net.", "model.")  # DataParallel, TimmFront, timm's getter wrappers


def _timm():
    return require("timm", "timm backbones (--front timm:NAME)")


def _torch():
    return require("torch", "timm backbones")


def is_timm(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def parse_name(name: str) -> tuple[str, int | None]:
    """``"timm:MODEL[:INDEX]"`` -> ``(MODEL, INDEX or None)``; hub and file names are refused (they download)."""
    if not is_timm(name):
        raise MalformedFieldError(f"a timm front is named timm:MODEL[:INDEX], got {name!r}", field="front")
    parts = name[len(PREFIX):].split(":")
    model = parts[0]
    if not model or len(parts) > 2 or model.startswith(("hf-hub", "hf_hub", "local-dir")) or "/" in model:
        raise MalformedFieldError(f"{name!r}: expected timm:MODEL or timm:MODEL:INDEX with a timm model name (hub "
                                  "names are not accepted: the weights come from --front-weights)", field="front")
    if len(parts) == 1:
        return model, None
    try:
        return model, int(parts[1])
    except ValueError:
        raise MalformedFieldError(f"{name!r}: the feature level INDEX must be an integer, got {parts[1]!r}",
                                  field="front") from None


def _levels(model: str) -> tuple[list[dict], dict]:
    """Every feature level of a timm model (``feature_info``) and its ``pretrained_cfg``."""
    timm = _timm()
    if not timm.is_model(model):
        close = sorted(timm.list_models(f"*{model}*"))[:8]
        similar = f" (similar: {', '.join(close)})" if close else ""
        raise ModelMismatchError(f"timm has no model {model!r}{similar}", field="front")
    try:
        net = timm.create_model(model, pretrained=False, features_only=True)
    except Exception as exc:  # a model without a features_only mode
        raise ModelMismatchError(f"timm model {model!r} cannot be created with features_only=True: {exc}",
                                 field="front") from exc
    info = net.feature_info
    levels = [dict(d) for d in getattr(info, "info", None) or info]
    return levels, dict(getattr(net, "pretrained_cfg", None) or {})


def _default_index(levels: Sequence[dict]) -> int:
    """The deepest level at the smallest reduction >= 8 (else the deepest level)."""
    coarse = [int(d["reduction"]) for d in levels if int(d["reduction"]) >= 8]
    if not coarse:
        return len(levels) - 1
    want = min(coarse)
    return max(i for i, d in enumerate(levels) if int(d["reduction"]) == want)


def resolve(name: str) -> tuple[str, int, dict, dict]:
    """``(model, index, level info, pretrained_cfg)`` of a front name; the canonical name is
    ``f"timm:{model}:{index}"``."""
    model, index = parse_name(name)
    levels, cfg = _levels(model)
    if index is None:
        index = _default_index(levels)
    elif not -len(levels) <= index < len(levels):
        reductions = [int(d["reduction"]) for d in levels]
        raise MalformedFieldError(f"{name!r}: timm model {model} has feature levels 0..{len(levels) - 1} "
                                  f"(reductions {reductions}), not {index}", field="front")
    index %= len(levels)
    return model, index, levels[index], cfg


def load_state(path: str | os.PathLike) -> dict:
    """The tensors of a state dict file (``torch.load(..., weights_only=True)``: no code runs)."""
    torch = _torch()
    p = Path(path)
    if not p.is_file():
        raise ModelMismatchError(f"no front weights at {p}", field="front_weights")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelMismatchError(f"cannot read front weights {p} as a state dict: {exc}",
                                 field="front_weights") from exc
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelMismatchError(f"{p} is not a state dict (a mapping of parameter names to tensors)",
                                 field="front_weights")
    return dict(obj)


def _strip(key: str) -> str:
    while key.startswith(_WRAPPERS):
        key = key[key.index(".") + 1:]
    return key


def _norm(key: str) -> str:
    return _strip(key).replace(".", "_")


def _match(target: Mapping[str, Any], given: Mapping[str, Any], *, where: str, what: str) -> dict:
    """``given`` renamed to ``target``'s keys: exact names first, then timm's features-only renaming
    (``stages.0`` -> ``stages_0``, wrapper prefixes); shapes must agree; extra keys (the classifier,
    the levels after the cut) are ignored."""
    by_norm: dict[str, list[str]] = {}
    for k in given:
        by_norm.setdefault(_norm(k), []).append(k)
    out, missing, wrong = {}, [], []
    for k, t in target.items():
        shape = tuple(t.shape)
        named = [c for c in dict.fromkeys((k, _strip(k))) if c in given]
        alike = named or by_norm.get(_norm(k), [])
        fits = [c for c in alike if tuple(given[c].shape) == shape]
        if fits and (named or len(fits) == 1):
            out[k] = given[fits[0]]
        elif alike:
            wrong.append(k)
        else:
            missing.append(k)
    if missing or wrong:
        def some(keys):
            return ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({some(missing)})")
        if wrong:
            parts.append(f"{len(wrong)} of another shape or ambiguous ({some(wrong)})")
        raise ModelMismatchError(f"{where} does not hold the weights of {what}: {'; '.join(parts)}",
                                 field="front_weights")
    return out


def _build_front_class():
    torch = _torch()

    class TimmFront(torch.nn.Module):
        """Pixels to one feature level of a timm ``features_only`` model (``[B, C, h, w]``), with its
        own :meth:`preprocess` (square resize to ``input_size``, the model's mean and std).

        ``pretrained=True`` loads the user's weights (``weights``, or ``$SSB_FRONT_WEIGHTS``) and,
        with ``fingerprint``, refuses any other weights.  Without it the weights are timm's random
        initialisation: nothing is downloaded either way.  Always in eval mode, frozen.
        """

        def __init__(self, model: str, index: int, input_size: int, mean: Sequence[float] = (0.5, 0.5, 0.5),
                     std: Sequence[float] = (0.5, 0.5, 0.5), channels_last: bool = False, weights: str | None = None,
                     fingerprint: str | None = None, pretrained: bool = False):
            super().__init__()
            self.model_name, self.index, self.input_size = str(model), int(index), int(input_size)
            self.name = f"{PREFIX}{self.model_name}:{self.index}"
            self.channels_last = bool(channels_last)
            self.net = _timm().create_model(self.model_name, pretrained=False, features_only=True,
                                            out_indices=(self.index,))
            for key, v in (("mean", mean), ("std", std)):  # not in the state dict: the options say them
                self.register_buffer(key, torch.tensor([float(x) for x in v]).reshape(1, 3, 1, 1), persistent=False)
            self.weights_path: str | None = None
            if pretrained:
                self.load_weights(os.environ.get(WEIGHTS_ENV) or weights, fingerprint=fingerprint, recorded=weights)
            self.eval().requires_grad_(False)

        @property
        def fingerprint(self) -> str:
            return weights_fingerprint(self.net.state_dict())

        def load_weights(self, path, *, fingerprint: str | None = None, recorded: str | None = None) -> str:
            """Load a state dict file into the features-only model; returns the weights' fingerprint."""
            if path is None:
                raise ModelMismatchError(f"front {self.name} needs its weights: give the state dict file "
                                         f"(--front-weights PATH, or ${WEIGHTS_ENV})", field="front_weights")
            if not Path(path).is_file():
                moved = (f" (the path recorded when the codec was trained; set ${WEIGHTS_ENV}=PATH to the same "
                         "weights elsewhere)") if str(path) == str(recorded) else ""
                raise ModelMismatchError(f"no weights for front {self.name} at {path}{moved}", field="front_weights")
            state = _match(self.net.state_dict(), load_state(path), where=str(path),
                           what=f"timm model {self.model_name} up to feature level {self.index}")
            self.net.load_state_dict(state)
            have = self.fingerprint
            if fingerprint is not None and have != fingerprint:
                raise ModelMismatchError(f"the weights at {path} are front {self.name} with weights {have}, but the "
                                         f"codec was trained behind {self.name} with weights {fingerprint}: give "
                                         f"those weights (${WEIGHTS_ENV})", field="front_weights")
            self.weights_path = str(Path(path).resolve())
            return have

        def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
            """Uint8 RGB ``HxWx3`` images to the model's input ``[B, 3, S, S]`` (bilinear resize, mean/std)."""
            cv2 = require("cv2", "resizing images for a timm front")
            if len(images) == 0:
                raise MalformedFieldError("no images to preprocess", field="images")
            s = self.input_size
            batch = np.empty((len(images), s, s, 3), dtype=np.uint8)
            for i, img in enumerate(images):
                img = np.asarray(img)
                if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 1:
                    raise MalformedFieldError(f"expected an HxWx3 uint8 RGB image, got shape {img.shape} dtype "
                                              f"{img.dtype}", field=f"images[{i}]")
                batch[i] = cv2.resize(img, (s, s), interpolation=cv2.INTER_LINEAR)
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
            return (x - self.mean) / self.std

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.net(x)
            out = out[0] if isinstance(out, (list, tuple)) else out
            return out.permute(0, 3, 1, 2).contiguous() if self.channels_last else out

    TimmFront.__module__ = __name__
    return TimmFront


def __getattr__(name: str):
    if name == "TimmFront":
        cls = _build_front_class()
        globals()["TimmFront"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def timm_front(name: str, weights: str | os.PathLike, *, input_size: int | None = None,
               register: bool = True) -> tuple[FrontCard, Any]:
    """The card of front ``name`` with the user's ``weights`` (a state dict file) and the front itself.

    ``input_size``: side of the square input (default: the model's ``pretrained_cfg`` input size).
    The card's grid is measured by running the front once; ``register`` makes the card known to
    :func:`~ssb.backbones.features.front_card` under its id.
    """
    torch = _torch()
    model, index, level, cfg = resolve(name)
    size = int(input_size or (cfg.get("input_size") or (3, 224, 224))[-1])
    if size < 8:
        raise MalformedFieldError(f"the front's input size must be at least 8 pixels, got {size}",
                                  field="input_size")
    mean = tuple(float(v) for v in cfg.get("mean") or (0.485, 0.456, 0.406))
    std = tuple(float(v) for v in cfg.get("std") or (0.229, 0.224, 0.225))
    channels, reduction = int(level["num_chs"]), int(level["reduction"])
    front = __getattr__("TimmFront")(model, index, size, mean, std)
    path = str(Path(weights).resolve())
    fingerprint = front.load_weights(path)
    with torch.no_grad():
        try:
            out = front.net(torch.zeros(1, 3, size, size))
        except Exception as exc:
            raise MalformedFieldError(f"timm model {model} does not take a {size}x{size} input: {exc}",
                                      field="input_size") from exc
    out = out[0] if isinstance(out, (list, tuple)) else out
    if out.ndim != 4 or channels not in (out.shape[1], out.shape[-1]):
        raise ModelMismatchError(f"timm model {model} level {index} gave a {tuple(out.shape)} output, not "
                                 f"{channels} channels as its feature_info says", field="front")
    channels_last = out.shape[1] != channels
    front.channels_last = channels_last
    hw = tuple(int(v) for v in (out.shape[1:3] if channels_last else out.shape[2:4]))
    card = FrontCard(f"{PREFIX}{model}:{index}", TARGET, size,
                     (FeatureInfo(FEATURE_NAME, channels, reduction, str(level.get("module", ""))),),
                     options=(("model", model), ("index", index), ("input_size", size), ("mean", mean), ("std", std),
                              ("channels_last", channels_last), ("weights", path), ("fingerprint", fingerprint)),
                     out_hw=hw, weights=fingerprint)
    if register:
        card = register_front(card)
    return card, front
