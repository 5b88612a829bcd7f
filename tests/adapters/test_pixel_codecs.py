"""Pixel-codec baselines (ssb.adapters.pixel_codecs) on a real photo."""

from __future__ import annotations

import numpy as np
import pytest

from ssb.adapters import pixel_codecs as pc
from ssb.errors import LimitExceededError, MalformedFieldError, MissingDependencyError, SSBError

pytest.importorskip("PIL")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    pytest.importorskip("skimage")
    from ssb.resources import real_photos

    photos = dict(real_photos())
    if "astronaut" not in photos:
        pytest.skip("skimage's astronaut photo is not installed")
    return photos["astronaut"]


LOSSY = [name for name in ("jpeg", "webp", "avif") if pc.CODECS[name].available()]


def test_registry():
    assert set(pc.codec_names()) == {"jpeg", "webp", "avif", "png"}
    assert {"jpeg", "png"} <= set(pc.available_codecs())
    assert pc.get_codec("JPG") is pc.CODECS["jpeg"]
    for name in pc.available_codecs():
        q = pc.default_qualities(name)
        lo, hi = pc.CODECS[name].quality_range
        assert list(q) == sorted(set(q)) and lo <= q[0] and q[-1] <= hi
        assert len(q) >= 6 or pc.CODECS[name].lossless
    with pytest.raises(SSBError, match="unknown pixel codec"):
        pc.get_codec("bpg")


@pytest.mark.parametrize("name", LOSSY)
def test_lossy_sweep_on_a_real_photo(name, astronaut):
    """Shapes survive; fewer bytes and more error at lower quality (AVIF: 3 points of the sweep, it is slow)."""
    qualities = pc.default_qualities(name)
    if name == "avif":
        qualities = (qualities[0], qualities[len(qualities) // 2], qualities[-1])
    sizes, errors = [], []
    for q in qualities:
        data = pc.encode(name, astronaut, q)
        out = pc.decode(name, data)
        assert out.shape == astronaut.shape and out.dtype == np.uint8
        sizes.append(len(data))
        errors.append(np.abs(out.astype(np.int16) - astronaut).mean())
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), sizes
    assert errors[0] > 2 * errors[-1], errors
    assert sizes[-1] < astronaut.nbytes / 2


def test_png_is_lossless(astronaut):
    crop = astronaut[100:228, 150:310]
    data = pc.encode("png", crop, 9)
    np.testing.assert_array_equal(pc.decode("png", data), crop)
    assert len(pc.encode("png", crop, 0)) > len(data)


def test_odd_sizes_round_trip():
    rgb = np.random.default_rng(0).integers(0, 256, (7, 13, 3), dtype=np.uint8)
    for name in pc.available_codecs():
        assert pc.decode(name, pc.encode(name, rgb, pc.default_qualities(name)[-1])).shape == (7, 13, 3)


def test_refusals(astronaut):
    with pytest.raises(MalformedFieldError, match="uint8"):
        pc.encode("jpeg", astronaut.astype(np.float32), 50)
    with pytest.raises(MalformedFieldError, match="uint8"):
        pc.encode("jpeg", astronaut[..., 0], 50)
    with pytest.raises(MalformedFieldError) as err:
        pc.encode("jpeg", astronaut, 0)
    assert err.value.field == "quality"
    with pytest.raises(MalformedFieldError):
        pc.encode("png", astronaut, 10)
    png = pc.encode("png", astronaut[:16, :16], 1)
    with pytest.raises(MalformedFieldError, match="not a valid jpeg"):
        pc.decode("jpeg", png)
    jpeg = pc.encode("jpeg", astronaut, 50)
    for bad in (b"", b"\xff\xd8\xff garbage", jpeg[: len(jpeg) // 3]):
        with pytest.raises(MalformedFieldError):
            pc.decode("jpeg", bad)
    with pytest.raises(LimitExceededError):
        pc.decode("jpeg", jpeg, max_pixels=512 * 511)


def test_unavailable_codec_names_its_fix(monkeypatch):
    monkeypatch.setitem(pc.CODECS, "avif", pc.PixelCodec("avif", "AVIF", False, (0, 100), (50,), feature="no-such-feature"))
    assert "avif" not in pc.available_codecs()
    with pytest.raises(MissingDependencyError, match="pip install"):
        pc.encode("avif", np.zeros((8, 8, 3), np.uint8), 50)
