"""What a backbone front hands to the codec and the heads, described before anything runs (timm style).

A front's ``feature_info`` lists :class:`FeatureInfo` records (name, channels, reduction), as
timm's ``FeatureInfo`` does: the codec sizes its transforms from it, the group layout takes its
grid from it, heads derive their ``required_features`` from it, and a stream's features are
described by it, so a head knows its input before it sees it.  :data:`FRONTS` names the fronts a
codec can be trained behind; this module imports nothing heavy.

Fronts other than the teacher's (a timm model created with ``features_only=True``:
:mod:`ssb.adapters.timm`) are described by a card built from the model itself and stored in the
checkpoint of every codec trained behind it (:meth:`FrontCard.to_dict`), so a reader learns the
features' channels, reduction and grid from the checkpoint without importing the framework.  Such
a card carries the fingerprint of the front's weights (:func:`weights_fingerprint`): the weights
come from the user, and a stream names the front and that fingerprint it needs.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from typing import Any

from ssb.errors import ModelMismatchError

__all__ = ["FeatureInfo", "FrontCard", "FRONTS", "front_card", "feature_specs", "build_front", "register_front",
           "weights_fingerprint"]


@dataclass(frozen=True)
class FeatureInfo:
    """One feature map a front produces: ``channels`` at ``reduction`` (stride) from the input pixels."""

    name: str
    channels: int
    reduction: int
    module: str = ""

    def spec(self) -> dict[str, int]:
        """The ``{"channels", "stride"}`` form heads declare in ``required_features``."""
        return {"channels": self.channels, "stride": self.reduction}


@dataclass(frozen=True)
class FrontCard:
    """A registered front: how to build it, the square input it takes, what it produces."""

    name: str
    target: str  #: ``"module:Class"``, imported when built
    input_size: int
    feature_info: tuple[FeatureInfo, ...]
    #: keyword arguments of the target's constructor (``(name, value)`` pairs; JSON values)
    options: tuple[tuple[str, Any], ...] = ()
    #: rows and columns of the first feature map when measured (else the SAME rounding of ``grid``)
    out_hw: tuple[int, int] | None = None
    #: fingerprint of the front's weights (:func:`weights_fingerprint`) when they come from the user
    weights: str | None = None

    @property
    def grid(self) -> tuple[int, int]:
        """Rows and columns of the first feature map for the square input (TF SAME rounding up)."""
        if self.out_hw is not None:
            return int(self.out_hw[0]), int(self.out_hw[1])
        n = -(-self.input_size // self.feature_info[0].reduction)
        return n, n

    @property
    def id(self) -> str:
        """The key of the card in :data:`FRONTS`: the name, plus input size and weights for a user's front
        (two codecs behind one architecture with other weights never share a card)."""
        return self.name if self.weights is None else f"{self.name}@{self.input_size}px#{self.weights}"

    def describe(self) -> str:
        """``name (weights FINGERPRINT)``: how errors name a front."""
        return self.name if self.weights is None else f"{self.name} (weights {self.weights})"

    def to_dict(self) -> dict[str, Any]:
        """The card as plain data (stored in codec checkpoints; :meth:`from_dict` reads it back)."""
        return {"name": self.name, "target": self.target, "input_size": int(self.input_size),
                "feature_info": [{"name": f.name, "channels": int(f.channels), "reduction": int(f.reduction),
                                  "module": f.module} for f in self.feature_info],
                "options": {k: list(v) if isinstance(v, tuple) else v for k, v in self.options},
                "out_hw": None if self.out_hw is None else [int(self.out_hw[0]), int(self.out_hw[1])],
                "weights": self.weights}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrontCard:
        """A card from :meth:`to_dict`'s data; a damaged one is refused."""
        try:
            infos = tuple(FeatureInfo(str(f["name"]), int(f["channels"]), int(f["reduction"]),
                                      str(f.get("module", ""))) for f in d["feature_info"])
            options = tuple((str(k), tuple(v) if isinstance(v, list) else v)
                            for k, v in dict(d.get("options") or {}).items())
            out_hw = d.get("out_hw")
            card = cls(str(d["name"]), str(d["target"]), int(d["input_size"]), infos, options,
                       None if out_hw is None else (int(out_hw[0]), int(out_hw[1])),
                       None if d.get("weights") is None else str(d["weights"]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelMismatchError(f"damaged front card: {exc!r}", field="weights.ssb.front_card") from None
        sizes = [card.input_size, *card.grid, *(v for f in infos for v in (f.channels, f.reduction))]
        if not infos or min(sizes) < 1:
            raise ModelMismatchError(f"front card {card.name!r} describes no usable features",
                                     field="weights.ssb.front_card")
        return card


#: The stride-8 cut of the COCO SSD-MobileNetV2 teacher (ssb.backbones.ssd_mobilenet_v2).
SSD_MBV2_S8 = FrontCard("ssd-mbv2.s8", "ssb.backbones.ssd_mobilenet_v2:SSDMobileNetV2Front", 300,
                        (FeatureInfo("split", 32, 8, "blocks.5"),))
FRONTS: dict[str, FrontCard] = {SSD_MBV2_S8.name: SSD_MBV2_S8}


def register_front(card: FrontCard) -> FrontCard:
    """Make ``card`` known under :attr:`FrontCard.id` (a card registered already under that id stays,
    if it describes the same front); returns the registered card."""
    known = FRONTS.get(card.id)
    if known is None:
        FRONTS[card.id] = card
        return card
    if (known.feature_info, known.grid, known.target) != (card.feature_info, card.grid, card.target):
        raise ModelMismatchError(f"front {card.id!r} is registered already with other features "
                                 f"({known.feature_info}, grid {known.grid})", field="front")
    return known


def weights_fingerprint(state_dict) -> str:
    """First 16 hex digits of a SHA-256 over a state dict's tensors (names, dtypes, shapes, values; the
    batch-norm counters, which change no output, left out): equal for equal weights, whatever file
    format they came in."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        if key.endswith("num_batches_tracked"):
            continue
        t = state_dict[key].detach().cpu().contiguous()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def front_card(name: str) -> FrontCard:
    card = FRONTS.get(name)
    if card is None:
        hint = ("; a timm front is registered by the checkpoint of a codec trained behind it, or by "
                "ssb.adapters.timm.timm_front(name, weights)") if name.startswith("timm:") else ""
        raise ModelMismatchError(f"unknown front {name!r} (known: {', '.join(sorted(FRONTS))}){hint}", field="front")
    return card


def feature_specs(infos) -> dict[str, dict[str, int]]:
    """``{name: {"channels", "stride"}}`` of a front's feature infos (a head's ``required_features``)."""
    return {f.name: f.spec() for f in infos}


def build_front(name: str, **kwargs):
    """The front module of a registered front (``pretrained=True``: its weights, the teacher's or the
    user's); the card's ``options`` are passed to its constructor before ``kwargs``."""
    card = front_card(name)
    module, _, attr = card.target.partition(":")
    return getattr(importlib.import_module(module), attr)(**{**dict(card.options), **kwargs})
