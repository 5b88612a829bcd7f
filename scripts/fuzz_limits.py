"""The payload fuzzer's parent side of a worker (``scripts/fuzz_payloads.py``): :class:`Worker` starts
one worker subprocess and answers each request within a time limit and a memory limit (the
worker's resident size, polled in ``/proc``), killing it otherwise (:class:`WorkerDied`).
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fuzz_seeds import ROOT, STARTUP_LIMIT

#: the worker is the fuzzer's own command line, ``--worker``
SCRIPT = Path(__file__).resolve().with_name("fuzz_payloads.py")


def _rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in bytes (0 when gone)."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, hwm


class WorkerDied(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


class Worker:
    """One worker subprocess, watched for time and memory."""

    def __init__(self, memory_limit: int, log_dir: str):
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - the worker's stderr, for its life
            prefix="fuzz-worker-", suffix=".log", dir=log_dir, delete=False)
        self.proc = subprocess.Popen([sys.executable, str(SCRIPT), "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=env, bufsize=0)
        self.memory_limit = memory_limit
        self.peak = 0
        self.request(None, STARTUP_LIMIT)  # waits for "ready"

    def _stderr_tail(self) -> str:
        try:
            with open(self.log.name, "rb") as fh:
                fh.seek(0, 2)
                fh.seek(max(fh.tell() - 4000, 0))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _reset_peak(self) -> None:
        try:
            with open(f"/proc/{self.proc.pid}/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            pass

    def request(self, msg, limit: float):
        """Send ``msg`` (None: only wait) and wait for the answer, enforcing ``limit`` s and the memory limit."""
        self._reset_peak()
        if msg is not None:
            raw = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
            try:
                self.proc.stdin.write(struct.pack("<Q", len(raw)) + raw)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                raise self._died() from None
        fd = self.proc.stdout.fileno()
        buf = bytearray()
        need = 8
        deadline = time.monotonic() + limit
        peak = 0
        while True:
            rss, hwm = _rss(self.proc.pid)
            peak = max(peak, rss, hwm)
            if peak > self.memory_limit:
                self.kill()
                raise WorkerDied("memory", f"resident memory reached {peak / 2**20:.0f} MiB "
                                           f"(limit {self.memory_limit / 2**20:.0f} MiB)")
            now = time.monotonic()
            if now > deadline:
                self.kill()
                raise WorkerDied("hang", f"no answer within {limit:.0f} s")
            ready, _, _ = select.select([fd], [], [], min(0.02, max(deadline - now, 0)))
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise self._died()
            buf += chunk
            if len(buf) >= 8 and need == 8:
                need = 8 + struct.unpack("<Q", bytes(buf[:8]))[0]
            if len(buf) >= need > 8:
                self.peak = max(self.peak, peak)
                return pickle.loads(bytes(buf[8:need]))

    def _died(self) -> WorkerDied:
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = self.proc.returncode
        how = f"signal {-rc}" if rc is not None and rc < 0 else f"exit status {rc}"
        return WorkerDied("crash", f"worker died ({how}); stderr tail:\n{self._stderr_tail()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 - a worker that will not close is killed
            self.kill()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass
