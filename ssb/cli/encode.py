"""``ssb encode IMAGE|DIR|VIDEO -o OUT.ssb [--quality Q] [--frames A:B] [--groups auto|MASKS.png [--background-quality Q]]``."""

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
    p.add_argument("--groups", default=None, metavar="auto|MASKS.png",
                   help="write a grouped stream: background + one independently decodable group (mask + "
                        "features) per object. 'auto': detected objects (score >= 0.5) masked by background "
                        "subtraction for a video, their boxes for images; MASKS.png: a one-channel label image "
                        "(0 = background, k = group k) used for every frame")
    p.add_argument("--background-quality", type=int, default=None, metavar="Q",
                   help="with --groups: quality level of the background (default: --quality); a lower one "
                        "spends the bits on the objects")


def run(args) -> int:
    from ssb.pipeline import encode

    if args.groups is not None:
        return _run_grouped(args)
    if args.background_quality is not None:
        from ssb.errors import SSBError

        raise SSBError("--background-quality needs --groups", field="--background-quality")
    stats = encode(args.input, args.output, quality=args.quality, frames=args.frames,
                   index_objects=not args.no_index_objects, weights=args.weights)
    print(f"{args.output}: {stats.frames} frame(s), features {stats.base_bytes} bytes "
          f"({stats.bpp:.4f} bpp of the original pixels), {stats.object_units} indexed object(s)")
    return 0


def _run_grouped(args) -> int:
    from ssb.pipeline import encode_grouped

    st = encode_grouped(args.input, args.output, groups=args.groups, quality=args.quality, frames=args.frames,
                        weights=args.weights, background_quality=args.background_quality)
    print(f"{args.output}: {st.frames} frame(s), {st.groups} group(s); features {st.feature_bytes} bytes "
          f"(background {st.background_bytes}, groups {st.object_bytes}; {st.bpp:.4f} bpp of the original pixels), "
          f"masks {st.mask_bytes} bytes ({st.mask_bits_per_pixel:.3f} bits per mask-box pixel)")
    return 0
