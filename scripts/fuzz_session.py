"""A payload fuzz run (``scripts/fuzz_payloads.py``): :class:`Session` (started workers and the seed
streams) and :func:`run` (cases spread over the workers, one thread each; findings saved).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from fuzz_limits import Worker, WorkerDied
from fuzz_mutations import make_case
from fuzz_report import Report, _key, _save
from fuzz_seeds import (
    ACCEPTED,
    DEFAULT_FINDINGS,
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_TIME_LIMIT,
    STARTUP_LIMIT,
    Seed,
)


class Session:
    """Started workers and the seed streams; :meth:`run_stream` runs one stream, surviving a dead worker.

    ``workers`` processes each load the models once (about 1 GB each); the first one builds the
    seed streams, then every one decodes them (they must all decode cleanly)."""

    def __init__(self, workers: int = 1, *, time_limit: float = DEFAULT_TIME_LIMIT,
                 memory_limit: int = DEFAULT_MEMORY_LIMIT, findings: str | Path = DEFAULT_FINDINGS):
        self.folder = Path(findings)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.time_limit, self.memory_limit = time_limit, memory_limit
        self.restarts = 0
        self.baseline_rss = 0
        self._lock = threading.Lock()
        self.workers: list[Worker] = []
        try:
            first = Worker(memory_limit, str(self.folder))
            self.workers.append(first)
            self.raw_seeds = first.request({"op": "seeds"}, STARTUP_LIMIT)["seeds"]
            self.seeds = {name: Seed(name, data) for name, data in self.raw_seeds.items()}
            self._warm(first)
            for _ in range(max(workers, 1) - 1):
                self.workers.append(self._warm(Worker(memory_limit, str(self.folder))))
        except BaseException:
            self.close()
            raise

    def _warm(self, w: Worker) -> Worker:
        ans = w.request({"op": "warm", "seeds": self.raw_seeds}, STARTUP_LIMIT)
        for name, res in ans["results"].items():
            for path, o in res.items():
                if o["kind"] != "ok":
                    raise RuntimeError(f"seed stream {name} does not decode on the {path} path: {o}")
        self.baseline_rss = max(self.baseline_rss, ans["rss"])
        return w

    def _replace(self, k: int) -> Worker:
        self.workers[k].kill()
        self.workers[k].close()
        w = self._warm(Worker(self.memory_limit, str(self.folder)))
        with self._lock:
            self.restarts += 1
            self.workers[k] = w
        return w

    def run_stream(self, data: bytes, k: int = 0, confirm: bool = True) -> dict:
        """``{"analyze": outcome, "pixels": outcome}`` of one stream on worker ``k``.

        A worker that dies, hangs or goes over the memory limit is replaced, and (``confirm``) the
        stream is run again on the fresh one: ``outcome["confirmed"]`` says whether it did it again."""
        try:
            return self.workers[k].request({"op": "case", "data": data}, self.time_limit)["result"]
        except WorkerDied as died:
            self._replace(k)
            confirmed = None
            if confirm:
                try:
                    self.workers[k].request({"op": "case", "data": data}, self.time_limit)
                    confirmed = False
                except WorkerDied:
                    confirmed = True
                    self._replace(k)
            o = {"kind": died.kind, "message": died.message, "confirmed": confirmed}
            return {"analyze": o, "pixels": o}

    @property
    def peak_rss(self) -> int:
        return max((w.peak for w in self.workers), default=0)

    def close(self) -> None:
        for w in self.workers:
            w.close()
        self.workers = []

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run(cases: int = 1000, seed: int = 0, *, workers: int = 1, time_limit: float = DEFAULT_TIME_LIMIT,
        memory_limit: int = DEFAULT_MEMORY_LIMIT, findings: str | Path = DEFAULT_FINDINGS,
        minutes: float | None = None, start: int = 0, progress: bool = False, confirm: bool = True,
        session: Session | None = None) -> Report:
    """Run cases ``start .. start + cases - 1`` of run ``seed`` (or as many as fit in ``minutes``) on
    ``session`` (started here, and closed, when not given)."""
    t0 = time.monotonic()
    own = session is None
    if own:
        session = Session(workers, time_limit=time_limit, memory_limit=memory_limit, findings=findings)
    report = Report(seed)
    stop_at = None if minutes is None else t0 + 60.0 * minutes
    lock = threading.Lock()
    counter = iter(range(start, start + cases))
    last_print = [time.monotonic()]
    restarts0 = session.restarts

    def loop(k: int) -> None:
        while True:
            with lock:
                if stop_at is not None and time.monotonic() > stop_at:
                    return
                i = next(counter, None)
            if i is None:
                return
            try:
                case = make_case(session.seeds, seed, i)
            except Exception as exc:  # noqa: BLE001 - a bug of the fuzzer itself: counted, shown, not fatal
                with lock:
                    report.generator_errors.append(f"case {i}: {type(exc).__name__}: {exc}")
                continue
            result = session.run_stream(case.data, k, confirm)
            with lock:
                report.record(case, result)
                seen = set()
                for path in ("analyze", "pixels"):
                    o = result[path]
                    if o["kind"] in ACCEPTED or id(o) in seen:
                        continue
                    seen.add(id(o))
                    key = _key(o)
                    rep = _save(session.folder, case, seed, path, key, o)
                    report.findings.append({"case": i, "family": case.family, "seed": case.seed, "path": path,
                                            "key": key, "message": o.get("message", ""), "reproducer": rep,
                                            "mutations": case.steps})
                if progress and time.monotonic() - last_print[0] > 30:
                    last_print[0] = time.monotonic()
                    el = time.monotonic() - t0
                    print(f"[{el / 60:5.1f} min] {report.cases} cases, {len(report.findings)} findings, "
                          f"{session.restarts - restarts0} restarts", file=sys.stderr, flush=True)

    try:
        threads = [threading.Thread(target=loop, args=(k,), daemon=True) for k in range(len(session.workers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        report.seconds = time.monotonic() - t0
        report.restarts = session.restarts - restarts0
        report.baseline_rss, report.peak_rss = session.baseline_rss, session.peak_rss
        if own:
            session.close()
    return report
