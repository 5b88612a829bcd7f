"""``ssb.grouped`` decoder: only the groups a query asks for, composed into whole-frame split features.

Without ``classes``/``objects`` a step holds the background and every group; with them, only the
matching groups' ``OBJECT`` and ``GROUP_MASK`` units (no background, no other group), which the
format guarantees are all their decode needs (group independence).  Every candidate frame gets a
step, even one where no group matched (its features are then the empty composition).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from ssb.codec.base import DecodedFrame, Step, StreamDecoder, frame_size, index_objects
from ssb.codec.groups.compose import DecodedGroup, GroupedFrame, compose, fuse
from ssb.codec.groups.layout import GroupLayout
from ssb.codec.image import codec_of, feature_info_of
from ssb.codec.mask_coding import MaskUnit, unpack_group_mask
from ssb.codec.payload import located, model_context, parse_features, parse_window
from ssb.format import UnitType

__all__ = ["GroupedDecoder", "decode_groups"]

_PARTS = (int(UnitType.BACKGROUND), int(UnitType.OBJECT), int(UnitType.GROUP_MASK))


class GroupedDecoder(StreamDecoder):
    """Stateless decoder of grouped streams (see the module doc); :meth:`parts` exposes the groups."""

    codec_id = "ssb.grouped"
    feature_types = _PARTS

    def __init__(self, bs, models, *, fusion="auto"):
        super().__init__(bs, models)
        self.codec = codec_of(bs, models)
        self.model_id = self.codec.identity.id
        self.layout = GroupLayout.of_stream(bs, self.codec)
        #: the learned fusion: "auto" (the zoo's when trained behind this codec, else plain composition),
        #: "none", or a fusion module
        if isinstance(fusion, str):
            fusion = models.get("fusion", behind=self.model_id, missing_ok=True) if fusion == "auto" else None
        self.fusion = fusion

    @property
    def feature_info(self):
        return feature_info_of(self.codec)

    def plan(self, *, frames: Iterable[int] | None = None, classes=None, objects=None, groups=None,
             need: Iterable[str] = ("features",), background: bool | None = None, masks: bool = True
             ) -> Iterator[Step]:
        """Steps for a query: the matching groups (or all and the background), every candidate frame."""
        self.check_need(need)
        query = classes is not None or objects is not None or groups is not None
        want_bg = (not query) if background is None else bool(background)
        types = [UnitType.OBJECT] + ([UnitType.GROUP_MASK] if masks else [])
        if query:
            sel = self.bs.select(classes=classes, objects=objects, groups=groups, frames=frames, types=types,
                                 include_shared=False)
            units = list(sel.units)
            if want_bg:
                units += self.bs.select(frames=frames, types=[UnitType.BACKGROUND], include_shared=False).units
        else:
            units = self.bs.select(frames=frames, types=types + ([UnitType.BACKGROUND] if want_bg else []),
                                   include_shared=False).units
        return self.every_frame(units, frames)

    @torch.no_grad()
    def parts(self, step: Step) -> GroupedFrame:
        """The decoded background and groups of one step (masks attached when they were read)."""
        fr = step.frame
        size = frame_size(self.bs, fr)
        ctx = model_context(self.codec, self.layout.grid, size)
        out = GroupedFrame(fr.frame_index, size, self.layout.grid, self.codec.config.in_channels, None, None)
        masks: dict[int, MaskUnit] = {}
        for u in step.units:
            where = f"unit[{u.number}]"
            if u.type == UnitType.BACKGROUND:
                item, strings = parse_features(u.payload(), ctx=ctx, offset=u.offset, field=where)
                with located(strings):
                    out.background = self.codec.decompress(item)
                out.level = item.level
            elif u.type == UnitType.GROUP_MASK:
                masks[u.group_id] = unpack_group_mask(u.payload(), size, unit_offset=u.offset, field=where)
            elif u.type == UnitType.OBJECT:
                r0, c0, item, strings = parse_window(u.payload(), ctx=ctx, offset=u.offset, field=where)
                out.level = item.level if out.level is None else out.level
                with located(strings):
                    features = self.codec.decompress(item)
                out.groups.append(DecodedGroup(u.group_id, u.object_id, u.class_id, u.score, u.bbox, (r0, c0),
                                               features))
            else:
                continue
            out.payload_bytes += u.length
        for g in out.groups:
            g.mask = masks.get(g.group_id)
        return out

    def decode(self, step: Step) -> DecodedFrame:
        fr = self.parts(step)
        fusion = self.fusion
        use = fusion is not None and (fr.background is not None or "query" in getattr(fusion, "modes", ()))
        split = fuse(fr, fusion, self.layout) if use else compose(fr, layout=self.layout)
        frame = step.frame
        return DecodedFrame(fr.frame_index, fr.image_size, {"split": split}, fr.level, fr.payload_bytes, frame.pts,
                            True, objects=index_objects(frame))


def decode_groups(bs, models, *, frames: Iterable[int] | None = None, classes=None, groups=None,
                  background: bool | None = None, masks: bool = True) -> Iterator[GroupedFrame]:
    """The decoded parts (:class:`GroupedFrame`) of a grouped stream a query needs, frame by frame."""
    dec = GroupedDecoder(bs, models, fusion="none")
    for step in dec.plan(frames=frames, classes=classes, groups=groups, background=background, masks=masks):
        yield dec.parts(step)
