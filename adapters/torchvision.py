"""Bridges between SSB prediction dicts and torchvision's detection API.

SSB heads already speak torchvision's output convention (``boxes`` xyxy absolute,
``labels``, ``scores``, optional ``masks`` / ``keypoints``).  This module adds

* :func:`to_torchvision_targets`: teacher predictions -> the *targets* torchvision's
  detection models take in training mode (scores dropped, low scores and degenerate
  boxes filtered, torchvision's dtypes);
* :func:`from_torchvision_outputs`: model outputs (tensors on any device) -> numpy dicts;
* :class:`BackboneAdapter`: wraps any feature extractor so it exposes ``out_channels``,
  which torchvision's ``FasterRCNN`` / ``RetinaNet`` / ``SSD``-style models require of a backbone.

torch is imported only when a function is called or :class:`BackboneAdapter` is first
looked up (PEP 562 module ``__getattr__``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ssb.errors import MalformedFieldError, ModelMismatchError

from ._arrays import instances

__all__ = ["to_torchvision_targets", "from_torchvision_outputs", "BackboneAdapter"]


def _torch():
    from ssb._optional import require

    return require("torch", "torchvision detection bridges")


def to_torchvision_targets(
    predictions: Sequence[Mapping[str, Any]],
    *,
    score_thresh: float = 0.0,
    mask_threshold: float = 0.5,
    device: Any = None,
) -> list[dict]:
    """torchvision detection training targets from (teacher) prediction dicts.

    Per image: ``boxes`` float32 [N, 4] xyxy, ``labels`` int64 [N], plus ``masks``
    uint8 [N, H, W] and ``keypoints`` float32 [N, K, 3] when present.  Detections
    scoring below ``score_thresh`` and boxes with zero width or height (which
    torchvision's models refuse in training) are dropped.
    """
    torch = _torch()
    out = []
    for i, pred in enumerate(predictions):
        inst = instances(pred, f"predictions[{i}]", mask_threshold=mask_threshold).confident(score_thresh)
        target = {
            "boxes": torch.as_tensor(inst.boxes, dtype=torch.float32, device=device),
            "labels": torch.as_tensor(inst.labels, dtype=torch.int64, device=device),
        }
        if inst.masks is not None:
            target["masks"] = torch.as_tensor(inst.masks.astype(np.uint8), device=device)
        if inst.keypoints is not None:
            target["keypoints"] = torch.as_tensor(inst.keypoints, dtype=torch.float32, device=device)
        out.append(target)
    return out


def from_torchvision_outputs(outputs: Sequence[Mapping[str, Any]], *, mask_threshold: float = 0.5) -> list[dict]:
    """numpy prediction dicts (``boxes``, ``labels``, ``scores``, ``masks`` bool [N, H, W], ``keypoints``)
    from torchvision detection outputs, validated; fields a model does not produce are left out."""
    out = []
    for i, pred in enumerate(outputs):
        inst = instances(pred, f"outputs[{i}]", mask_threshold=mask_threshold)
        d = {"boxes": inst.boxes, "labels": inst.labels, "scores": inst.scores, "masks": inst.masks, "keypoints": inst.keypoints}
        out.append({k: v for k, v in d.items() if v is not None})
    return out


def _channels_of(features: Any) -> list[int]:
    """Channel counts of a backbone output: a tensor, a dict of tensors or a list of tensors."""
    maps = list(features.values()) if isinstance(features, Mapping) else (
        list(features) if isinstance(features, (list, tuple)) else [features])
    if not maps or any(getattr(m, "ndim", 0) != 4 for m in maps):
        raise ModelMismatchError("a backbone must return [B, C, H, W] tensors (one, a list or a dict)", field="body")
    return [int(m.shape[1]) for m in maps]


def _build_backbone_adapter():
    torch = _torch()
    from collections import OrderedDict

    class BackboneAdapter(torch.nn.Module):
        """A feature extractor with the ``out_channels`` attribute torchvision's detectors expect.

        ``body`` maps images [B, C, H, W] to a feature map, a list of maps or a dict of
        maps; :meth:`forward` returns a tensor for one map and an ``OrderedDict`` with
        str keys (``"0"``, ``"1"``, ... for lists) for several, like torchvision's
        ``IntermediateLayerGetter``.  ``out_channels`` is taken from the argument, else
        ``body.out_channels``, else timm's ``body.feature_info.channels()``, else by running
        ``body`` once on zeros of ``(1, in_channels, *probe_size)``.  All maps must share
        one channel count (use an FPN otherwise).
        """

        def __init__(self, body, out_channels: int | None = None, *, in_channels: int = 3,
                     probe_size: tuple[int, int] = (64, 64)):
            super().__init__()
            if not isinstance(body, torch.nn.Module):
                raise ModelMismatchError(f"body must be a torch.nn.Module, got {type(body).__name__}", field="body")
            self.body = body
            self.out_channels = self._infer_channels(out_channels, in_channels, probe_size)

        def _infer_channels(self, out_channels, in_channels, probe_size) -> int:
            if out_channels is not None:
                channels = [out_channels]
            elif isinstance(getattr(self.body, "out_channels", None), int):
                channels = [self.body.out_channels]
            elif hasattr(getattr(self.body, "feature_info", None), "channels"):
                channels = list(self.body.feature_info.channels())
            else:
                param = next(iter(self.body.parameters()), None)
                probe = torch.zeros((1, in_channels, *probe_size), dtype=param.dtype if param is not None else None,
                                    device=param.device if param is not None else None)
                was_training = self.body.training
                try:
                    self.body.eval()
                    with torch.no_grad():
                        channels = _channels_of(self.body(probe))
                finally:
                    self.body.train(was_training)
            if any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c <= 0 for c in channels):
                raise MalformedFieldError(f"out_channels must be a positive integer, got {channels}", field="out_channels")
            if len(set(channels)) != 1:
                raise ModelMismatchError(
                    f"the feature maps have different channel counts {channels}; put an FPN on top first",
                    field="out_channels",
                )
            return int(channels[0])

        def forward(self, images):
            features = self.body(images)
            if isinstance(features, Mapping):
                return OrderedDict((str(k), v) for k, v in features.items())
            if isinstance(features, (list, tuple)):
                return OrderedDict((str(i), v) for i, v in enumerate(features))
            return features

    BackboneAdapter.__module__ = __name__
    return BackboneAdapter


def __getattr__(name: str):
    if name == "BackboneAdapter":
        cls = _build_backbone_adapter()
        globals()["BackboneAdapter"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
