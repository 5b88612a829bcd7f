"""A tiny :class:`FeatureCodec` with seeded, deliberately spread weights, for the codec tests.

Not a test module: imported by the tests in this folder (pytest puts it on ``sys.path``), by
``codec_cross_process_child.py`` and, by path, by ``tests/test_pipeline.py``.  The weights are
random (unit tests may use synthetic data), scaled so that the latents are not all zero, the
hyper-latent takes several values and the integer hyper-synthesis selects many different
Gaussian tables: a coder bug that only shows with varied scales or escapes cannot hide.
"""

from __future__ import annotations

import torch

from ssb.codec.feature_codec import FeatureCodec, FeatureCodecConfig

TINY = FeatureCodecConfig(in_channels=8, hidden=16, latent=8, hyper=4, num_levels=2, lambdas=(1.0, 4.0))


def tiny_codec(seed: int = 0, *, update: bool = True) -> FeatureCodec:
    """The tiny codec in eval mode; ``update=True`` also builds its integer tables."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        codec = FeatureCodec(TINY)
        with torch.no_grad():
            codec.g_a[-1].weight.mul_(3.0)  # latents of a few units: many nonzero symbols
            codec.h_a[-1].weight.mul_(8.0)  # hyper-latent spread over several integers
            for layer in codec.h_s.net.layers:
                layer.weight.mul_(3.0)
            codec.h_s.net.layers[-1].bias.uniform_(0.5, 8.0)  # scales from ~0.1 to ~20
    if update:
        codec.update()
    return codec.eval()


def split_features(batch: int = 1, height: int = 38, width: int = 38, *, seed: int = 1) -> torch.Tensor:
    """Synthetic stand-in for split features ``[batch, 8, height, width]``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, TINY.in_channels, height, width, generator=g) * 4.0
