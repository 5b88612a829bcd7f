"""Pixel video codecs for "remote inference" baselines: H.264, H.265 and AV1 through ffmpeg.

A baseline streams the original RGB frames into a real video encoder (x264, x265, SVT-AV1),
decodes the bitstream and runs the teacher on the decoded frames.  Every codec runs low-delay,
camera-style (:data:`CODECS`): nothing coded out of display order (no B-frames, no hidden AV1
frames), a key frame every ``gop`` frames and nowhere else, constant quality (``crf``), 8-bit
4:2:0 with BT.601 limited-range conversion set explicitly both ways.

The bytes are the bare bitstream, no container: Annex-B H.264 / H.265 and AV1 low-overhead OBUs
(AV1 spec section 5).  Parameter sets, sequence headers, start codes and temporal delimiters are
counted; the encoders' version-and-settings SEI text is not written.

ffmpeg and ffprobe are external programs (``apt-get install ffmpeg``; ``$SSB_FFMPEG`` and
``$SSB_FFPROBE`` override the paths).  Frames are piped one at a time, so memory is bounded by a
frame plus the encoded bytes; every ffmpeg call has a timeout and is killed and reaped on error.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ssb.errors import MalformedFieldError, MissingDependencyError, SSBError

from . import _ffmpeg as _ff
from ._ffmpeg import FFmpegError

__all__ = [
    "VideoCodec", "CODECS", "EncodedVideo", "FFmpegError", "DEFAULT_GOP", "DEFAULT_TIMEOUT",
    "available_codecs", "get_codec", "encode_video", "decode_video", "frame_types", "av1_hidden_frames",
    "bits_per_pixel", "measure",
]

#: Default key-frame interval: one intra frame every 10 s at 25 fps, as many IP cameras do.
DEFAULT_GOP = 250
#: Seconds an ffmpeg call may go without progress (one frame written or read, or the final flush).
DEFAULT_TIMEOUT = 120.0

_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                 "veryslow", "placebo")


@dataclass(frozen=True)
class VideoCodec:
    """One ffmpeg encoder in its low-delay configuration.

    ``gop_options`` are formatted with the key-frame interval ``{gop}``; ``crf_range`` is
    inclusive; ``muxer`` is the raw-bitstream format ffmpeg writes and reads; ``decoders`` are
    tried in order; ``min_size`` is (width, height); ``env`` is added to ffmpeg's environment.
    """

    name: str
    encoder: str
    muxer: str
    decoders: tuple[str, ...]
    preset: str | int
    presets: tuple[str | int, ...]
    crf_range: tuple[int, int]
    integer_crf: bool
    options: tuple[str, ...]
    gop_options: tuple[str, ...]
    min_size: tuple[int, int] = (2, 2)
    env: dict[str, str] = field(default_factory=dict)


CODECS: dict[str, VideoCodec] = {
    c.name: c
    for c in (
        # x264 "medium": its default and the usual reference point (~130 fps at 768x576 on 2 cores).
        # -bf 0: no B-frames; -sc_threshold 0: key frames only every ``gop``; filter_units drops the
        # SEI NAL units (type 6), i.e. x264's version/settings text (~700 bytes per stream).
        VideoCodec("h264", "libx264", "h264", ("h264",), "medium", _X26X_PRESETS, (0, 51), False,
                   ("-bf", "0", "-sc_threshold", "0", "-bsf:v", "filter_units=remove_types=6"),
                   ("-g", "{gop}", "-keyint_min", "{gop}")),
        # x265 "medium" (its default, ~65 fps there).  bframes=0, scenecut=0 as for x264; info=0: no SEI text.
        VideoCodec("h265", "libx265", "hevc", ("hevc",), "medium", _X26X_PRESETS, (0, 51), False, (),
                   ("-x265-params", ("bframes=0:scenecut=0:info=0:log-level=error:keyint={gop}:"
                                     "min-keyint={gop}")),
                   min_size=(16, 16)),
        # SVT-AV1 pred-struct=1 is its low-delay structure (frames reference past frames only, no
        # hidden ALTREF; SVT-AV1 1.4 refuses 0).  Its low-delay mode supports presets 8-13 only and
        # silently forces lower ones to 8, so 8 (the slowest allowed, ~60 fps there) is the default
        # and 0-7 are refused.  ffmpeg maps -crf to SVT's constant-QP mode; -g N: intra period N.
        VideoCodec("av1", "libsvtav1", "obu", ("libdav1d", "libaom-av1"), 8, tuple(range(8, 14)),
                   (1, 63), True, ("-svtav1-params", "pred-struct=1"), ("-g", "{gop}"),
                   min_size=(64, 64), env={"SVT_LOG": "1"}),
    )
}

_TO_YUV = "scale=out_color_matrix=bt601:out_range=tv:flags=bicubic+accurate_rnd,format=yuv420p"
_TO_RGB = "scale=in_color_matrix=bt601:in_range=tv:flags=bicubic+accurate_rnd+full_chroma_int,format=rgb24"
_TAGS = ("-colorspace", "smpte170m", "-color_primaries", "smpte170m", "-color_trc", "smpte170m",
         "-color_range", "tv")
_QUIET = ("-hide_banner", "-nostdin", "-loglevel", "error")
_END = object()


@dataclass(frozen=True)
class EncodedVideo:
    """A clip coded by :func:`encode_video`: its bitstream ``data`` and settings (``args``: ffmpeg's)."""

    codec: str
    data: bytes
    width: int
    height: int
    frames: int
    fps: float
    crf: float
    gop: int
    preset: str | int
    args: tuple[str, ...] = ()

    @property
    def nbytes(self) -> int:
        """Size of the bitstream in bytes."""
        return len(self.data)


def get_codec(name: str) -> VideoCodec:
    """The codec called ``name`` (case-insensitive), without asking ffmpeg whether it is there."""
    key = str(name).lower()
    if key not in CODECS:
        raise SSBError(f"unknown video codec {name!r}; known: {', '.join(CODECS)}", field="codec")
    return CODECS[key]


def available_codecs() -> list[str]:
    """The registered codecs whose encoder and a decoder the installed ffmpeg has ([] without ffmpeg)."""
    try:
        ffmpeg = _ff.program("ffmpeg")
    except MissingDependencyError:
        return []
    enc, dec = _ff.components(ffmpeg, "encoders"), _ff.components(ffmpeg, "decoders")
    return [n for n, c in CODECS.items() if c.encoder in enc and any(d in dec for d in c.decoders)]


def _check_frame(i: int, frame, size: tuple[int, int] | None) -> np.ndarray:
    rgb = np.asarray(frame)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise MalformedFieldError(f"frame {i}: expected RGB uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}",
                                  field=f"frames[{i}]")
    if size is not None and rgb.shape[:2] != size:
        raise MalformedFieldError(f"frame {i} is {rgb.shape[1]}x{rgb.shape[0]}, frame 0 was "
                                  f"{size[1]}x{size[0]}", field=f"frames[{i}]")
    return np.ascontiguousarray(rgb)


def _check_settings(codec: VideoCodec, fps, crf, gop, preset) -> str | int:
    """Validate the arguments of :func:`encode_video`; returns the preset to use."""
    number = (int, float, np.integer, np.floating, Fraction)
    if isinstance(fps, bool) or not isinstance(fps, number) or not 0 < fps <= 1000:
        raise MalformedFieldError(f"fps must be a number in (0, 1000], got {fps!r}", field="fps")
    lo, hi = codec.crf_range
    kinds, kind = ((int, np.integer), "an integer") if codec.integer_crf else (number[:4], "a number")
    if isinstance(crf, bool) or not isinstance(crf, kinds) or not lo <= crf <= hi:
        raise MalformedFieldError(f"{codec.name} crf must be {kind} in [{lo}, {hi}], got {crf!r}",
                                  field="crf")
    if isinstance(gop, bool) or not isinstance(gop, (int, np.integer)) or not 1 <= gop <= 1 << 20:
        raise MalformedFieldError(f"gop must be an integer in [1, {1 << 20}], got {gop!r}", field="gop")
    preset = codec.preset if preset is None else preset
    if isinstance(preset, bool) or preset not in codec.presets:
        raise MalformedFieldError(f"{codec.name} preset must be one of {list(codec.presets)}, got {preset!r}",
                                  field="preset")
    return preset


def encode_video(name: str, frames: Iterable[np.ndarray], *, fps: float, crf: float, gop: int = DEFAULT_GOP,
                 preset: str | int | None = None, timeout: float = DEFAULT_TIMEOUT) -> EncodedVideo:
    """Encode RGB uint8 [H, W, 3] ``frames`` (all one even size) with codec ``name`` at ``crf``.

    Frames are piped to ffmpeg one at a time as the iterable yields them.  ``gop`` is the
    key-frame interval in frames (1: all intra); ``preset`` overrides the codec's default (an
    x264 / x265 preset name, or an SVT-AV1 preset 8-13); ``timeout`` bounds each wait on ffmpeg.
    Pass the clip's real ``fps``: x264's and x265's constant-quality rate control depends on it.
    """
    codec = get_codec(name)
    preset = _check_settings(codec, fps, crf, gop, preset)
    it = iter(frames)
    try:
        first = _check_frame(0, next(it), None)
    except StopIteration:
        raise MalformedFieldError("no frames to encode", field="frames") from None
    height, width = first.shape[:2]
    min_w, min_h = codec.min_size
    if width % 2 or height % 2 or width < min_w or height < min_h:
        raise MalformedFieldError(f"frame 0 is {width}x{height}; {codec.name} needs an even size (4:2:0) of "
                                  f"at least {min_w}x{min_h}", field="frames[0]")
    ffmpeg = _ff.program("ffmpeg")
    _ff.require(ffmpeg, "encoders", (codec.encoder,), codec.name)
    rate = Fraction(fps).limit_denominator(1001000)
    args = ("-c:v", codec.encoder, "-preset", str(preset), "-crf", f"{crf:g}",
            *(a.format(gop=int(gop)) for a in codec.gop_options), *codec.options, *_TAGS)
    with tempfile.TemporaryDirectory(prefix="ssb-video-") as tmp:
        out, err = Path(tmp) / f"out.{codec.muxer}", Path(tmp) / "stderr.txt"
        cmd = [ffmpeg, *_QUIET, "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
               "-r", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:0", "-vf", _TO_YUV, *args,
               "-f", codec.muxer, "-y", str(out)]
        count, frame = 0, first
        with _ff.ffmpeg(cmd, err, timeout, stdin=subprocess.PIPE, env=codec.env) as (proc, dog):
            while frame is not None:
                dog.arm()
                try:
                    proc.stdin.write(frame.data)
                except OSError:  # ffmpeg exited (failed, or killed by the watchdog)
                    raise _ff.failure(f"{codec.encoder} encoding", proc, dog, err) from None
                dog.disarm()
                count += 1
                nxt = next(it, _END)
                frame = None if nxt is _END else _check_frame(count, nxt, (height, width))
            dog.arm()
            with contextlib.suppress(OSError):
                proc.stdin.close()
            if proc.wait() != 0 or dog.fired:
                raise _ff.failure(f"{codec.encoder} encoding", proc, dog, err)
        data = out.read_bytes()
    if not data:
        raise FFmpegError(f"{codec.encoder} wrote an empty bitstream", field="ffmpeg")
    return EncodedVideo(codec.name, data, int(width), int(height), count, float(fps), crf, int(gop), preset,
                        args)


def _check_encoded(encoded) -> VideoCodec:
    if not isinstance(encoded, EncodedVideo):
        raise MalformedFieldError(f"expected an EncodedVideo, got {type(encoded).__name__}", field="encoded")
    if not encoded.data or encoded.width < 1 or encoded.height < 1 or encoded.frames < 1:
        raise MalformedFieldError("empty bitstream or non-positive size / frame count", field="encoded")
    return get_codec(encoded.codec)


def decode_video(encoded: EncodedVideo, *, timeout: float = DEFAULT_TIMEOUT) -> Iterator[np.ndarray]:
    """Decode ``encoded`` into RGB uint8 [H, W, 3] frames, yielded one at a time.

    ffmpeg starts on the first ``next()``; stopping early (closing the iterator) kills it.  Raises
    :class:`FFmpegError` if the bitstream does not decode to exactly ``encoded.frames`` frames.
    """
    codec = _check_encoded(encoded)
    ffmpeg = _ff.program("ffmpeg")
    return _decode(ffmpeg, _ff.require(ffmpeg, "decoders", codec.decoders, codec.name), codec, encoded, timeout)


def _decode(ffmpeg: str, decoder: str, codec: VideoCodec, encoded: EncodedVideo, timeout: float):
    w, h = encoded.width, encoded.height
    with tempfile.TemporaryDirectory(prefix="ssb-video-") as tmp:
        src, err = Path(tmp) / f"in.{codec.muxer}", Path(tmp) / "stderr.txt"
        src.write_bytes(encoded.data)
        cmd = [ffmpeg, *_QUIET, "-f", codec.muxer, "-c:v", decoder, "-i", str(src), "-vf", _TO_RGB,
               "-vsync", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
        with _ff.ffmpeg(cmd, err, timeout, stdout=subprocess.PIPE) as (proc, dog):
            count = 0
            while True:
                dog.arm()
                buf = bytearray()
                while len(buf) < w * h * 3 and (chunk := proc.stdout.read(w * h * 3 - len(buf))):
                    buf += chunk
                dog.disarm()
                if len(buf) < w * h * 3:
                    break
                if count == encoded.frames:
                    raise FFmpegError(f"{decoder} decoded more than the stream's {encoded.frames} frame(s)",
                                      field="encoded.data")
                count += 1
                yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
            dog.arm()
            if proc.wait() != 0 or dog.fired:
                raise _ff.failure(f"{decoder} decoding", proc, dog, err)
            if buf or count != encoded.frames:
                raise FFmpegError(f"{decoder} decoded {count} whole frame(s) (+{len(buf)} bytes), the stream "
                                  f"has {encoded.frames}", field="encoded.data")


def frame_types(encoded: EncodedVideo, *, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """ffprobe's ``pict_type`` of every decoded frame in display order (``'I'``, ``'P'``, ``'B'``...).

    AV1 has no B picture type (dav1d reports I or P); its out-of-order frames are hidden
    frames, counted by :func:`av1_hidden_frames`.
    """
    muxer = _check_encoded(encoded).muxer
    cmd = [_ff.program("ffprobe"), "-hide_banner", "-v", "error", "-f", muxer, "-i", "pipe:0",
           "-select_streams", "v:0", "-show_entries", "frame=pict_type", "-of", "csv=p=0"]
    return _ff.run(cmd, timeout=timeout, input=encoded.data).decode("ascii", "replace").split()


def av1_hidden_frames(encoded: EncodedVideo) -> int:
    """AV1 frames coded out of display order: hidden frames plus ``show_existing_frame`` headers.

    Walks the low-overhead OBU stream (AV1 spec 5.3, 5.9.2) without decoding: 0 for low delay.
    """
    if _check_encoded(encoded).name != "av1":
        raise SSBError(f"av1_hidden_frames needs an av1 stream, got {encoded.codec}", field="codec")
    data, pos, hidden = encoded.data, 0, 0
    while pos < len(data):
        start, header = pos, data[pos]
        obu_type, pos = (header >> 3) & 0xF, pos + 1 + ((header >> 2) & 1)  # skip the extension byte
        if not (header >> 1) & 1:
            raise MalformedFieldError("OBU without a size field", offset=start, field="obu.has_size_field")
        size = shift = 0
        while True:  # leb128 obu_size
            if pos >= len(data) or shift > 56:
                raise MalformedFieldError("truncated or overlong obu_size", offset=start, field="obu.size")
            size, shift, pos = size | (data[pos] & 0x7F) << shift, shift + 7, pos + 1
            if not data[pos - 1] & 0x80:
                break
        if pos + size > len(data):
            raise MalformedFieldError("OBU runs past the end of the stream", offset=start, field="obu.size")
        if obu_type == 1 and size and (data[pos] >> 3) & 1:  # sequence header, reduced_still_picture_header
            raise MalformedFieldError("still-picture AV1 stream", offset=start, field="obu.sequence_header")
        if obu_type in (3, 6) and size:  # frame (header): show_existing_frame, frame_type(2), show_frame
            hidden += 1 if data[pos] >> 7 else int(not (data[pos] >> 4) & 1)
        pos += size
    return hidden


def bits_per_pixel(encoded: EncodedVideo) -> float:
    """8 * bytes / (width * height * frames): bitstream bits per original pixel."""
    _check_encoded(encoded)
    return 8.0 * len(encoded.data) / (encoded.width * encoded.height * encoded.frames)


def measure(name: str, frames: list[np.ndarray], fps: float, crfs: Iterable[float], *, gop: int = DEFAULT_GOP,
            preset: str | int | None = None) -> list[dict]:
    """Encode and decode ``frames`` (a sequence, read once per point) at each of ``crfs``.

    One dict per crf: ``codec``, ``crf``, ``bytes``, ``bpp``, ``encode_s`` and ``decode_s``
    (wall-clock seconds) and ``psnr`` (dB over RGB, all frames pooled).
    """
    rows = []
    for crf in crfs:
        t0 = time.perf_counter()
        enc = encode_video(name, frames, fps=fps, crf=crf, gop=gop, preset=preset)
        t1, sse, n = time.perf_counter(), 0.0, 0
        for out, ref in zip(decode_video(enc), frames):
            diff = out.astype(np.int32) - np.asarray(ref, np.int32)
            sse, n = sse + float(np.square(diff).sum()), n + diff.size
        t2, psnr = time.perf_counter(), float("inf") if sse == 0 else float(10 * np.log10(255 ** 2 * n / sse))
        rows.append({"codec": enc.codec, "crf": crf, "bytes": enc.nbytes, "bpp": bits_per_pixel(enc),
                     "encode_s": t1 - t0, "decode_s": t2 - t1, "psnr": psnr})
    return rows
