"""``ssb decode FILE.ssb -o OUT.png [--frames N]``: pixels for people.

Decodes the BASE units of the chosen frames, then the small pixel-synthesis network
(:mod:`ssb.codec.pixels`).  With several frames, ``OUT`` gets a ``_<frame>`` suffix per frame.
A grouped stream (``ssb encode --groups``) is rendered from its composed groups; with
``--classes`` only those classes' units are read and ``OUT`` is RGBA, opaque inside their masks.
"""

from __future__ import annotations

from pathlib import Path

from ssb.cli._common import frame_range
from ssb.errors import SSBError


def add_arguments(p) -> None:
    p.add_argument("file", help="SSB file")
    p.add_argument("-o", "--output", required=True, help="PNG to write")
    p.add_argument("--frames", type=frame_range, default=range(0, 1), help="frames A:B or N (default 0)")
    p.add_argument("--classes", default=None,
                   help="render only these classes' groups (needs a grouped stream; refused for ungrouped ones)")
    p.add_argument("--weights", default=None, help="codec weights (default: shipped)")
    p.add_argument("--pixel-weights", default=None, help="pixel-decoder weights (default: shipped)")


def run(args) -> int:
    import torch
    from PIL import Image

    import ssb
    from ssb.codec.groups import is_grouped
    from ssb.codec.image import decode_features
    from ssb.codec.pixels import load_pixel_synthesis, render
    from ssb.codec.zoo import load_codec
    from ssb.format import UnitType

    torch.set_grad_enabled(False)
    codec = load_codec(args.weights)
    synth = load_pixel_synthesis(codec, args.pixel_weights)
    out = Path(args.output)
    written = []
    with ssb.open(args.file) as bs:
        if is_grouped(bs):  # irregular groups: ssb.codec.groups
            written = _render_grouped(args, bs, codec, synth, out)
        elif args.classes is not None and not any(u.type == UnitType.GROUP_MASK for u in bs.units):
            raise SSBError(f"{args.file} has no group units: selective reconstruction by class needs a grouped "
                           "stream; decode without --classes for the whole frame", field="--classes")
        else:
            for df in decode_features(bs, codec, frames=args.frames):
                img = render(synth, df.features["split"], df.image_size)
                path = _frame_path(out, args.frames, df.frame_index)
                Image.fromarray(img).save(path)
                written.append(path)
    if not written:
        raise SSBError(f"no frame of {args.file} in {args.frames}", field="--frames")
    for p in written:
        print(f"wrote {p}")
    return 0


def _frame_path(out: Path, frames: range, index: int) -> Path:
    return out if len(frames) == 1 else out.with_name(f"{out.stem}_{index}{out.suffix}")


def _render_grouped(args, bs, codec, synth, out: Path) -> list[Path]:
    """Grouped stream: the whole composed frame, or with ``--classes`` only those classes' groups.

    With ``--classes`` only the selected groups' units are read; the picture is rendered from
    their composed features and written as RGBA whose alpha is the union of their masks.
    """
    import numpy as np
    from PIL import Image

    from ssb.cli._common import class_ids
    from ssb.codec.groups import compose, decode_groups, group_alpha, stream_layout
    from ssb.codec.pixels import render

    classes = class_ids(args.classes) if args.classes is not None else None
    layout = stream_layout(bs)
    written = []
    for fr in decode_groups(bs, codec, frames=args.frames, classes=classes, masks=True):
        img = render(synth, compose(fr, layout=layout), fr.image_size)
        if classes is not None:
            img = np.dstack([img, group_alpha(fr)])
        path = _frame_path(out, args.frames, fr.frame_index)
        Image.fromarray(img).save(path)
        written.append(path)
    return written
