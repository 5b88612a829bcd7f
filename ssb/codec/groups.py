"""Irregular pixel groups: group-independent coding, per-group partial decoding, composition.

A *grouped* stream codes each frame as independent parts instead of one ``BASE`` unit:

* one ``BACKGROUND`` unit (index: ``group_id`` 0): the split features of the frame with every
  object's pixels filled (``layout.background_fill``, grey by default; :mod:`ssb.codec.fill`),
  over the full split grid;
* per group ``g`` (one per object instance; index: ``group_id`` g, ``object_id``, ``class_id``
  when known, ``bbox`` of its mask, ``score``), a ``GROUP_MASK`` unit (its lossless mask,
  :mod:`ssb.codec.mask_coding`) followed by an ``OBJECT`` unit: the split features of a window
  of the grid around the mask, computed from the frame with every pixel OUTSIDE the mask
  filled (``layout.fill``: grey by default, or push-pull interpolation of the pixels inside
  it; :mod:`ssb.codec.fill`, measured in ``benchmarks/bench_groups.py``), coded by the same :class:`~ssb.codec.feature_codec.FeatureCodec` with its
  own hyperprior strings.

**Group independence (exact).**  Group ``g``'s input is ``fill_outside(frame, mask_g)``: its
window, its teacher-front features and its bits are a function of ``g``'s mask and of the
pixels inside it only, and decoding it reads only its own ``OBJECT`` unit.  (Batch-1 calls
everywhere, so the arithmetic never depends on what else is in the frame.)

**Geometry.**  The teacher resizes the frame to ``input_size`` squared and its front has
stride 8 (the split grid, 38x38 cells for 300x300).  A group window is the cells covered by
its mask's box, ``margin`` cells more on each side, its first row and column even (the
codec's latent grid has stride 2 over the split grid), clipped to the grid.  The front runs
on a crop of the filled input holding the window plus ``context`` cells around it,
clipped to the picture, starting on a multiple of 16 pixels and ``8 k + 4`` pixels long (or
ending at the picture's edge): with TensorFlow SAME padding its features then fall exactly on
the full-frame grid, and on an unmasked picture they equal the full-frame features (any other
crop size shifts them by half a cell).

**Composition (decoder).**  The split features handed to the task heads are composed on the
grid (:func:`compose`): start from the decoded background (a query that skipped it starts from
zeros), then blend each decoded group over its window with weight ``sqrt(coverage)``, the
fraction of each cell its mask covers as the teacher's input sees it.  This needs the group's
mask, so a detection query reads the ``GROUP_MASK`` units of its groups too.

Payload syntax (docs/format.md, section 15): ``BACKGROUND`` is a ``BASE`` payload; the grouped
``OBJECT`` payload is ``u8 version = 1, u8 reserved = 0, u16 row0, u16 col0`` (the window's
first split cell) followed by a ``BASE`` payload for the window.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ssb.codec.feature_codec import CompressedFeatures
from ssb.codec.fill import FILLS, GREY, fill_outside
from ssb.codec.group_masks import GroupInfo, check_labels, describe_groups, labels_from_detections
from ssb.codec.image import DecodedFrame, ImageEncoder, ObjectFn, check_stream_model, frame_size
from ssb.codec.mask_coding import MaskUnit, mask_bbox, pack_group_mask, unpack_group_mask
from ssb.codec.payload import pack_base, unpack_base
from ssb.errors import MalformedFieldError, TruncatedError
from ssb.format import SequenceHeader, UnitType, Writer

__all__ = [
    "GREY",
    "GroupLayout",
    "GroupEncoder",
    "GroupEncodeStats",
    "GroupedInput",
    "DecodedGroup",
    "GroupedFrame",
    "is_grouped",
    "stream_layout",
    "group_window",
    "front_window",
    "masked_input",
    "encode_group",
    "pack_object_group",
    "unpack_object_group",
    "decode_groups",
    "neutral_split",
    "cell_coverage",
    "compose",
    "group_alpha",
    "fusion_inputs",
    "fuse",
    "decode_grouped_features",
]

OBJECT_GROUP_VERSION = 1
_OBJECT_GROUP = struct.Struct("<BBHH")
#: ``compose(paste="cells")``: a group's features replace the cells its mask covers by more than this.
COVERAGE_THRESHOLD = 0.3
#: Version of the "groups" block of the sequence-header metadata.
GROUPS_VERSION = 1


@dataclass(frozen=True)
class GroupLayout:
    """Geometry of group windows, shared by encoder and decoder (stored in the stream's metadata)."""

    input_size: int = 300
    stride: int = 8
    margin: int = 1
    context: int = 4
    #: how the encoder fills the pixels outside a group, and the groups' pixels in the background
    #: (encoder-side only; recorded for provenance; see ssb.codec.fill and benchmarks/bench_groups.py)
    fill: str = "grey"
    background_fill: str = "grey"

    def __post_init__(self):
        for name in ("fill", "background_fill"):
            if getattr(self, name) not in FILLS:
                raise MalformedFieldError(f"unknown {name} {getattr(self, name)!r}; choose among {FILLS}",
                                          field=f"groups.{name}")
        # the crop geometry of front_window reproduces the teacher's SAME padding for these sizes only
        if (self.stride != 8 or self.input_size % 8 != 4 or not 12 <= self.input_size <= 4092
                or not 0 <= self.margin <= 64 or not 0 <= self.context <= 64):
            raise MalformedFieldError(f"unsupported group layout {self} (stride 8, input size 4 mod 8)",
                                      field="groups")

    @property
    def grid(self) -> tuple[int, int]:
        """Split-grid size (rows, cols)."""
        n = math.ceil(self.input_size / self.stride)
        return n, n

    def to_json(self) -> dict:
        return {"version": GROUPS_VERSION, "input_size": self.input_size, "stride": self.stride,
                "margin": self.margin, "context": self.context, "mask_coder": "context-cabac-4", "fill": self.fill,
                "background_fill": self.background_fill}

    @classmethod
    def from_json(cls, meta: dict) -> GroupLayout:
        if not isinstance(meta, dict) or meta.get("version") != GROUPS_VERSION:
            raise MalformedFieldError(f"unsupported groups metadata {meta!r}", field="sequence_header.metadata.groups")
        try:
            return cls(int(meta["input_size"]), int(meta["stride"]), int(meta["margin"]), int(meta["context"]),
                       str(meta.get("fill", "grey")), str(meta.get("background_fill", "grey")))
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedFieldError(f"bad groups metadata {meta!r}", field="sequence_header.metadata.groups") from exc


# ---------------------------------------------------------------------------------- geometry
def group_window(box: tuple[int, int, int, int], image_size: tuple[int, int], layout: GroupLayout
                 ) -> tuple[int, int, int, int]:
    """``(row0, col0, rows, cols)`` in split cells of the window around a mask box (pixels, exclusive ends)."""
    h, w = image_size
    gh, gw = layout.grid
    cell = layout.stride
    x0, y0, x1, y1 = box
    sy, sx = layout.input_size / h, layout.input_size / w
    r0 = max(math.floor(y0 * sy / cell) - layout.margin, 0) & ~1
    c0 = max(math.floor(x0 * sx / cell) - layout.margin, 0) & ~1
    r1 = min(math.ceil(y1 * sy / cell) + layout.margin, gh)
    c1 = min(math.ceil(x1 * sx / cell) + layout.margin, gw)
    return r0, c0, max(r1 - r0, 1), max(c1 - c0, 1)


def masked_input(image: np.ndarray, keep: np.ndarray, input_size: int, fill: str = "grey") -> torch.Tensor:
    """Teacher input ``[1, 3, S, S]`` of ``image`` with every pixel outside ``keep`` filled from inside it."""
    from ssb.backbones.ssd_mobilenet_v2 import preprocess

    return preprocess([fill_outside(image, keep, fill)], size=input_size)


def _grey_value() -> float:
    return GREY * 2.0 / 255.0 - 1.0


def front_window(front, x: torch.Tensor, window: tuple[int, int, int, int], layout: GroupLayout) -> torch.Tensor:
    """Split features ``[1, C, rows, cols]`` of ``window``, aligned with the full-frame grid.

    Runs ``front`` on a crop of ``x`` covering the window plus ``layout.context`` cells, clipped
    to the picture.  The crop starts on a multiple of 16 pixels and is ``8 k + 4`` pixels long
    (or ends at the picture's edge, which is ``12 mod 16`` pixels away for a 300-pixel input),
    so TensorFlow SAME padding puts its features exactly on the full-frame grid and treats the
    picture's edges as the full-frame network does (see the module doc).
    """
    r0, c0, rows, cols = window
    ctx, s = layout.context & ~1, layout.stride
    size = x.shape[-1]
    top, left = max((r0 - ctx) * s, 0), max((c0 - ctx) * s, 0)
    bottom = min(s * (r0 + rows + ctx - 1) + 4, size)
    right = min(s * (c0 + cols + ctx - 1) + 4, size)
    feats = front(x[..., top:bottom, left:right])
    r, c = r0 - top // s, c0 - left // s
    return feats[..., r : r + rows, c : c + cols].contiguous()


# ---------------------------------------------------------------------------------- payloads
def pack_object_group(row0: int, col0: int, item: CompressedFeatures) -> bytes:
    """Grouped ``OBJECT`` payload: window origin then a ``BASE`` payload of the window."""
    return _OBJECT_GROUP.pack(OBJECT_GROUP_VERSION, 0, row0, col0) + pack_base(item)


def unpack_object_group(payload, *, num_levels: int, grid: tuple[int, int], unit_offset: int = 0,
                        field: str = "unit") -> tuple[int, int, CompressedFeatures]:
    """``(row0, col0, features)`` of a grouped ``OBJECT`` payload; the window must lie inside ``grid``."""
    mv = memoryview(payload)
    if len(mv) < _OBJECT_GROUP.size:
        raise TruncatedError(f"OBJECT group payload of {len(mv)} bytes is shorter than its "
                             f"{_OBJECT_GROUP.size}-byte header", offset=unit_offset, field=f"{field}.payload")
    version, _, row0, col0 = _OBJECT_GROUP.unpack_from(mv, 0)
    if version != OBJECT_GROUP_VERSION:
        raise MalformedFieldError(f"unsupported OBJECT group payload version {version}", offset=unit_offset,
                                  field=f"{field}.payload.version")
    item = unpack_base(mv[_OBJECT_GROUP.size:], num_levels=num_levels, unit_offset=unit_offset + _OBJECT_GROUP.size,
                       field=f"{field}.payload.features")
    if row0 + item.out_hw[0] > grid[0] or col0 + item.out_hw[1] > grid[1]:
        raise MalformedFieldError(f"group window at ({row0}, {col0}) of {item.out_hw[0]}x{item.out_hw[1]} cells "
                                  f"leaves the {grid[0]}x{grid[1]} split grid", offset=unit_offset + 2,
                                  field=f"{field}.payload.row0")
    return row0, col0, item


# ---------------------------------------------------------------------------------- encoder
@torch.no_grad()
def encode_group(codec, front, image: np.ndarray, mask: np.ndarray, level: int, layout: GroupLayout
                 ) -> tuple[bytes, tuple[int, int, int, int]]:
    """``OBJECT`` payload and window of one group: a function of ``mask`` and ``image[mask]`` only."""
    box = mask_bbox(mask)
    if box is None:
        raise MalformedFieldError("a group mask must hold at least one pixel", field="mask")
    window = group_window(box, image.shape[:2], layout)
    feats = front_window(front, masked_input(image, mask, layout.input_size, layout.fill), window, layout)
    item = codec.compress(feats, level)[0]
    return pack_object_group(window[0], window[1], item), window


@dataclass
class GroupEncodeStats:
    """Bytes by part (payloads only), groups and mask pixels of a grouped encode."""

    frames: int = 0
    groups: int = 0
    background_bytes: int = 0
    object_bytes: int = 0
    mask_bytes: int = 0
    mask_pixels: int = 0  # pixels of the masks' bounding boxes (what the mask coder codes)
    pixels: int = 0

    @property
    def feature_bytes(self) -> int:
        return self.background_bytes + self.object_bytes

    @property
    def bpp(self) -> float:
        """Feature bits (background + objects) per original pixel."""
        return 8.0 * self.feature_bytes / max(self.pixels, 1)

    @property
    def mask_bits_per_pixel(self) -> float:
        """Mask bits per mask-box pixel."""
        return 8.0 * self.mask_bytes / max(self.mask_pixels, 1)


@dataclass
class GroupedInput:
    """One frame to encode as groups: the picture and, optionally, its grouping.

    ``labels`` (0 = background, k = group k) fixes the groups; otherwise they come from the
    encoder-side detector, masked by ``foreground`` when given (:mod:`ssb.codec.group_masks`).
    """

    index: int
    image: np.ndarray
    labels: np.ndarray | None = None
    foreground: np.ndarray | None = None


class GroupEncoder:
    """Encode frames as grouped SSB frames (background + one unit pair per object).

    ``objects`` is the encoder-side detector (split features of the ORIGINAL frame -> boxes in
    frame pixels); it makes the groups when a frame comes without labels and names the class
    of caller-supplied groups.  ``min_score``: detections below it make no group.
    """

    def __init__(self, codec, front, *, objects: ObjectFn | None = None, class_names: dict[int, str] | None = None,
                 layout: GroupLayout = GroupLayout(), min_score: float = 0.5):
        self.codec = codec
        self.front = front
        self.objects = objects
        self.layout = layout
        self.min_score = float(min_score)
        self._plain = ImageEncoder(codec, front, class_names=class_names)

    def header(self, width: int, height: int, fps: float = 0.0) -> SequenceHeader:
        hdr = self._plain.header(width, height, fps)
        hdr.metadata["groups"] = self.layout.to_json()
        return hdr

    def encode(self, frames: Iterable[GroupedInput], dest, *, level: int, fps: float = 0.0,
               background_level: int | None = None) -> GroupEncodeStats:
        """Write the frames to ``dest`` (path or binary file).

        ``level`` codes the groups; ``background_level`` (default: ``level``) the background, so a
        stream can spend its bits on the objects (each BASE payload carries its own level).
        """
        stats = GroupEncodeStats()
        it = iter(frames)
        first = next(it, None)
        if first is None:
            raise MalformedFieldError("no images to encode", field="images")
        h0, w0 = first.image.shape[:2]
        with Writer(dest, self.header(w0, h0, fps)) as writer:
            self.encode_frame(writer, first, level, stats, background_level)
            for item in it:
                self.encode_frame(writer, item, level, stats, background_level)
        return stats

    @torch.no_grad()
    def groups_of(self, item: GroupedInput) -> tuple[np.ndarray, list[GroupInfo]]:
        """The frame's label image and group descriptions (see :class:`GroupedInput`)."""
        from ssb.backbones.ssd_mobilenet_v2 import preprocess

        shape = item.image.shape[:2]
        dets = None
        if self.objects is not None:
            dets = self.objects(self.front(preprocess([item.image])), [shape])[0]
        if item.labels is not None:
            labels = check_labels(item.labels, shape)
            return labels, describe_groups(labels, dets)
        if dets is None:
            raise MalformedFieldError("grouping a frame without a label image needs the encoder-side detector",
                                      field="groups")
        return labels_from_detections(dets, shape, item.foreground, min_score=self.min_score)

    @torch.no_grad()
    def encode_frame(self, writer: Writer, item: GroupedInput, level: int, stats: GroupEncodeStats,
                     background_level: int | None = None) -> None:
        """Append one fragment: BACKGROUND (at ``background_level``, default ``level``), then GROUP_MASK + OBJECT per group."""
        image = np.asarray(item.image)
        h, w = image.shape[:2]
        labels, infos = self.groups_of(item)
        lay = self.layout
        writer.begin_frame(item.index, metadata={"height": h, "width": w, "groups": len(infos)})
        bg_level = level if background_level is None else background_level
        bg = self.codec.compress(self.front(masked_input(image, labels == 0, lay.input_size, lay.background_fill)),
                                 bg_level)[0]
        payload = pack_base(bg)
        writer.add_unit(UnitType.BACKGROUND, payload, group_id=0)
        stats.background_bytes += len(payload)
        for k, info in enumerate(infos):
            mask = labels == info.group_id
            x0, y0, x1, y1 = mask_bbox(mask)
            attrs = {"object_id": k, "group_id": info.group_id, "bbox": (float(x0), float(y0), float(x1), float(y1))}
            if info.class_id is not None:
                attrs.update(class_id=info.class_id, score=info.score)
            mask_payload = pack_group_mask(mask)
            writer.add_unit(UnitType.GROUP_MASK, mask_payload, **attrs)
            obj_payload, _ = encode_group(self.codec, self.front, image, mask, level, lay)
            writer.add_unit(UnitType.OBJECT, obj_payload, **attrs)
            stats.mask_bytes += len(mask_payload)
            stats.mask_pixels += (x1 - x0) * (y1 - y0)
            stats.object_bytes += len(obj_payload)
            stats.groups += 1
        writer.end_frame()
        stats.frames += 1
        stats.pixels += h * w


# ---------------------------------------------------------------------------------- decoder
def is_grouped(bs) -> bool:
    """True for a stream written by :class:`GroupEncoder` (its metadata has a ``groups`` block)."""
    return "groups" in (bs.header.metadata or {})


def stream_layout(bs) -> GroupLayout:
    return GroupLayout.from_json((bs.header.metadata or {}).get("groups"))


@dataclass
class DecodedGroup:
    """One decoded group: its index attributes, window (split cells), features and, if read, mask."""

    group_id: int
    object_id: int | None
    class_id: int | None
    score: float | None
    bbox: tuple[float, float, float, float] | None
    window: tuple[int, int]  # (row0, col0)
    features: torch.Tensor  # [1, C, rows, cols]
    mask: MaskUnit | None = None


@dataclass
class GroupedFrame:
    """The decoded parts of one frame of a grouped stream (only those a query asked for)."""

    frame_index: int
    image_size: tuple[int, int]
    grid: tuple[int, int]
    channels: int
    level: int | None
    background: torch.Tensor | None
    groups: list[DecodedGroup] = field(default_factory=list)
    payload_bytes: int = 0


def decode_groups(bs, codec, *, frames: Iterable[int] | None = None, classes: Iterable[int] | None = None,
                  groups: Iterable[int] | None = None, background: bool | None = None,
                  masks: bool = False) -> Iterator[GroupedFrame]:
    """Decode the parts of a grouped stream a query needs, frame by frame.

    With ``classes`` or ``groups``, only the matching groups' ``OBJECT`` units are read (and
    their ``GROUP_MASK`` units when ``masks``) and, unless ``background=True``, no background.
    Without them, every group and the background (unless ``background=False``).  Every
    candidate frame is yielded, even one where no group matched.
    """
    check_stream_model(bs, codec)
    if not is_grouped(bs):
        raise MalformedFieldError("stream has no groups (it was encoded without --groups)",
                                  field="sequence_header.metadata.groups")
    layout = stream_layout(bs)
    query = classes is not None or groups is not None
    want_bg = (not query) if background is None else bool(background)
    types = [UnitType.OBJECT] + ([UnitType.GROUP_MASK] if masks else [])
    frame_list = [f.frame_index for f in bs.frames]
    if frames is not None:
        allowed = set(frames)
        frame_list = [f for f in frame_list if f in allowed]
    if query:
        sel = bs.select(classes=classes, groups=groups, frames=frame_list, types=types, include_shared=False)
    else:
        sel = bs.select(frames=frame_list, types=types + ([UnitType.BACKGROUND] if want_bg else []),
                        include_shared=False)
    by_frame: dict[int, list] = {}
    for u in sel.units:
        by_frame.setdefault(u.frame, []).append(u)
    if want_bg and query:
        for u in bs.select(frames=frame_list, types=[UnitType.BACKGROUND], include_shared=False).units:
            by_frame.setdefault(u.frame, []).append(u)
    n = codec.config.num_levels
    for fi in frame_list:
        fr = bs.frame(fi)
        size = frame_size(bs, fr)
        out = GroupedFrame(fi, size, layout.grid, codec.config.in_channels, None, None)
        pending_masks: dict[int, MaskUnit] = {}
        for u in sorted(by_frame.get(fi, []), key=lambda e: e.number):
            where = f"unit[{u.number}]"
            payload = u.payload()
            out.payload_bytes += u.length
            if u.type == UnitType.BACKGROUND:
                item = unpack_base(payload, num_levels=n, unit_offset=u.offset, field=where)
                if item.out_hw != layout.grid:
                    raise MalformedFieldError(f"background of {item.out_hw} cells, expected {layout.grid}",
                                              offset=u.offset + 2, field=f"{where}.payload.out_h")
                out.background = codec.decompress(item)
                out.level = item.level
            elif u.type == UnitType.GROUP_MASK:
                pending_masks[u.group_id] = unpack_group_mask(payload, size, unit_offset=u.offset, field=where)
            else:
                r0, c0, item = unpack_object_group(payload, num_levels=n, grid=layout.grid, unit_offset=u.offset,
                                                   field=where)
                out.level = item.level if out.level is None else out.level
                out.groups.append(DecodedGroup(u.group_id, u.object_id, u.class_id, u.score, u.bbox, (r0, c0),
                                               codec.decompress(item)))
        for g in out.groups:
            g.mask = pending_masks.get(g.group_id)
        yield out


def neutral_split(front, layout: GroupLayout = GroupLayout()) -> torch.Tensor:
    """The teacher front's split features ``[1, C, gh, gw]`` of an all-grey picture."""
    x = torch.full((1, 3, layout.input_size, layout.input_size), _grey_value())
    with torch.no_grad():
        return front(x)


def cell_coverage(mask: MaskUnit, image_size: tuple[int, int], layout: GroupLayout) -> torch.Tensor:
    """Fraction ``[gh, gw]`` of each split cell's frame pixels that lie in the mask.

    A frame pixel belongs to the cell holding its centre once the frame is scaled to the
    teacher's ``input_size`` square (the teacher's resize); only the mask's box is visited.
    """
    h, w = image_size
    gh, gw = layout.grid
    rows = np.minimum(((np.arange(h) + 0.5) * (layout.input_size / h) / layout.stride).astype(np.int64), gh - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * (layout.input_size / w) / layout.stride).astype(np.int64), gw - 1)
    total = np.outer(np.bincount(rows, minlength=gh), np.bincount(cols, minlength=gw))
    ys, xs = np.nonzero(mask.mask)
    inside = np.bincount(rows[ys + mask.y0] * gw + cols[xs + mask.x0], minlength=gh * gw).reshape(gh, gw)
    return torch.from_numpy((inside / np.maximum(total, 1)).astype(np.float32))


def compose(frame: GroupedFrame, *, base: str = "auto", paste: str = "soft", neutral: torch.Tensor | None = None,
            threshold: float = COVERAGE_THRESHOLD, layout: GroupLayout = GroupLayout(),
            coverages: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Split features ``[1, C, gh, gw]`` for the task heads from a frame's decoded parts.

    ``base``: ``"background"`` (the decoded background), ``"zeros"`` or ``"neutral"`` (the grey
    response ``neutral``, see :func:`neutral_split`); ``"auto"`` is the background when it was
    decoded, else zeros (person-only queries on 10 held-out vtest frames at level 3, person
    AP/AP50 against the teacher: zeros 48.1/92.6, neutral 27.8/82.9 with ``paste="soft"``; zeros
    41.6/81.0, neutral 45.9/80.1 with ``"window"``: ``benchmarks/bench_groups.py``).
    ``coverages``: each group's :func:`cell_coverage`, in ``frame.groups`` order, when the caller
    already has them (computed here otherwise).
    ``paste``, per group, in stream order:

    * ``"soft"`` (default): ``canvas = a * group + (1 - a) * canvas`` over the window, with
      ``a = sqrt(coverage)`` of each cell by the group's mask (needs the decoded mask);
    * ``"cells"``: the group's features replace the cells its mask covers by more than ``threshold``;
    * ``"window"``: the group's features replace its whole window (no mask needed).
    """
    if base == "auto":
        base = "background" if frame.background is not None else "zeros"
    if base == "background":
        if frame.background is None:
            raise MalformedFieldError("the background was not decoded", field="base")
        canvas = frame.background.clone()
    elif base == "neutral":
        if neutral is None:
            raise MalformedFieldError("base='neutral' needs the neutral features", field="neutral")
        canvas = neutral.clone()
    elif base == "zeros":
        canvas = torch.zeros(1, frame.channels, *frame.grid)
    else:
        raise MalformedFieldError(f"unknown composition base {base!r}", field="base")
    if paste not in ("soft", "cells", "window"):
        raise MalformedFieldError(f"unknown paste mode {paste!r}", field="paste")
    for k, g in enumerate(frame.groups):
        r0, c0 = g.window
        rows, cols = g.features.shape[-2:]
        region = canvas[..., r0 : r0 + rows, c0 : c0 + cols]
        if paste == "window":
            region.copy_(g.features)
            continue
        if g.mask is None:
            raise MalformedFieldError(f"group {g.group_id}: paste={paste!r} needs its decoded mask", field="paste")
        full = coverages[k] if coverages is not None else cell_coverage(g.mask, frame.image_size, layout)
        cover = full[r0 : r0 + rows, c0 : c0 + cols]
        if paste == "cells":
            region.copy_(torch.where(cover > threshold, g.features, region))
        else:
            alpha = cover.sqrt().to(region.dtype)
            region.copy_(alpha * g.features + (1 - alpha) * region)
    return canvas


def fusion_inputs(frame: GroupedFrame, layout: GroupLayout = GroupLayout()) -> tuple[torch.Tensor, ...]:
    """``(pasted, background, groups, coverage)`` of a decoded frame, the inputs of
    :class:`~ssb.codec.fusion.GroupFusion` (needs every decoded group's mask).  Without a
    decoded background (a class query) ``pasted`` is ``groups`` and ``background`` zeros."""
    for g in frame.groups:
        if g.mask is None:
            raise MalformedFieldError(f"group {g.group_id}: fusion needs its decoded mask", field="masks")
    covers = [cell_coverage(g.mask, frame.image_size, layout) for g in frame.groups]
    alone = GroupedFrame(frame.frame_index, frame.image_size, frame.grid, frame.channels, frame.level, None,
                         frame.groups)
    groups = compose(alone, base="zeros", layout=layout, coverages=covers)
    coverage = sum(covers, torch.zeros(frame.grid)).clamp_(max=1.0)[None, None]
    if frame.background is None:
        return groups, torch.zeros_like(groups), groups, coverage
    return compose(frame, base="background", layout=layout, coverages=covers), frame.background, groups, coverage


def fuse(frame: GroupedFrame, fusion, layout: GroupLayout = GroupLayout()) -> torch.Tensor:
    """Split features of a whole decoded frame through the learned fusion (see :mod:`ssb.codec.fusion`)."""
    with torch.no_grad():
        return fusion(*fusion_inputs(frame, layout))


def group_alpha(frame: GroupedFrame) -> np.ndarray:
    """``uint8`` alpha ``H x W`` of a frame: 255 inside the decoded groups' masks, 0 elsewhere."""
    h, w = frame.image_size
    alpha = np.zeros((h, w), dtype=np.uint8)
    for g in frame.groups:
        if g.mask is None:
            raise MalformedFieldError(f"group {g.group_id}: its mask was not decoded", field="masks")
        x0, y0, x1, y1 = g.mask.bbox
        alpha[y0:y1, x0:x1][g.mask.mask] = 255
    return alpha


def decode_grouped_features(bs, codec, *, frames: Iterable[int] | None = None,
                            classes: Iterable[int] | None = None, fusion=None) -> Iterator[DecodedFrame]:
    """Composed split features per frame, like :func:`ssb.codec.image.decode_features` for grouped streams.

    Without ``classes``: background and every group.  With ``classes``: only those classes'
    ``OBJECT`` and ``GROUP_MASK`` units are read.  The parts go through ``fusion``
    (:class:`~ssb.codec.fusion.GroupFusion`) when given and trained for the case (whole frames,
    or queries when ``"query"`` is in its ``modes``), else through :func:`compose` (a query on zeros).
    """
    layout = stream_layout(bs)
    for fr in decode_groups(bs, codec, frames=frames, classes=classes, masks=True):
        use = fusion is not None and (fr.background is not None or "query" in getattr(fusion, "modes", ()))
        split = fuse(fr, fusion, layout) if use else compose(fr, layout=layout)
        yield DecodedFrame(fr.frame_index, {"split": split}, fr.image_size,
                           fr.level if fr.level is not None else -1, fr.payload_bytes)
