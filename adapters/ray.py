"""Batch analytics over many SSB streams: a Ray Dataset engine and a plain local loop, same rows.

>>> from ssb import pipeline                                                          # doctest: +SKIP
>>> from ssb.adapters.ray import Query, batch_analyze
>>> summary = batch_analyze(["streams/*.ssb"], "results.parquet", pipeline=pipeline,
...                         query=Query(tasks=("detection",), classes=("person",)),
...                         engine="ray", workers=2)                    # or engine="local": no Ray
>>> summary.rows, summary.errors, summary.skipped

How it runs.  The inputs (paths, globs, folders, manifests: :func:`expand_inputs`) become a Ray
Dataset of one row per stream (:func:`read_streams`): by default the row holds only the path or
URL and the worker opens it lazily, so it reads only the byte ranges the query needs
(``read="ranges"``: headers, indexes, then the selected units; anything ``ssb.open`` reads, local
or remote); ``read="files"`` reads whole files with ``ray.data.read_binary_files`` instead (for
storage that only Ray's filesystem layer reaches).  :func:`analyze_dataset` maps batches of
streams over :class:`StreamAnalyzer`, a callable class: each worker (an actor of an
``ActorPoolStrategy`` of ``workers`` actors) loads the models once and analyses every stream of
its batches.  The local engine (:func:`iter_local`) calls the very same class in a loop in this
process, so both engines produce identical rows.

Rows (:func:`schema`).  Every input is accounted for: one row per analysed frame and task
(``frame_index``, ``task``, detections as columns ``boxes`` xyxy / ``labels`` / ``scores`` /
``track_ids`` and as a COCO results JSON string ``coco_results`` with ``image_id`` = frame
index), and one error row per bad stream (``error_class``, ``error_offset``, ``error_field``,
``error_message``; ``frame_index`` and ``task`` null).  A stream damaged after some complete
frames (cut short, a bad fragment) gives the rows of those frames *and* its error row.
``bytes_read`` is what the analysis read of the stream (the same on each of its rows),
``file_size`` its size, ``seq`` a row's position among its stream's ``file_rows`` rows.

Output and resume (:class:`ResultStore`).  Rows are written to ``OUT.parquet.parts/`` as they
come (at least every ``flush_seconds``), and when the run ends the output is rewritten as one
Parquet file ``OUT.parquet``, sorted by (file, seq), with the query in its metadata.  A rerun with
the same output skips every stream that already has all its rows there (after a crash too: the
parts are read back), refuses a different query unless ``overwrite``, and with ``retry_errors``
analyses again the streams that had an error row.

On a cluster (``address``) every node needs ssb installed (the image or a ``runtime_env``) and the
streams reachable under their keys (shared storage, or URLs).

The per-stream analysis is ``ssb.pipeline`` (its ``Models`` and ``iter_analyze``), passed in as
``pipeline=``: this module sits below the pipeline in the package layers and never imports it.
Ray, pyarrow and tqdm are imported when a function needs them, never at ``import ssb.adapters``.

The code is split by job: :mod:`ssb.adapters._batch_rows` (the query, the inputs, one stream's rows,
:class:`StreamAnalyzer`), :mod:`ssb.adapters._batch_store` (the schema, :class:`ResultStore`,
:func:`load_results`) and this module (the engines and :func:`batch_analyze`), which re-exports the
names of the other two.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the names of the split-off modules stay importable from here (MANIFEST_SUFFIXES, QUERY_KEY too)
from ssb.adapters._batch_rows import (  # noqa: F401
    MANIFEST_SUFFIXES,
    Query,
    StreamAnalyzer,
    _is_url,
    _key,
    analyze_stream,
    expand_inputs,
)
from ssb.adapters._batch_store import (  # noqa: F401
    _INSTALL,
    QUERY_KEY,
    ResultStore,
    _pa,
    _table,
    load_results,
    schema,
)

from ssb.errors import MalformedFieldError, MissingDependencyError

__all__ = ["ENGINES", "READ_MODES", "BatchSummary", "Query", "ResultStore", "StreamAnalyzer",
           "analyze_dataset", "analyze_stream", "batch_analyze", "expand_inputs", "init_ray", "iter_local",
           "iter_ray", "load_results", "read_streams", "require_engine", "schema"]

ENGINES = ("ray", "local")
READ_MODES = ("ranges", "files")


# ---------------------------------------------------------------------------------------- imports
def _ray():
    """``ray`` with ``ray.data``, imported by name like :func:`ssb._optional.require` (the command line
    reaches this module, and the layer contracts keep Ray out of every import chain from it)."""
    try:
        ray = importlib.import_module("ray")
        importlib.import_module("ray.data")  # the Data library is ray's [data] extra
    except ImportError as exc:
        raise MissingDependencyError(f"ray[data] is required for --engine ray but is not installed ({exc}); "
                                     f"install it with: {_INSTALL}") from exc
    return ray


def require_engine(engine: str) -> None:
    """Refuse (before any work) an engine whose packages are missing: pyarrow always, Ray for ``"ray"``."""
    if engine not in ENGINES:
        raise MalformedFieldError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}", field="engine")
    _pa()
    if engine == "ray":
        _ray()


# ------------------------------------------------------------------------------------------ engines
def _chunks(items: Sequence, n: int) -> Iterator[Sequence]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def iter_local(files: Sequence[str], *, pipeline, query: Query, batch_size: int = 16) -> Iterator:
    """The local engine: :class:`StreamAnalyzer` in a loop in this process; one table per ``batch_size`` streams."""
    try:
        import torch

        before = torch.get_num_threads()
    except ImportError:
        torch = None
    analyzer = StreamAnalyzer(query, pipeline)
    try:
        for chunk in _chunks(list(files), max(1, int(batch_size))):
            yield analyzer({"file": list(chunk)})
    finally:
        if torch is not None:
            torch.set_num_threads(before)


def init_ray(*, workers: int = 1, address: str | None = None, quiet: bool = True, threads: int = 1) -> bool:
    """Start Ray if it is not running: on ``address`` (a cluster: ``"auto"``, ``"ray://host:10001"``, or
    ``RAY_ADDRESS``), else a local one of ``workers * threads`` CPUs.  Returns whether it started it."""
    import logging

    ray = _ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR if quiet else logging.INFO}
    if address is None:  # a new local instance, even beside another one on this machine
        address = "local"
        kwargs["num_cpus"] = max(1, int(workers)) * max(1, int(threads))
    ray.init(address=address, **kwargs)
    return True


@contextlib.contextmanager
def _quiet_ray_data():
    """Ray Data's progress bars and info logs off while the engine runs (its tqdm bar shows progress)."""
    import logging

    ctx = _ray().data.DataContext.get_current()
    logger = logging.getLogger("ray.data")
    saved = (ctx.enable_progress_bars, getattr(ctx, "print_on_execution_start", None), logger.level)
    ctx.enable_progress_bars = False
    if saved[1] is not None:
        ctx.print_on_execution_start = False
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        ctx.enable_progress_bars = saved[0]
        if saved[1] is not None:
            ctx.print_on_execution_start = saved[1]
        logger.setLevel(saved[2])


def _ray_path(key: str) -> str:
    """How ``read_binary_files(include_paths=True)`` names ``key`` (the scheme of a URL dropped)."""
    return key.split("://", 1)[1] if _is_url(key) else key


def read_streams(files: Sequence[str], *, read: str = "ranges", batch_size: int = 16):
    """A Ray Dataset of the streams: ``read="ranges"``: one row ``{"file": key}`` each (the worker reads
    only the byte ranges the query needs); ``"files"``: ``read_binary_files`` rows ``{"path", "bytes"}``
    (whole files, through Ray's filesystem layer; local paths and pyarrow filesystem URLs)."""
    ray = _ray()
    if read not in READ_MODES:
        raise MalformedFieldError(f"read must be one of {', '.join(READ_MODES)}, got {read!r}", field="read")
    files = list(files)
    blocks = max(1, -(-len(files) // max(1, int(batch_size))))
    if read == "ranges":
        return ray.data.from_items([{"file": f} for f in files], override_num_blocks=blocks)
    # reads are I/O: with num_cpus=0 they never wait for the CPUs the actor pool holds
    return ray.data.read_binary_files(files, include_paths=True, override_num_blocks=blocks, num_cpus=0)


def analyze_dataset(ds, *, pipeline, query: Query, workers: int = 1, batch_size: int = 16,
                    num_gpus: float | None = None):
    """``ds.map_batches(StreamAnalyzer, ...)`` on a pool of ``workers`` actors (models loaded once per
    actor, ``query.threads`` CPUs each); a Dataset of rows of :func:`schema` (with ``read="files"``
    rows, ``file`` is the path as Ray names it: :func:`iter_ray` maps it back)."""
    ray = _ray()
    extra = {} if not num_gpus else {"num_gpus": num_gpus}
    return ds.map_batches(StreamAnalyzer, batch_size=max(1, int(batch_size)), batch_format="pyarrow",
                          compute=ray.data.ActorPoolStrategy(size=max(1, int(workers))),
                          fn_constructor_kwargs={"query": query, "pipeline": pipeline},
                          num_cpus=int(query.threads), **extra)


def iter_ray(files: Sequence[str], *, pipeline, query: Query, workers: int = 1, batch_size: int = 16,
             read: str = "ranges", num_gpus: float | None = None,
             on_dataset: Callable[[Any], None] | None = None) -> Iterator:
    """The Ray engine (Ray must be initialised: :func:`init_ray`): tables of rows as the workers finish them.

    ``on_dataset(ds)`` is called with the Dataset once it is built (``ds.stats()`` after the run)."""
    _ray()
    files = list(files)
    # each worker gets work even for few streams, and batches stay small enough to report progress
    batch_size = max(1, min(int(batch_size), -(-len(files) // max(1, int(workers)))))
    ds = analyze_dataset(read_streams(files, read=read, batch_size=batch_size), pipeline=pipeline, query=query,
                         workers=workers, batch_size=batch_size, num_gpus=num_gpus)
    if on_dataset is not None:
        on_dataset(ds)
    pa = _pa()
    keys = {_ray_path(f): f for f in files} if read == "files" else None
    with _quiet_ray_data():
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            if keys is not None:  # rows of read_binary_files are named by Ray's path: back to the keys
                named = pa.array([keys.get(p, p) for p in table.column("file").to_pylist()], pa.string())
                table = table.set_column(table.schema.get_field_index("file"), "file", named)
            yield table


# ------------------------------------------------------------------------------------------ driver
@dataclass
class BatchSummary:
    """What a run did: ``files`` given, ``skipped`` (done before), ``analyzed`` in this run; of the whole
    output: ``rows``, ``frames`` (distinct analysed frames), ``errors`` (error rows); ``seconds``."""

    output: Path
    files: int
    skipped: int
    analyzed: int
    rows: int
    frames: int
    errors: int
    seconds: float
    error_rows: list[dict] = field(default_factory=list)


def batch_analyze(inputs, output, *, pipeline, query: Query | None = None, engine: str = "ray", workers: int = 1,
                  batch_size: int = 16, read: str = "ranges", address: str | None = None,
                  overwrite: bool = False, retry_errors: bool = False, progress: bool = False,
                  flush_seconds: float = 30.0, num_gpus: float | None = None, expand: bool = True,
                  on_start: Callable[[int, int], None] | None = None,
                  on_dataset: Callable[[Any], None] | None = None) -> BatchSummary:
    """Analyse every stream of ``inputs`` (see :func:`expand_inputs`) into the Parquet file ``output``.

    ``pipeline``: ``ssb.pipeline``; ``engine``: ``"ray"`` (a pool of ``workers`` actors; Ray is started
    locally with ``workers * query.threads`` CPUs, or joins ``address``, unless it is running already)
    or ``"local"`` (one process, no Ray; ``workers`` must be 1).  Streams already in ``output`` (with all
    their rows) are skipped; ``retry_errors`` analyses those with an error row again; ``overwrite``
    starts afresh.  ``progress``: a tqdm bar of streams.  ``expand=False``: ``inputs`` are the streams
    themselves (from :func:`expand_inputs` already; missing ones become error rows).
    ``on_start(todo, skipped)`` is called once the inputs are known and the output read back, before
    any model is loaded; ``on_dataset(ds)`` with the Ray Dataset (:func:`iter_ray`).
    """
    t0 = time.perf_counter()
    query = query or Query()
    require_engine(engine)
    if read not in READ_MODES:
        raise MalformedFieldError(f"read must be one of {', '.join(READ_MODES)}, got {read!r}", field="read")
    if int(workers) < 1:
        raise MalformedFieldError(f"workers must be >= 1, got {workers}", field="workers")
    if engine == "local" and int(workers) != 1:
        raise MalformedFieldError("the local engine runs one process: use engine='ray' for several workers",
                                  field="workers")
    if int(batch_size) < 1:
        raise MalformedFieldError(f"batch_size must be >= 1, got {batch_size}", field="batch_size")
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    files = expand_inputs(items) if expand else list(dict.fromkeys(_key(f) for f in items))
    if read == "files" and any(f.lower().startswith(("http://", "https://")) for f in files):
        raise MalformedFieldError("read='files' reads through Ray's filesystems (local paths, s3://, gs://, ...); "
                                  "read http(s) URLs with read='ranges'", field="read")
    out = Path(output)
    if out.is_dir():
        raise MalformedFieldError(f"{out} is a folder; give a .parquet file name", field="output")
    store = ResultStore(out, query, overwrite=overwrite, retry_errors=retry_errors, flush_seconds=flush_seconds)
    done = store.open()
    todo = [f for f in files if f not in done]
    if read == "files" and engine == "ray":
        # read_binary_files fails the whole read on a missing local file: account for those here
        missing = [f for f in todo if not _is_url(f) and not os.path.isfile(f)]
    else:
        missing = []
    if on_start is not None:
        on_start(len(todo), len(files) - len(todo))
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=f"batch analyze ({engine})", unit="stream")
    try:
        if missing:
            rows = []
            for f in missing:
                rows.extend(analyze_stream(f, pipeline=pipeline, models=None, query=query))
            store.add(_table(rows))
            if bar is not None:
                bar.update(len(missing))
        rest = [f for f in todo if f not in set(missing)]
        if rest:
            started = False
            if engine == "ray":
                started = init_ray(workers=workers, address=address, quiet=True, threads=query.threads)
                tables = iter_ray(rest, pipeline=pipeline, query=query, workers=workers, batch_size=batch_size,
                                  read=read, num_gpus=num_gpus, on_dataset=on_dataset)
            else:
                tables = iter_local(rest, pipeline=pipeline, query=query, batch_size=batch_size)
            try:
                for table in tables:
                    store.add(table)
                    if bar is not None:
                        seq, n = table.column("seq").to_pylist(), table.column("file_rows").to_pylist()
                        bar.update(sum(1 for s, k in zip(seq, n) if s == k - 1))
            finally:
                if started:
                    _ray().shutdown()
    finally:
        if bar is not None:
            bar.close()
        table = store.close()
    import pyarrow.compute as pc

    errs = table.filter(pc.is_valid(table.column("error_class")))
    frames = table.filter(pc.is_valid(table.column("frame_index")))
    distinct = len(set(zip(frames.column("file").to_pylist(), frames.column("frame_index").to_pylist())))
    shown = errs.select(["file", "error_class", "error_offset", "error_field", "error_message"]).to_pylist()
    return BatchSummary(out, len(files), len(files) - len(todo), len(todo), table.num_rows, distinct,
                        errs.num_rows, time.perf_counter() - t0, shown)
