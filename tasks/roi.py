"""Shared machinery of the RoI heads (pose, instance segmentation) on the stride-8 split features.

A RoI head is *top-down*: it takes object boxes in original-image pixels (from the detection
head on the same decoded features, from the caller, or from the pipeline's detection output),
maps them to the teacher's ``300 x 300`` input grid the split features live on, pools each box
with :func:`torchvision.ops.roi_align` and runs a small convolutional net per object.

Weights of a RoI head are trained behind frozen codec weights; the checkpoint records the
SHA-256 of those codec weights and :func:`load_head_checkpoint` refuses others with
:class:`~ssb.errors.ModelMismatchError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ssb.backbones.ssd_mobilenet_v2 import INPUT_SIZE, SPLIT_CHANNELS, SPLIT_STRIDE
from ssb.errors import MalformedFieldError, ModelMismatchError

__all__ = [
    "SPLIT_FEATURES",
    "RoIHead",
    "codec_weights_sha256",
    "default_head_weights",
    "expand_boxes",
    "load_head_checkpoint",
    "rois_in_input",
    "save_head_checkpoint",
    "split_tensor",
]

#: What every RoI head reads from a bitstream: the stride-8 split features, no group masks.
SPLIT_FEATURES = {"split": {"channels": SPLIT_CHANNELS, "stride": SPLIT_STRIDE}}


def split_tensor(features: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The ``[B, 32, h, w]`` split features from a tensor or a ``{"split": ...}`` mapping."""
    split = features.get("split") if isinstance(features, Mapping) else features
    if not isinstance(split, torch.Tensor) or split.ndim != 4 or split.shape[1] != SPLIT_CHANNELS:
        shape = tuple(split.shape) if isinstance(split, torch.Tensor) else type(split).__name__
        raise MalformedFieldError(f"expected split features [B, {SPLIT_CHANNELS}, h, w], got {shape}",
                                  field="features.split")
    return split


def expand_boxes(boxes: torch.Tensor, scale: float = 1.0, aspect: float | None = None) -> torch.Tensor:
    """Boxes ``[N, 4]`` xyxy scaled about their centres; with ``aspect`` (height / width) the
    shorter side is first lengthened so every box has that aspect ratio."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0)
    h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0)
    if aspect is not None:
        w, h = torch.maximum(w, h / aspect), torch.maximum(h, w * aspect)
    w, h = w * scale, h * scale
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)


def rois_in_input(boxes: Sequence[torch.Tensor], image_sizes: Sequence[tuple[int, int]],
                  input_size: int = INPUT_SIZE) -> torch.Tensor:
    """``[K, 5]`` RoIs (image index, x1, y1, x2, y2 in the network-input pixels) for ``roi_align``.

    ``boxes[i]`` are image ``i``'s boxes in its original pixels; the input is the image resized
    to ``input_size x input_size``, so x and y scale separately.
    """
    rois = []
    for i, (b, (h, w)) in enumerate(zip(boxes, image_sizes)):
        scale = b.new_tensor([input_size / w, input_size / h, input_size / w, input_size / h])
        rois.append(torch.cat([b.new_full((len(b), 1), float(i)), b * scale], dim=1))
    return torch.cat(rois) if rois else torch.zeros(0, 5)


def pool(split: torch.Tensor, rois: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """RoIAlign of the split features over ``rois`` (network-input pixels) to ``[K, C, *size]``."""
    from torchvision.ops import roi_align

    return roi_align(split, rois.to(split.dtype), output_size=size, spatial_scale=1.0 / SPLIT_STRIDE,
                     sampling_ratio=2, aligned=True)


def conv_block(in_ch: int, out_ch: int, groups: int = 8) -> nn.Sequential:
    """3x3 convolution, group norm, ReLU."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.GroupNorm(groups, out_ch),
                         nn.ReLU(inplace=True))


# -- weights ------------------------------------------------------------------------------------


def default_head_weights(filename: str) -> Path:
    """``ssb/weights/<filename>`` inside the installed package."""
    import ssb

    return Path(ssb.__file__).resolve().parent / "weights" / filename


def codec_weights_sha256(codec: Any = None) -> str:
    """SHA-256 of codec weights: a loaded codec (its ``weights_path``), a path, or ``None`` for
    the weights :func:`ssb.codec.zoo.load_codec` would load by default (``$SSB_WEIGHTS`` or shipped)."""
    if codec is None:
        from ssb.codec.zoo import default_weights_path

        path = default_weights_path()
    elif isinstance(codec, (str, os.PathLike)):
        path = Path(codec)
    else:
        path = getattr(codec, "weights_path", None)
        if not path:
            raise ModelMismatchError("this codec has no weights_path: load it with ssb.codec.zoo.load_codec",
                                     field="codec")
        path = Path(path)
    if not path.is_file():
        raise ModelMismatchError(f"no codec weights at {path}", field="codec_weights")
    from ssb.resources import file_sha256

    return file_sha256(path.resolve())


def save_head_checkpoint(path: str | Path, *, model_id: str, config: dict, state_dict: dict, codec: Any,
                         meta: dict | None = None) -> Path:
    """Write a head checkpoint recording the SHA-256 of the codec weights it was trained behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_id": model_id, "config": dict(config), "codec_sha256": codec_weights_sha256(codec),
                "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "meta": dict(meta or {})},
               str(path) + ".tmp")
    Path(str(path) + ".tmp").replace(path)
    return path


def load_head_checkpoint(path: str | Path, *, model_id: str, codec: Any = None) -> dict:
    """A head checkpoint dict, refusing another model or weights trained behind other codec weights.

    ``codec``: a loaded codec, a codec weights path, or ``None`` (the default codec weights).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelMismatchError(
            f"no {model_id} weights at {path}: train them with `python -m ssb.recipes.train_heads`",
            field="weights")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file
        raise ModelMismatchError(f"cannot read head weights {path}: {exc}", field="weights") from exc
    if not isinstance(ckpt, dict) or ckpt.get("model_id") != model_id:
        got = ckpt.get("model_id") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ModelMismatchError(f"{path.name} holds {got!r}, expected {model_id!r}", field="weights.model_id")
    expected, actual = ckpt.get("codec_sha256"), codec_weights_sha256(codec)
    if expected != actual:
        raise ModelMismatchError(
            f"{path.name} was trained behind codec weights {str(expected)[:12]}, but the codec weights in use are "
            f"{actual[:12]}: retrain the head (python -m ssb.recipes.train_heads) or use matching codec weights",
            field="weights.codec_sha256")
    return ckpt


# -- the head -----------------------------------------------------------------------------------


class RoIHead(nn.Module):
    """Base of the top-down heads: boxes in, one prediction per box out (torchvision-style dicts).

    Subclasses set :attr:`model_id`, :attr:`weights_file`, build ``self.net`` from a config dict
    in :meth:`build` and implement :meth:`predict`.

    Parameters
    ----------
    weights:
        Checkpoint path (default ``ssb/weights/<weights_file>``); ``pretrained=False`` leaves
        the net randomly initialised (tests, training).
    codec:
        The codec whose decoded features the head will read (a loaded codec or a weights path;
        ``None``: the default codec weights); the checkpoint must have been trained behind it.
    score_thresh:
        Boxes from the internal detector (and given detections) scoring below this are dropped.
    classes:
        COCO ids the head runs on (``None``: every detected object).
    max_objects:
        At most this many boxes per image, best first.
    config:
        Net configuration when ``pretrained=False`` (the checkpoint's otherwise).
    """

    required_features = SPLIT_FEATURES
    needs_group_masks = False
    #: outputs of other heads this head can take (``forward(..., detections=...)``), so a pipeline
    #: that ran the detection head on the same features can pass its boxes instead of detecting twice
    consumes = ("detection",)
    #: set by subclasses
    model_id = ""
    weights_file = ""
    default_classes: tuple[int, ...] | None = None

    def __init__(self, *, weights: str | Path | None = None, pretrained: bool = True, codec: Any = None,
                 score_thresh: float = 0.5, classes: Sequence[int] | None = None, max_objects: int = 50,
                 config: dict | None = None):
        super().__init__()
        if not 0.0 <= score_thresh < 1.0:
            raise MalformedFieldError(f"score_thresh must be in [0, 1), got {score_thresh}", field="score_thresh")
        if max_objects < 1:
            raise MalformedFieldError(f"max_objects must be >= 1, got {max_objects}", field="max_objects")
        self.score_thresh = float(score_thresh)
        self.classes = tuple(int(c) for c in classes) if classes is not None else self.default_classes
        self.max_objects = int(max_objects)
        self._detector = None
        self.meta: dict = {}
        if pretrained:
            ckpt = load_head_checkpoint(weights or default_head_weights(self.weights_file), model_id=self.model_id,
                                        codec=codec)
            self.config = dict(ckpt["config"])
            self.net = self.build(self.config)
            self.net.load_state_dict(ckpt["state_dict"])
            self.meta = dict(ckpt.get("meta", {}))
            self.codec_sha256 = ckpt["codec_sha256"]
        else:
            self.config = dict(config or {})
            self.net = self.build(self.config)
            self.codec_sha256 = None
        self.eval()

    def build(self, config: dict) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, split: torch.Tensor, boxes: list[torch.Tensor], image_sizes: list[tuple[int, int]]
                ) -> list[dict[str, torch.Tensor]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_codec(self, codec: Any) -> None:
        """Raise :class:`ModelMismatchError` unless the head was trained behind ``codec``'s weights."""
        if self.codec_sha256 is not None and codec_weights_sha256(codec) != self.codec_sha256:
            raise ModelMismatchError(
                f"{self.model_id} weights were trained behind codec weights {self.codec_sha256[:12]}, "
                f"not {codec_weights_sha256(codec)[:12]}", field="weights.codec_sha256")

    @property
    def detector(self) -> nn.Module:
        """The COCO detection head used when no boxes are given (teacher weights, built on first use)."""
        if self._detector is None:
            from ssb.tasks.detection import DetectionHead

            # kept out of this module's children: its (teacher) weights are not part of the head's
            det = DetectionHead(score_thresh=max(min(self.score_thresh, 0.99), 0.01))
            object.__setattr__(self, "_detector", det)
        return self._detector

    def select(self, det: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The detections this head runs on: wanted classes, score >= threshold, best ``max_objects``."""
        for key in ("boxes", "labels", "scores"):
            if key not in det:
                raise MalformedFieldError(f"detections need {key!r}", field=f"detections.{key}")
        boxes = torch.as_tensor(det["boxes"], dtype=torch.float32).reshape(-1, 4)
        labels = torch.as_tensor(det["labels"], dtype=torch.int64).reshape(-1)
        scores = torch.as_tensor(det["scores"], dtype=torch.float32).reshape(-1)
        if not len(boxes) == len(labels) == len(scores):
            raise MalformedFieldError(f"{len(boxes)} boxes, {len(labels)} labels, {len(scores)} scores",
                                      field="detections")
        if not (torch.isfinite(boxes).all() and torch.isfinite(scores).all()):
            raise MalformedFieldError("detections hold non-finite boxes or scores", field="detections.boxes")
        keep = scores >= self.score_thresh
        if self.classes is not None:
            keep &= torch.isin(labels, torch.tensor(self.classes, dtype=torch.int64))
        idx = torch.nonzero(keep).flatten()
        idx = idx[scores[idx].argsort(descending=True)][: self.max_objects]
        return {"boxes": boxes[idx], "labels": labels[idx], "scores": scores[idx]}

    @torch.no_grad()
    def forward(self, features: torch.Tensor | Mapping[str, torch.Tensor],
                image_sizes: Sequence[tuple[int, int]] | None = None, *,
                detections: Sequence[Mapping[str, torch.Tensor]] | None = None) -> list[dict[str, torch.Tensor]]:
        """Per image: the selected detections (``boxes``, ``labels``, ``scores``) plus the head's outputs.

        ``image_sizes``: each image's original ``(height, width)`` (default: the 300x300 input).
        ``detections``: boxes to run on, per image (e.g. the detection head's output on the same
        features); without them the head runs its own detector.
        """
        split = split_tensor(features)
        b = split.shape[0]
        sizes = [tuple(int(v) for v in s) for s in (image_sizes or [(INPUT_SIZE, INPUT_SIZE)] * b)]
        if len(sizes) != b:
            raise MalformedFieldError(f"{len(sizes)} image sizes for {b} images", field="image_sizes")
        if detections is None:
            detections = self.detector(split, image_sizes=sizes)
        if len(detections) != b:
            raise MalformedFieldError(f"{len(detections)} detection sets for {b} images", field="detections")
        dets = [self.select(d) for d in detections]
        extra = self.predict(split, [d["boxes"] for d in dets], sizes)
        return [{**d, **e} for d, e in zip(dets, extra)]
