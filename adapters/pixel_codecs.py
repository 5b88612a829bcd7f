"""Classic pixel codecs for "remote inference" baselines: JPEG, WebP, AVIF and PNG through Pillow.

A baseline encodes the original RGB frame with a pixel codec, decodes it, and runs the
teacher on the decoded pixels; its rate-accuracy curve is what SSB is compared with
(BD-rate, :mod:`ssb.metrics`).  Each codec has a quality sweep from very low to high
(:func:`default_qualities`).  PNG is the lossless reference: its "quality" is zlib's
compression level 0-9, which changes the size but never the pixels.

Pillow is imported on first use; AVIF needs a Pillow built with libavif (wheels of
Pillow >= 11.3 are), see :func:`available_codecs`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ssb.errors import LimitExceededError, MalformedFieldError, MissingDependencyError, SSBError

__all__ = [
    "PixelCodec",
    "CODECS",
    "codec_names",
    "available_codecs",
    "get_codec",
    "default_qualities",
    "encode",
    "decode",
    "DEFAULT_MAX_PIXELS",
]

#: decode() refuses images with more pixels than this unless told otherwise (about 200 MB as RGB).
DEFAULT_MAX_PIXELS = 1 << 26


@dataclass(frozen=True)
class PixelCodec:
    """One Pillow-backed codec.

    ``quality_range`` bounds the ``quality`` argument (inclusive); ``qualities`` is the
    default sweep; ``options`` are fixed encoder settings (overridable per call);
    ``quality_option`` is the Pillow ``save()`` keyword the quality maps to.
    """

    name: str
    pil_format: str
    lossless: bool
    quality_range: tuple[int, int]
    qualities: tuple[int, ...]
    quality_option: str = "quality"
    options: dict[str, Any] = field(default_factory=dict)
    feature: str | None = None  # PIL.features name that must be present

    def available(self) -> bool:
        """Whether the installed Pillow can encode and decode this format."""
        try:
            from PIL import features
        except ImportError:
            return False
        if self.feature is None:
            return True
        with warnings.catch_warnings():  # older Pillow warns about feature names it does not know
            warnings.simplefilter("ignore")
            return bool(features.check(self.feature))


CODECS: dict[str, PixelCodec] = {
    c.name: c
    for c in (
        # 4:2:0 chroma (Pillow's default below quality 95 is the same; fixed here for every point).
        PixelCodec("jpeg", "JPEG", False, (1, 100), (5, 10, 20, 30, 50, 70, 85, 95),
                   options={"subsampling": "4:2:0"}, feature="jpg"),
        PixelCodec("webp", "WEBP", False, (0, 100), (1, 5, 15, 30, 50, 70, 85, 95),
                   options={"method": 4}, feature="webp"),
        # speed 6 is libavif's balanced preset (about 0.1 s for a 512x512 frame on one CPU core).
        PixelCodec("avif", "AVIF", False, (0, 100), (1, 10, 25, 40, 55, 70, 85, 95),
                   options={"speed": 6}, feature="avif"),
        PixelCodec("png", "PNG", True, (0, 9), (9,), quality_option="compress_level", feature="zlib"),
    )
}

_ALIASES = {"jpg": "jpeg"}


def codec_names() -> tuple[str, ...]:
    """Every registered codec name, available here or not."""
    return tuple(CODECS)


def available_codecs() -> list[str]:
    """The registered codecs the installed Pillow supports."""
    return [name for name, codec in CODECS.items() if codec.available()]


def get_codec(name: str) -> PixelCodec:
    """The codec called ``name`` (case-insensitive; ``jpg`` = ``jpeg``), if Pillow supports it here."""
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in CODECS:
        raise SSBError(f"unknown pixel codec {name!r}; known: {', '.join(CODECS)}", field="codec")
    codec = CODECS[key]
    if not codec.available():
        raise MissingDependencyError(
            f"pixel codec {key} needs Pillow built with {codec.feature} support; "
            "install a recent Pillow wheel: pip install -U pillow"
        )
    return codec


def default_qualities(name: str) -> tuple[int, ...]:
    """The default quality sweep of codec ``name``, from lowest to highest (one point for PNG)."""
    return get_codec(name).qualities


def _pil_image():
    from ssb._optional import require

    return require("PIL.Image", "pixel codec baselines")


def encode(name: str, rgb_uint8: np.ndarray, quality: int, **options: Any) -> bytes:
    """Encode an RGB uint8 [H, W, 3] image with codec ``name`` at ``quality``.

    ``options`` override the codec's Pillow ``save()`` settings (e.g. ``speed=8`` for AVIF).
    """
    codec = get_codec(name)
    rgb = np.asarray(rgb_uint8)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise MalformedFieldError(f"expected an RGB uint8 [H, W, 3] image, got {rgb.dtype} {rgb.shape}", field="rgb")
    lo, hi = codec.quality_range
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not lo <= quality <= hi:
        raise MalformedFieldError(f"{codec.name} quality must be an integer in [{lo}, {hi}], got {quality!r}", field="quality")
    image = _pil_image().fromarray(np.ascontiguousarray(rgb))
    buf = io.BytesIO()
    image.save(buf, codec.pil_format, **{**codec.options, codec.quality_option: int(quality), **options})
    return buf.getvalue()


def decode(name: str, data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``data`` written by codec ``name`` into an RGB uint8 [H, W, 3] array.

    Raises :class:`~ssb.errors.MalformedFieldError` for bytes that are not a valid
    image of that format and :class:`~ssb.errors.LimitExceededError` (before
    decoding) for images of more than ``max_pixels`` pixels.
    """
    codec = get_codec(name)
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        raise MalformedFieldError("expected non-empty bytes", field="data")
    pil = _pil_image()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pil.DecompressionBombWarning)
            image = pil.open(io.BytesIO(bytes(data)), formats=[codec.pil_format])
            width, height = image.size
            if width * height > max_pixels:
                raise LimitExceededError(
                    f"{codec.name} image is {width}x{height}, over the {max_pixels}-pixel limit", field="data"
                )
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except SSBError:
        raise
    except (OSError, ValueError, SyntaxError, pil.DecompressionBombError) as exc:
        raise MalformedFieldError(f"not a valid {codec.name} image: {exc}", field="data") from exc
    return rgb
