"""Fixtures for the real SSD-MobileNetV2 teacher (skipped, with the reason, when it is absent)."""

from __future__ import annotations

import pytest

from ssb.errors import MissingDependencyError


@pytest.fixture(scope="session")
def teacher_cache(tmp_path_factory):
    """A private ``$SSB_CACHE`` so tests never depend on (or write) the user's cache."""
    path = tmp_path_factory.mktemp("ssb_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("SSB_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def teacher_net():
    """The teacher as ``cv2.dnn`` runs it (the parity reference)."""
    cv2 = pytest.importorskip("cv2")
    from ssb.resources import ssd_mobilenet_v2_files

    try:
        pb, pbtxt = ssd_mobilenet_v2_files()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    return cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))


@pytest.fixture(scope="session")
def real_images():
    """(name, RGB uint8) for vtest.avi frames 0, 100, 400 and the skimage photos."""
    from ssb.resources import read_video_frames, real_photos, vtest_path

    try:
        frames = [(f"vtest#{i}", img) for i, img in read_video_frames(vtest_path(), [0, 100, 400])]
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    try:
        photos = real_photos()
    except MissingDependencyError:
        photos = []
    assert len(frames) == 3
    return frames + photos
