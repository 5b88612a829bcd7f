"""``ssb encode IMAGE|DIR|VIDEO -o OUT.ssb [--quality Q] [--frames A:B]``."""

from __future__ import annotations

from ssb.cli._common import frame_range


def add_arguments(p) -> None:
    p.add_argument("input", help="an image, a folder of images, or a video file")
    p.add_argument("-o", "--output", required=True, help="SSB file to write (written atomically)")
    p.add_argument("-q", "--quality", type=int, default=3, help="quality level 0 (fewest bits) .. 5 (default 3)")
    p.add_argument("--frames", type=frame_range, default=None, help="video frames A:B (B excluded) or N")
    p.add_argument("--no-index-objects", action="store_true",
                   help="do not run the encoder-side detector that fills the index with objects")
    p.add_argument("--weights", default=None, help="codec weights (default: the shipped reference weights)")


def run(args) -> int:
    from ssb.pipeline import encode

    stats = encode(args.input, args.output, quality=args.quality, frames=args.frames,
                   index_objects=not args.no_index_objects, weights=args.weights)
    print(f"{args.output}: {stats.frames} frame(s), features {stats.base_bytes} bytes "
          f"({stats.bpp:.4f} bpp of the original pixels), {stats.object_units} indexed object(s)")
    return 0
