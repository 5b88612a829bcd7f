"""DetectionHead without the teacher: output schema, NMS / thresholds / scaling, COCO results."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from ssb.errors import MalformedFieldError  # noqa: E402
from ssb.tasks.anchors import encode_boxes  # noqa: E402
from ssb.format.labels import (  # noqa: E402
    COCO_CATEGORIES,
    COCO_EVAL_IDS,
    category_name,
    coco_categories_json,
)
from ssb.tasks.detection import NUM_CLASSES, DetectionHead, to_coco_results  # noqa: E402


@pytest.fixture(scope="module")
def head():
    torch.manual_seed(0)
    return DetectionHead(pretrained=False, score_thresh=0.3)


def test_declared_needs(head):
    assert DetectionHead.required_features == {"split": {"channels": 32, "stride": 8}}
    assert DetectionHead.needs_group_masks is False
    assert head.training is False


def test_output_schema_from_split_features(head):
    torch.manual_seed(1)
    split = torch.rand(2, 32, 38, 38) * 4
    sizes = [(576, 768), (300, 451)]
    with torch.no_grad():
        out = head(split, image_sizes=sizes)
        same = head({"split": split}, image_sizes=sizes)
    assert isinstance(out, list) and len(out) == 2
    for det, (h, w), again in zip(out, sizes, same):
        assert set(det) == {"boxes", "labels", "scores"}
        n = det["boxes"].shape[0]
        assert det["boxes"].shape == (n, 4) and det["boxes"].dtype == torch.float32
        assert det["labels"].shape == (n,) and det["labels"].dtype == torch.int64
        assert det["scores"].shape == (n,) and det["scores"].dtype == torch.float32
        assert n <= head.max_detections
        if n:
            assert torch.all(det["scores"][:-1] >= det["scores"][1:])
            assert det["scores"].min() > 0.3
            assert det["labels"].min() >= 1 and det["labels"].max() <= 90
            b = det["boxes"]
            assert b.min() >= 0 and torch.all(b[:, 2] <= w) and torch.all(b[:, 3] <= h)
        torch.testing.assert_close(det["boxes"], again["boxes"])


def test_raw_outputs_shapes(head):
    with torch.no_grad():
        codes, logits, anchors = head.raw_outputs(torch.zeros(1, 32, 38, 38))
    assert codes.shape == (1, 1917, 4) and anchors.shape == (1917, 4)
    assert logits.shape == (1, 1917, NUM_CLASSES)


@pytest.mark.parametrize("bad", [torch.zeros(1, 16, 38, 38), torch.zeros(32, 38, 38)])
def test_rejects_wrong_features(head, bad):
    with pytest.raises(MalformedFieldError, match="split"):
        head(bad)


def test_rejects_wrong_image_sizes(head):
    with pytest.raises(MalformedFieldError, match="image_sizes"):
        head(torch.zeros(2, 32, 38, 38), image_sizes=[(10, 10)])


@pytest.mark.parametrize("cfg", [{"score_thresh": 1.0}, {"iou_thresh": 0.0}, {"max_detections": 0}])
def test_rejects_bad_config(cfg):
    with pytest.raises(MalformedFieldError):
        DetectionHead(pretrained=False, **cfg)


def _scene(anchors, dets):
    """Codes / logits placing ``(anchor index, box xyxy normalized, class, logit)`` detections."""
    codes = torch.zeros(1, len(anchors), 4)
    logits = torch.full((1, len(anchors), NUM_CLASSES), -20.0)
    for idx, box, cls, logit in dets:
        codes[0, idx] = encode_boxes(torch.tensor([box]), anchors[idx : idx + 1])[0]
        logits[0, idx, cls] = logit
    return codes, logits


def test_postprocess_nms_per_class_threshold_and_scaling(head):
    anchors = head.anchors([(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)], torch.device("cpu"))
    a, b = [0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5]  # IoU ~0.9
    codes, logits = _scene(anchors, [
        (100, a, 1, 3.0),     # person, kept
        (200, b, 1, 2.0),     # overlapping person, suppressed
        (300, b, 3, 1.0),     # car on the same box: other class, kept
        (400, [0.6, 0.6, 0.9, 1.2], 18, 0.5),  # dog, extends past the image: clipped
        (500, [0.0, 0.6, 0.2, 0.8], 44, -2.0),  # sigmoid(-2) = 0.12 < 0.3: dropped
    ])
    (det,) = head.postprocess(codes, logits, anchors, image_sizes=[(200, 400)])
    assert det["labels"].tolist() == [1, 3, 18]
    torch.testing.assert_close(det["scores"], torch.sigmoid(torch.tensor([3.0, 1.0, 0.5])))
    torch.testing.assert_close(det["boxes"][0], torch.tensor([40.0, 20.0, 200.0, 100.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(det["boxes"][2], torch.tensor([240.0, 120.0, 360.0, 200.0]), atol=1e-3, rtol=0)
    (det300,) = head.postprocess(codes, logits, anchors)  # network-input pixels by default
    expected = torch.tensor([30.0, 30.0, 150.0, 150.0])
    torch.testing.assert_close(det300["boxes"][0], expected, atol=1e-3, rtol=0)


def test_postprocess_caps_detections():
    small = DetectionHead(pretrained=False, max_detections=2, pre_nms_top_k=3)
    anchors = small.anchors([(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)], torch.device("cpu"))
    boxes = [[0.1 * i, 0.0, 0.1 * i + 0.05, 0.05] for i in range(6)]  # disjoint boxes
    codes, logits = _scene(anchors, [(10 * i, box, 1 + i % 2, 1.0 + i) for i, box in enumerate(boxes)])
    (det,) = small.postprocess(codes, logits, anchors)
    assert det["labels"].tolist() == [2, 1] and len(det["scores"]) == 2


def test_pre_nms_top_k_is_per_class():
    small = DetectionHead(pretrained=False, pre_nms_top_k=3)
    anchors = small.anchors([(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)], torch.device("cpu"))
    boxes = [[0.1 * i, 0.5, 0.1 * i + 0.05, 0.55] for i in range(8)]  # disjoint boxes
    # class 1 on all eight boxes (logits 1..8), class 5 on the first two
    dets = [(10 * i, box, 1, 1.0 + i) for i, box in enumerate(boxes)]
    dets += [(10 * i + 1, box, 5, 0.5 + i) for i, box in enumerate(boxes[:2])]
    codes, logits = _scene(anchors, dets)
    (det,) = small.postprocess(codes, logits, anchors)
    got = sorted(zip(det["labels"].tolist(), [round(float(torch.logit(s)), 3) for s in det["scores"]]))
    assert got == [(1, 6.0), (1, 7.0), (1, 8.0), (5, 0.5), (5, 1.5)]


def test_coco_results_json():
    one = {"boxes": torch.tensor([[10.0, 20.0, 40.0, 60.0]]), "labels": torch.tensor([18]),
           "scores": torch.tensor([0.875])}
    none = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0)}
    dets = [one, none]
    expected = {"image_id": 7, "category_id": 18, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.875}
    assert to_coco_results(dets, [7, 8]) == [expected]
    with pytest.raises(MalformedFieldError):
        to_coco_results(dets, [1])


def test_coco_names():
    assert len(COCO_CATEGORIES) == 90 and len(COCO_EVAL_IDS) == 80
    assert category_name(1) == "person" and category_name(18) == "dog" and category_name(90) == "toothbrush"
    assert category_name(91) == "id91"
    cats = coco_categories_json()
    assert [c["id"] for c in cats] == list(COCO_EVAL_IDS) and cats[0] == {"id": 1, "name": "person"}
