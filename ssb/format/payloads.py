"""Syntax of the reference codecs' payloads, in the same declarative form as the container.

The container never looks inside content payloads; the codecs of :mod:`ssb.codec` do, through
these :class:`~ssb.format.syntax.Struct` definitions, which also render sections 14-16 of
``docs/format.md``.  Every size a payload declares is checked here *against the decoder's model*
(``ctx``: the split ``grid`` of the model, its number of quality ``levels``, the ``frame`` size)
before anything is allocated for it: a payload cannot make a decoder build a tensor larger than
its model's grid.

Context keys: ``levels`` (int), ``grid`` ((rows, cols): the full split grid), ``frame``
((height, width) in pixels), ``mv_range`` (largest motion-vector component the model codes).
"""

from __future__ import annotations

from ssb.format.layout import UnitType
from ssb.format.syntax import Check, Field, Struct

__all__ = ["BASE_V1", "FEATURES", "OBJECT_GROUP_V1", "OBJECT_GROUP", "OBJECT_DESCRIPTOR_V1", "GROUP_MASK",
           "OBJECT_SCALE", "OBJECT_SCALE_MAX_CELLS",
           "MOTION", "RESIDUAL", "PAYLOAD_STRUCTS", "UNIT_PAYLOADS", "ceil_div", "MASK_MAX_PIXELS",
           "MASK_MIN_BITS_PER_PIXEL", "mask_min_bytes"]

#: Largest group mask (bounding-box pixels) a decoder accepts: decoding is linear in it.
MASK_MAX_PIXELS = 1 << 24
#: The cheapest pixel of mask coder 1 costs -log2(65504 / 65536) bits (its probabilities are clipped).
MASK_MIN_BITS_PER_PIXEL = 7.04e-4


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def mask_min_bytes(width: int, height: int) -> int:
    """No coder-1 string of a tight ``width x height`` box is shorter: half the cheapest coding of its
    pixels before the last row (the last row's trailing zeros, pushed first, and the ANS state's
    first 64 bits can be free), in whole u32 words.  Decoding time is linear in the pixels of the
    box, so this keeps it linear in the bytes of the payload too: a 10-byte string cannot make a
    decoder scan 16 million pixels."""
    bits = width * (height - 1) * MASK_MIN_BITS_PER_PIXEL / 2 - 64
    return 0 if bits <= 0 else 4 * ceil_div(int(bits) + 1, 32)


def _level_ok(r, c):
    return "levels" not in c or r["level"] < c["levels"]


def _full_grid(rows: str, cols: str):
    def test(r, c):
        return "grid" not in c or (r[rows], r[cols]) == tuple(c["grid"])
    return test


def _window_fits(row0: str, col0: str, rows: str, cols: str):
    def test(r, c):
        return "grid" not in c or (r[row0] + r[rows] <= c["grid"][0] and r[col0] + r[cols] <= c["grid"][1])
    return test


_LEVEL = Check("level", "level must be below the model's number of quality levels", _level_ok, context=True)

# ---------------------------------------------------------------------------------- features
_V1_SIZES = [
    Field("out_h", "u16", "split-feature rows (the decoder's output)", min=1),
    Field("out_w", "u16", "split-feature columns", min=1),
    Field("latent_h", "u16", "latent rows"),
    Field("latent_w", "u16", "latent columns"),
    Field("hyper_h", "u16", "hyper-latent rows"),
    Field("hyper_w", "u16", "hyper-latent columns"),
    Field("z_length", "u32", "bytes of the hyper-latent string"),
    Field("z", "bytes", "hyper-latent string (EntropyBottleneck)", count="z_length"),
    Field("y", "bytes", "latent string (GaussianConditional)"),
]
_V1_RULES = [
    Check("latent_h", "latent = ceil(out / 2)", lambda r: r["latent_h"] == ceil_div(r["out_h"], 2)
          and r["latent_w"] == ceil_div(r["out_w"], 2)),
    Check("hyper_h", "hyper = ceil(latent / 4)", lambda r: r["hyper_h"] == ceil_div(r["latent_h"], 4)
          and r["hyper_w"] == ceil_div(r["latent_w"], 4)),
    _LEVEL,
]

BASE_V1 = Struct(
    "BASE payload (1.x)",
    [Field("version", "u8", "payload syntax version", const=1),
     Field("level", "u8", "quality level (gain vector)")] + _V1_SIZES,
    checks=_V1_RULES + [Check("out_h", "out_h x out_w must be the model's split grid", _full_grid("out_h", "out_w"),
                              context=True)],
    doc="Features of a whole frame (BASE, BACKGROUND) in streams of format 1.x.",
)

FEATURES = Struct(
    "features payload",
    [
        Field("version", "u8", "payload syntax version", const=2),
        Field("level", "u8", "quality level (gain vector) of the model"),
        Field("rows", "uv", "split-grid rows coded (the model's grid for a whole frame)", min=1),
        Field("cols", "uv", "split-grid columns coded", min=1),
        Field("z_length", "uv", "bytes of the hyper-latent string"),
        Field("z", "bytes", "hyper-latent string, shape [1, hyper, ceil(ceil(rows/2)/4), ceil(ceil(cols/2)/4)]",
              count="z_length"),
        Field("y", "bytes", "latent string, shape [1, latent, ceil(rows/2), ceil(cols/2)], one table per element "
              "chosen by the integer hyper-synthesis from the decoded z"),
    ],
    checks=[_LEVEL, Check("rows", "rows x cols must be the model's split grid", _full_grid("rows", "cols"),
                          context=True)],
    doc="Features of a whole frame: BASE (and BACKGROUND of grouped streams) in 2.x streams.",
)

OBJECT_GROUP_V1 = Struct(
    "OBJECT group payload (1.x)",
    [
        Field("version", "u8", "payload syntax version", const=1),
        Field("reserved", "u8", "written 0, ignored"),
        Field("row0", "u16", "first split-grid row of the group's window"),
        Field("col0", "u16", "first split-grid column of the window"),
        Field("base_version", "u8", "version of the BASE payload that follows", const=1),
        Field("level", "u8", "quality level"),
    ] + _V1_SIZES,
    checks=_V1_RULES + [Check("row0", "the window must lie inside the model's split grid",
                              _window_fits("row0", "col0", "out_h", "out_w"), context=True)],
    doc="The window origin, then a 1.x BASE payload for the window.",
)

OBJECT_GROUP = Struct(
    "OBJECT group payload",
    [
        Field("version", "u8", "payload syntax version", const=2),
        Field("row0", "uv", "first split-grid row of the group's window"),
        Field("col0", "uv", "first split-grid column of the window"),
        Field("level", "u8", "quality level"),
        Field("rows", "uv", "window rows", min=1),
        Field("cols", "uv", "window columns", min=1),
        Field("z_length", "uv", "bytes of the window's hyper-latent string"),
        Field("z", "bytes", "hyper-latent string of the window", count="z_length"),
        Field("y", "bytes", "latent string of the window"),
    ],
    checks=[_LEVEL, Check("row0", "the window must lie inside the model's split grid",
                          _window_fits("row0", "col0", "rows", "cols"), context=True)],
    doc="One group's features: a window of the split grid coded alone (its own hyper-latent).",
)

OBJECT_DESCRIPTOR_V1 = Struct(
    "OBJECT descriptor (1.x)",
    [
        Field("class_id", "u16", "COCO id"),
        Field("x0", "f32", "box left, original-frame pixels"),
        Field("y0", "f32", "box top"),
        Field("x1", "f32", "box right"),
        Field("y1", "f32", "box bottom"),
        Field("score", "f32", "detector confidence"),
    ],
    doc="An object the encoder-side detector saw (1.x streams; 2.x describes objects in the index).",
)

# ---------------------------------------------------------------------------------- object scale
#: Largest split grid (rows x cols) of one OBJECT_SCALE window a decoder accepts (512 x 512 input pixels).
OBJECT_SCALE_MAX_CELLS = 64 * 64


def _window_near_frame(start: str, size: str, axis: int):
    """The window overlaps the frame along one axis and reaches at most one frame size beyond its edges."""
    def test(r, c):
        if "frame" not in c:
            return True
        n = c["frame"][axis]
        return -n <= r[start] < n and 0 < r[start] + r[size] <= 2 * n
    return test


OBJECT_SCALE = Struct(
    "OBJECT_SCALE payload",
    [
        Field("version", "u8", "payload syntax version", const=1),
        Field("level", "u8", "quality level of the model the window is coded at"),
        Field("x0", "sv", "left edge of the object's window, original-frame pixels (may lie outside the frame)"),
        Field("y0", "sv", "top edge of the window"),
        Field("width", "uv", "window width, original-frame pixels", min=1),
        Field("height", "uv", "window height", min=1),
        Field("rows", "uv", "split-grid rows coded: the window was resampled to (8 rows) x (8 cols) pixels", min=1),
        Field("cols", "uv", "split-grid columns coded", min=1),
        Field("z_length", "uv", "bytes of the window's hyper-latent string"),
        Field("z", "bytes", "hyper-latent string of the window", count="z_length"),
        Field("y", "bytes", "latent string of the window"),
    ],
    checks=[
        _LEVEL,
        Check("rows", f"rows x cols must be at most {OBJECT_SCALE_MAX_CELLS}",
              lambda r: r["rows"] * r["cols"] <= OBJECT_SCALE_MAX_CELLS),
        Check("x0", "the window must overlap the frame's columns and reach at most one frame width beyond each edge",
              _window_near_frame("x0", "width", 1), context=True),
        Check("y0", "the window must overlap the frame's rows and reach at most one frame height beyond each edge",
              _window_near_frame("y0", "height", 0), context=True),
    ],
    doc="One object's enhancement layer: its window of the ORIGINAL frame, resampled to the object scale, "
        "through the model's front and coded alone (its own hyper-latent).",
)

# ---------------------------------------------------------------------------------- masks
GROUP_MASK = Struct(
    "GROUP_MASK payload",
    [
        Field("version", "u8", "payload syntax version", const=1),
        Field("coder", "u8", "mask coder: 1 = the context-adaptive binary coder below", const=1),
        Field("x0", "u16", "left column of the mask's tight bounding box, frame pixels"),
        Field("y0", "u16", "top row of the box"),
        Field("width", "u16", "box width", min=1),
        Field("height", "u16", "box height", min=1),
        Field("mask", "bytes", "constriction ANS words (u32 little-endian)"),
    ],
    checks=[
        Check("height", f"width x height must be at most {MASK_MAX_PIXELS}",
              lambda r: r["width"] * r["height"] <= MASK_MAX_PIXELS),
        Check("mask", "the string is whole u32 words, no longer than any coding of the box (11 bits a pixel "
              "+ 8 bytes)", lambda r: len(r["mask"]) % 4 == 0
              and len(r["mask"]) <= 8 + ceil_div(11 * r["width"] * r["height"], 32) * 4),
        Check("mask", "the string is no shorter than half the cheapest coding of the box's pixels before its last "
              f"row ({MASK_MIN_BITS_PER_PIXEL} bits a pixel), less 8 bytes, in whole words",
              lambda r: len(r["mask"]) >= mask_min_bytes(r["width"], r["height"])),
        Check("width", "the box must lie inside the frame", lambda r, c: "frame" not in c
              or (r["x0"] + r["width"] <= c["frame"][1] and r["y0"] + r["height"] <= c["frame"][0]), context=True),
    ],
    doc="A group's binary mask over its tight bounding box (both versions).",
)

# ---------------------------------------------------------------------------------- video
MOTION = Struct(
    "MOTION payload",
    [
        Field("version", "u8", "payload syntax version", const=1),
        Field("row0", "uv", "first motion-grid row covered (0 for a frame's field)"),
        Field("col0", "uv", "first motion-grid column covered"),
        Field("rows", "uv", "motion-grid rows covered", min=1),
        Field("cols", "uv", "motion-grid columns covered", min=1),
        Field("scale", "u8", "index of the Gaussian table the vector components of moving cells use"),
        Field("moving_length", "uv", "bytes of the moving-cell mask string"),
        Field("moving", "bytes", "which cells move: a mask of rows x cols coded like a GROUP_MASK (coder 1)",
              count="moving_length"),
        Field("vectors", "bytes", "(dx, dy) of each moving cell in raster order, in quarter pixels of the "
              "teacher input, Gaussian-coded with table `scale`"),
    ],
    checks=[
        Check("row0", "the covered cells must lie inside the model's motion grid",
              _window_fits("row0", "col0", "rows", "cols"), context=True),
        Check("scale", "scale must index one of the model's tables", lambda r, c: "tables" not in c
              or r["scale"] < c["tables"], context=True),
    ],
    doc="Motion of the cells of the split grid relative to the reference frame.",
)

RESIDUAL = Struct(
    "RESIDUAL payload",
    [
        Field("version", "u8", "payload syntax version", const=1),
        Field("level", "u8", "quality level (must be the reference's)"),
        Field("flags", "u8", "bit 0: the prediction is motion-compensated (else the reference as is)"),
        Field("z_length", "uv", "bytes of the residual hyper-latent string"),
        Field("z", "bytes", "hyper-latent string of the residual", count="z_length"),
        Field("y", "bytes", "residual latent string"),
    ],
    checks=[_LEVEL],
    doc="The latent residual of a predicted frame: latent = prediction + residual, integers throughout.",
)

#: The 2.x payload syntax of each content unit type the reference codecs write (``ssb.image``,
#: ``ssb.grouped``, ``ssb.video``): what a structure-aware tool (e.g. ``scripts/fuzz_payloads.py``)
#: decodes a unit's payload with.
UNIT_PAYLOADS = {UnitType.BASE: FEATURES, UnitType.BACKGROUND: FEATURES, UnitType.OBJECT: OBJECT_GROUP,
                 UnitType.GROUP_MASK: GROUP_MASK, UnitType.MOTION: MOTION, UnitType.RESIDUAL: RESIDUAL,
                 UnitType.OBJECT_SCALE: OBJECT_SCALE}

#: Every codec payload structure, in specification order.
PAYLOAD_STRUCTS = (FEATURES, OBJECT_SCALE, OBJECT_GROUP, GROUP_MASK, MOTION, RESIDUAL, BASE_V1, OBJECT_GROUP_V1,
                   OBJECT_DESCRIPTOR_V1)
