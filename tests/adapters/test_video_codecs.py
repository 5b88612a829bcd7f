"""Video pixel-codec baselines (ssb.adapters.video_codecs) over ffmpeg: H.264, H.265, AV1.

ffmpeg is a required test dependency here (CI installs it): without it these tests fail, they
do not skip.  Synthetic clips are 128x96 (SVT-AV1 needs at least 64x64); the real-media test
codes 8 frames of vtest.avi.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time

import numpy as np
import pytest

from ssb.adapters import video_codecs as vc
from ssb.errors import MalformedFieldError, MissingDependencyError, SSBError

NAMES = ("h264", "h265", "av1")
#: (low, high) crf per codec for the synthetic round trip
CRFS = {"h264": (18, 36), "h265": (18, 36), "av1": (20, 50)}


def moving_clip(n: int = 8, h: int = 96, w: int = 128):
    """A textured background drifting right-down, a bright box moving left, smooth colour ramps."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    for t in range(n):
        luma = 110 + 60 * np.sin((x - 3 * t) / 5.0) * np.cos((y + 2 * t) / 7.0)
        luma = np.where(((x - 10 - 6 * t) % w < 24) & (np.abs(y - h / 2) < 14), 225.0, luma)
        rgb = np.stack([luma + 0.25 * (x - w / 2), luma, luma - 0.3 * (y - h / 2)], -1)
        yield np.clip(rgb, 0, 255).astype(np.uint8)


def psnr(ref: list[np.ndarray], out: list[np.ndarray]) -> float:
    mse = np.mean([np.mean((a.astype(np.float64) - b) ** 2) for a, b in zip(ref, out, strict=True)])
    return float(10 * np.log10(255.0 ** 2 / mse))


@pytest.fixture
def spawned(monkeypatch):
    """Every process the module starts, to check that each one was reaped."""
    procs = []

    class Recording(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            procs.append(self)

    monkeypatch.setattr(vc.subprocess, "Popen", Recording)
    return procs


def test_registry_and_ffmpeg_present():
    assert tuple(vc.CODECS) == NAMES
    assert vc.available_codecs() == list(NAMES), "ffmpeg with libx264, libx265 and libsvtav1 is required"
    assert vc.get_codec("H264") is vc.CODECS["h264"]
    with pytest.raises(SSBError, match="unknown video codec"):
        vc.get_codec("vp9")


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_synthetic(name, spawned):
    frames = list(moving_clip())
    lo, hi = CRFS[name]
    fine = vc.encode_video(name, moving_clip(), fps=25, crf=lo)  # a generator: streamed
    coarse = vc.encode_video(name, frames, fps=25, crf=hi)
    for enc in (fine, coarse):
        assert (enc.codec, enc.width, enc.height, enc.frames, enc.gop) == (name, 128, 96, 8, vc.DEFAULT_GOP)
        out = list(vc.decode_video(enc))
        assert len(out) == 8 and all(o.shape == (96, 128, 3) and o.dtype == np.uint8 for o in out)
        assert vc.frame_types(enc) == ["I"] + ["P"] * 7  # one key frame, no B-frames
        assert vc.bits_per_pixel(enc) == pytest.approx(8 * enc.nbytes / (128 * 96 * 8))
    assert fine.nbytes > 1.3 * coarse.nbytes
    assert not any(tag in fine.data for tag in (b"x264", b"x265", b"SVT"))  # no encoder SEI text counted
    # measured here: 42-46 dB at the low crf, 31-37 dB at the high one; the 4:2:0 ceiling is ~51 dB
    p_fine, p_coarse = psnr(frames, vc.decode_video(fine)), psnr(frames, vc.decode_video(coarse))
    assert 38 < p_fine < 55 and 27 < p_coarse < p_fine - 3, (p_fine, p_coarse)
    if name == "av1":
        assert vc.av1_hidden_frames(fine) == vc.av1_hidden_frames(coarse) == 0
    assert spawned and all(p.returncode is not None for p in spawned)


@pytest.mark.parametrize("name", NAMES)
def test_gop_and_fast_presets(name):
    preset = {"h264": "ultrafast", "h265": "ultrafast", "av1": 12}[name]
    enc = vc.encode_video(name, moving_clip(), fps=30000 / 1001, crf=CRFS[name][1], gop=3, preset=preset)
    assert vc.frame_types(enc) == list("IPPIPPIP")
    intra = vc.encode_video(name, moving_clip(3), fps=25, crf=CRFS[name][1], gop=1, preset=preset)
    assert vc.frame_types(intra) == ["I"] * 3
    assert enc.preset == preset and str(preset) in enc.args
    measured = vc.measure(name, list(moving_clip(4)), 25, CRFS[name], preset=preset)
    assert [m["crf"] for m in measured] == list(CRFS[name]) and measured[0]["bytes"] > measured[1]["bytes"]
    assert all(m["psnr"] > 25 and m["encode_s"] > 0 and m["decode_s"] > 0 for m in measured)


def test_reordering_would_be_detected(monkeypatch):
    """The low-delay checks can fail: B-frames (x264) and hidden frames (SVT-AV1 random access) show up."""
    h264, av1 = vc.CODECS["h264"], vc.CODECS["av1"]
    monkeypatch.setitem(vc.CODECS, "h264", dataclasses.replace(h264, options=("-bf", "3", "-x264-params",
                                                                              "b-adapt=0")))
    monkeypatch.setitem(vc.CODECS, "av1", dataclasses.replace(av1, options=("-svtav1-params",
                                                                            "pred-struct=2")))
    assert "B" in vc.frame_types(vc.encode_video("h264", moving_clip(12), fps=25, crf=30))
    ra = vc.encode_video("av1", moving_clip(12), fps=25, crf=40)
    assert vc.av1_hidden_frames(ra) > 0 and len(list(vc.decode_video(ra))) == 12


@pytest.mark.parametrize("kwargs, field", [
    ({"crf": 52}, "crf"), ({"crf": -1}, "crf"), ({"crf": "20"}, "crf"), ({"crf": True}, "crf"),
    ({"crf": 0, "name": "av1"}, "crf"), ({"crf": 64, "name": "av1"}, "crf"),
    ({"crf": 30.5, "name": "av1"}, "crf"),
    ({"gop": 0}, "gop"), ({"gop": 2.5}, "gop"), ({"fps": 0}, "fps"), ({"fps": "25"}, "fps"),
    ({"preset": "fastest"}, "preset"), ({"preset": 4, "name": "av1"}, "preset"),
])
def test_argument_validation(kwargs, field, spawned):
    args = {"name": "h264", "fps": 25, "crf": 30, **kwargs}
    with pytest.raises(MalformedFieldError) as err:
        vc.encode_video(args.pop("name"), moving_clip(2), **args)
    assert err.value.field == field
    assert not spawned  # refused before starting ffmpeg


def test_frame_validation(spawned):
    frames = list(moving_clip(5))
    bad = {
        "frames[3]": frames[:3] + [frames[3][:, :64]] + frames[4:],  # size changes mid-stream
        "frames[2]": frames[:2] + [frames[2].astype(np.float32)],
        "frames[1]": frames[:1] + [frames[1][..., 0]],
        "frames[0]": [frames[0][:95]],  # odd height
    }
    for where, clip in bad.items():
        with pytest.raises(MalformedFieldError, match=rf"frame {where[7]}") as err:
            vc.encode_video("h264", iter(clip), fps=25, crf=30)
        assert err.value.field == where
    with pytest.raises(MalformedFieldError, match="at least 64x64") as err:
        vc.encode_video("av1", moving_clip(2, 48, 64), fps=25, crf=30)
    with pytest.raises(MalformedFieldError, match="no frames"):
        vc.encode_video("h265", [], fps=25, crf=30)
    with pytest.raises(MalformedFieldError):
        vc.decode_video(b"not an EncodedVideo")
    assert spawned and all(p.returncode is not None for p in spawned)  # the mid-stream one was killed


def test_missing_ffmpeg(monkeypatch, tmp_path):
    enc = vc.encode_video("h264", moving_clip(2), fps=25, crf=30)
    monkeypatch.setenv("SSB_FFMPEG", str(tmp_path / "no-ffmpeg"))
    monkeypatch.setenv("SSB_FFPROBE", str(tmp_path / "no-ffprobe"))
    assert vc.available_codecs() == []
    for call in (lambda: vc.encode_video("h264", moving_clip(2), fps=25, crf=30),
                 lambda: vc.decode_video(enc), lambda: vc.frame_types(enc)):
        with pytest.raises(MissingDependencyError, match="apt-get install ffmpeg"):
            call()


def test_missing_encoder_or_decoder(monkeypatch):
    enc = vc.encode_video("h265", moving_clip(2), fps=25, crf=30)
    monkeypatch.setitem(vc.CODECS, "h265", dataclasses.replace(vc.CODECS["h265"], encoder="libx265-absent",
                                                                decoders=("hevc-absent",)))
    with pytest.raises(MissingDependencyError, match="libx265-absent encoder"):
        vc.encode_video("h265", moving_clip(2), fps=25, crf=30)
    with pytest.raises(MissingDependencyError, match="hevc-absent decoder"):
        vc.decode_video(enc)
    assert "h265" not in vc.available_codecs()


def test_ffmpeg_failures(monkeypatch, spawned):
    enc = vc.encode_video("h264", moving_clip(6), fps=25, crf=30)
    for broken in (b"\x00\x00\x01garbage" * 50, enc.data[: len(enc.data) // 3]):
        with pytest.raises(vc.FFmpegError, match=r"decod"):
            list(vc.decode_video(dataclasses.replace(enc, data=broken)))
    monkeypatch.setitem(vc.CODECS, "av1", dataclasses.replace(vc.CODECS["av1"], options=("-svtav1-params",
                                                                                          "pred-struct=0")))
    with pytest.raises(vc.FFmpegError, match="(?s)libsvtav1 encoding exited.*ffmpeg said:.*[Pp]red") as err:
        vc.encode_video("av1", moving_clip(8), fps=25, crf=30)
    assert isinstance(err.value, SSBError) and err.value.field == "ffmpeg"
    gen = vc.decode_video(enc)
    next(gen)
    gen.close()  # stopping early kills and reaps the decoder
    assert all(p.returncode is not None for p in spawned)
    with pytest.raises(SSBError, match="needs an av1 stream"):
        vc.av1_hidden_frames(enc)
    with pytest.raises(MalformedFieldError, match="obu"):
        vc.av1_hidden_frames(dataclasses.replace(enc, codec="av1", data=b"\x12\x05\x00"))


def test_timeouts_kill_a_stuck_ffmpeg(monkeypatch, tmp_path, spawned):
    enc = vc.encode_video("h264", moving_clip(2), fps=25, crf=30)
    fake = tmp_path / "stuck-ffmpeg"
    fake.write_text('#!/bin/sh\ncase "$*" in\n  *-encoders*) echo " V....D libx264 fake";;\n'
                    '  *-decoders*) echo " V....D h264 fake";;\n  *) exec sleep 60;;\nesac\n')
    fake.chmod(0o755)
    monkeypatch.setenv("SSB_FFMPEG", str(fake))
    t0 = time.monotonic()
    with pytest.raises(vc.FFmpegError, match="timed out"):
        vc.encode_video("h264", moving_clip(8), fps=25, crf=30, timeout=1)
    with pytest.raises(vc.FFmpegError, match="timed out"):
        list(vc.decode_video(enc, timeout=1))
    assert time.monotonic() - t0 < 15
    assert len(spawned) >= 2 and all(p.returncode is not None for p in spawned)


@pytest.mark.media
@pytest.mark.parametrize("name, crf", [("h264", 28), ("h265", 28), ("av1", 40)])
def test_real_clip(name, crf):
    from ssb.resources import read_video_frames, vtest_path

    frames = [f for _, f in read_video_frames(vtest_path(), range(8))]
    assert len(frames) == 8 and frames[0].shape == (576, 768, 3)
    enc = vc.encode_video(name, frames, fps=10, crf=crf)
    assert enc.frames == 8 and vc.frame_types(enc) == ["I"] + ["P"] * 7
    out = list(vc.decode_video(enc))
    assert len(out) == 8 and out[0].shape == (576, 768, 3)
    # measured: 55-68 KB (0.12-0.15 bpp) and 34.7-35.9 dB; the 8 uncoded frames are 10.6 MB
    assert 10_000 < enc.nbytes < 200_000 and 0.02 < vc.bits_per_pixel(enc) < 0.4
    assert 30 < psnr(frames, out) < 42
