"""ssb.media.images: every still-image kind to RGB uint8, with the conversion rule checked per kind."""

from __future__ import annotations

import numpy as np
import pytest

from ssb.errors import MalformedFieldError
from ssb.media import images
from ssb.media.images import IMAGE_SUFFIXES, load_image, load_image_info

GREY = 114  # the policy, written out: a change of ssb.media.images.GREY must fail these tests

Image = pytest.importorskip("PIL.Image")

RNG = np.random.default_rng(7)


def _round257(v) -> np.ndarray:
    """The 16-bit rule, computed independently of the module: round(v / 257)."""
    return np.round(np.asarray(v, np.float64) / 257.0).astype(np.uint8)


def _over(c, a) -> np.ndarray:
    c, a = np.asarray(c, np.float64), np.asarray(a, np.float64)
    return np.round((c * a + GREY * (255 - a)) / 255).astype(np.uint8)


def _check(a: np.ndarray, h: int, w: int) -> None:
    assert a.dtype == np.uint8 and a.shape == (h, w, 3) and a.flags.c_contiguous and a.flags.writeable


def test_rgb8_exact(tmp_path):
    a = RNG.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    for ext in (".png", ".bmp", ".tif", ".ppm"):
        Image.fromarray(a).save(tmp_path / f"x{ext}")
        got, info = load_image_info(tmp_path / f"x{ext}")
        _check(got, 9, 13)
        np.testing.assert_array_equal(got, a)
        assert info["size"] == (13, 9) and info["bits"] == 8 and info["frames"] == 1 and not info["alpha"]


def test_gray16_png_gradient_scaled_not_clipped(tmp_path):
    v = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    Image.fromarray(v).save(tmp_path / "g.png")
    got, info = load_image_info(tmp_path / "g.png")
    _check(got, 256, 256)
    assert info["mode"].startswith("I") and info["bits"] == 16
    flat = got[..., 0].ravel()
    assert flat[0] == 0 and flat[-1] == 255 and np.all(np.diff(flat.astype(int)) >= 0)
    np.testing.assert_array_equal(got[..., 0], _round257(v))
    assert (got[..., 0] == got[..., 2]).all()
    assert np.count_nonzero(flat == 255) < 200  # the old clip made ~65280 of them white


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_gray16_tiff(tmp_path, mode):
    v = RNG.integers(0, 65536, (7, 11)).astype(np.uint16)
    raw = v.astype(">u2" if mode == "I;16B" else "<u2").tobytes()  # (Pillow's convert() to I;16B clips)
    Image.frombytes(mode, (11, 7), raw).save(tmp_path / "g.tif")
    got, info = load_image_info(tmp_path / "g.tif")
    assert info["mode"] == mode
    np.testing.assert_array_equal(got[..., 1], _round257(v))


def test_pgm16_and_maxval(tmp_path):
    v = np.array([[0, 257, 511, 65535]], np.uint16)
    (tmp_path / "g.pgm").write_bytes(b"P5\n4 1\n65535\n" + v.astype(">u2").tobytes())
    got, info = load_image_info(tmp_path / "g.pgm")
    np.testing.assert_array_equal(got[0, :, 0], [0, 1, 2, 255])
    assert info["bits"] == 16
    (tmp_path / "g12.pgm").write_bytes(b"P5\n2 1\n4095\n" + np.array([0, 4095], ">u2").tobytes())
    np.testing.assert_array_equal(load_image(tmp_path / "g12.pgm")[0, :, 0], [0, 255])


def test_rgb16_png_full_precision(tmp_path, helpers):
    # 511 -> 2 by round(v/257), 1 by Pillow's high byte: the test fails if only 8 bits were read
    v = RNG.integers(0, 65536, (5, 6, 3)).astype(np.uint16)
    v[0, 0] = (511, 0, 65535)
    (tmp_path / "c.png").write_bytes(helpers.png16(v))
    got, info = load_image_info(tmp_path / "c.png")
    _check(got, 5, 6)
    np.testing.assert_array_equal(got, _round257(v))
    assert tuple(got[0, 0]) == (2, 0, 255) and info["bits"] == 16 and not info["warnings"]


def test_rgba16_and_la16_png_composite(tmp_path, helpers):
    c = RNG.integers(0, 65536, (4, 5, 3)).astype(np.uint16)
    a = RNG.integers(0, 65536, (4, 5)).astype(np.uint16)
    a[0, 0], a[0, 1] = 0, 65535
    (tmp_path / "c.png").write_bytes(helpers.png16(np.dstack([c, a])))
    got, info = load_image_info(tmp_path / "c.png")
    want = np.round(c / 257.0 * (a / 65535.0)[..., None] + GREY * (1 - a / 65535.0)[..., None])
    np.testing.assert_allclose(got, want, atol=1)  # float32 arithmetic: rounding within one level
    assert tuple(got[0, 0]) == (GREY,) * 3 and tuple(got[0, 1]) == tuple(_round257(c[0, 1])) and info["alpha"]
    assert not info["warnings"]
    (tmp_path / "la.png").write_bytes(helpers.png16(np.dstack([c[..., 0], a])))
    got = load_image(tmp_path / "la.png")
    np.testing.assert_allclose(got[..., 0], want[..., 0], atol=1)
    assert (got[..., 0] == got[..., 2]).all()


@pytest.mark.parametrize("shape", [(4, 6), (5, 5)])  # square: only the pixels tell rotated from not
def test_rgb16_png_exif_orientation(tmp_path, helpers, shape):
    v = np.zeros(shape + (3,), np.uint16)
    v[0, 0] = 65535  # top-left white
    v[-1, 0] = 511  # bottom-left: 2 at full precision
    (tmp_path / "c.png").write_bytes(helpers.png16(v, extra=((b"eXIf", helpers.exif_orientation(6)),)))
    got, info = load_image_info(tmp_path / "c.png")
    assert got.shape == (shape[1], shape[0], 3) and info["orientation"] == 6 and not info["warnings"]
    assert tuple(got[0, -1]) == (255,) * 3 and tuple(got[0, 0]) == (2,) * 3


def test_rgb16_tiff_orientation(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    v = np.zeros((4, 6, 3), np.uint16)
    v[0, 0], v[-1, 0] = 65535, 511
    tifffile.imwrite(tmp_path / "c.tif", v, photometric="rgb", extratags=[(274, "H", 1, 6, True)])
    got, info = load_image_info(tmp_path / "c.tif")
    assert got.shape == (6, 4, 3) and info["orientation"] == 6 and info["bits"] == 16 and not info["warnings"]
    assert tuple(got[0, -1]) == (255,) * 3 and tuple(got[0, 0]) == (2,) * 3


def test_rgb16_without_opencv_falls_back_to_pillow(tmp_path, helpers, monkeypatch):
    from ssb.errors import MissingDependencyError

    real = images.require

    def no_cv2(module, purpose=""):
        if module == "cv2":
            raise MissingDependencyError("cv2 is required but is not installed")
        return real(module, purpose)

    monkeypatch.setattr(images, "require", no_cv2)
    v = RNG.integers(0, 65536, (3, 4, 3)).astype(np.uint16)
    (tmp_path / "c.png").write_bytes(helpers.png16(v))
    got, info = load_image_info(tmp_path / "c.png")
    assert np.abs(got.astype(int) - _round257(v)).max() <= 1 and any("8 bits" in w for w in info["warnings"])


def test_int32_and_float_tiff(tmp_path):
    small = np.array([[0, 257, 65535]], np.int32)
    Image.fromarray(small, "I").save(tmp_path / "i.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "i.tif")[0, :, 0], [0, 1, 255])
    big = np.array([[-100, 0, 1_000_000]], np.int32)  # [min(0,lo), hi] linearly
    Image.fromarray(big, "I").save(tmp_path / "j.tif")
    want = np.round((big[0] + 100) * 255 / 1_000_100)
    np.testing.assert_array_equal(load_image(tmp_path / "j.tif")[0, :, 0], want)
    unit = np.array([[0.0, 0.5, 1.0, np.nan]], np.float32)
    Image.fromarray(unit, "F").save(tmp_path / "f.tif")
    got, info = load_image_info(tmp_path / "f.tif")
    np.testing.assert_array_equal(got[0, :, 0], [0, 128, 255, 0])
    assert info["mode"] == "F" and info["bits"] == 32
    dim = np.array([[0.0, 0.25, 0.5]], np.float32)  # max <= 1: [0, 1] assumed, not stretched to the max
    Image.fromarray(dim, "F").save(tmp_path / "d.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "d.tif")[0, :, 0], [0, 64, 128])
    wide = np.array([[0.0, 2.0, 4.0, np.inf]], np.float32)  # max > 1: scaled by the max
    Image.fromarray(wide, "F").save(tmp_path / "w.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "w.tif")[0, :, 0], [0, 128, 255, 255])


def test_bilevel_and_gray(tmp_path):
    b = RNG.integers(0, 2, (8, 16)).astype(bool)
    Image.fromarray(b).save(tmp_path / "b.png")
    got, info = load_image_info(tmp_path / "b.png")
    assert info["mode"] == "1" and info["bits"] == 1
    np.testing.assert_array_equal(got[..., 1], np.where(b, 255, 0))
    g = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    Image.fromarray(g).save(tmp_path / "g.pgm")
    np.testing.assert_array_equal(load_image(tmp_path / "g.pgm"), np.dstack([g] * 3))


def test_gray_alpha_and_rgba_over_grey(tmp_path):
    g = RNG.integers(0, 256, (6, 6), dtype=np.uint8)
    a = RNG.integers(0, 256, (6, 6), dtype=np.uint8)
    a[0, 0], a[0, 1] = 0, 255
    Image.fromarray(np.dstack([g, a]), "LA").save(tmp_path / "la.png")
    got, info = load_image_info(tmp_path / "la.png")
    np.testing.assert_array_equal(got[..., 0], _over(g, a))
    assert tuple(got[0, 0]) == (GREY,) * 3 and got[0, 1, 0] == g[0, 1] and info["alpha"]
    c = RNG.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    Image.fromarray(np.dstack([c, a]), "RGBA").save(tmp_path / "c.png")
    np.testing.assert_array_equal(load_image(tmp_path / "c.png"), _over(c, a[..., None]))


def test_premultiplied_modes_over_grey():
    c = RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    a = RNG.integers(0, 256, (4, 5), dtype=np.uint8)
    a[0, 0], a[0, 1] = 0, 255
    gray = c[..., :1].repeat(3, 2)
    cases = {"RGBa": (Image.fromarray(np.dstack([c, a]), "RGBA"), _over(c, a[..., None])),
             "La": (Image.fromarray(np.dstack([gray[..., 0], a]), "LA"), _over(gray, a[..., None]))}
    for mode, (straight, want) in cases.items():
        src, info = straight.convert(mode), {}
        got = images._to_rgb(src, info, mode)  # no file format stores these: the converter itself
        assert np.abs(got.astype(int) - want).max() <= 1 and tuple(got[0, 0]) == (GREY,) * 3 and info["alpha"]


def test_rgb_icc_profile_reported_not_applied(tmp_path):
    ImageCms = pytest.importorskip("PIL.ImageCms")
    a = RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(a).save(tmp_path / "x.png", icc_profile=icc)
    got, info = load_image_info(tmp_path / "x.png")
    np.testing.assert_array_equal(got, a)
    assert info["icc"] == "ignored"


def test_palette_with_and_without_transparency(tmp_path):
    pal = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]
    idx = np.array([[0, 1, 2, 3]], np.uint8)
    im = Image.fromarray(idx, "P")
    im.putpalette(pal)
    im.save(tmp_path / "p.png")
    got, info = load_image_info(tmp_path / "p.png")
    assert info["mode"] == "P" and not info["alpha"]
    np.testing.assert_array_equal(got[0], np.reshape(pal, (4, 3)))
    for ext in (".png", ".gif"):
        im.save(tmp_path / f"t{ext}", transparency=1)
        got, info = load_image_info(tmp_path / f"t{ext}")
        assert info["alpha"] and tuple(got[0, 1]) == (GREY,) * 3
        assert tuple(got[0, 0]) == (255, 0, 0) and tuple(got[0, 3]) == (10, 20, 30)


def test_rgb_with_trns_colour(tmp_path):
    c = np.array([[[1, 2, 3], [200, 100, 50]]], np.uint8)
    Image.fromarray(c).save(tmp_path / "t.png", transparency=(1, 2, 3))
    got = load_image(tmp_path / "t.png")
    assert tuple(got[0, 0]) == (GREY,) * 3 and tuple(got[0, 1]) == (200, 100, 50)


_CMYK = [((0, 0, 0, 0), (255, 255, 255)), ((255, 0, 0, 0), (0, 255, 255)), ((0, 255, 0, 0), (255, 0, 255)),
         ((0, 0, 255, 0), (255, 255, 0)), ((0, 0, 0, 255), (0, 0, 0)), ((255, 255, 0, 0), (0, 0, 255)),
         ((0, 0, 0, 128), (127, 127, 127))]


@pytest.mark.parametrize("ext", [".tif", ".jpg"])
def test_cmyk_primaries(tmp_path, ext):
    im = Image.new("CMYK", (8 * len(_CMYK), 8))
    for i, (ink, _) in enumerate(_CMYK):
        im.paste(ink, (8 * i, 0, 8 * i + 8, 8))
    im.save(tmp_path / f"c{ext}", **({"quality": 95} if ext == ".jpg" else {}))
    got, info = load_image_info(tmp_path / f"c{ext}")
    assert info["mode"] == "CMYK" and info["icc"] is None
    tol = 2 if ext == ".tif" else 12
    for i, (_, rgb) in enumerate(_CMYK):
        np.testing.assert_allclose(got[4, 8 * i + 4], rgb, atol=tol)


def test_cmyk_icc_profile_applied(tmp_path, helpers):
    pytest.importorskip("PIL.ImageCms")
    # a profile that prints cyan ink as red, magenta as green, yellow as blue: far from the plain formula
    icc = helpers.cmyk_icc(lambda c, m, y, k: (255 * (1 - k) * c, 255 * (1 - k) * m, 255 * (1 - k) * y))
    im = Image.new("CMYK", (3, 1))
    for i, ink in enumerate([(255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0)]):
        im.putpixel((i, 0), ink)
    im.save(tmp_path / "c.tif", icc_profile=icc)
    got, info = load_image_info(tmp_path / "c.tif")
    assert info["icc"] == "applied"
    for i, want in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        assert np.abs(got[0, i].astype(int) - want).max() <= 60, (i, got[0, i])
        assert got[0, i].argmax() == i


def test_cmyk_unusable_icc_falls_back(tmp_path):
    im = Image.new("CMYK", (2, 2), (255, 0, 0, 0))
    im.save(tmp_path / "c.tif", icc_profile=b"not a profile" * 10)
    got, info = load_image_info(tmp_path / "c.tif")
    assert info["icc"] == "ignored" and info["warnings"]
    np.testing.assert_allclose(got[0, 0], (0, 255, 255), atol=2)


def test_ycbcr_lab_hsv(tmp_path):
    c = np.array([[[200, 60, 40], [50, 160, 70], [40, 60, 180], [128, 128, 128]]], np.uint8)
    Image.fromarray(c).convert("YCbCr").save(tmp_path / "y.tif")
    got, info = load_image_info(tmp_path / "y.tif")
    assert info["mode"] == "YCbCr"
    np.testing.assert_allclose(got, c, atol=3)
    ImageCms = pytest.importorskip("PIL.ImageCms")
    t = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    ImageCms.applyTransform(Image.fromarray(c), t).save(tmp_path / "l.tif")
    got, info = load_image_info(tmp_path / "l.tif")
    assert info["mode"] == "LAB"
    np.testing.assert_allclose(got, c, atol=8)
    hsv = Image.fromarray(c).convert("HSV")  # no file format stores HSV: the converter itself
    np.testing.assert_allclose(images._to_rgb(hsv, {}, "hsv"), c, atol=3)


def test_unknown_mode_refused():
    class Odd:
        mode, info = "BGR;15", {}

    with pytest.raises(MalformedFieldError, match="odd.x is a 'BGR;15' image") as e:
        images._to_rgb(Odd(), {}, "odd.x")
    assert e.value.field == "input.mode"


def _quadrants(h=32, w=48) -> np.ndarray:
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (255, 0, 0)      # top-left red
    a[: h // 2, w // 2:] = (0, 255, 0)       # top-right green
    a[h // 2:, : w // 2] = (0, 0, 255)       # bottom-left blue
    a[h // 2:, w // 2:] = (255, 255, 255)
    return a


def test_exif_orientation_6_jpeg(tmp_path):
    ex = Image.Exif()
    ex[0x0112] = 6
    Image.fromarray(_quadrants()).save(tmp_path / "o.jpg", exif=ex, quality=95)
    got, info = load_image_info(tmp_path / "o.jpg")
    assert got.shape == (48, 32, 3) and info["orientation"] == 6 and info["size"] == (32, 48)
    # rotated 90 degrees clockwise: the stored top-left (red) is now top-right, bottom-left (blue) top-left
    np.testing.assert_allclose(got[4, -4], (255, 0, 0), atol=10)
    np.testing.assert_allclose(got[4, 4], (0, 0, 255), atol=10)
    np.testing.assert_allclose(got[-4, -4], (0, 255, 0), atol=10)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("ext", [".png", ".tif", ".webp"])
def test_every_orientation_matches_exif_transpose(tmp_path, orientation, ext):
    from PIL import ImageOps

    a = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    ex = Image.Exif()
    ex[0x0112] = orientation
    Image.fromarray(a).save(tmp_path / f"o{ext}", exif=ex, **({"lossless": True} if ext == ".webp" else {}))
    got, info = load_image_info(tmp_path / f"o{ext}")
    want = np.asarray(ImageOps.exif_transpose(_with_exif(a, orientation)))
    np.testing.assert_array_equal(got, want)
    assert info["orientation"] == orientation


def _with_exif(a: np.ndarray, orientation: int):
    im = Image.fromarray(a)
    im.getexif()[0x0112] = orientation
    return im


def test_bad_orientation_value_ignored(tmp_path, helpers):
    a = RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    (tmp_path / "o.png").write_bytes(helpers.png_file(4, 3, 8, 2, a.tobytes(),
                                                      extra=((b"eXIf", helpers.exif_orientation(9)),)))
    got, info = load_image_info(tmp_path / "o.png")
    np.testing.assert_array_equal(got, a)
    assert info["orientation"] == 1 and any("orientation 9" in w for w in info["warnings"])


def _frames(n=3):
    return [Image.new("RGB", (6, 4), (60 * (i + 1), 10, 200 - 50 * i)) for i in range(n)]


@pytest.mark.parametrize("ext,kw", [(".gif", {}), (".webp", {"lossless": True}), (".png", {}), (".tif", {}),
                                    (".mpo", {"quality": 95})])
def test_multi_frame_gives_first_and_counts(tmp_path, ext, kw):
    fr = _frames()
    fr[0].save(tmp_path / f"a{ext}", save_all=True, append_images=fr[1:], **kw)
    got, info = load_image_info(tmp_path / f"a{ext}")
    assert info["frames"] == 3
    _check(got, 4, 6)
    np.testing.assert_allclose(got[1, 1], (60, 10, 200), atol=4)


def test_suffixes_are_formats_pillow_reads():
    from PIL import features

    Image.init()
    ext = Image.registered_extensions()
    common = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".ppm", ".pgm"}
    assert common <= IMAGE_SUFFIXES
    for s in IMAGE_SUFFIXES:
        if s == ".avif" and not features.check("avif"):
            continue
        assert s == s.lower() and ext.get(s) in images._FORMATS + ("MPO",), s


@pytest.mark.parametrize("ext", [".qoi", ".jp2", ".avif", ".jpg", ".webp"])
def test_other_formats(tmp_path, ext):
    from PIL import features

    if ext == ".avif" and not features.check("avif"):
        pytest.skip("Pillow built without AVIF")
    a = np.zeros((16, 24, 3), np.uint8)
    a[:, 12:] = (200, 40, 90)
    try:
        Image.fromarray(a).save(tmp_path / f"x{ext}")
    except (OSError, KeyError) as exc:
        pytest.skip(f"this Pillow cannot write {ext}: {exc}")
    got = load_image(tmp_path / f"x{ext}")
    _check(got, 16, 24)
    np.testing.assert_allclose(got[8, 18], (200, 40, 90), atol=6)
    np.testing.assert_allclose(got[8, 4], (0, 0, 0), atol=6)
