"""The Parquet output of a batch run (:mod:`ssb.adapters.ray`): row schema, store with resume, read-back.

:func:`schema` is the Arrow schema of result and error rows; :class:`ResultStore` writes them as parts
under ``OUT.parquet.parts/`` and, at the end, as the one sorted file ``OUT.parquet`` with the query in
its metadata (``QUERY_KEY``), and reads back what an earlier run left to resume it; :func:`load_results`
reads an output.  pyarrow is imported when a function needs it, never at import.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ssb.errors import MalformedFieldError, MissingDependencyError

if TYPE_CHECKING:
    from ssb.adapters._batch_rows import Query

#: key of the query in the Parquet file's metadata
QUERY_KEY = b"ssb.batch.query"
_INSTALL = "pip install 'ssb[ray]' (or: pip install 'ray[data]')"


# ---------------------------------------------------------------------------------------- imports
def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet  # the Parquet module, for the pq functions below
    except ImportError as exc:
        raise MissingDependencyError(f"pyarrow is required to write batch results (Parquet) but is not installed "
                                     f"({exc}); install it with: {_INSTALL}") from exc
    return pa


def schema():
    """The Arrow schema of result and error rows (see :mod:`ssb.adapters.ray`)."""
    pa = _pa()
    return pa.schema([
        ("file", pa.string()),
        ("seq", pa.int32()),
        ("file_rows", pa.int32()),
        ("frame_index", pa.int64()),
        ("pts", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("task", pa.string()),
        ("num_detections", pa.int32()),
        ("boxes", pa.list_(pa.list_(pa.float64(), 4))),
        ("labels", pa.list_(pa.int64())),
        ("scores", pa.list_(pa.float64())),
        ("track_ids", pa.list_(pa.int64())),
        ("coco_results", pa.string()),
        ("bytes_read", pa.int64()),
        ("file_size", pa.int64()),
        ("error_class", pa.string()),
        ("error_offset", pa.int64()),
        ("error_field", pa.string()),
        ("error_message", pa.string()),
    ])


def _table(rows: list[dict]):
    pa = _pa()
    sch = schema()
    return pa.Table.from_pylist(rows, schema=sch) if rows else sch.empty_table()


# ------------------------------------------------------------------------------------------ store
def _check_same_query(found: bytes | None, query: Query, where: Path) -> None:
    if found is None:
        raise MalformedFieldError(f"{where} was not written by ssb batch (no query in its metadata); give another "
                                  "output, or overwrite it (--overwrite)", field="output")
    old, new = json.loads(found), query.identity()
    if old != new:
        diff = ", ".join(f"{k} {old.get(k)!r} (now {new.get(k)!r})" for k in new if old.get(k) != new.get(k))
        raise MalformedFieldError(f"{where} holds results of another query: {diff}; give another output, or "
                                  "overwrite it (--overwrite)", field="output")


class ResultStore:
    """The Parquet output of a batch run, with resume (see :mod:`ssb.adapters.ray`).

    :meth:`open` reads what a previous run left (the output and any parts of an interrupted run), keeps
    the streams that have all their rows, and returns their keys; :meth:`add` buffers new rows and
    writes a part when ``flush_rows`` rows or ``flush_seconds`` have gathered; :meth:`close` writes
    the one sorted output file and removes the parts.
    """

    def __init__(self, path: str | os.PathLike, query: Query, *, overwrite: bool = False,
                 retry_errors: bool = False, flush_rows: int = 5000, flush_seconds: float = 30.0):
        self.path = Path(path)
        self.parts = self.path.with_name(self.path.name + ".parts")
        self.query, self.overwrite, self.retry_errors = query, overwrite, retry_errors
        self.flush_rows, self.flush_seconds = int(flush_rows), float(flush_seconds)
        self._buffer: list = []
        self._buffered = 0
        self._last_flush = time.monotonic()
        self._run = f"{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._count = 0
        self.written = 0  # rows added in this run

    # -- reading back
    def _read(self, path: Path):
        import pyarrow.parquet as pq

        try:
            meta = pq.read_schema(path).metadata or {}
            _check_same_query(meta.get(QUERY_KEY), self.query, path)
            return pq.read_table(path, schema=schema())
        except (_pa().ArrowException, OSError) as exc:
            if isinstance(exc, (FileNotFoundError, PermissionError)):
                raise
            raise MalformedFieldError(f"{path} is not results of ssb batch ({' '.join(str(exc).split())[:200]}); "
                                      "give another output, or overwrite it (--overwrite)", field="output") from None

    def _part_files(self) -> list[Path]:
        return sorted(self.parts.glob("*.parquet")) if self.parts.is_dir() else []

    def open(self) -> set[str]:
        """Read back previous results (refusing another query's); the keys of the streams done."""
        pa = _pa()
        import pyarrow.compute as pc

        parts = self._part_files()
        if self.overwrite:
            self._remove_parts(parts)
            self.path.unlink(missing_ok=True)
            return set()
        tables = ([self._read(self.path)] if self.path.exists() else []) + [self._read(p) for p in parts]
        if not tables:
            return set()
        # a stream found in several tables (a retried stream after an interrupted run) keeps its newest rows
        newest: dict[str, int] = {}
        for i, t in enumerate(tables):
            newest.update(dict.fromkeys(t.column("file").to_pylist(), i))
        kept = [t.filter(pc.is_in(t.column("file"), value_set=pa.array([f for f, j in newest.items() if j == i],
                                                                       pa.string())))
                for i, t in enumerate(tables)]
        table = pa.concat_tables(kept)
        # a stream is done when all its rows are there (seq 0 .. file_rows - 1); error rows retried if asked
        counts: dict[str, int] = {}
        want: dict[str, int] = {}
        errors: set[str] = set()
        for f, n, e in zip(table.column("file").to_pylist(), table.column("file_rows").to_pylist(),
                           table.column("error_class").to_pylist()):
            counts[f] = counts.get(f, 0) + 1
            want[f] = n
            if e is not None:
                errors.add(f)
        done = {f for f, n in counts.items() if n == want[f] and not (self.retry_errors and f in errors)}
        table = table.filter(pc.is_in(table.column("file"), value_set=pa.array(sorted(done), pa.string())))
        if parts or table.num_rows != sum(t.num_rows for t in tables):
            self._write_final(table)
            self._remove_parts(parts)
        return done

    # -- writing
    def _metadata(self) -> dict:
        return {QUERY_KEY: json.dumps(self.query.identity()).encode()}

    def _write(self, table, path: Path) -> None:
        import pyarrow.parquet as pq

        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        pq.write_table(table.replace_schema_metadata(self._metadata()), tmp)
        os.replace(tmp, path)

    def _write_final(self, table) -> None:
        self._write(table.sort_by([("file", "ascending"), ("seq", "ascending")]), self.path)

    def _remove_parts(self, parts: Sequence[Path]) -> None:
        for p in parts:
            p.unlink(missing_ok=True)
        if self.parts.is_dir() and not any(self.parts.iterdir()):
            self.parts.rmdir()

    def add(self, table) -> None:
        if table.num_rows == 0:
            return
        self._buffer.append(table)
        self._buffered += table.num_rows
        self.written += table.num_rows
        if self._buffered >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as a part (safe to call at any time)."""
        if self._buffer:
            self.parts.mkdir(exist_ok=True)
            self._write(_pa().concat_tables(self._buffer), self.parts / f"{self._run}-{self._count:06d}.parquet")
            self._count += 1
            self._buffer, self._buffered = [], 0
        self._last_flush = time.monotonic()

    def close(self):
        """The whole output as one sorted file; returns the table written."""
        pa = _pa()
        self.flush()
        parts = self._part_files()
        tables = ([self._read(self.path)] if self.path.exists() else []) + [self._read(p) for p in parts]
        table = pa.concat_tables(tables) if tables else schema().empty_table()
        self._write_final(table)
        self._remove_parts(parts)
        return table.sort_by([("file", "ascending"), ("seq", "ascending")])


def load_results(path: str | os.PathLike):
    """A batch output as a ``pyarrow.Table`` (``.to_pandas()`` for a DataFrame)."""
    import pyarrow.parquet as pq

    _pa()
    return pq.read_table(path)
