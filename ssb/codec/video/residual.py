"""The video model: the entropy model of predicted frames' latent residuals (and motion vectors).

A predicted frame's latent is ``y_hat = prediction + r``, integers throughout (the prediction is
the reference's decoded latent, warped exactly by :func:`ssb.codec.video.motion.warp_latent`), so
``r`` is an integer tensor.  :class:`ResidualCoder` codes it CompressAI-style with a hyperprior of
its own (``r`` is sparse: static regions predict perfectly), trained on real residuals of the
training frames (``python -m ssb.recipes.train_video``): ``h_a`` -> ``z`` (EntropyBottleneck) ->
the **integer** hyper-synthesis -> Gaussian table indexes -> ``r``.  Everything that feeds the
coder's tables is integer, so a decoder in any process, on any machine, decodes the same ``r``.
The same Gaussian tables code the motion vectors (:mod:`ssb.codec.video.motion`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ssb.codec import transforms as T
from ssb.entropy import EntropyBottleneck, GaussianConditional

__all__ = ["ResidualCoder", "ResidualConfig", "build"]


@dataclass(frozen=True)
class ResidualConfig:
    latent: int = 64
    hidden: int = 64
    hyper: int = 32


class ResidualCoder(nn.Module):
    """Integer residual ``[1, latent, h, w]`` <-> two strings (CompressAI's ``compress``/``decompress``)."""

    def __init__(self, config: ResidualConfig = ResidualConfig()):
        super().__init__()
        self.config = config
        c = config
        self.h_a = T.hyper_analysis(c.latent, c.hidden, c.hyper)
        self.h_s = T.ExactHyperSynthesis(c.hyper, c.hidden, c.latent)
        self.entropy_bottleneck = EntropyBottleneck(c.hyper)
        self.gaussian_conditional = GaussianConditional()

    def forward(self, r: torch.Tensor, quant_mode: str | None = None) -> dict:
        """Likelihoods of an integer residual batch (training / rate estimation)."""
        z = self.h_a(r)
        z_hat, z_lik = self.entropy_bottleneck(z, quant_mode=quant_mode)
        scales = self.h_s(z_hat, r.shape[-2:])
        _, r_lik = self.gaussian_conditional(r, scales, quant_mode="hard")
        return {"likelihoods": {"r": r_lik, "z": z_lik}}

    def update(self, force: bool = False) -> bool:
        a = self.entropy_bottleneck.update(force=force)
        b = self.gaussian_conditional.update(force=force)
        c = self.h_s.freeze(force=force)
        return bool(a or b or c)

    def hyper_hw(self, latent_hw: tuple[int, int]) -> tuple[int, int]:
        return -(-latent_hw[0] // 4), -(-latent_hw[1] // 4)

    @torch.no_grad()
    def compress(self, r: torch.Tensor) -> tuple[bytes, bytes]:
        """``(z string, r string)`` of one integer residual ``[1, latent, h, w]``."""
        z = self.h_a(r)
        z_str = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_str, tuple(z.shape))
        idx = self.gaussian_conditional.build_indexes(self.h_s.scale_codes(z_hat, r.shape[-2:]))
        return z_str, self.gaussian_conditional.compress(r, idx)

    @torch.no_grad()
    def decompress(self, z_str: bytes, r_str: bytes, latent_hw: tuple[int, int]) -> torch.Tensor:
        """The integer residual ``[1, latent, h, w]`` (float dtype) of :meth:`compress`'s strings."""
        c = self.config
        z_hat = self.entropy_bottleneck.decompress(z_str, (1, c.hyper, *self.hyper_hw(latent_hw)))
        idx = self.gaussian_conditional.build_indexes(self.h_s.scale_codes(z_hat, latent_hw))
        return self.gaussian_conditional.decompress(r_str, idx)

    def config_dict(self) -> dict:
        return asdict(self.config)


def build(config: dict) -> ResidualCoder:
    """A residual coder from a checkpoint's config (the zoo's builder for ``video`` models)."""
    return ResidualCoder(ResidualConfig(**config))
