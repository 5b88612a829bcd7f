"""What a batch run does per stream (:mod:`ssb.adapters.ray`): the query, the inputs, one stream's rows.

:class:`Query` is what runs on every stream; :func:`expand_inputs` turns paths, globs, folders and
manifests into the streams' keys; :func:`analyze_stream` makes one stream's result rows and error row;
:class:`StreamAnalyzer` is the callable class both engines run (models loaded once per worker).
Nothing here imports Ray; torch and pyarrow are imported when a function needs them.
"""

from __future__ import annotations

import glob as _glob
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from ssb.adapters._batch_store import _table

from ssb.errors import MalformedFieldError, MissingDependencyError, SSBError

#: suffixes of text manifests (one path or URL a line, ``#`` comments)
MANIFEST_SUFFIXES = (".txt", ".lst", ".list", ".manifest")
_GLOB_CHARS = frozenset("*?[")


# ------------------------------------------------------------------------------------------ query
@dataclass(frozen=True)
class Query:
    """What to run on every stream (the keyword arguments of ``ssb.pipeline.iter_analyze``).

    ``frames``: ``(start, stop)`` or ``None`` for all; ``head_options``: per-task head options
    (``{"detection": {"score_thresh": 0.5}}``); ``weights``: codec weights (default: the model each
    stream names); ``threads``: torch threads of each worker (not part of the query's identity).
    """

    tasks: tuple[str, ...] = ("detection",)
    classes: tuple | None = None
    frames: tuple[int, int] | None = None
    head_options: dict | None = None
    weights: str | None = None
    runtime: str = "torch"
    threads: int = 1

    def __post_init__(self):
        if isinstance(self.tasks, str) or not self.tasks:
            raise MalformedFieldError("give the tasks as a non-empty sequence of names", field="tasks")
        object.__setattr__(self, "tasks", tuple(dict.fromkeys(self.tasks)))
        if self.classes is not None:
            classes = [self.classes] if isinstance(self.classes, (str, int)) else self.classes
            object.__setattr__(self, "classes", tuple(classes))
        if self.frames is not None:
            r = self.frames
            start, stop = (r.start, r.stop) if isinstance(r, range) else (int(r[0]), int(r[1]))
            if not 0 <= start < stop:
                raise MalformedFieldError(f"empty or negative frame range {start}:{stop}", field="frames")
            object.__setattr__(self, "frames", (start, stop))
        if self.weights is not None:
            object.__setattr__(self, "weights", str(self.weights))
        if int(self.threads) < 1:
            raise MalformedFieldError(f"threads must be >= 1, got {self.threads}", field="threads")

    def identity(self) -> dict:
        """What makes results of two runs the same results (``threads`` excluded)."""
        d = asdict(self)
        d.pop("threads")
        d["tasks"], d["classes"] = list(self.tasks), None if self.classes is None else list(self.classes)
        d["frames"] = None if self.frames is None else list(self.frames)
        return d

    def analyze_kwargs(self) -> dict:
        return {"tasks": list(self.tasks), "classes": None if self.classes is None else list(self.classes),
                "frames": None if self.frames is None else range(*self.frames),
                "head_options": self.head_options, "runtime": self.runtime}


# ------------------------------------------------------------------------------------------ inputs
def _is_url(text: str) -> bool:
    from ssb.format.source import _URL

    return bool(_URL.match(text))


def _key(item: str | os.PathLike) -> str:
    """The name a stream has in the results: its URL as given, or its absolute local path."""
    text = os.fspath(item)
    return text if _is_url(text) else os.path.abspath(os.path.expanduser(text))


def _read_manifest(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise MalformedFieldError(f"manifest {path} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                                  offset=exc.start, field="manifest") from None
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(line if _is_url(line) or os.path.isabs(os.path.expanduser(line)) else str(path.parent / line))
    return out


def expand_inputs(items: Iterable[str | os.PathLike]) -> list[str]:
    """The streams named by ``items``, each once, in order, as result keys (:func:`_key`).

    Each item is a glob (``**`` recursive; on a URL through fsspec), a folder (its ``*.ssb``, recursively), a
    manifest (a ``.txt``/``.lst``/``.list``/``.manifest`` file: one path or URL a line, relative paths
    from the manifest's folder, blank lines and ``#`` comments skipped) or one stream (a path or a URL).
    A glob matching nothing, an empty folder or manifest, or a missing path given directly is refused;
    a missing path listed in a manifest is kept (it becomes an error row).
    """
    out: dict[str, None] = {}
    for item in items:
        text = os.fspath(item)
        if _is_url(text):
            if _GLOB_CHARS & set(text.split("://", 1)[1]):
                try:
                    import fsspec
                except ImportError as exc:
                    raise MissingDependencyError(f"a URL glob needs fsspec ({exc}); install it with: "
                                                 "pip install 'ssb[remote]'") from exc
                fs, _, paths = fsspec.get_fs_token_paths(text)
                found = sorted(fs.unstrip_protocol(p) for p in paths)
                if not found:
                    raise MalformedFieldError(f"no stream matches {text}", field="inputs")
                out.update(dict.fromkeys(found))
            else:
                out[text] = None
            continue
        path = Path(os.path.expanduser(text))
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*.ssb") if p.is_file())
            if not found:
                raise MalformedFieldError(f"the folder {path} holds no .ssb file", field="inputs")
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            found = _read_manifest(path)
            if not found:
                raise MalformedFieldError(f"the manifest {path} lists no stream", field="inputs")
        elif path.is_file():
            found = [str(path)]
        elif _GLOB_CHARS & set(text):
            found = sorted(p for p in _glob.glob(str(path), recursive=True) if os.path.isfile(p))
            if not found:
                raise MalformedFieldError(f"no file matches {text}", field="inputs")
        else:
            raise MalformedFieldError(f"no such file, folder or manifest: {text}", field="inputs")
        out.update(dict.fromkeys(_key(p) for p in found))
    if not out:
        raise MalformedFieldError("no input given", field="inputs")
    return list(out)


# -------------------------------------------------------------------------------- one stream -> rows
def _empty_row(file: str) -> dict:
    return {"file": file, "frame_index": None, "pts": None, "width": None, "height": None, "task": None,
            "num_detections": None, "boxes": None, "labels": None, "scores": None, "track_ids": None,
            "coco_results": None, "error_class": None, "error_offset": None, "error_field": None,
            "error_message": None}


def _frame_rows(file: str, fr) -> list[dict]:
    from ssb.adapters._arrays import as_numpy
    from ssb.adapters.coco import to_coco_results

    rows = []
    h, w = (int(v) for v in fr.image_size)
    for task, pred in fr.predictions.items():
        row = _empty_row(file)
        row.update(frame_index=int(fr.frame_index), pts=None if fr.pts is None else int(fr.pts), width=w, height=h,
                   task=task)
        if "boxes" in pred:
            boxes = as_numpy(pred["boxes"]).astype("float64").reshape(-1, 4)
            row["boxes"] = boxes.tolist()
            row["num_detections"] = len(boxes)
            if "labels" in pred:
                row["labels"] = [int(v) for v in as_numpy(pred["labels"]).reshape(-1)]
            if "scores" in pred:
                row["scores"] = [float(v) for v in as_numpy(pred["scores"]).astype("float64").reshape(-1)]
                if "labels" in pred:
                    row["coco_results"] = json.dumps(to_coco_results([pred], [int(fr.frame_index)]))
            if "track_ids" in pred:
                row["track_ids"] = [int(v) for v in as_numpy(pred["track_ids"]).reshape(-1)]
        rows.append(row)
    return rows


def _error_row(file: str, exc: BaseException, more: int = 0) -> dict:
    row = _empty_row(file)
    msg = exc.message if isinstance(exc, SSBError) else (str(exc) or type(exc).__name__)
    if more:
        msg += f" (and {more} more problem(s) in the stream)"
    row.update(error_class=type(exc).__name__, error_offset=getattr(exc, "offset", None),
               error_field=getattr(exc, "field", None), error_message=" ".join(msg.split()))
    if isinstance(exc, OSError) and exc.filename and not isinstance(exc, SSBError):
        row["error_message"] = f"{exc.strerror or exc}: {exc.filename}"
    return row


def analyze_stream(file: str, *, pipeline, models, query: Query, data=None) -> list[dict]:
    """Every row of one stream: one per frame and task, then one error row if it is damaged or bad.

    ``file``: the stream's key (path or URL, read when ``data`` is ``None``); ``data``: its bytes when
    they were read already; ``pipeline``: ``ssb.pipeline`` (``iter_analyze``); ``models``: a
    ``pipeline.Models`` kept across calls (loaded once).  Any exception of the analysis becomes the
    error row (its class, byte offset, field and message); none escapes.
    """
    import ssb
    from ssb.format.source import source_for

    rows: list[dict] = []
    error: BaseException | None = None
    more = 0
    src, owned, size, read = None, False, None, 0
    try:
        src, owned = source_for(data if data is not None else file)
        size = src.size
        with ssb.open(src) as bs:
            damage, complete = list(bs.errors), len(bs.frames)
        read = src.bytes_read
        if complete == 0:
            raise damage[0] if damage else MalformedFieldError("the stream holds no complete frame", field="frames")
        start = src.bytes_read
        try:
            for fr in pipeline.iter_analyze(src, models=models, **query.analyze_kwargs()):
                rows.extend(_frame_rows(file, fr))
        finally:
            read = src.bytes_read - start
        if damage:
            error, more = damage[0], len(damage) - 1
        elif not rows:  # a stream must leave a row: say that the query selected none of its frames
            sel = "" if query.frames is None else f" in frames {query.frames[0]}:{query.frames[1]}"
            error = MalformedFieldError(f"no frame of the stream{sel} matched the query", field="frames")
    except Exception as exc:  # noqa: BLE001 - every failure of a stream is its error row
        error = exc
    finally:
        if owned and src is not None:
            src.close()
    if error is not None:
        rows.append(_error_row(file, error, more))
    for i, row in enumerate(rows):
        row.update(seq=i, file_rows=len(rows), bytes_read=int(read), file_size=None if size is None else int(size))
    return rows



class StreamAnalyzer:
    """The callable class of ``map_batches``: models loaded once per worker, rows per batch of streams.

    A batch (a ``pyarrow.Table`` or a dict of columns) has a ``file`` column of keys, or, as
    ``read_binary_files`` gives it, ``path`` and ``bytes`` columns (the rows are named by ``path``).
    Returns a ``pyarrow.Table`` of :func:`schema`.
    """

    def __init__(self, query: Query, pipeline):
        try:
            import torch

            torch.set_num_threads(int(query.threads))
        except ImportError:
            pass
        self.query, self.pipeline = query, pipeline
        self.models = pipeline.Models(query.weights)

    def __call__(self, batch):
        cols = {k: (v.to_pylist() if hasattr(v, "to_pylist") else list(v))
                for k, v in (batch.items() if isinstance(batch, dict) else
                             ((n, batch.column(n)) for n in batch.column_names))}
        if "file" in cols:
            files, blobs = [str(f) for f in cols["file"]], [None] * len(cols["file"])
        else:
            files = [str(p) for p in cols["path"]]
            blobs = list(cols["bytes"])
        rows = []
        for file, data in zip(files, blobs):
            rows.extend(analyze_stream(file, pipeline=self.pipeline, models=self.models, query=self.query, data=data))
        return _table(rows)
