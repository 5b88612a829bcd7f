"""Selection rules (docs/format.md section 10.1) and the bytes a query reads.

The ``bs`` tests pin the 1.x rules on the frozen 1.0 stream; the ``bs2`` tests the 2.x additions
(shared motion/residual, described objects, class names, dependencies followed).
"""

from __future__ import annotations

import pytest

from ssb.errors import SSBError

from ssb.format import UnitType
from ssb.format import open as ssb_open

STRUCTURAL = (UnitType.SEQUENCE_HEADER, UnitType.FRAME_HEADER, UnitType.INDEX, UnitType.END)


@pytest.fixture()
def bs(ssb_cases):
    with ssb_open(ssb_cases.v1_stream("basic")) as stream:
        yield stream


@pytest.fixture()
def bs2(ssb_cases):
    with ssb_open(ssb_cases.basic_stream()) as stream:
        yield stream


def _kinds(sel):
    return sorted({u.type_name for u in sel.units})


def test_opening_reads_only_headers_and_indexes(bs):
    structural = sum(u.size for u in bs.units if u.type in STRUCTURAL)
    sequence_unit_headers = sum(16 for u in bs.units if u.frame is None and u.type not in STRUCTURAL)
    assert bs.bytes_read == 16 + structural + sequence_unit_headers


def test_class_query_with_shared_units(bs):
    sel = bs.select(classes={1})
    attributed = [u for u in sel.units if u.attributed]
    assert attributed and all(u.class_id == 1 for u in attributed)
    assert {u.type for u in attributed} == {UnitType.OBJECT, UnitType.GROUP_MASK}
    assert _kinds(sel) == ["BASE", "FRAME_HEADER", "GROUP_MASK", "METADATA", "OBJECT", "SEQUENCE_HEADER"]
    assert sel.frames == [0, 2, 4]
    # the sequence-level METADATA comes along, BACKGROUND/MOTION/... do not
    assert any(u.type == UnitType.METADATA and u.frame is None for u in sel.units)


def test_class_query_without_shared_units_and_with_types(bs):
    sel = bs.select(classes={18}, include_shared=False)
    assert {(u.frame, u.type_name) for u in sel.units} == {
        (2, "OBJECT"),
        (2, "GROUP_MASK"),
        (4, "OBJECT"),
        (4, "GROUP_MASK"),
    }
    sel = bs.select(classes={18}, types={UnitType.OBJECT, UnitType.BACKGROUND}, include_shared=False)
    assert _kinds(sel) == ["BACKGROUND", "OBJECT"]
    assert len([u for u in sel.units if u.type == UnitType.BACKGROUND]) == 3  # every candidate frame's


def test_frames_objects_groups_region(bs):
    assert bs.select(frames=range(1, 4)).frames == [2]
    assert bs.select(frames=[0, 4], types={UnitType.BASE}, include_shared=False).frames == [0, 4]
    objs = bs.select(objects={101}, include_shared=False).units
    assert objs and {u.object_id for u in objs} == {101}
    groups = bs.select(groups={2}, include_shared=False).units
    assert [(u.frame, u.type_name) for u in groups] == [(2, "GROUP_MASK"), (4, "GROUP_MASK")]
    # object k spans x in [10k, 10k + 30.5]: the region x in [45, 46] meets only k = 2 and 3 (edges count)
    region = bs.select(region=(45, 0, 46, 1000), include_shared=False).units
    assert {u.object_id for u in region} == {102, 103}
    edge = bs.select(region=(40.5, 0, 40.5, 6), include_shared=False).units  # touches k=1's corner
    assert {u.object_id for u in edge} == {101}
    assert bs.select(classes={1}, objects={101}).units == []  # object 101 is a car: AND of criteria
    assert bs.select(classes={42}).units == []


def test_no_criteria_selects_everything_in_the_frames(bs):
    sel = bs.select(frames=[2])
    frame = bs.frame(2)
    assert set(frame.units) <= set(sel.units)
    assert frame.header_unit in sel.units and frame.index_unit not in sel.units


def test_byte_ranges_are_merged_whole_units_and_reading_them_costs_no_more(bs):
    sel = bs.select(classes={3})
    spans = sorted(u.span for u in sel.units)
    covered = sum(b - a for a, b in spans)
    assert sel.nbytes == covered  # units never overlap, so merging only joins neighbours
    assert len(sel.byte_ranges) < len(spans)
    for (_, stop), (start, _) in zip(sel.byte_ranges, sel.byte_ranges[1:]):
        assert stop < start
    before = bs.bytes_read
    for _, view in sel.payloads():
        assert isinstance(view, memoryview)
    assert bs.bytes_read - before <= sel.nbytes
    others = [u for u in bs.units if u not in sel.units and u.type not in STRUCTURAL]
    assert all(not u._checked for u in others)  # no other payload was touched


def test_selection_on_a_live_truncated_stream(ssb_cases):
    data = ssb_cases.v1_stream("truncated")
    with ssb_open(data) as bs:
        sel = bs.select(classes={1})
        assert sel.frames == [0, 2]
        assert all(isinstance(view, memoryview) for _, view in sel.payloads())


def test_attributed_unit_of_a_shared_type_is_content():
    """A BASE unit carrying a class id is selected by rule 2, never dragged in as shared."""
    import io

    from ssb.format import SequenceHeader, Writer

    buf = io.BytesIO()
    with Writer(buf, SequenceHeader(width=1, height=1, fps_num=0, fps_den=1)) as w:
        w.begin_frame(0)
        w.add_unit(UnitType.BASE, b"")
        w.add_unit(UnitType.BASE, b"a", class_id=0)
        w.add_unit(UnitType.BASE, b"b", class_id=1)
        w.end_frame()
    with ssb_open(buf.getvalue()) as stream:
        sel = stream.select(classes={0})
        assert [bytes(p) for u, p in sel.payloads() if u.type == UnitType.BASE] == [b"", b"a"]
        assert all(u.class_id in (None, 0) for u in sel.units)


def test_v2_opening_reads_only_frame_headers(bs2):
    structural = sum(u.size for u in bs2.units if u.type in STRUCTURAL)
    sequence_unit_headers = sum(16 for u in bs2.units if u.frame is None and u.type not in STRUCTURAL)
    assert bs2.bytes_read == 16 + structural + sequence_unit_headers


def test_v2_class_query_follows_references_and_shares_motion(bs2):
    sel = bs2.select(classes={18}, frames=[4])  # frame 4 predicts from 2, which predicts from 0
    assert sel.targets == [4] and sel.frames == [0, 2, 4] and sel.missing == []
    assert _kinds(sel) == ["BASE", "FRAME_HEADER", "GROUP_MASK", "METADATA", "MOTION", "OBJECT", "RESIDUAL",
                           "SEQUENCE_HEADER"]
    attributed = [u for u in sel.units if u.attributed]
    assert attributed and all(u.class_id == 18 for u in attributed)  # frame 0 holds no dog: no unit of it
    alone = bs2.select(classes={18}, frames=[4], follow_refs=False)
    assert alone.frames == [4] and alone.nbytes < sel.nbytes
    assert bs2.select(frames=range(1, 4)).frames == [0, 2]


def test_v2_described_objects_and_class_names(bs2):
    sel = bs2.select(objects={201}, include_shared=False, follow_refs=False)
    assert sel.units == [] and [(d.frame, d.object_id) for d in sel.descriptors] == [(2, 201)]
    assert sel.targets == [2]
    by_name = bs2.select(classes=["dog"])
    assert [u.number for u in by_name.units] == [u.number for u in bs2.select(classes={18}).units]
    with pytest.raises(SSBError) as e:
        bs2.select(classes=["unicorn"])
    assert e.value.field == "classes" and "unicorn" in str(e.value)
