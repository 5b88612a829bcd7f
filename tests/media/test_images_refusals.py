"""ssb.media.images refusals: every bad input ends in one SSB error (or the OS's own for missing and
unreadable files), never in a decoder's exception; the pixel limit acts before decoding."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from ssb.errors import LimitExceededError, MalformedFieldError, SSBError, TruncatedError
from ssb.media.images import load_image, load_image_info

Image = pytest.importorskip("PIL.Image")
ImageFile = pytest.importorskip("PIL.ImageFile")

ROOT = Path(__file__).resolve().parents[2]


def _noise(h=24, w=32) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _encoded(fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    Image.fromarray(_noise()).save(b, fmt, **kw)
    return b.getvalue()


def _refused(path: Path, kinds=(TruncatedError, MalformedFieldError)) -> SSBError:
    """``load_image``'s error on ``path``: one of ``kinds``, on ``input*``, one line naming the file."""
    with pytest.raises(SSBError) as e:
        load_image(path)
    err = e.value
    assert isinstance(err, kinds), (type(err), err)
    assert err.field and err.field.startswith("input") and str(path) in str(err) and "\n" not in str(err)
    return err


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_png_and_jpeg(tmp_path, fmt):
    data = _encoded(fmt)
    start = 60 if fmt == "PNG" else 200  # past the header: the image data are what is missing
    for cut in np.linspace(start, len(data) - 30, 7).astype(int):
        p = tmp_path / f"cut{cut}.{fmt.lower()}"
        p.write_bytes(data[:cut])
        err = _refused(p, TruncatedError)
        assert "truncated" in str(err)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "TIFF", "BMP"])
def test_truncated_other_formats(tmp_path, fmt):
    data = _encoded(fmt)
    for cut in (8, 40, len(data) // 2, len(data) - 40):
        (tmp_path / "cut.img").write_bytes(data[:cut])
        _refused(tmp_path / "cut.img")


def test_huge_png_header_refused_before_decoding(tmp_path, helpers):
    # 9000 x 8000 = 72 MP, under Pillow's own bomb limit, over ours; no IDAT at all: decoding would
    # fail with a different error, so a LimitExceededError about the header proves none was tried
    (tmp_path / "big.png").write_bytes(helpers.png_file(9000, 8000, 8, 2))
    with pytest.raises(LimitExceededError, match="9000x8000") as e:
        load_image(tmp_path / "big.png")
    assert e.value.field == "input.size"
    (tmp_path / "bomb.png").write_bytes(helpers.png_file(100_000, 100_000, 8, 6))
    with pytest.raises(LimitExceededError):
        load_image(tmp_path / "bomb.png")
    # over Pillow's DecompressionBombError even when the caller's own limit allows it
    with pytest.raises(LimitExceededError, match="decompression-bomb"):
        load_image(tmp_path / "bomb.png", max_pixels=10**12)
    Image.fromarray(_noise()).save(tmp_path / "small.png")
    with pytest.raises(LimitExceededError, match="over the limit of 100"):
        load_image(tmp_path / "small.png", max_pixels=100)


@pytest.mark.platform
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and ru_maxrss as on Linux")
def test_huge_header_allocates_nothing_big(tmp_path, helpers):
    """In a child capped at +200 MiB of address space: a decode of 72 MP RGB would need 288 MB."""
    zeros = b"\0" * 9000 * 3 * 8  # 8 real rows: a reader that started decoding would allocate the frame
    (tmp_path / "big.png").write_bytes(helpers.png_file(9000, 8000, 8, 2, zeros, ()))
    code = textwrap.dedent(f"""
        import resource, tracemalloc
        from ssb.errors import LimitExceededError
        from ssb.media.images import load_image
        import PIL.Image, PIL.PngImagePlugin, numpy
        vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (200 << 20), resource.RLIM_INFINITY))
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        try:
            load_image({str(tmp_path / 'big.png')!r})
        except LimitExceededError as exc:
            peak = tracemalloc.get_traced_memory()[1]
            grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
            print("refused", "declares" in str(exc), peak, grew)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                         check=False)
    words = out.stdout.split()
    assert words[:2] == ["refused", "True"], out.stdout + out.stderr
    peak, grew_kib = int(words[2]), int(words[3])
    assert peak < 8 << 20 and grew_kib < 64 << 10, (peak, grew_kib)


def test_pillow_bomb_warning_does_not_escape(tmp_path, monkeypatch):
    Image.fromarray(_noise(10, 15)).save(tmp_path / "x.png")  # 150 px
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 150 > 100: Pillow warns; 150 < 200: no error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, info = load_image_info(tmp_path / "x.png")
    assert got.shape == (10, 15, 3) and not any("decompression" in w.lower() for w in info["warnings"])
    Image.fromarray(_noise(20, 20)).save(tmp_path / "y.png")  # 400 > 2 x 100: Pillow's error
    with pytest.raises(LimitExceededError):
        load_image(tmp_path / "y.png")


def test_zero_size(tmp_path, helpers):
    (tmp_path / "z.png").write_bytes(helpers.png_file(0, 5, 8, 2, None))
    _refused(tmp_path / "z.png")
    (tmp_path / "z.pgm").write_bytes(b"P5\n0 0\n255\n")
    _refused(tmp_path / "z.pgm")


def test_not_an_image(tmp_path):
    for name, data in [("notes.png", b"hello, this is text\n" * 20), ("empty.jpg", b""),
                       ("x.tif", b"II*\0garbage"), ("doc.pdf", b"%PDF-1.4\n%%EOF\n"),
                       ("eps.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")]:
        (tmp_path / name).write_bytes(data)
        err = _refused(tmp_path / name, MalformedFieldError)
        assert err.field in ("input", "input.data")
    assert "not an image" in str(_refused(tmp_path / "notes.png", MalformedFieldError))


@pytest.mark.platform
def test_directory_missing_and_unreadable(tmp_path):
    with pytest.raises(MalformedFieldError, match="directory") as e:
        load_image(tmp_path)
    assert e.value.field == "input"
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "absent.png")
    p = tmp_path / "secret.png"
    Image.fromarray(_noise()).save(p)
    p.chmod(0)
    try:
        if os.access(p, os.R_OK):
            pytest.skip("running as a user that reads mode-000 files (root)")
        with pytest.raises(PermissionError):
            load_image(p)
    finally:
        p.chmod(0o644)


@pytest.mark.platform
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_and_device_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(MalformedFieldError, match="not a regular file"):
        load_image(tmp_path / "pipe.png")
    if os.path.exists("/dev/zero"):
        with pytest.raises(MalformedFieldError, match="not a regular file"):
            load_image("/dev/zero")


def _mutants(data: bytes, rng: np.random.Generator, n: int):
    """``n`` damaged copies: byte flips, truncations, spliced or duplicated spans."""
    for _ in range(n):
        b = bytearray(data)
        kind = rng.integers(0, 4)
        if kind == 0:
            for i in rng.integers(0, len(b), rng.integers(1, 9)):
                b[i] = int(rng.integers(0, 256))
        elif kind == 1:
            b = b[: int(rng.integers(1, len(b)))]
        elif kind == 2:
            i, j = sorted(rng.integers(0, len(b), 2))
            b[i:j] = bytes(rng.integers(0, 256, max(0, int(j - i)), dtype=np.uint8))
        else:
            i = int(rng.integers(8, len(b)))
            b = b[:i] + b[i - 8:]
            for k in rng.integers(0, min(64, len(b)), 2):  # headers are where parsers trust lengths
                b[int(k)] = int(rng.integers(0, 256))
        yield bytes(b)


def test_fuzz_only_ssb_errors_or_valid_arrays(tmp_path, helpers):
    rng = np.random.default_rng(2024)
    small = Image.fromarray(_noise(12, 16))
    seeds = {"png": _encoded("PNG"), "jpg": _encoded("JPEG", quality=80), "gif": _encoded("GIF"),
             "webp": _encoded("WEBP", quality=70), "tif": _encoded("TIFF", compression="tiff_lzw"),
             "bmp": _encoded("BMP"), "png16": helpers.png16(rng.integers(0, 65536, (6, 8, 4)))}
    b = io.BytesIO()
    small.save(b, "GIF", save_all=True, append_images=[small.rotate(90), small.rotate(180)])
    seeds["agif"] = b.getvalue()
    t0, outcomes = time.monotonic(), {"ok": 0, "refused": 0}
    for name, data in seeds.items():
        for i, mutant in enumerate(_mutants(data, rng, 60)):
            p = tmp_path / f"{name}{i}.{name}"
            p.write_bytes(mutant)
            try:
                a, info = load_image_info(p)
            except SSBError as exc:
                assert exc.field and exc.field.startswith("input") and "\n" not in str(exc)
                outcomes["refused"] += 1
            else:
                assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 and a.flags.c_contiguous
                assert a.shape[0] * a.shape[1] > 0 and info["frames"] >= 1
                outcomes["ok"] += 1
            p.unlink()
    assert outcomes["refused"] > 50 and time.monotonic() - t0 < 120, outcomes
