"""Helpers for the image-reading tests: PNG files written byte by byte (bit depths and headers Pillow
cannot write, with correct CRCs) and a small CMYK ICC profile for LittleCMS."""

from __future__ import annotations

import itertools
import struct
import zlib

import numpy as np
import pytest


def png_chunk(tag: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, tag, data, CRC-32 of tag + data."""
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png_file(width: int, height: int, depth: int, colour: int, pixels: bytes | None = None,
             extra: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """A PNG with the given IHDR; ``pixels`` are the raw rows (filter byte 0 is added), ``None``: no IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    for tag, data in extra:
        out += png_chunk(tag, data)
    if pixels is not None:
        row = len(pixels) // height
        raw = b"".join(b"\0" + pixels[i * row:(i + 1) * row] for i in range(height))
        out += png_chunk(b"IDAT", zlib.compress(raw))
    return out + png_chunk(b"IEND", b"")


def png16(a: np.ndarray, extra: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """A 16-bit PNG of ``a`` (``H x W`` gray, ``H x W x 2`` gray+alpha, ``x 3`` RGB, ``x 4`` RGBA)."""
    a = np.asarray(a, np.uint16)
    channels = 1 if a.ndim == 2 else a.shape[2]
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    return png_file(a.shape[1], a.shape[0], 16, colour, a.astype(">u2").tobytes(), extra)


def exif_orientation(value: int) -> bytes:
    """A minimal little-endian EXIF/TIFF block holding only Orientation = ``value``."""
    ifd = struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, value, 0) + struct.pack("<I", 0)
    return b"II*\0" + ifd


def _lab_of_srgb(rgb) -> tuple[float, float, float]:
    c = np.asarray(rgb, float) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    # sRGB to XYZ adapted to D50 (Bradford), the PCS white
    m = np.array([[0.4360747, 0.3850649, 0.1430804], [0.2225045, 0.7168786, 0.0606169],
                  [0.0139322, 0.0971045, 0.7141733]])
    xyz = m @ lin / np.array([0.9642, 1.0, 0.8249])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def cmyk_icc(to_rgb) -> bytes:
    """An ICC v2 output profile (CMYK -> Lab, one ``lut8`` A2B0 with 2 grid points per ink).

    ``to_rgb(c, m, y, k)`` (inks 0 or 1) gives the sRGB colour each corner of the ink cube prints as.
    """
    ident = bytes(range(256))
    clut = bytearray()
    for c, m, y, k in itertools.product((0, 1), repeat=4):
        L, a, b = _lab_of_srgb(to_rgb(c, m, y, k))
        clut += bytes([round(L * 255 / 100), round(a + 128), round(b + 128)])
    e = struct.pack(">9i", 65536, 0, 0, 0, 65536, 0, 0, 0, 65536)
    lut = b"mft1" + b"\0" * 4 + bytes([4, 3, 2, 0]) + e + ident * 4 + bytes(clut) + ident * 3
    d50 = struct.pack(">3i", int(0.9642 * 65536), 65536, int(0.8249 * 65536))
    desc_s = b"ssb test cmyk\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(desc_s)) + desc_s + b"\0" * 78
    tags = [(b"A2B0", lut), (b"wtpt", b"XYZ " + b"\0" * 4 + d50), (b"desc", desc)]
    off = 128 + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for sig, body in tags:
        data += b"\0" * (-(off + len(data)) % 4)
        table += sig + struct.pack(">II", off + len(data), len(body))
        data += body
    hdr = struct.pack(">I", off + len(data)) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"prtr" + b"CMYK" + b"Lab "
    hdr += b"\0" * 12 + b"acsp" + b"\0" * 28 + d50 + b"\0" * 48  # 28: platform..intent
    assert len(hdr) == 128
    return hdr + table + data


class Helpers:
    png_chunk = staticmethod(png_chunk)
    png_file = staticmethod(png_file)
    png16 = staticmethod(png16)
    exif_orientation = staticmethod(exif_orientation)
    cmyk_icc = staticmethod(cmyk_icc)


@pytest.fixture
def helpers() -> type[Helpers]:
    return Helpers
