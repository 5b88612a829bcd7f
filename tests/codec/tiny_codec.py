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


# -- a whole tiny model set: codec, front and the registrations a stream needs ---------------------
from ssb.backbones.features import FRONTS, FeatureInfo, FrontCard  # noqa: E402
from ssb.codec.zoo import Identity  # noqa: E402
from ssb.errors import ModelMismatchError  # noqa: E402

TINY_ID = "tiny-test.s8@1"
TINY_FRONT = FrontCard("tiny-conv.s8", "tiny_codec:TinyFront", 300, (FeatureInfo("split", TINY.in_channels, 8),))
FRONTS.setdefault(TINY_FRONT.name, TINY_FRONT)


class TinyFront(torch.nn.Module):
    """Stand-in front: one seeded stride-8 convolution, 3 -> 8 channels, 300 px -> the 38 x 38 grid."""

    def __init__(self, pretrained: bool = False):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(3)
            self.conv = torch.nn.Conv2d(3, TINY.in_channels, 8, stride=8, padding=2)
        self.eval().requires_grad_(False)

    def forward(self, x):
        return self.conv(x)


def with_identity(codec: FeatureCodec, model_id: str = TINY_ID) -> FeatureCodec:
    if getattr(codec, "identity", None) is None:
        name, _, version = model_id.partition("@")
        codec.identity = Identity("codec", name, int(version))
    if getattr(codec, "front_name", None) is None:
        codec.front_name = TINY_FRONT.name
    return codec


class TinyModels:
    """A :class:`ssb.codec.models.ModelSet` stand-in holding the tiny codec (id ``tiny-test.s8@1``)."""

    def __init__(self, codec: FeatureCodec | None = None, extra: dict | None = None):
        self._codec = with_identity(codec or tiny_codec())
        self._front = TinyFront()
        self.extra = dict(extra or {})

    def codec(self, model_id: str | None = None):
        if model_id is not None and model_id != self._codec.identity.id:
            raise ModelMismatchError(f"the stream was coded by {model_id}, the weights are {TINY_ID}", field="weights")
        return self._codec

    def front(self):
        return self._front

    def get(self, kind: str, *, behind=None, missing_ok: bool = False):
        if kind in self.extra:
            return self.extra[kind]
        if missing_ok:
            return None
        raise ModelMismatchError(f"no {kind} model in the tiny set", field="weights")


def tiny_video_coder(seed: int = 1):
    """A small residual coder (the ``video`` model) for the tiny codec's 8-channel latent, tables built."""
    from ssb.codec.video.residual import ResidualCoder, ResidualConfig

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        coder = ResidualCoder(ResidualConfig(latent=TINY.latent, hidden=16, hyper=4))
    coder.eval()
    coder.update()
    coder.identity = Identity("video", "tiny-video.s8", 1, TINY_ID)
    return coder


def _model(self, kind: str, model_id: str, *, behind=None):
    model = self.get(kind)
    if model.identity.id != model_id:
        raise ModelMismatchError(f"the stream names {kind} model {model_id}, the tiny set has {model.identity.id}",
                                 field="weights")
    return model


TinyModels.model = _model
