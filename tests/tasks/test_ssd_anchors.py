"""SSD anchors (TF multiple_grid_anchor_generator) and the (10, 10, 5, 5) box coder."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ssb.tasks.anchors import anchor_specs, decode_boxes, encode_boxes, multiple_grid_anchors  # noqa: E402

SHAPES_300 = [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]


def test_anchor_count_and_layout():
    anchors = multiple_grid_anchors(SHAPES_300)
    per_cell = [len(s) for s in anchor_specs()]
    assert per_cell == [3, 6, 6, 6, 6, 6]
    assert anchors.shape == (sum(h * w * a for (h, w), a in zip(SHAPES_300, per_cell)), 4) == (1917, 4)
    assert anchors.dtype == torch.float32
    # first cell of the 19x19 map: 0.1 square, then 0.2 at aspect 2 and 1/2
    torch.testing.assert_close(anchors[0], torch.tensor([0.5 / 19, 0.5 / 19, 0.1, 0.1]))
    torch.testing.assert_close(anchors[1, 2:], torch.tensor([0.2 * math.sqrt(2), 0.2 / math.sqrt(2)]))
    # anchors are cell-major: the 4th anchor is the next cell to the right
    torch.testing.assert_close(anchors[3, :2], torch.tensor([1.5 / 19, 0.5 / 19]))
    # last anchor: the 1x1 map's interpolated box sqrt(0.95 * 1.0), centered
    torch.testing.assert_close(anchors[-1], torch.tensor([0.5, 0.5, math.sqrt(0.95), math.sqrt(0.95)]))


def test_anchor_sizes_equal_teacher_priorbox_pixels():
    """PriorBox_1 widths/heights written in the teacher's .pbtxt (300 px input)."""
    w, h = zip(*anchor_specs()[1])
    expect_w = [105.0, 148.492431641, 74.2462158203, 181.865341187, 60.5914611816, 125.499000549]
    expect_h = [105.0, 74.2462158203, 148.492431641, 60.6217765808, 181.956329346, 125.499000549]
    assert [round(v * 300, 3) for v in w] == [round(v, 3) for v in expect_w]
    assert [round(v * 300, 3) for v in h] == [round(v, 3) for v in expect_h]


def test_scales_follow_arguments():
    specs = anchor_specs(
        3, min_scale=0.3, max_scale=0.9, aspect_ratios=(1.0,), reduce_boxes_in_lowest_layer=False
    )
    assert specs[1] == [(pytest.approx(0.6), pytest.approx(0.6)), (pytest.approx(math.sqrt(0.54)),) * 2]
    assert specs[0][0] == (pytest.approx(0.3), pytest.approx(0.3))


def test_zero_codes_decode_to_anchors():
    anchors = multiple_grid_anchors(SHAPES_300)
    boxes = decode_boxes(torch.zeros(2, len(anchors), 4), anchors)
    assert boxes.shape == (2, 1917, 4)
    torch.testing.assert_close(boxes[1, :, :2], anchors[:, :2] - anchors[:, 2:] / 2)
    torch.testing.assert_close(boxes[0, :, 2:], anchors[:, :2] + anchors[:, 2:] / 2)


def test_decode_uses_scale_factors():
    anchors = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    codes = torch.tensor([[10.0, 0.0, 5.0, 0.0]])  # dx = 1 anchor width, w *= e
    (box,) = decode_boxes(codes, anchors)
    cx, w = 0.5 + 0.2, 0.2 * math.e
    torch.testing.assert_close(box, torch.tensor([cx - w / 2, 0.3, cx + w / 2, 0.7]))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(*[st.floats(0.0, 0.9, allow_nan=False)] * 2, *[st.floats(0.01, 1.0, allow_nan=False)] * 2),
        min_size=1, max_size=8,
    )
)
def test_decode_inverts_encode(raw):
    t = torch.tensor(raw, dtype=torch.float64)
    boxes = torch.stack([t[:, 0], t[:, 1], t[:, 0] + t[:, 2], t[:, 1] + t[:, 3]], 1)
    anchors = multiple_grid_anchors(SHAPES_300).double()[torch.arange(len(raw)) * 97]
    codes = encode_boxes(boxes, anchors)
    torch.testing.assert_close(decode_boxes(codes, anchors), boxes)
