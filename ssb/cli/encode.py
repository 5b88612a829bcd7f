"""``ssb encode IMAGE|DIR|VIDEO -o OUT.ssb [-q Q] [--codec C] [--gop N] [--object-motion] [--frames A:B]
[--groups auto|MASKS.png] [--object-scale [CLASSES]] [--object-quality Q]``."""

from __future__ import annotations

from ssb.cli._common import check_output, frame_range, name_list, progress_enabled
from ssb.errors import SSBError


def add_arguments(p) -> None:
    p.add_argument("input", help="an image, a folder of images, or a video file")
    p.add_argument("-o", "--output", required=True, help="SSB file to write (written atomically)")
    p.add_argument("-q", "--quality", type=int, default=3, help="quality level 0 (fewest bits) .. 5 (default 3)")
    p.add_argument("--codec", default=None,
                   help="stream codec (see `ssb codecs`); default: ssb.video for a video, ssb.grouped with --groups, "
                        "else ssb.image")
    p.add_argument("--gop", type=int, default=None, metavar="N",
                   help="video: a key frame every N frames (1: every frame intra-coded, as ssb.image)")
    p.add_argument("--object-motion", action="store_true",
                   help="video: each tracked object's motion in a MOTION unit of its own (attributed to its track "
                        "in the index), so per-object motion queries read only that object's units")
    p.add_argument("--frames", type=frame_range, default=None, help="video frames A:B (B excluded) or N")
    p.add_argument("--no-index-objects", action="store_true",
                   help="do not run the encoder-side detector that describes objects in the index")
    p.add_argument("--weights", default=None, help="codec weights (default: the shipped reference weights)")
    p.add_argument("--groups", default=None, metavar="auto|MASKS.png",
                   help="write a grouped stream: background + one independently decodable group (mask + "
                        "features) per object. 'auto': detected objects (score >= 0.5) masked by background "
                        "subtraction for a video, their boxes for images; MASKS.png: a one-channel label image "
                        "(0 = background, k = group k) used for every frame")
    p.add_argument("--object-scale", type=name_list, nargs="?", const=["person"], default=None, metavar="CLASSES",
                   help="image streams: code each detected object of these classes (default: person; score >= 0.5) "
                        "again at its own scale, in an OBJECT_SCALE unit of its own, for the pose and mask heads "
                        "(they then read only those units and the index)")
    p.add_argument("--object-quality", type=int, default=None, metavar="Q",
                   help="with --object-scale: quality level of the object units (default: 0 up to -q 3, then "
                        "-q minus 3)")
    p.add_argument("--object-size", default=None, metavar="small|medium|large|HxW",
                   help="with --object-scale: the size every object window is coded at (64x48, 96x72, 128x96 "
                        "pixels; default large)")
    p.add_argument("--background-quality", type=int, default=None, metavar="Q",
                   help="with --groups: quality level of the background (default: --quality); a lower one "
                        "spends the bits on the objects")


def validate(args) -> dict:
    """Every check that needs no model: the input, the output folder, levels, codec and its options."""
    from ssb.codec import registry, zoo
    from ssb.media import probe
    from ssb.pipeline import default_codec

    info = probe(args.input)
    check_output(args.output, "--output")
    levels = zoo.card(zoo.DEFAULTS["codec"]).levels if args.weights is None else None
    for name, q in (("--quality", args.quality), ("--background-quality", args.background_quality),
                    ("--object-quality", args.object_quality)):
        if q is not None and (q < 0 or (levels is not None and q >= levels)):
            raise SSBError(f"{name} must be a quality level in 0..{(levels or 256) - 1}, got {q}", field=name)
    codec = args.codec or default_codec(args.input, groups=args.groups)
    if codec not in registry.list_codecs():
        raise SSBError(f"unknown codec {codec!r}; this installation has {', '.join(registry.list_codecs())}",
                       field="--codec")
    if args.groups is not None and codec != "ssb.grouped" and args.codec is not None:
        raise SSBError(f"--groups writes an ssb.grouped stream, not {codec}", field="--groups")
    options = {}
    if args.background_quality is not None:
        if codec != "ssb.grouped":
            raise SSBError("--background-quality needs --groups", field="--background-quality")
        options["background_quality"] = args.background_quality
    if args.gop is not None:
        if codec != "ssb.video":
            raise SSBError(f"--gop needs the video codec (ssb.video), not {codec}", field="--gop")
        if args.gop < 1:
            raise SSBError(f"--gop must be >= 1, got {args.gop}", field="--gop")
        options["gop"] = args.gop
    if args.object_motion:
        if codec != "ssb.video":
            raise SSBError(f"--object-motion needs the video codec (ssb.video), not {codec}", field="--object-motion")
        if args.no_index_objects:
            raise SSBError("--object-motion needs the index objects (drop --no-index-objects)", field="--object-motion")
        options["object_motion"] = True
    if args.object_quality is not None and args.object_scale is None:
        raise SSBError("--object-quality needs --object-scale", field="--object-quality")
    if args.object_scale is not None:
        from ssb.format.labels import COCO_CATEGORIES, class_id

        if codec != "ssb.image":
            raise SSBError(f"--object-scale writes object units in ssb.image streams, not {codec} (a video is "
                           "coded as ssb.image with --codec ssb.image)", field="--object-scale")
        if args.no_index_objects:
            raise SSBError("--object-scale needs the index objects (drop --no-index-objects)", field="--object-scale")
        options["object_scale"] = [class_id(c, COCO_CATEGORIES, field="--object-scale") for c in args.object_scale]
        unknown = [c for c in options["object_scale"] if c not in COCO_CATEGORIES]
        if unknown:
            raise SSBError(f"--object-scale: no COCO class {unknown[0]}", field="--object-scale")
        if args.object_quality is not None:
            options["object_quality"] = args.object_quality
        if args.object_size is not None:
            from ssb.codec.object_scale import layout_for

            size = args.object_size
            if "x" in size:
                try:
                    size = tuple(int(v) for v in size.split("x"))
                except ValueError:
                    raise SSBError(f"--object-size HxW needs two integers, got {args.object_size!r}",
                                   field="--object-size") from None
            try:
                layout_for(size)  # refuse a bad size now
            except SSBError as exc:
                raise SSBError(exc.message, field="--object-size") from None
            options["object_size"] = size
    elif args.object_size is not None:
        raise SSBError("--object-size needs --object-scale", field="--object-size")
    if codec == "ssb.video" and info.kind != "video":
        raise SSBError(f"{args.input} is not a video; ssb.video codes clips", field="--codec")
    if args.groups not in (None, "auto"):
        from ssb.codec.group_masks import read_label_image

        read_label_image(args.groups)  # refuse a bad label image now, not after the models load
    return {"codec": codec, **options}


def run(args) -> int:
    options = validate(args)
    from ssb.pipeline import encode

    st = encode(args.input, args.output, quality=args.quality, frames=args.frames, groups=args.groups,
                index_objects=not args.no_index_objects, weights=args.weights, progress=progress_enabled(args),
                **options)
    parts = ", ".join(f"{k} {v}" for k, v in sorted(st.bytes_by_type.items()))
    line = (f"{args.output}: {st.frames} frame(s), {st.stream_bytes} bytes ({st.bpp:.4f} bits per original pixel, "
            f"container included; payloads: {parts}), {st.objects} object(s) in the index")
    if getattr(st, "groups", None) is not None and hasattr(st, "mask_bits_per_pixel"):
        line += f", {st.groups} group(s), masks {st.mask_bits_per_pixel:.3f} bits per mask-box pixel"
    print(line)
    return 0
