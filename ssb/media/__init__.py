"""Reading the media people have: images, folders of images and videos, as frame iterators.

>>> for frame in ssb.media.frames("clip.mp4", frames=range(0, 50)):    # doctest: +SKIP
...     frame.index, frame.pts, frame.image.shape

Frames are produced one at a time (bounded memory for an hour of video).  Still images go through
:mod:`ssb.media.images` (8/16-bit, gray, palette, RGBA, CMYK, EXIF-rotated: converted to RGB, or
refused with a reason); videos through :mod:`ssb.media.video`, with timestamps from the container.
:func:`probe` says what a source is before anything is decoded, so commands can refuse bad
arguments before loading any model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssb.errors import MalformedFieldError

__all__ = ["Frame", "MediaInfo", "probe", "frames", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES"]


def _suffixes():
    from ssb.media.images import IMAGE_SUFFIXES as images
    from ssb.media.video import VIDEO_SUFFIXES as videos

    return images, videos


IMAGE_SUFFIXES, VIDEO_SUFFIXES = _suffixes()


@dataclass
class Frame:
    """One picture to encode: RGB uint8 ``H x W x 3``.

    ``video``: the frame belongs to a clip (consecutive frames of one camera), as opposed to
    separate images; ``pts``: presentation time in microseconds (``None`` for images).
    """

    index: int
    image: np.ndarray
    pts: int | None = None
    fps: float = 0.0
    video: bool = False
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MediaInfo:
    """What a source is: ``kind`` ``"image"``, ``"folder"`` or ``"video"``, and its frame count."""

    kind: str
    path: Path
    count: int | None
    fps: float = 0.0
    files: tuple[Path, ...] = ()


def probe(source: str | Path) -> MediaInfo:
    """Classify a source without decoding it (missing -> FileNotFoundError, empty folder -> refused)."""
    p = Path(source)
    if p.is_dir():
        files = tuple(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()))
        if not files:
            raise MalformedFieldError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {p}", field="input")
        return MediaInfo("folder", p, len(files), files=files)
    if not p.exists():
        raise FileNotFoundError(2, "No such file or directory", str(p))
    if p.suffix.lower() in VIDEO_SUFFIXES:
        from ssb.media.video import probe_video

        info = probe_video(p)
        return MediaInfo("video", p, info.frames, info.fps)
    return MediaInfo("image", p, 1)


def frames(source, *, frames: range | None = None, warmup: int = 0) -> Iterator[Frame]:
    """The frames of ``source`` (a path: image, folder of images, video; or an iterable of Frames /
    RGB arrays) whose index is in ``frames`` (all when ``None``).

    ``warmup``: for a video, also yield up to that many frames before ``frames.start``, marked
    ``info["warmup"] = True`` (history for stateful encoders; they are not coded).
    """
    if not isinstance(source, (str, Path)):
        yield from _items(source, frames)
        return
    info = probe(source)
    if info.kind == "video":
        from ssb.media.video import read_video

        start = 0 if frames is None else frames.start
        stop = None if frames is None else frames.stop
        got = False
        for index, pts, rgb in read_video(info.path, start=max(start - warmup, 0), stop=stop):
            if frames is not None and index >= start and index not in frames:
                continue
            got = got or index >= start
            yield Frame(index, rgb, pts, info.fps, True, {"warmup": True} if index < start else {})
        if not got:
            raise MalformedFieldError(f"no frames read from video {info.path} (frames {frames})", field="--frames")
        return
    from ssb.media.images import load_image_info

    paths = info.files if info.kind == "folder" else (info.path,)
    got = False
    for i, path in enumerate(paths):
        if frames is None or i in frames:
            rgb, meta = load_image_info(path)
            got = True
            yield Frame(i, rgb, info={"path": str(path), **{k: meta[k] for k in ("orientation", "bits", "mode")
                                                            if k in meta}})
    if not got:
        raise MalformedFieldError(f"no image of {info.path} in frames {frames}", field="--frames")


def _items(items, frames: range | None) -> Iterator[Frame]:
    for i, item in enumerate(items):
        if isinstance(item, Frame):
            frame = item
        elif isinstance(item, tuple) and len(item) == 2:  # (index, image)
            frame = Frame(int(item[0]), np.asarray(item[1]))
        else:
            frame = Frame(i, np.asarray(item))
        img = frame.image
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise MalformedFieldError(f"frame {frame.index}: expected RGB uint8 H x W x 3, got {img.dtype} "
                                      f"{img.shape}", field=f"input.frame[{frame.index}]")
        if frames is None or frame.index in frames:
            yield frame
