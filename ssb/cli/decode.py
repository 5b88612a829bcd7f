"""``ssb decode FILE.ssb -o OUT.png [--frames N] [--classes person]``: pixels for people.

Decodes the frames' features (their dependency chain for predicted frames), then the small
pixel-synthesis network (:mod:`ssb.codec.pixels`).  With several frames, ``OUT`` gets a
``_<frame>`` suffix per frame.  A grouped stream is rendered from its composed groups; with
``--classes`` only those classes' units are read and ``OUT`` is RGBA, opaque inside their masks.
"""

from __future__ import annotations

from pathlib import Path

from ssb.cli._common import check_output, frame_range, name_list, progress_enabled
from ssb.errors import SSBError


def add_arguments(p) -> None:
    p.add_argument("file", help="SSB file")
    p.add_argument("-o", "--output", required=True, help="PNG to write")
    p.add_argument("--frames", type=frame_range, default=range(0, 1), help="frames A:B or N (default 0)")
    p.add_argument("--classes", default=None, type=name_list,
                   help="render only these classes' groups (needs a grouped stream; refused for ungrouped ones)")
    p.add_argument("--weights", default=None, help="codec weights (default: the model the stream names)")
    p.add_argument("--pixel-weights", default=None, help="pixel-decoder weights (default: the zoo's)")


def _frame_path(out: Path, frames: range, index: int) -> Path:
    return out if len(frames) == 1 else out.with_name(f"{out.stem}_{index}{out.suffix}")


def run(args) -> int:
    import ssb
    from ssb.codec.registry import stream_codec
    from ssb.format.labels import class_id, label_names

    out = check_output(args.output, "--output")
    with ssb.open(args.file) as bs:
        grouped = stream_codec(bs) == "ssb.grouped"
        if args.classes is not None:
            if not grouped:
                raise SSBError(f"{args.file} has no group units: selective reconstruction by class needs a grouped "
                               "stream; decode without --classes for the whole frame", field="--classes")
            names = label_names(bs.header.metadata)
            args.classes = [class_id(c, names, "--classes") for c in args.classes]
        if not any(f.frame_index in args.frames for f in bs.frames):
            raise SSBError(f"no frame of {args.file} in {args.frames}", field="--frames")
    written = _render(args, out, grouped)
    for p in written:
        print(f"wrote {p}")
    return 0


def _render(args, out: Path, grouped: bool) -> list[Path]:
    from PIL import Image

    from ssb.pipeline import Models, iter_pixels

    models = Models(args.weights, overrides={"pixels": args.pixel_weights} if args.pixel_weights else None)
    written = []
    for index, img in iter_pixels(args.file, frames=args.frames, classes=args.classes if grouped else None,
                                  models=models, progress=progress_enabled(args)):
        path = _frame_path(out, args.frames, index)
        Image.fromarray(img).save(path)
        written.append(path)
    return written
