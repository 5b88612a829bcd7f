"""The real images that reference models are trained and evaluated on.

Only media installed offline from package registries (see ``ssb.resources``):

* ``vtest.avi`` (Debian opencv-doc): frames ``0..TRAIN_LAST_FRAME`` train, frames from
  ``VAL_FIRST_FRAME`` on are held out (a gap of 20 frames keeps near-duplicate frames apart);
* photos shipped inside the scikit-image, scikit-learn and matplotlib wheels, split by name.

The other files of opencv-doc's ``examples/data`` are reserved for independent evaluation and are
never read here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssb import resources

TRAIN_LAST_FRAME = 599
VAL_FIRST_FRAME = 620
TRAIN_FRAME_STEP = 2
VAL_FRAME_STEP = 5

TRAIN_PHOTOS = ("astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "china", "grace_hopper")
VAL_PHOTOS = ("coffee", "chelsea", "flower")


@dataclass(frozen=True)
class Sample:
    """One real image: a stable name (``vtest:000123`` or ``photo:coffee``) and RGB uint8 pixels."""

    name: str
    image: np.ndarray


def _photos() -> dict[str, np.ndarray]:
    photos = dict(resources.real_photos())
    try:
        from sklearn.datasets import load_sample_images

        for fname, img in zip(load_sample_images().filenames, load_sample_images().images):
            photos[fname.rsplit("/", 1)[-1].split(".")[0]] = np.ascontiguousarray(img[..., :3])
    except ImportError:
        pass
    try:
        from matplotlib import cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
            photos["grace_hopper"] = np.asarray(im.convert("RGB"))
    except ImportError:
        pass
    return photos


def vtest_indices(split: str, *, step: int | None = None) -> list[int]:
    if split == "train":
        return list(range(0, TRAIN_LAST_FRAME + 1, step or TRAIN_FRAME_STEP))
    if split == "val":
        return list(range(VAL_FIRST_FRAME, 795, step or VAL_FRAME_STEP))
    raise ValueError(f"unknown split {split!r}: expected 'train' or 'val'")


def load_split(split: str, *, frame_step: int | None = None, with_photos: bool = True) -> list[Sample]:
    """The real samples of ``split`` ('train' or 'val'), vtest frames first, then photos."""
    idx = vtest_indices(split, step=frame_step)
    samples = [Sample(f"vtest:{i:06d}", img) for i, img in resources.read_video_frames(resources.vtest_path(), idx)]
    if with_photos:
        names = TRAIN_PHOTOS if split == "train" else VAL_PHOTOS
        photos = _photos()
        samples += [Sample(f"photo:{n}", photos[n]) for n in names if n in photos]
    return samples
