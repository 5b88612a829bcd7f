"""Still images to RGB uint8 ``H x W x 3``, or a one-line refusal naming the file and the reason.

>>> rgb = load_image("photo.jpg")                           # doctest: +SKIP
>>> rgb, info = load_image_info("scan.tif")                 # doctest: +SKIP
>>> info["orientation"], info["bits"], info["frames"]       # doctest: +SKIP

How each Pillow mode reaches RGB (``bits`` in the info dict is the depth stored in the file):

===========================  ==============================================================
``RGB``                      as stored (an embedded ICC profile is reported, not applied)
``1``, ``L``                 gray replicated to three channels (``1`` gives 0 / 255)
``I;16*``, 16-bit RGB(A)/LA  ``round(v / 257)`` per channel; 16-bit colour PNG/TIFF is decoded
                             by OpenCV (Pillow keeps only the high byte of those)
``I`` (32-bit int)           ``round(v / 257)`` when all values fit 0..65535 (how Pillow stores
                             deep gray PGM); else ``[min(0, lo), max(65535, hi)]`` linearly
``F`` (32-bit float)         ``[min(0, lo), 1]`` to 0..255 when ``hi <= 1``, else
                             ``[min(0, lo), hi]``; NaN -> the low end, +-inf clipped
``LA``, ``PA``, ``RGBA``,    alpha composited over grey 114 (see below); premultiplied ``La``
``P``/``L``/``RGB`` + tRNS   and ``RGBa`` too; ``P`` without transparency: its palette colours
``CMYK``                     the embedded ICC profile to sRGB through ImageCms (LittleCMS,
                             offline) when it works, else Pillow's ``(255-C)(255-K)/255``
``YCbCr``, ``HSV``, ``RGBX``  Pillow's conversion (ITU-R BT.601 full range for YCbCr)
``LAB``                      CIE L*a*b* (D50) to sRGB through ImageCms; refused when it fails
others                       refused (:class:`MalformedFieldError`, ``field="input.mode"``)
===========================  ==============================================================

Alpha: transparent pixels are composited over mid grey ``(114, 114, 114)``, the value detectors'
letterbox padding uses.  Black or white would invent edges and dark/bright objects where the
picture has none (a logo on transparency becomes a filled black box); grey is close to the mean a
COCO-trained network normalises away, so transparent areas look like neutral background.

EXIF orientation (tag 274, also in PNG eXIf and TIFF) is applied, so the array is upright;
``info["orientation"]`` says which of the eight was undone (1: none).  Multi-frame files
(animated GIF/WebP/APNG, multi-page TIFF, MPO) give their first frame; ``info["frames"]`` counts
them all.  The pixel limit is checked from the header, before anything is decoded.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from ssb._optional import require
from ssb.errors import LimitExceededError, MalformedFieldError, SSBError, TruncatedError

__all__ = ["DEFAULT_MAX_PIXELS", "GREY", "IMAGE_SUFFIXES", "load_image", "load_image_info"]

#: suffixes a folder walk treats as still images (Pillow >= 10 reads them all but AVIF, which needs
#: Pillow >= 11.2 with its AVIF plugin, as in the PyPI wheels; without it such a file is refused)
IMAGE_SUFFIXES = frozenset({
    ".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".bmp", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".pfm", ".gif", ".avif", ".jp2", ".j2k", ".qoi",
})
DEFAULT_MAX_PIXELS = 64_000_000
#: the background transparent pixels are composited over
GREY = 114
#: the Pillow plugins tried, in order: formats with a magic number only (no EPS/ghostscript, no
#: header-less TGA/DIB that would "identify" random bytes)
_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP", "PPM", "AVIF", "JPEG2000", "QOI")
_BITS = {"1": 1, "I": 32, "F": 32, "I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16}
#: round(v / 257) for every 16-bit value
_LUT16 = ((np.arange(65536, dtype=np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def load_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """RGB uint8 ``H x W x 3`` (C-contiguous, upright) of the image at ``path``.

    Raises :class:`MalformedFieldError` (not an image, a directory, corrupt data, zero size, a mode
    with no RGB meaning), :class:`TruncatedError` (the data end early), :class:`LimitExceededError`
    (over ``max_pixels``, from the header, before decoding); ``FileNotFoundError`` and
    ``PermissionError`` pass through.  See :func:`load_image_info` and the module docstring.
    """
    return load_image_info(path, max_pixels=max_pixels)[0]


def load_image_info(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, dict]:
    """``(rgb, info)``: the array of :func:`load_image` and what was done to get it.

    ``info`` keys: ``format`` (Pillow's name), ``mode`` (Pillow's mode of the first frame),
    ``bits`` (per channel as stored), ``size`` (``(width, height)`` of the returned upright array),
    ``orientation`` (EXIF 1..8 undone, 1 when none), ``frames`` (count in the file; the first is
    returned), ``alpha`` (transparency composited over :data:`GREY`), ``icc`` (``None``, or what
    was done with an embedded profile: ``"applied"`` or ``"ignored"``), ``warnings`` (decoder
    warnings, captured instead of printed).  Pillow's ``DecompressionBombWarning`` is silenced
    (``max_pixels`` decides); its ``DecompressionBombError`` (over twice
    ``PIL.Image.MAX_IMAGE_PIXELS``) becomes :class:`LimitExceededError`.
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never changed: with its default (False) a short file is
    refused here, not later.  Warnings are captured with ``warnings.catch_warnings``, which is not
    thread-safe: decode in processes, not threads, if that matters.
    """
    p = Path(path)
    if p.is_dir():
        raise MalformedFieldError(f"{p} is a directory, not an image file", field="input")
    if p.exists() and not p.is_file():  # a FIFO would block open(), a device never end
        raise MalformedFieldError(f"{p} is not a regular file", field="input")
    require("PIL", "reading images")
    from PIL import Image

    Image.init()
    formats = [f for f in _FORMATS if f in Image.OPEN]
    info: dict = {"format": None, "mode": None, "bits": None, "size": None, "orientation": 1, "frames": 1,
                  "alpha": False, "icc": None, "warnings": []}
    with open(p, "rb") as fp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(fp, formats=formats) as im:
                w, h = im.size
                if w <= 0 or h <= 0:
                    raise MalformedFieldError(f"{p} declares a {w}x{h} image (zero size)", field="input.size")
                if w * h > max_pixels:
                    raise LimitExceededError(f"{p} declares {w}x{h} = {w * h} pixels, over the limit of "
                                             f"{max_pixels}", field="input.size")
                info.update(format=im.format, mode=im.mode, frames=int(getattr(im, "n_frames", 1) or 1))
                rawmode = _rawmode(im)
                info["bits"] = _bits(im, rawmode)
                tiff = getattr(im, "tag_v2", {}).get(0x0112)  # Pillow undoes TIFF's own while loading
                im.load()
                pending = _orientation(im, info["warnings"])  # what is left to undo, once loaded
                orientation = tiff if isinstance(tiff, int) and 1 <= tiff <= 8 else pending
                rgb = None
                if ";16" in rawmode and im.mode in ("RGB", "RGBA", "LA"):
                    fp.seek(0)
                    rgb = _read16(fp.read(), _orient(np.asarray(im), pending), orientation, info)
                if rgb is None:
                    rgb = _orient(_to_rgb(im, info, str(p)), pending)
                if info["icc"] is None and im.info.get("icc_profile"):
                    info["icc"] = "ignored"
        except SSBError:
            raise
        except Exception as exc:  # every decoder failure, whatever its type, is a refusal of this file
            raise _refusal(p, exc) from exc
        info["warnings"] += [str(m.message) for m in caught]
    if rgb.shape[0] * rgb.shape[1] == 0:
        raise MalformedFieldError(f"{p} decodes to an empty image", field="input.size")
    info["orientation"] = orientation
    info["size"] = (rgb.shape[1], rgb.shape[0])
    rgb = np.ascontiguousarray(rgb)
    return (rgb if rgb.flags.writeable else rgb.copy()), info


def _refusal(p: Path, exc: Exception) -> Exception:
    """The SSB error (or the original I/O error) for a decoder exception."""
    from PIL import Image, UnidentifiedImageError

    msg = " ".join(str(exc).split())[:160] or type(exc).__name__
    if isinstance(exc, OSError) and exc.errno is not None and not isinstance(exc, UnidentifiedImageError):
        return exc  # a real I/O error (EIO on a later read): the caller maps OSError
    if isinstance(exc, Image.DecompressionBombError):
        return LimitExceededError(f"{p} is over Pillow's decompression-bomb limit ({msg})",
                                  field="input.size")
    if isinstance(exc, UnidentifiedImageError):
        return MalformedFieldError(f"{p} is not an image in a format SSB reads ({', '.join(_FORMATS)})",
                                   field="input")
    if isinstance(exc, MemoryError):
        return LimitExceededError(f"{p} needs more memory to decode than is available", field="input.size")
    if isinstance(exc, EOFError) or "truncated" in msg.lower() or "premature end" in msg.lower():
        return TruncatedError(f"{p} is truncated: the image data end early ({msg})", field="input.data")
    return MalformedFieldError(f"{p} has corrupt image data ({type(exc).__name__}: {msg})",
                               field="input.data")


def _rawmode(im) -> str:
    """The decoder's raw mode of the first tile (``"RGB;16B"`` ...), ``""`` when not known."""
    tile = getattr(im, "tile", None) or []
    if not tile:
        return ""
    args = tile[0][3] if len(tile[0]) > 3 else None
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return ""


def _bits(im, rawmode: str) -> int:
    """Bits per channel as stored in the file."""
    tile = getattr(im, "tile", None) or []
    if ";16" in rawmode:
        return 16
    args = tile[0][3] if tile and len(tile[0]) > 3 else None
    if tile and tile[0][0] in ("ppm", "ppm_plain") and isinstance(args, tuple) and args[-1] > 255:
        return 16  # PGM/PPM with maxval > 255: Pillow scales them itself
    return _BITS.get(im.mode, 8)


def _orientation(im, notes: list) -> int:
    """EXIF orientation 1..8 (1 when absent, unreadable or out of range)."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception as exc:  # noqa: BLE001 - a broken EXIF block only costs the orientation
        notes.append(f"EXIF unreadable, orientation not applied ({type(exc).__name__}: {exc})")
        return 1
    if not isinstance(value, int) or not 1 <= value <= 8:
        notes.append(f"EXIF orientation {value!r} is not 1..8, ignored")
        return 1
    return value


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Undo EXIF ``orientation`` on an ``H x W x C`` array (as ``ImageOps.exif_transpose`` does)."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return np.rot90(a, 2).transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(a, 1)
    return a


def _gray3(g: np.ndarray) -> np.ndarray:
    return np.repeat(g[:, :, None], 3, axis=2)


def _scale_int(a: np.ndarray) -> np.ndarray:
    """32-bit integers to uint8: the 16-bit rule when they fit 0..65535, else a linear stretch."""
    lo, hi = int(a.min()), int(a.max())
    if lo >= 0 and hi <= 65535:
        return _LUT16[a.astype(np.uint16)]
    lo, hi = min(0, lo), max(65535, hi)
    return np.floor((a.astype(np.float64) - lo) * (255.0 / (hi - lo)) + 0.5).astype(np.uint8)


def _scale_float(a: np.ndarray) -> np.ndarray:
    """Float samples to uint8: ``[min(0, lo), 1]`` when the max is <= 1, else ``[min(0, lo), max]``."""
    a = a.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, np.uint8)
    lo, hi = min(0.0, float(a[finite].min())), float(a[finite].max())
    hi = max(1.0, hi)
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    a = np.clip(np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo), lo, hi)
    return np.floor((a - lo) * (255.0 / (hi - lo)) + 0.5).astype(np.uint8)


def _over_grey(rgb: np.ndarray, alpha: np.ndarray, one: int) -> np.ndarray:
    """``rgb`` (uint8, or 16-bit when ``one`` is 65535) with ``alpha`` (``0..one``) over :data:`GREY`."""
    if one == 255:  # c * a + 114 * (255 - a) + 127 <= 65152: exact in uint16
        a = alpha.astype(np.uint16)[:, :, None]
        return ((rgb.astype(np.uint16) * a + GREY * (255 - a) + 127) // 255).astype(np.uint8)
    a = alpha.astype(np.float32)[:, :, None] / np.float32(one)
    return np.floor(rgb.astype(np.float32) / np.float32(257) * a + GREY * (1 - a) + 0.5).astype(np.uint8)


def _to_rgb(im, info: dict, name: str) -> np.ndarray:
    """RGB uint8 of the loaded Pillow image of file ``name``, as stored (orientation not undone)."""
    mode = im.mode
    if mode in ("1", "L") and "transparency" not in im.info:
        return _gray3(np.asarray(im.convert("L")))
    if mode.startswith("I;16"):
        return _gray3(_LUT16[np.asarray(im).astype(np.uint16)])
    if mode == "I":
        return _gray3(_scale_int(np.asarray(im)))
    if mode == "F":
        return _gray3(_scale_float(np.asarray(im)))
    if mode in ("La", "RGBa"):  # premultiplied: c_pm + GREY * (1 - a), exactly
        info["alpha"] = True
        pm = np.asarray(im).astype(np.uint32)
        colour = pm[:, :, :3] if mode == "RGBa" else _gray3(pm[:, :, 0])
        return ((colour * 255 + GREY * (255 - pm[:, :, -1:]) + 127) // 255).clip(0, 255).astype(np.uint8)
    if mode in ("LA", "PA", "RGBA") or "transparency" in im.info and mode in ("1", "L", "P", "RGB"):
        rgba = np.asarray(im.convert("RGBA"))
        info["alpha"] = True
        return _over_grey(rgba[:, :, :3], rgba[:, :, 3], 255)
    if mode == "RGB":
        return np.asarray(im)
    if mode == "CMYK":
        return _cmyk(im, info)
    if mode in ("P", "YCbCr", "HSV", "RGBX"):
        return np.asarray(im.convert("RGB"))
    if mode == "LAB":
        return _lab(im, name)
    raise MalformedFieldError(f"{name} is a {mode!r} image, a mode with no RGB conversion",
                              field="input.mode")


def _read16(data: bytes, ref: np.ndarray, orientation: int, info: dict) -> np.ndarray | None:
    """16-bit colour (and gray+alpha) by OpenCV, upright; ``None`` (Pillow's 8 bits then) if it can't.

    ``ref`` is Pillow's upright 8-bit reading of the same channels (RGB, RGBA or LA): OpenCV's
    is kept only if it is the same picture within one level, with the EXIF orientation undone
    or not (OpenCV undoes TIFF's itself, not PNG's), and it is the first page of a TIFF.
    """
    try:
        cv2 = require("cv2", "reading 16-bit colour images")
    except ImportError as exc:
        info["warnings"].append(f"16-bit colour read at 8 bits (high byte) by Pillow: {exc}")
        return None
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    level = log.getLogLevel() if log is not None else None
    if log is not None:
        log.setLogLevel(log.LOG_LEVEL_ERROR)  # for this call: libpng/libtiff warnings are noise here
    try:
        a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        a = None
    finally:
        if log is not None:
            log.setLogLevel(level)
    found = None
    if a is not None and a.dtype == np.uint16 and a.ndim in (2, 3):
        a = a[:, :, None] if a.ndim == 2 else a
        if a.shape[2] in (3, 4):
            a = a[:, :, [2, 1, 0, 3][: a.shape[2]]]  # BGR(A) -> RGB(A)
        if ref.shape[2] == 2 and a.shape[2] == 4:
            a = a[:, :, [0, 3]]  # gray+alpha comes back as BGRA
        for o in dict.fromkeys((orientation, 1)):
            cand = _orient(a, o)
            if cand.shape == ref.shape and (np.abs(_LUT16[cand].astype(np.int16) - ref) <= 1).all():
                found = cand
                break
    if found is None:
        info["warnings"].append("OpenCV could not decode the 16-bit data; read at 8 bits by Pillow")
        return None
    if found.shape[2] == 3:
        return _LUT16[found]
    info["alpha"] = True
    colour = found[:, :, :3] if found.shape[2] == 4 else _gray3(found[:, :, 0])
    return _over_grey(colour, found[:, :, -1], 65535)


def _cmyk(im, info: dict) -> np.ndarray:
    """CMYK through its embedded ICC profile when there is a usable one, else Pillow's formula."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
            info["icc"] = "applied"
            return np.asarray(out)
        except Exception as exc:  # noqa: BLE001 - no LittleCMS, PyCMSError, a profile for another space
            info["icc"] = "ignored"
            info["warnings"].append(f"embedded ICC profile not usable, plain CMYK conversion ({exc})")
    return np.asarray(im.convert("RGB"))


def _lab(im, name: str) -> np.ndarray:
    """CIE L*a*b* to sRGB through LittleCMS (Pillow's own ``convert`` has no LAB -> RGB)."""
    try:
        from PIL import ImageCms

        lab, srgb = ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB")
        return np.asarray(ImageCms.applyTransform(im, ImageCms.buildTransform(lab, srgb, "LAB", "RGB")))
    except Exception as exc:
        raise MalformedFieldError(f"{name} is a LAB image and LittleCMS could not convert it to RGB "
                                  f"({type(exc).__name__})", field="input.mode") from exc
