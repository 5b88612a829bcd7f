"""Human pose (17 COCO keypoints per person) on the stride-8 split features, top-down.

For each person box (the detection head's ``person`` detections on the same decoded features,
or boxes the caller gives) the box is enlarged to a fixed ``4:3`` (height:width) aspect and by
``box_scale``, pooled from the split features with RoIAlign (``16 x 12``), and a small
convolutional net (:class:`KeypointNet`) predicts one heatmap per keypoint (``32 x 24``) and
one visibility logit per keypoint.  A keypoint is the heatmap's peak refined by the soft-argmax
of its 3x3 neighbourhood; its score is the visibility probability.

Weights (``ssb/weights/pose_s8.pt``) are distilled from MoveNet Lightning run on the original
pixels of real frames, with the codec frozen (``python -m ssb.recipes.train_heads --task pose``).

On a stream with object-scale units (``ssb encode --object-scale``) the head reads instead each
person's OBJECT_SCALE unit and the index (:meth:`~ssb.tasks.roi.RoIHead.adapt`): the same net
architecture, with its own weights (``pose_object``: ``python -m ssb.recipes.train_objects``),
predicts the heatmaps over the person's window from the window's own features.

Output per image, torchvision's Keypoint R-CNN convention: ``boxes`` ``[N, 4]``, ``labels``,
``scores`` (the person detections), ``keypoints`` ``[N, 17, 3]`` (x, y in original pixels,
third column the keypoint score) and ``keypoints_scores`` ``[N, 17]``.
"""

from __future__ import annotations

import torch
from torch import nn

from ssb.tasks.roi import RoIHead, conv_block, expand_boxes, pool, rois_in_input, view_groups

__all__ = ["FLIP_INDEX", "KEYPOINT_NAMES", "OKS_SIGMAS", "SKELETON", "KeypointNet", "PoseHead",
           "decode_heatmaps", "heatmap_coords"]

#: COCO keypoint order (also MoveNet's).
KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
#: Index of each keypoint's mirror image (horizontal flips swap left and right).
FLIP_INDEX = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
#: COCO's limbs (0-based keypoint pairs), for drawing.
SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
            (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))
#: COCO's per-keypoint OKS constants.
OKS_SIGMAS = (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
              0.087, 0.087, 0.089, 0.089)

DEFAULT_CONFIG = {"in_channels": 32, "width": 64, "depth": 4, "roi": [16, 12], "upsample": 2,
                  "num_keypoints": 17, "box_scale": 1.25, "aspect": 4.0 / 3.0}


class KeypointNet(nn.Module):
    """Pooled features ``[K, C, h, w]`` -> (heatmap logits ``[K, J, u*h, u*w]``, visibility logits ``[K, J]``)."""

    def __init__(self, in_channels: int = 32, width: int = 64, depth: int = 4, num_keypoints: int = 17,
                 upsample: int = 2, **_: object):
        super().__init__()
        layers = [conv_block(in_channels, width)] + [conv_block(width, width) for _ in range(depth - 1)]
        self.body = nn.Sequential(*layers)
        up = []
        for _ in range({1: 0, 2: 1, 4: 2}[int(upsample)]):
            up += [nn.ConvTranspose2d(width, width, 4, stride=2, padding=1, bias=False), nn.GroupNorm(8, width),
                   nn.ReLU(inplace=True)]
        self.up = nn.Sequential(*up)
        self.heatmaps = nn.Conv2d(width, num_keypoints, 1)
        self.visibility = nn.Linear(width, num_keypoints)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x)
        return self.heatmaps(self.up(f)), self.visibility(f.mean(dim=(2, 3)))


def heatmap_coords(points: torch.Tensor, boxes: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Image points ``[K, J, 2]`` (x, y) to heatmap coordinates (column, row; cell centres at integers)
    of heatmaps ``hw`` spanning ``boxes`` ``[K, 4]``: the inverse of :func:`decode_heatmaps`'s mapping."""
    h, w = hw
    x0, y0 = boxes[:, None, 0], boxes[:, None, 1]
    bw, bh = (boxes[:, 2] - boxes[:, 0])[:, None], (boxes[:, 3] - boxes[:, 1])[:, None]
    return torch.stack([(points[..., 0] - x0) * w / bw - 0.5, (points[..., 1] - y0) * h / bh - 0.5], dim=-1)


def decode_heatmaps(logits: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Keypoints ``[K, J, 2]`` (x, y image pixels) from heatmap logits ``[K, J, h, w]`` over ``boxes``.

    The peak of each heatmap, refined by the probability-weighted mean of its 3x3 neighbourhood.
    """
    k, j, h, w = logits.shape
    if k == 0:
        return logits.new_zeros(0, j, 2)
    prob = torch.softmax(logits.reshape(k, j, h * w).float(), dim=-1).reshape(k, j, h, w)
    peak = prob.reshape(k, j, -1).argmax(dim=-1)
    py, px = peak // w, peak % w
    padded = nn.functional.pad(prob, (1, 1, 1, 1))
    offs = torch.arange(-1, 2)
    dy, dx = torch.meshgrid(offs, offs, indexing="ij")
    win = padded.reshape(k * j, h + 2, w + 2)[
        torch.arange(k * j)[:, None, None], (py.reshape(-1) + 1)[:, None, None] + dy,
        (px.reshape(-1) + 1)[:, None, None] + dx].reshape(k, j, 3, 3)
    mass = win.sum(dim=(2, 3)).clamp(min=1e-12)
    u = px + (win * dx).sum(dim=(2, 3)) / mass
    v = py + (win * dy).sum(dim=(2, 3)) / mass
    bw, bh = (boxes[:, 2] - boxes[:, 0])[:, None], (boxes[:, 3] - boxes[:, 1])[:, None]
    return torch.stack([boxes[:, None, 0] + (u + 0.5) * bw / w, boxes[:, None, 1] + (v + 0.5) * bh / h], dim=-1)


class PoseHead(RoIHead):
    """Split features -> people with 17 COCO keypoints (see the module docstring).

    Keyword configuration: those of :class:`~ssb.tasks.roi.RoIHead` (``weights``,
    ``pretrained``, ``behind``, ``score_thresh``, ``classes`` (default: person), ``max_objects``).
    """

    kind = "pose"
    object_kind = "pose_object"
    default_classes = (1,)
    keypoint_names = KEYPOINT_NAMES
    skeleton = SKELETON

    default_config = DEFAULT_CONFIG

    def build(self, config: dict) -> nn.Module:
        return build_net(config)

    @property
    def roi_size(self) -> tuple[int, int]:
        return tuple(self.config["roi"])

    @property
    def heatmap_size(self) -> tuple[int, int]:
        u = int(self.config["upsample"])
        return self.roi_size[0] * u, self.roi_size[1] * u

    def roi_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """The image regions the heatmaps span: each box at the net's aspect, enlarged by ``box_scale``."""
        return expand_boxes(boxes, self.config["box_scale"], self.config["aspect"])

    def raw(self, split: torch.Tensor, boxes: list[torch.Tensor], image_sizes: list[tuple[int, int]]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(heatmap logits ``[K, 17, H, W]``, visibility logits ``[K, 17]``, RoI boxes ``[K, 4]``) for all boxes."""
        regions = [self.roi_boxes(b) for b in boxes]
        pooled = pool(split, rois_in_input(regions, image_sizes), self.roi_size)
        heat, vis = self.net(pooled)
        return heat, vis, torch.cat(regions) if regions else torch.zeros(0, 4)

    def predict(self, split, boxes, image_sizes):
        heat, vis, regions = self.raw(split, boxes, image_sizes)
        xy = decode_heatmaps(heat, regions)
        conf = torch.sigmoid(vis.float())
        kps = torch.cat([xy, conf[..., None]], dim=-1)
        out, start = [], 0
        for b in boxes:
            n = len(b)
            out.append({"keypoints": kps[start : start + n], "keypoints_scores": conf[start : start + n]})
            start += n
        return out


    def predict_views(self, views, image_size):
        """Keypoints of object-scale units: heatmaps over each unit's window (``object_net``)."""
        net = self.object_net
        if not views:
            z = torch.zeros(0, self.object_config.get("num_keypoints", 17))
            return {"keypoints": torch.zeros(0, z.shape[1], 3), "keypoints_scores": z}
        kps, conf = None, None
        for idx, feats in view_groups(views):  # one batch per coded grid size
            heat, vis = net(feats)
            xy = decode_heatmaps(heat, torch.tensor([views[i].window_box for i in idx], dtype=torch.float32))
            c = torch.sigmoid(vis.float())
            if kps is None:
                kps, conf = xy.new_zeros(len(views), xy.shape[1], 3), c.new_zeros(len(views), c.shape[1])
            kps[idx] = torch.cat([xy, c[..., None]], dim=-1)
            conf[idx] = c
        return {"keypoints": kps, "keypoints_scores": conf}


def build_net(config: dict) -> nn.Module:
    """The per-RoI net from a checkpoint's config (the zoo's builder for ``pose`` models)."""
    return KeypointNet(**{**DEFAULT_CONFIG, **config})
