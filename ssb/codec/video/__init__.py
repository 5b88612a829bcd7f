"""``ssb.video`` streams (SSVC): predictive coding of the omnipotent features, motion and residual units.

* :mod:`~ssb.codec.video.encoder`: :class:`VideoEncoder` (key frames, predicted frames, tracks);
* :mod:`~ssb.codec.video.decoder`: :class:`VideoDecoder` (stateful; motion-only decodes);
* :mod:`~ssb.codec.video.motion`: motion estimation, coding and the integer latent warp;
* :mod:`~ssb.codec.video.residual`: the trained entropy model of the residuals (zoo kind ``video``).

Payload syntax: :mod:`ssb.format.payloads` (docs/format.md, section 16).
"""

from ssb.codec.video.decoder import VideoDecoder
from ssb.codec.video.encoder import DEFAULT_DEADZONE, DEFAULT_GOP, VideoEncoder
from ssb.codec.video.motion import MotionEstimator, MotionField

__all__ = ["VideoEncoder", "VideoDecoder", "MotionField", "MotionEstimator", "DEFAULT_GOP", "DEFAULT_DEADZONE"]
