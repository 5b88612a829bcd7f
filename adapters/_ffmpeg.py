"""Running ffmpeg and ffprobe safely (private to :mod:`ssb.adapters.video_codecs`).

Short commands run to completion with a timeout; long ones (frames piped in or out) run under a
watchdog that kills the process when it makes no progress for ``timeout`` seconds, and are always
killed and reaped on leaving.  Failures are :class:`FFmpegError` with the tail of ffmpeg's stderr.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import threading
from pathlib import Path

from ssb.errors import MissingDependencyError, SSBError

__all__ = ["FFmpegError", "program", "run", "components", "require", "Watchdog", "ffmpeg", "failure"]


class FFmpegError(SSBError):
    """ffmpeg or ffprobe failed or timed out; the message ends with the last lines of its stderr."""


def program(name: str) -> str:
    """Path of ffmpeg / ffprobe ($SSB_FFMPEG / $SSB_FFPROBE first), or MissingDependencyError."""
    wanted = os.environ.get(f"SSB_{name.upper()}") or name
    found = shutil.which(wanted)
    if found is None:
        raise MissingDependencyError(f"{wanted} is required for the video codec baselines but was not found; "
                                     f"install it with: apt-get install ffmpeg (or set $SSB_{name.upper()})")
    return found


def run(cmd: list[str], *, timeout: float, input: bytes = b"") -> bytes:
    """Run a short command to completion and return its stdout; FFmpegError on failure or timeout."""
    try:  # subprocess.run kills and reaps the child on timeout
        done = subprocess.run(cmd, check=False, input=input, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise FFmpegError(f"{Path(cmd[0]).name} timed out after {timeout:g} s", field="ffmpeg") from exc
    except OSError as exc:
        raise FFmpegError(f"cannot run {cmd[0]}: {exc}", field="ffmpeg") from exc
    if done.returncode != 0:
        tail = "\n".join(done.stderr.decode("utf-8", "replace").strip().splitlines()[-8:])
        raise FFmpegError(f"{Path(cmd[0]).name} exited with {done.returncode}:\n{tail}", field="ffmpeg")
    return done.stdout


@functools.lru_cache(maxsize=16)
def components(ffmpeg: str, kind: str) -> frozenset[str]:
    """Names listed by ``ffmpeg -encoders`` / ``-decoders`` (cached per binary)."""
    rows = map(str.split, run([ffmpeg, "-hide_banner", f"-{kind}"], timeout=30).decode("utf-8", "replace")
               .splitlines())
    return frozenset(r[1] for r in rows if len(r) >= 2 and len(r[0]) == 6 and r[0][0] in "VAS")


def require(ffmpeg: str, kind: str, names: tuple[str, ...], codec: str) -> str:
    """The first of ``names`` the installed ffmpeg has as an encoder / decoder."""
    found = next((n for n in names if n in components(ffmpeg, kind)), None)
    if found is None:
        raise MissingDependencyError(f"the installed ffmpeg ({ffmpeg}) has no {' / '.join(names)} "
                                     f"{kind[:-1]} for {codec}; install a build with it, e.g. Debian's: "
                                     "apt-get install ffmpeg")
    return found


class Watchdog:
    """Kills ``proc`` if it stays armed for more than ``timeout`` seconds (re-arming restarts the clock)."""

    def __init__(self, proc: subprocess.Popen, timeout: float):
        self._proc, self.timeout, self.fired, self._timer = proc, timeout, False, None

    def arm(self) -> None:
        self.disarm()
        self._timer = threading.Timer(self.timeout, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _fire(self) -> None:
        self.fired = True
        self._proc.kill()


@contextlib.contextmanager
def ffmpeg(cmd: list[str], stderr: Path, timeout: float, *, stdin=None, stdout=None, env=None):
    """Start ``cmd`` (stderr to a file) under a watchdog; on leaving, kill it if running and reap it."""
    try:
        with open(stderr, "wb") as errf:
            proc = subprocess.Popen(cmd, stdin=stdin or subprocess.DEVNULL, stderr=errf,
                                    stdout=stdout or subprocess.DEVNULL, env={**os.environ, **(env or {})})
    except OSError as exc:
        raise FFmpegError(f"cannot run {cmd[0]}: {exc}", field="ffmpeg") from exc
    dog = Watchdog(proc, timeout)
    try:
        yield proc, dog
    finally:
        dog.disarm()
        if proc.poll() is None:
            proc.kill()
        for stream in filter(None, (proc.stdin, proc.stdout)):
            with contextlib.suppress(OSError):
                stream.close()
        proc.wait()


def failure(what: str, proc: subprocess.Popen, dog: Watchdog, stderr: Path) -> FFmpegError:
    proc.wait()
    why = f"timed out ({dog.timeout:g} s with no progress)" if dog.fired else f"exited with {proc.returncode}"
    tail = "\n".join(stderr.read_bytes()[-4000:].decode("utf-8", "replace").strip().splitlines()[-8:])
    return FFmpegError(f"{what} {why}; ffmpeg said:\n{tail}", field="ffmpeg")
