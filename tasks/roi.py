"""Shared machinery of the RoI heads (pose, instance segmentation) on the stride-8 split features.

A RoI head is *top-down*: it takes object boxes in original-image pixels (from the detection
head on the same decoded features, from the caller, or from the pipeline's detection output),
maps them to the teacher's ``300 x 300`` input grid the split features live on, pools each box
with :func:`torchvision.ops.roi_align` and runs a small convolutional net per object.

Weights of a RoI head are trained behind a frozen codec; the checkpoint records that codec's id
(:mod:`ssb.codec.zoo`), exposed as :attr:`RoIHead.behind`, and the pipeline refuses to run the
head on features another codec decoded (:class:`~ssb.errors.ModelMismatchError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from ssb.backbones.ssd_mobilenet_v2 import INPUT_SIZE, SPLIT_CHANNELS, SPLIT_STRIDE
from ssb.backbones.features import SSD_MBV2_S8, feature_specs
from ssb.errors import MalformedFieldError

__all__ = [
    "SPLIT_FEATURES",
    "RoIHead",
    "expand_boxes",
    "rois_in_input",
    "split_tensor",
    "view_groups",
]

#: What every RoI head reads from a bitstream: the stride-8 split features, no group masks.
SPLIT_FEATURES = feature_specs(SSD_MBV2_S8.feature_info)


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


def view_groups(views) -> list[tuple[list[int], torch.Tensor]]:
    """The object-scale units' features batched by coded grid size: ``[(indices, [k, C, rows, cols])]``
    (units of one stream may be coded at different sizes)."""
    groups: dict[tuple, list[int]] = {}
    for i, v in enumerate(views):
        groups.setdefault(tuple(v.features.shape[-2:]), []).append(i)
    return [(idx, torch.cat([views[i].features for i in idx])) for idx in groups.values()]


def conv_block(in_ch: int, out_ch: int, groups: int = 8) -> nn.Sequential:
    """3x3 convolution, group norm, ReLU."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.GroupNorm(groups, out_ch),
                         nn.ReLU(inplace=True))


# -- the head -----------------------------------------------------------------------------------


class RoIHead(nn.Module):
    """Base of the top-down heads: boxes in, one prediction per box out (torchvision-style dicts).

    Subclasses set :attr:`kind` (their zoo kind) and :attr:`default_config`, build a net from a
    (complete) config dict in :meth:`build` and implement :meth:`predict`.

    Parameters
    ----------
    weights:
        A zoo id or a checkpoint path (default: the zoo's default of :attr:`kind`);
        ``pretrained=False`` leaves the net randomly initialised (tests, training).
    behind:
        The codec id whose decoded features the head will read; a checkpoint trained behind
        another codec is refused (``None``: checked later, by the pipeline, from :attr:`behind`).
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
    consumes = {"detection": "detections"}
    #: set by subclasses: the zoo kind of the head's weights
    kind = ""
    #: the zoo kind of the head's net on object-scale units (OBJECT_SCALE), "" for none
    object_kind = ""
    #: set by subclasses: the net configuration a checkpoint's config completes
    default_config: dict = {}
    default_classes: tuple[int, ...] | None = None
    needs = ("features",)

    def __init__(self, *, weights: str | Path | None = None, pretrained: bool = True, behind: str | None = None,
                 score_thresh: float = 0.5, classes: Sequence[int] | None = None, max_objects: int = 50,
                 config: dict | None = None, object_weights: str | Path | None = None):
        super().__init__()
        self.object_net: nn.Module | None = None
        self.object_identity = None
        self.object_config: dict = {}
        self._object_weights = object_weights
        if not 0.0 <= score_thresh < 1.0:
            raise MalformedFieldError(f"score_thresh must be in [0, 1), got {score_thresh}", field="score_thresh")
        if max_objects < 1:
            raise MalformedFieldError(f"max_objects must be >= 1, got {max_objects}", field="max_objects")
        self.score_thresh = float(score_thresh)
        self.classes = tuple(int(c) for c in classes) if classes is not None else self.default_classes
        self.max_objects = int(max_objects)
        self._detector = None
        self.meta: dict = {}
        self.identity = None
        if pretrained:
            self.net, self.config, ckpt = self._from_checkpoint(self.kind, weights, behind)
            self.meta = dict(ckpt.get("meta", {}))
            self.identity = ckpt["identity"]
            self.checkpoint_path = ckpt["path"]
        else:
            self.config = {**self.default_config, **(config or {})}
            self.net = self.build(self.config)
        self.eval()

    @property
    def behind(self) -> str | None:
        """The codec id the weights in use were trained behind (``None``: untrained)."""
        ident = self.object_identity if self.on_objects else self.identity
        return ident.behind if ident is not None else None

    @property
    def on_objects(self) -> bool:
        """Whether the head reads object-scale units (see :meth:`adapt`)."""
        return any(n == "objects" or n.startswith("objects:") for n in self.needs)

    def adapt(self, provides) -> None:
        """Choose the input for a stream before anything is decoded: the object-scale units of the
        head's classes and the index (no BASE, no detector) when the stream ``provides`` them
        (``"objects:<class id>"``; a bare ``"objects"``: every class) and the head has weights for
        them; the split features and the detection head's boxes otherwise."""
        provides = frozenset(provides)
        have = {int(n.split(":", 1)[1]) for n in provides if n.startswith("objects:")}
        if have:
            wanted = sorted(have if self.classes is None else have & set(self.classes))
            needs = tuple(f"objects:{c}" for c in wanted)
        else:
            needs = ("objects",) if "objects" in provides else ()
        if needs and self.load_object_net() is not None:
            self.needs, self.consumes = needs, {}
        else:
            self.needs, self.consumes = ("features",), {"detection": "detections"}

    def load_object_net(self, *, missing_ok: bool = True) -> nn.Module | None:
        """The net on object-scale features (loaded once from ``object_weights`` or the zoo's default)."""
        if self.object_net is None and self.object_kind:
            from ssb.errors import ModelMismatchError

            try:
                self.object_net, self.object_config, ckpt = self._from_checkpoint(self.object_kind,
                                                                                  self._object_weights)
            except ModelMismatchError:
                if self._object_weights is not None or not missing_ok:
                    raise
                return None
            self.object_identity = ckpt["identity"]
        return self.object_net

    def _from_checkpoint(self, kind: str, weights, behind: str | None = None) -> tuple[nn.Module, dict, dict]:
        """(net in eval mode, its full configuration, the checkpoint) of a ``kind`` checkpoint."""
        from ssb.codec import zoo

        ckpt = zoo.read(kind, weights, behind=behind)
        config = {**self.default_config, **ckpt["config"]}
        net = self.build(config)
        net.load_state_dict(ckpt["state_dict"])
        return net.eval(), config, ckpt

    def predict_views(self, views: list, image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The head's outputs for object-scale units (subclasses with an :attr:`object_kind`)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def select_views(self, views: Sequence) -> list:
        """The object-scale units this head runs on: wanted classes, score >= threshold, best first."""
        keep = [v for v in views if (self.classes is None or v.class_id in self.classes)
                and (v.score if v.score is not None else 1.0) >= self.score_thresh and v.bbox is not None]
        keep.sort(key=lambda v: -(v.score if v.score is not None else 1.0))
        return keep[: self.max_objects]

    def _forward_views(self, views: Sequence, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        views = self.select_views(views)
        n = len(views)
        base = {"boxes": torch.tensor([v.bbox for v in views], dtype=torch.float32).reshape(n, 4),
                "labels": torch.tensor([int(v.class_id) for v in views], dtype=torch.int64),
                "scores": torch.tensor([float(v.score if v.score is not None else 1.0) for v in views])}
        return {**base, **self.predict_views(views, size)}

    def build(self, config: dict) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, split: torch.Tensor, boxes: list[torch.Tensor], image_sizes: list[tuple[int, int]]
                ) -> list[dict[str, torch.Tensor]]:  # pragma: no cover - abstract
        raise NotImplementedError

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
        if isinstance(features, Mapping) and "objects" in features and (self.on_objects or "split" not in features) \
                and self.load_object_net() is not None:
            sizes = list(image_sizes or [(INPUT_SIZE, INPUT_SIZE)])
            if len(sizes) != 1:
                raise MalformedFieldError("object-scale units are analysed one image at a time", field="image_sizes")
            return [self._forward_views(features["objects"], tuple(int(v) for v in sizes[0]))]
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
