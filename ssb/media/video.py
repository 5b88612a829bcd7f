"""Video files as a stream of frames: bounded memory, timestamps from the container.

Frames are decoded one at a time (OpenCV's FFmpeg backend) and handed on at once, so an hour of
video costs one frame of memory.  ``pts`` comes from the container (``CAP_PROP_POS_MSEC`` after
each read); when the container has none (or it does not increase), from ``index / fps``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ssb._optional import require
from ssb.errors import LimitExceededError, MalformedFieldError

__all__ = ["VideoInfo", "probe_video", "read_video", "VIDEO_SUFFIXES", "MAX_VIDEO_PIXELS"]

VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".ts", ".h264",
                            ".hevc", ".ivf", ".y4m"})
#: largest frame (pixels) read from a video
MAX_VIDEO_PIXELS = 64_000_000


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int | None  #: as the container declares it (may be approximate; None when unknown)


def _open(path: Path):
    cv2 = require("cv2", "reading video")
    if not path.is_file():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise MalformedFieldError(f"{path} is not a video OpenCV can read", field="input")
    return cv2, cap


def probe_video(path: str | Path) -> VideoInfo:
    """Size, frame rate and declared frame count, without decoding a frame."""
    path = Path(path)
    cv2, cap = _open(path)
    try:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    if w <= 0 or h <= 0:
        raise MalformedFieldError(f"{path}: the video declares no frame size", field="input")
    if w * h > MAX_VIDEO_PIXELS:
        raise LimitExceededError(f"{path}: {w}x{h} frames exceed {MAX_VIDEO_PIXELS} pixels", field="input.size")
    return VideoInfo(w, h, fps if 0 < fps < 1000 else 0.0, count if count > 0 else None)


def read_video(path: str | Path, *, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, int | None, object]]:
    """``(index, pts in microseconds, RGB uint8)`` of frames ``start <= index < stop``, one at a time.

    Frames before ``start`` are decoded and dropped (seeking is not frame-exact in every format).
    """
    path = Path(path)
    info = probe_video(path)
    cv2, cap = _open(path)
    index, last_pts = 0, None
    try:
        while stop is None or index < stop:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                return
            msec = cap.get(cv2.CAP_PROP_POS_MSEC)
            pts = int(round(msec * 1000)) if msec and msec > 0 or index == 0 else None
            if pts is None or (last_pts is not None and pts <= last_pts):
                pts = int(round(index * 1e6 / info.fps)) if info.fps else None
            last_pts = pts
            if index >= start:
                if bgr.ndim != 3 or bgr.shape[2] != 3:
                    raise MalformedFieldError(f"{path} frame {index}: unexpected shape {bgr.shape}",
                                              field=f"input.frame[{index}]")
                yield index, pts, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        cap.release()
