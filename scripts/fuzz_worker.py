"""The payload fuzzer's worker process (``scripts/fuzz_payloads.py --worker``): loads the models once,
then runs cases (both decode paths, :func:`run_case`) for the parent over a pipe of pickled messages.
"""

from __future__ import annotations

import os
import pickle
import struct
import time
import traceback

from fuzz_limits import _rss
from fuzz_seeds import MAX_DETECTIONS, MAX_IMAGE_BYTES, _frame_count, build_seeds


def _outcome(exc: BaseException | None, **extra) -> dict:
    if exc is None:
        return {"kind": "ok", **extra}
    from ssb.errors import SSBError

    chain = [exc]  # an error re-raised with its location (ssb.codec.payload.located): count where it arose
    while isinstance(chain[-1].__cause__, SSBError) and len(chain) < 8:
        chain.append(chain[-1].__cause__)
    mods = [m for e in chain for m in map(_module_of, (f.filename for f in traceback.extract_tb(e.__traceback__))) if m]
    inner = [m for m in map(_module_of, (f.filename for f in traceback.extract_tb(chain[-1].__traceback__))) if m]
    out = {"kind": "ssb" if isinstance(exc, SSBError) else "exception", "cls": type(exc).__name__,
           "field": getattr(exc, "field", None), "offset": getattr(exc, "offset", None),
           "message": str(exc)[:300], "origin": inner[-1] if inner else (mods[-1] if mods else None),
           "codec": any(m.startswith(("ssb.codec", "ssb.entropy")) for m in mods), **extra}
    if out["kind"] != "ssb":
        out["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:]
    return out


def _module_of(path: str) -> str | None:
    p = path.replace(os.sep, "/")
    i = p.rfind("/ssb/")
    if i < 0:
        return None
    return p[i + 1: -3].replace("/", ".") if p.endswith(".py") else None


def run_case(data: bytes, models) -> dict:
    """Both decode paths on one stream, in this process: ``{"analyze": outcome, "pixels": outcome}``."""
    import numpy as np

    from ssb import pipeline

    try:
        nframes = _frame_count(data)
    except Exception:  # noqa: BLE001 - the container refuses it: run_case says how
        nframes = 0
    res = {}
    t0 = time.perf_counter()
    try:
        r = pipeline.analyze(data, tasks=["detection", "pose"], models=models)  # pose reads OBJECT_SCALE units
        bad = None
        if len(r.frames) > nframes:
            bad = f"{len(r.frames)} results for {nframes} frames"
        for fr in r.frames:
            n = len(fr.predictions["detection"]["boxes"])
            if n > MAX_DETECTIONS:
                bad = f"{n} detections in frame {fr.frame_index}"
        res["analyze"] = _outcome(None, frames=len(r.frames)) if bad is None else {"kind": "unbounded", "message": bad}
    except Exception as exc:  # noqa: BLE001 - every exception is an outcome (SSBError) or a finding
        res["analyze"] = _outcome(exc)
    res["analyze"]["seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        n, bad = 0, None
        for _, img in pipeline.iter_pixels(data, models=models):
            n += 1
            if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3
                    and img.shape[2] in (3, 4) and img.nbytes <= MAX_IMAGE_BYTES):
                bad = f"image {getattr(img, 'shape', None)} {getattr(img, 'dtype', None)}"
        if n > nframes:
            bad = f"{n} images for {nframes} frames"
        res["pixels"] = _outcome(None, frames=n) if bad is None else {"kind": "unbounded", "message": bad}
    except Exception as exc:  # noqa: BLE001 - every exception is an outcome (SSBError) or a finding
        res["pixels"] = _outcome(exc)
    res["pixels"]["seconds"] = time.perf_counter() - t0
    return res


def _send(f, obj) -> None:
    raw = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(struct.pack("<Q", len(raw)) + raw)
    f.flush()


def _recv_blocking(f):
    head = f.read(8)
    if len(head) < 8:
        return None
    (n,) = struct.unpack("<Q", head)
    return pickle.loads(f.read(n))


def worker_main() -> int:
    """The worker: load the models once, then answer requests on stdin until it closes."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints of libraries go to stderr, never into the message pipe
    inp = os.fdopen(0, "rb")
    import torch

    torch.set_num_threads(1)
    from ssb import pipeline

    models = pipeline.Models()
    _send(out, {"op": "ready", "pid": os.getpid()})
    while True:
        msg = _recv_blocking(inp)
        if msg is None:
            return 0
        op = msg["op"]
        if op == "seeds":
            _send(out, {"op": "seeds", "seeds": build_seeds(models)})
        elif op == "warm":
            res = {name: run_case(data, models) for name, data in msg["seeds"].items()}
            _send(out, {"op": "warm", "results": res, "rss": _rss(os.getpid())[0]})
        elif op == "case":
            _send(out, {"op": "case", "result": run_case(msg["data"], models)})
        else:
            _send(out, {"op": "error", "message": f"unknown op {op!r}"})
