"""Omni-ICM-style codec of the teacher's split features, with a variable-rate hyperprior.

Contract (CompressAI's, shared by every SSB model and latent codec):

``forward(x, level)``
    training / rate estimation: returns the reconstruction and the likelihoods.
``update()``
    freezes the entropy models into integer tables and the hyper-synthesis into exact
    integer arithmetic; must be called (once) before coding.
``compress(x, level)`` / ``decompress(strings, shape, level)``
    real coding through constriction; ``decompress`` is bit-identical on every machine
    because everything that feeds the coder's tables is integer (see :mod:`ssb.entropy`).

Rate points: one model, ``num_levels`` gain vectors (a "gained" variable-rate model): level
``l`` scales the latent by ``exp(log_gain[l])`` before quantization and by its inverse
after, trained with its own rate-distortion weight ``lambdas[l]``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ssb.codec import transforms as T
from ssb.entropy import EntropyBottleneck, GaussianConditional
from ssb.errors import MalformedFieldError

__all__ = ["FeatureCodec", "FeatureCodecConfig", "CompressedFeatures", "latent_sizes", "build", "config_for"]


@dataclass(frozen=True)
class FeatureCodecConfig:
    in_channels: int = 32
    hidden: int = 64
    latent: int = 64
    hyper: int = 32
    num_levels: int = 6
    #: rate-distortion weights of the levels (distortion weight; the rate is in bits per input pixel)
    lambdas: tuple[float, ...] = (2.0, 6.0, 18.0, 54.0, 160.0, 480.0)

    def __post_init__(self):
        if len(self.lambdas) != self.num_levels:
            raise MalformedFieldError("one lambda per level is required", field="lambdas")


def config_for(feature_info, base: FeatureCodecConfig | None = None, **changes) -> FeatureCodecConfig:
    """The config of a codec of a front's features: ``in_channels`` from its first
    :class:`~ssb.backbones.features.FeatureInfo` (the level the codec codes), the rest from ``base``
    (default :class:`FeatureCodecConfig`) and ``changes``; the latent grid follows the features'
    size (:func:`latent_sizes`)."""
    import dataclasses

    infos = tuple(feature_info)
    if not infos:
        raise MalformedFieldError("a front with no feature level cannot be coded", field="feature_info")
    return dataclasses.replace(base or FeatureCodecConfig(), in_channels=int(infos[0].channels), **changes)


def build(config: dict) -> "FeatureCodec":
    """A codec from a checkpoint's config (the zoo's builder)."""
    cfg = dict(config)
    cfg["lambdas"] = tuple(cfg.get("lambdas", FeatureCodecConfig.lambdas))
    return FeatureCodec(FeatureCodecConfig(**cfg))


def latent_sizes(out_hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(latent, hyper-latent) sizes for split features of size ``out_hw``: the one size rule of
    the codec (``latent = ceil(out / 2)``, ``hyper = ceil(latent / 4)``), shared by the payload parser."""
    oh, ow = out_hw
    lat = (-(-oh // 2), -(-ow // 2))
    return lat, (-(-lat[0] // 4), -(-lat[1] // 4))


@dataclass
class CompressedFeatures:
    """What ``compress`` returns for one image: two byte strings and the shapes to decode them."""

    y: bytes
    z: bytes
    level: int
    latent_hw: tuple[int, int]
    hyper_hw: tuple[int, int]
    out_hw: tuple[int, int]


class FeatureCodec(nn.Module):
    """Split features ``[B, C, h, w]`` <-> latent bits; see the module docstring."""

    def __init__(self, config: FeatureCodecConfig = FeatureCodecConfig()):
        super().__init__()
        self.config = config
        c = config
        self.g_a = T.analysis(c.in_channels, c.hidden, c.latent)
        self.g_s = T.synthesis(c.latent, c.hidden, c.in_channels)
        self.h_a = T.hyper_analysis(c.latent, c.hidden, c.hyper)
        self.h_s = T.ExactHyperSynthesis(c.hyper, c.hidden, c.latent)
        # levels start spread over a 2**3 range of quantization step sizes, finest last
        init = torch.linspace(-0.5, 1.6, c.num_levels)[:, None].expand(c.num_levels, c.latent)
        self.log_gain = nn.Parameter(init.clone())
        self.entropy_bottleneck = EntropyBottleneck(c.hyper)
        self.gaussian_conditional = GaussianConditional()

    # -- helpers -------------------------------------------------------------------------
    def _check_level(self, level) -> torch.Tensor:
        lv = torch.as_tensor(level, dtype=torch.long)
        if lv.numel() == 0 or int(lv.min()) < 0 or int(lv.max()) >= self.config.num_levels:
            raise MalformedFieldError(
                f"quality level must be in 0..{self.config.num_levels - 1}, got {level}", field="level"
            )
        return lv

    def _gain(self, level: torch.Tensor, batch: int) -> torch.Tensor:
        g = torch.exp(self.log_gain[level.to(self.log_gain.device)])
        if g.ndim == 1:
            g = g.expand(batch, -1)
        return g[:, :, None, None]

    @staticmethod
    def _crop(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return x[..., : hw[0], : hw[1]]

    def _synthesize(self, y_scaled: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """``g_s`` cropped to ``hw``. Outside training it bypasses oneDNN, whose transposed
        convolutions round differently with the thread count: decoded features are then the
        same bits whatever the threads (on one machine; the entropy-decoded latents are exact
        on every machine)."""
        if self.training:
            return self._crop(self.g_s(y_scaled), hw)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
            with torch.backends.mkldnn.flags(enabled=False):
                return self._crop(self.g_s(y_scaled), hw)

    def check_geometry(self, item: "CompressedFeatures") -> None:
        """Refuse sizes that are not ``latent = ceil(out / 2)``, ``hyper = ceil(latent / 4)``."""
        lat, hyp = latent_sizes(item.out_hw)
        if min(item.out_hw) < 1 or tuple(item.latent_hw) != lat or tuple(item.hyper_hw) != hyp:
            raise MalformedFieldError(
                f"inconsistent sizes: out {item.out_hw}, latent {item.latent_hw}, hyper {item.hyper_hw} "
                f"(expected latent {lat}, hyper {hyp})", field="latent_hw")

    # -- training ------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, level, quant_mode: str | None = None) -> dict:
        """Reconstruction ``x_hat`` and likelihoods ``{"y", "z"}`` (for the rate term)."""
        lv = self._check_level(level)
        gain = self._gain(lv, x.shape[0])
        y = self.g_a(x) * gain
        z = self.h_a(y)
        z_hat, z_lik = self.entropy_bottleneck(z, quant_mode=quant_mode)
        scales = self.h_s(z_hat, y.shape[-2:])
        y_hat, y_lik = self.gaussian_conditional(y, scales, quant_mode=quant_mode)
        x_hat = self._synthesize(y_hat / gain, x.shape[-2:])
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik}, "y": y}

    # -- coding --------------------------------------------------------------------------
    def update(self, force: bool = False) -> bool:
        """Build the integer tables and freeze the exact hyper-synthesis. Call before coding."""
        a = self.entropy_bottleneck.update(force=force)
        b = self.gaussian_conditional.update(force=force)
        c = self.h_s.freeze(force=force)
        return bool(a or b or c)

    @torch.no_grad()
    def compress(self, x: torch.Tensor, level: int) -> list[CompressedFeatures]:
        y = self.analyze_latent(x, level)
        return [self.code_latent(y[i : i + 1], level, tuple(x.shape[-2:]))[0] for i in range(x.shape[0])]

    @torch.no_grad()
    def decompress(self, item: CompressedFeatures) -> torch.Tensor:
        """Split features ``[1, C, h, w]`` from one :class:`CompressedFeatures`."""
        return self.synthesize(self.decode_latent(item), item.level, item.out_hw)

    # -- the latent, for predictive (video) coding -----------------------------------------
    @torch.no_grad()
    def analyze_latent(self, x: torch.Tensor, level) -> torch.Tensor:
        """The gained latent ``g_a(x) * gain`` (float) that ``code_latent`` quantizes and codes."""
        return self.g_a(x) * self._gain(self._check_level(level), x.shape[0])

    @torch.no_grad()
    def code_latent(self, y: torch.Tensor, level: int, out_hw: tuple[int, int]
                    ) -> tuple[CompressedFeatures, torch.Tensor]:
        """Intra-code one gained latent ``[1, latent, h, w]``; returns the item and the decoder's latent
        (its integers, exactly what :meth:`decode_latent` will return: the closed-loop reference)."""
        z = self.h_a(y)
        z_str = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_str, tuple(z.shape))
        idx = self.gaussian_conditional.build_indexes(self.h_s.scale_codes(z_hat, y.shape[-2:]))
        y_str = self.gaussian_conditional.compress(y, idx)
        item = CompressedFeatures(y=y_str, z=z_str, level=int(level), latent_hw=tuple(y.shape[-2:]),
                                  hyper_hw=tuple(z.shape[-2:]), out_hw=tuple(out_hw))
        return item, torch.round(y)

    @torch.no_grad()
    def decode_latent(self, item: CompressedFeatures) -> torch.Tensor:
        """The integer latent ``[1, latent, h, w]`` (float dtype) of one item: exact on every machine."""
        self._check_level(item.level)
        self.check_geometry(item)
        c = self.config
        z_hat = self.entropy_bottleneck.decompress(item.z, (1, c.hyper, *item.hyper_hw))
        idx = self.gaussian_conditional.build_indexes(self.h_s.scale_codes(z_hat, item.latent_hw))
        return self.gaussian_conditional.decompress(item.y, idx)

    @torch.no_grad()
    def synthesize(self, y_hat: torch.Tensor, level: int, out_hw: tuple[int, int]) -> torch.Tensor:
        """Split features ``[1, C, *out_hw]`` from a decoded integer latent at quality ``level``."""
        gain = self._gain(self._check_level(level), y_hat.shape[0])
        return self._synthesize(y_hat.to(gain.dtype) / gain, out_hw)
