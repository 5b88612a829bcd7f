"""``ssb batch analyze GLOB|FOLDER|MANIFEST|FILE... -o results.parquet [--engine ray|local] [--workers N]
[--task detection[,...]] [--classes person] ...``.

Analyses many streams into one Parquet file (:mod:`ssb.adapters.ray`): one row per frame and task,
one error row per bad stream (error class, byte offset, field, message).  Running it again with the
same ``-o`` skips the streams already there (``--retry-errors`` redoes the bad ones, ``--overwrite``
starts afresh; a different query is refused).  The arguments, the inputs and the output are checked
before any model is loaded.  Exit status 0 when every stream has its results, 1 when the output holds
error rows (they are listed on stderr), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys

from ssb.cli._common import check_output, frame_range, name_list, positive, progress_enabled, unit_interval
from ssb.errors import SSBError

#: errors listed on stderr at the end of a run (all of them are in the output)
SHOWN_ERRORS = 10



def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="batch_action", metavar="ACTION", parser_class=type(p), required=True)
    a = sub.add_parser("analyze", help="run task heads on many SSB streams into one Parquet file",
                       description="Run task heads on many SSB streams (locally or on Ray) into one Parquet file: "
                                   "one row per frame and task, one error row per bad stream; a rerun with the "
                                   "same output resumes.")
    # also accepted after the action (`ssb batch analyze ... --quiet`); SUPPRESS keeps `ssb batch --quiet analyze`
    a.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bar")
    a.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
    a.add_argument("inputs", nargs="+", metavar="GLOB|MANIFEST",
                   help="streams: globs (quote them for ** recursion), folders (their *.ssb), manifests (.txt/.lst: "
                        "one path or URL a line) or files and URLs")
    a.add_argument("-o", "--output", required=True, metavar="RESULTS.parquet", help="the Parquet output")
    a.add_argument("--engine", choices=("ray", "local"), default="ray",
                   help="ray: a pool of --workers Ray actors (a local Ray unless --address); local: one process")
    a.add_argument("--workers", type=positive, default=1, help="Ray actors, each loading the models once")
    a.add_argument("--address", default=None,
                   help="Ray cluster to join (auto, ray://HOST:10001; default $RAY_ADDRESS, else a local Ray)")
    a.add_argument("--task", default=["detection"], type=name_list,
                   help="comma-separated task heads, e.g. detection,pose (see `ssb codecs`)")
    a.add_argument("--classes", default=None, type=name_list,
                   help="comma-separated class names or ids to keep (e.g. person); grouped streams read only theirs")
    a.add_argument("--frames", type=frame_range, default=None, help="frames A:B or N of each stream")
    a.add_argument("--score-thresh", type=unit_interval, default=None,
                   help="score threshold of the detection, pose and segmentation heads")
    a.add_argument("--weights", default=None, help="codec weights (default: the model each stream names)")
    a.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch",
                   help="where the feature synthesis and the heads run")
    a.add_argument("--read", choices=("ranges", "files"), default="ranges",
                   help="ranges: each worker opens its streams and reads only the byte ranges the query needs "
                        "(paths or any URL ssb.open reads); files: Ray's read_binary_files reads whole files")
    a.add_argument("--batch-size", type=positive, default=16, help="streams per batch of a worker")
    a.add_argument("--threads", type=positive, default=1, help="torch threads (and Ray CPUs) of each worker")
    a.add_argument("--retry-errors", action="store_true", help="analyse again the streams with an error row")
    a.add_argument("--overwrite", action="store_true", help="discard the results already in the output")


def _check_classes(classes: list[str], files: list[str]) -> list:
    """Class names must exist in the first input's label set (or COCO's when it does not open): ids as ints."""
    import ssb
    from ssb.format.labels import LABEL_SETS, class_id, label_names

    names: dict[int, str] = {}
    try:
        with ssb.open(files[0]) as bs:
            names = label_names(bs.header.metadata)
    except (SSBError, OSError):
        pass
    if not names:
        names = dict(LABEL_SETS["coco"])
    return [class_id(c, names, "--classes") for c in classes]


def validate(args):
    """Checks needing no model; returns (the streams, the query)."""
    from ssb.adapters.ray import Query, expand_inputs, require_engine
    from ssb.cli.analyze import BOX_TASKS
    from ssb.tasks import list_tasks

    tasks = list(dict.fromkeys(args.task))
    known = list_tasks()
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise SSBError(f"unknown task {', '.join(unknown)}; available: {', '.join(known)}", field="--task")
    if args.engine == "local" and args.workers != 1:
        raise SSBError("--engine local runs one process; use --engine ray for --workers > 1", field="--workers")
    if args.engine == "local" and args.address:
        raise SSBError("--address joins a Ray cluster: it needs --engine ray", field="--address")
    if args.engine == "local" and args.read != "ranges":
        raise SSBError("--read files reads through Ray: it needs --engine ray", field="--read")
    out = check_output(args.output, "--output")
    if out.suffix.lower() != ".parquet":
        raise SSBError(f"the output {out} must be a .parquet file", field="--output")
    require_engine(args.engine)
    if args.runtime == "onnxruntime":
        from ssb._optional import require

        require("onnxruntime", "--runtime onnxruntime")
    files = expand_inputs(args.inputs)
    classes = _check_classes(args.classes, files) if args.classes is not None else None
    opts = ({t: {"score_thresh": args.score_thresh} for t in tasks if t in BOX_TASKS}
            if args.score_thresh is not None else None)
    query = Query(tasks=tuple(tasks), classes=None if classes is None else tuple(classes),
                  frames=args.frames, head_options=opts, weights=args.weights, runtime=args.runtime,
                  threads=args.threads)
    return files, query


def _describe(row: dict) -> str:
    where = []
    if row.get("error_offset") is not None:
        where.append(f"byte {row['error_offset']}")
    if row.get("error_field"):
        where.append(f"field {row['error_field']}")
    return f"{row['file']}: {row['error_class']}{' at ' + ', '.join(where) if where else ''}: {row['error_message']}"


def run(args) -> int:
    files, query = validate(args)
    import ssb.pipeline
    from ssb.adapters.ray import batch_analyze

    def started(todo: int, skipped: int) -> None:
        done = f", {skipped} already in {args.output}" if skipped else ""
        print(f"ssb batch analyze: {len(files)} stream(s){done}; analysing {todo} with the {args.engine} engine"
              + (f" ({args.workers} worker(s))" if args.engine == "ray" and todo else ""), file=sys.stderr)

    summary = batch_analyze(files, args.output, pipeline=ssb.pipeline, query=query, engine=args.engine,
                            workers=args.workers, batch_size=args.batch_size, read=args.read, address=args.address,
                            overwrite=args.overwrite, retry_errors=args.retry_errors,
                            progress=progress_enabled(args), expand=False, on_start=started)
    rate = f" ({summary.analyzed / summary.seconds:.1f} streams/s)" if summary.analyzed and summary.seconds else ""
    print(f"wrote {summary.rows} row(s) to {summary.output}: {summary.frames} frame(s) of {summary.files} stream(s), "
          f"{summary.errors} error row(s); {summary.seconds:.1f} s{rate}", file=sys.stderr)
    for row in summary.error_rows[:SHOWN_ERRORS]:
        print(f"  {_describe(row)}", file=sys.stderr)
    if summary.errors > SHOWN_ERRORS:
        print(f"  ... and {summary.errors - SHOWN_ERRORS} more (rows with error_class in {summary.output})",
              file=sys.stderr)
    return 1 if summary.errors else 0
