"""Teacher network pieces cut at a split point (torch; imported lazily).

* :mod:`ssb.backbones.ssd_mobilenet_v2` -- the COCO SSD-MobileNetV2 teacher rebuilt in
  PyTorch: :func:`preprocess`, :class:`SSDMobileNetV2Front` (pixels -> stride-8 split
  features), :class:`SSDMobileNetV2Tail` (split features -> the six SSD feature maps).
* :mod:`ssb.backbones.teacher_weights` -- :func:`load_teacher_state`, the teacher's weights
  converted once from ``cv2.dnn`` and cached under ``$SSB_CACHE``.
* :mod:`ssb.backbones.features` -- what a front hands on (:class:`FeatureInfo`), the cards of the
  fronts a codec can be trained behind (:data:`FRONTS`), and the fingerprint of a user's front
  weights; your own backbone (a timm ``features_only`` model) is :mod:`ssb.adapters.timm`.

``import ssb.backbones`` does not import torch; the names below load on first access.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "SSDMobileNetV2Front": "ssb.backbones.ssd_mobilenet_v2",
    "SSDMobileNetV2Tail": "ssb.backbones.ssd_mobilenet_v2",
    "SPLIT_CHANNELS": "ssb.backbones.ssd_mobilenet_v2",
    "SPLIT_STRIDE": "ssb.backbones.ssd_mobilenet_v2",
    "preprocess": "ssb.backbones.ssd_mobilenet_v2",
    "load_teacher_state": "ssb.backbones.teacher_weights",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
