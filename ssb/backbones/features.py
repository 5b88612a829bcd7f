"""What a backbone front hands to the codec and the heads, described before anything runs (timm style).

A front's ``feature_info`` lists :class:`FeatureInfo` records (name, channels, reduction), as
timm's ``FeatureInfo`` does: the codec sizes its transforms from it, the group layout takes its
grid from it, heads derive their ``required_features`` from it, and a stream's features are
described by it, so a head knows its input before it sees it.  :data:`FRONTS` names the fronts a
codec can be trained behind; this module imports nothing heavy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ssb.errors import ModelMismatchError

__all__ = ["FeatureInfo", "FrontCard", "FRONTS", "front_card", "feature_specs", "build_front"]


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

    @property
    def grid(self) -> tuple[int, int]:
        """Rows and columns of the first feature map for the square input (TF SAME rounding up)."""
        n = -(-self.input_size // self.feature_info[0].reduction)
        return n, n


#: The stride-8 cut of the COCO SSD-MobileNetV2 teacher (ssb.backbones.ssd_mobilenet_v2).
SSD_MBV2_S8 = FrontCard("ssd-mbv2.s8", "ssb.backbones.ssd_mobilenet_v2:SSDMobileNetV2Front", 300,
                        (FeatureInfo("split", 32, 8, "blocks.5"),))
FRONTS: dict[str, FrontCard] = {SSD_MBV2_S8.name: SSD_MBV2_S8}


def front_card(name: str) -> FrontCard:
    card = FRONTS.get(name)
    if card is None:
        raise ModelMismatchError(f"unknown front {name!r} (known: {', '.join(sorted(FRONTS))})", field="front")
    return card


def feature_specs(infos) -> dict[str, dict[str, int]]:
    """``{name: {"channels", "stride"}}`` of a front's feature infos (a head's ``required_features``)."""
    return {f.name: f.spec() for f in infos}


def build_front(name: str, **kwargs):
    """The front module of a registered front (its pretrained weights by default)."""
    card = front_card(name)
    module, _, attr = card.target.partition(":")
    return getattr(importlib.import_module(module), attr)(**kwargs)
