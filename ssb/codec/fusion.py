"""Learned composition of a grouped frame's decoded parts (decoder side, optional).

Each group of a grouped stream is coded from its own pixels alone (the rest of the picture
filled), so its features are those of an object on an empty scene, and the background's are
those of a scene with holes.  :func:`ssb.codec.groups.compose` pastes the parts together by
mask coverage; the detector then sees features it never saw in training, and loses accuracy
(``benchmarks/bench_groups.py``).  :class:`GroupFusion` is a small residual network over the
split grid that maps the pasted parts to what the teacher's front gives on the whole original
frame; it is trained on real frames by :mod:`ssb.recipes.train_fusion`.

It runs after entropy decoding, on decoded features only: it changes nothing in the
bitstream, and group independence (bits and decoded features of a group depend only on its
own pixels) is untouched.  It serves whole-frame decodes and, when trained for them (``modes``),
class queries, which never read the background.

The weights record the SHA-256 of the feature-codec weights they were trained behind; a
mismatch is refused (:class:`~ssb.errors.ModelMismatchError`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ssb.codec.transforms import ResBlock, conv
from ssb.errors import ModelMismatchError

__all__ = ["FUSION_MODEL_ID", "GroupFusion", "default_fusion_weights", "load_group_fusion"]

FUSION_MODEL_ID = "group-fusion.s8"
FUSION_WEIGHTS_FILE = "fusion_s8.pt"


class GroupFusion(nn.Module):
    """``(pasted, background, groups, coverage) -> split features``, a residual over ``pasted``.

    * ``pasted``: :func:`~ssb.codec.groups.compose` of background and groups ``[B, C, h, w]``;
    * ``background``: the decoded background alone;
    * ``groups``: the groups pasted on zeros (zero where no group);
    * ``coverage``: ``[B, 1, h, w]``, the fraction of each cell the groups' masks cover.

    For a class query (no background) ``pasted`` is ``groups`` and ``background`` zeros; a
    fusion applies to queries only when ``"query"`` is among its ``modes``.

    The last convolution starts at zero, so an untrained fusion is the plain composition.
    """

    def __init__(self, channels: int = 32, width: int = 64, modes: tuple[str, ...] | list[str] = ("whole",)):
        super().__init__()
        self.channels, self.width = channels, width
        #: what it was trained for: "whole" frames (background decoded) and/or class "query" decodes
        self.modes = tuple(modes)
        last = conv(width, channels)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(conv(3 * channels + 1, width), nn.LeakyReLU(0.1, inplace=True),
                                 ResBlock(width), ResBlock(width), last)

    def forward(self, pasted: torch.Tensor, background: torch.Tensor, groups: torch.Tensor,
                coverage: torch.Tensor) -> torch.Tensor:
        return pasted + self.net(torch.cat([pasted, background, groups, coverage], dim=1))


def default_fusion_weights() -> Path:
    return Path(__file__).resolve().parent.parent / "weights" / FUSION_WEIGHTS_FILE


def load_group_fusion(codec, path=None, *, missing_ok: bool = False) -> GroupFusion | None:
    """The fusion trained behind ``codec`` (refuses weights made for other codec weights).

    With ``missing_ok``, absent weights give ``None`` (callers then compose without fusion).
    """
    from ssb.resources import file_sha256

    path = Path(path) if path else default_fusion_weights()
    if not path.is_file():
        if missing_ok:
            return None
        raise ModelMismatchError(f"no group-fusion weights at {path}: train them with "
                                 "`python -m ssb.recipes.train_fusion`", field="fusion_weights")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("model_id") != FUSION_MODEL_ID:
        raise ModelMismatchError(f"{path} does not hold {FUSION_MODEL_ID} weights", field="fusion_weights.model_id")
    codec_path = getattr(codec, "weights_path", None)
    if codec_path is None or file_sha256(codec_path) != ckpt.get("codec_sha256"):
        raise ModelMismatchError(
            f"{path} was trained behind codec weights {str(ckpt.get('codec_sha256'))[:12]}, not "
            f"{file_sha256(codec_path)[:12] if codec_path else 'an unsaved codec'}", field="fusion_weights.codec_sha256")
    cfg = dict(ckpt["config"])
    cfg["modes"] = tuple(cfg.get("modes", ("whole",)))
    model = GroupFusion(**cfg)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    model.weights_path = str(path)
    return model
