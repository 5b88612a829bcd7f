"""Irregular pixel groups (``ssb.grouped`` streams): group-independent coding, per-group partial decoding,
composition.

* :mod:`~ssb.codec.groups.layout`: window geometry on the split grid;
* :mod:`~ssb.codec.groups.encoder`: :class:`GroupEncoder` (background + one group per object);
* :mod:`~ssb.codec.groups.decoder`: :class:`GroupedDecoder` (only the groups a query needs);
* :mod:`~ssb.codec.groups.compose`: the decoded parts -> whole-frame split features.

Payload syntax: :mod:`ssb.format.payloads` (docs/format.md, section 15).
"""

from ssb.codec.groups.compose import (
    DecodedGroup,
    GroupedFrame,
    cell_coverage,
    compose,
    fuse,
    fusion_inputs,
    group_alpha,
    neutral_split,
)
from ssb.codec.groups.decoder import GroupedDecoder, decode_groups
from ssb.codec.groups.encoder import GroupEncoder, GroupEncodeStats, encode_group
from ssb.codec.groups.layout import GroupLayout, front_window, group_window, masked_input

__all__ = [
    "GroupLayout",
    "GroupEncoder",
    "GroupEncodeStats",
    "GroupedDecoder",
    "decode_groups",
    "DecodedGroup",
    "GroupedFrame",
    "group_window",
    "front_window",
    "masked_input",
    "encode_group",
    "neutral_split",
    "cell_coverage",
    "compose",
    "group_alpha",
    "fusion_inputs",
    "fuse",
]
