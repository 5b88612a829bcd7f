"""ssb.codec.fill: the encoder's fill of the pixels outside a group depends on the inside only."""

from __future__ import annotations

import numpy as np
import pytest

from ssb.codec.fill import GREY, fill_outside


def _blob(h=37, w=53, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    keep = (yy - h / 3) ** 2 / 60 + (xx - w / 2) ** 2 / 90 < 1.0
    return image, keep


@pytest.mark.parametrize("fill", ["pushpull", "grey"])
def test_outside_pixels_never_reach_the_output(fill):
    image, keep = _blob()
    other = np.where(keep[..., None], image, 255 - image).astype(np.uint8)
    a, b = fill_outside(image, keep, fill), fill_outside(other, keep, fill)
    assert np.array_equal(a, b)
    assert np.array_equal(a[keep], image[keep])


def test_pushpull_extends_a_constant_inside_exactly():
    image, keep = _blob(seed=1)
    image[keep] = (12, 200, 77)
    out = fill_outside(image, keep, "pushpull")
    assert np.array_equal(out.reshape(-1, 3), np.tile(np.array([12, 200, 77], np.uint8), (keep.size, 1)))


def test_pushpull_is_smooth_where_grey_has_an_edge():
    h, w = 40, 64
    image = np.zeros((h, w, 3), np.uint8)
    image[:, :32] = np.linspace(0, 250, 32, dtype=np.uint8)[None, :, None]
    keep = np.zeros((h, w), bool)
    keep[:, :32] = True
    push = fill_outside(image, keep, "pushpull").astype(int)
    grey = fill_outside(image, keep, "grey").astype(int)
    jump_push = np.abs(push[:, 32] - push[:, 31]).max()
    jump_grey = np.abs(grey[:, 32] - grey[:, 31]).max()
    assert 2 * jump_push < jump_grey
    assert (grey[:, 32:] == GREY).all()


def test_empty_and_full_masks():
    image, _ = _blob(seed=2)
    assert (fill_outside(image, np.zeros(image.shape[:2], bool), "pushpull") == GREY).all()
    assert np.array_equal(fill_outside(image, np.ones(image.shape[:2], bool), "pushpull"), image)


def test_unknown_fill_is_refused():
    image, keep = _blob()
    with pytest.raises(ValueError, match="unknown fill"):
        fill_outside(image, keep, "blur")
