"""COCO / detectron2 conventions (ssb.adapters.coco, .detectron2, .evaluation, .rle): box modes, RLE,
results JSON, teacher GT, COCOeval."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ssb.adapters.coco import predictions_to_coco_gt, to_coco_results
from ssb.adapters.detectron2 import BoxMode, annotations_from_prediction, dataset_dict, to_detectron2_instances_dict
from ssb.adapters.evaluation import COCOEvaluator, DatasetEvaluators, coco_evaluate
from ssb.adapters.rle import mask_to_rle, rle_to_mask
from ssb.errors import MalformedFieldError

pytest.importorskip("pycocotools")

H, W = 240, 320
CATS = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]


def _scene(seed: int, n: int = 6, *, masks: bool = False, keypoints: int = 0) -> dict:
    """Synthetic teacher prediction: n boxes of 30-90 px (COCO 'medium'), labels from CATS."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, [W - 100, H - 100], (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(30, 90, (n, 2))], 1)
    pred = {
        "boxes": boxes,
        "labels": rng.choice([c["id"] for c in CATS], n),
        "scores": rng.uniform(0.6, 1.0, n),
    }
    if masks:
        m = np.zeros((n, 1, H, W), np.float32)
        for i, (x0, y0, x1, y1) in enumerate(boxes.round().astype(int)):
            m[i, 0, y0:y1, x0:x1] = 0.9
        pred["masks"] = m
    if keypoints:
        kx = rng.uniform(boxes[:, :1], boxes[:, 2:3], (n, keypoints))
        ky = rng.uniform(boxes[:, 1:2], boxes[:, 3:4], (n, keypoints))
        pred["keypoints"] = np.stack([kx, ky, np.ones_like(kx)], -1)
    return pred


def _inputs(preds):
    return [{"image_id": i, "height": H, "width": W, "instances": p} for i, p in enumerate(preds)]


# ------------------------------------------------------------------------------ BoxMode


def test_boxmode_values_match_detectron2():
    assert [int(m) for m in (BoxMode.XYXY_ABS, BoxMode.XYWH_ABS, BoxMode.XYXY_REL, BoxMode.XYWH_REL)] == [0, 1, 2, 3]


def test_boxmode_known_values():
    box = [10.0, 20.0, 30.0, 60.0]
    assert BoxMode.convert(box, BoxMode.XYXY_ABS, BoxMode.XYWH_ABS) == [10.0, 20.0, 20.0, 40.0]
    rel = BoxMode.convert(tuple(box), BoxMode.XYXY_ABS, BoxMode.XYWH_REL, image_size=(100, 200))
    assert isinstance(rel, tuple) and rel == pytest.approx((0.05, 0.2, 0.1, 0.4))
    assert BoxMode.convert(np.array([[0.1, 0.1, 0.5, 0.5]]), 2, 0, image_size=(100, 200)).tolist() == [[20.0, 10.0, 100.0, 50.0]]


def test_boxmode_round_trips_numpy_and_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 300, (2, 7, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 80, (2, 7, 2))], -1)  # batch dims are kept
    size = (480, 640)
    for a in BoxMode:
        for b in BoxMode:
            there = BoxMode.convert(boxes, BoxMode.XYXY_ABS, a, size)
            back = BoxMode.convert(BoxMode.convert(there, a, b, size), b, BoxMode.XYXY_ABS, size)
            np.testing.assert_allclose(back, boxes, rtol=1e-12)
    t = torch.tensor(boxes, dtype=torch.float32)
    rel = BoxMode.convert(t, BoxMode.XYXY_ABS, BoxMode.XYWH_REL, size)
    assert isinstance(rel, torch.Tensor) and rel.dtype == torch.float32
    assert torch.allclose(BoxMode.convert(rel, BoxMode.XYWH_REL, BoxMode.XYXY_ABS, size), t, rtol=1e-5)
    assert torch.equal(t, torch.tensor(boxes, dtype=torch.float32))  # input untouched


def test_boxmode_integer_inputs():
    ints = np.array([[1, 2, 5, 8]])
    wh = BoxMode.convert(ints, BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
    assert wh.dtype == ints.dtype and wh.tolist() == [[1, 2, 4, 6]]
    assert BoxMode.convert(ints, BoxMode.XYXY_ABS, BoxMode.XYXY_REL, (10, 10)).dtype == np.float64


def test_boxmode_refusals():
    with pytest.raises(MalformedFieldError, match="image_size"):
        BoxMode.convert([0, 0, 1, 1], BoxMode.XYXY_ABS, BoxMode.XYXY_REL)
    with pytest.raises(MalformedFieldError) as err:
        BoxMode.convert(np.zeros((3, 5)), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
    assert err.value.field == "boxes"
    with pytest.raises(MalformedFieldError):
        BoxMode.convert([0, 0, 1, 1], 7, BoxMode.XYWH_ABS)


# ------------------------------------------------------------------------------ RLE


def test_rle_round_trip():
    rng = np.random.default_rng(1)
    mask = rng.random((37, 53)) > 0.6
    rle = mask_to_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [37, 53]
    json.dumps(rle)
    np.testing.assert_array_equal(rle_to_mask(rle), mask)
    np.testing.assert_array_equal(rle_to_mask({"size": rle["size"], "counts": rle["counts"].encode()}), mask)
    with pytest.raises(MalformedFieldError):
        rle_to_mask({"counts": "abc"})
    with pytest.raises(MalformedFieldError):
        mask_to_rle(np.zeros((2, 3, 4)))


# ------------------------------------------------------------------------------ results / GT


def test_to_coco_results_fields():
    pred = _scene(2, 3, masks=True, keypoints=17)
    res = to_coco_results([pred], [42])
    assert len(res) == 3
    json.dumps(res)
    r = res[0]
    x0, y0, x1, y1 = pred["boxes"][0]
    assert r["image_id"] == 42 and r["category_id"] == int(pred["labels"][0])
    assert r["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0])
    assert r["score"] == pytest.approx(pred["scores"][0])
    assert r["keypoints"] == pytest.approx(pred["keypoints"][0].reshape(-1).tolist()) and len(r["keypoints"]) == 51
    np.testing.assert_array_equal(rle_to_mask(r["segmentation"]), pred["masks"][0, 0] > 0.5)
    mapped = to_coco_results([pred], [42], label_to_category={1: 101, 3: 103, 18: 118})
    assert [m["category_id"] for m in mapped] == [100 + int(v) for v in pred["labels"]]


def test_to_coco_results_accepts_torch_and_refuses_bad_input():
    torch = pytest.importorskip("torch")
    pred = {k: torch.as_tensor(v) for k, v in _scene(3, 4).items()}
    assert len(to_coco_results([pred], [0])) == 4
    assert to_coco_results([{"boxes": torch.zeros(0, 4), "labels": [], "scores": []}], [0]) == []
    with pytest.raises(MalformedFieldError) as err:
        to_coco_results([{"boxes": pred["boxes"], "labels": pred["labels"]}], [0])
    assert err.value.field == "predictions[0].scores"
    with pytest.raises(MalformedFieldError, match="labels"):
        to_coco_results([dict(pred, labels=pred["labels"][:2])], [0])
    with pytest.raises(MalformedFieldError):
        to_coco_results([pred], [0, 1])
    with pytest.raises(MalformedFieldError):
        to_coco_results([dict(pred, boxes=torch.full((4, 4), float("nan")))], [0])
    for bad, field in (({"boxes": [["a"] * 4], "labels": [1], "scores": [1.0]}, "predictions[0].boxes"),
                       ({"boxes": [[0, 0, 1, 1]], "labels": [1.5], "scores": [1.0]}, "predictions[0].labels"),
                       ("not a dict", "predictions[0]")):
        with pytest.raises(MalformedFieldError) as err:
            to_coco_results([bad], [0])
        assert err.value.field == field


def test_predictions_to_coco_gt_filters_and_fills():
    pred = _scene(4, 5, masks=True)
    pred["scores"][:2] = [0.2, 0.49]  # below threshold
    pred["boxes"][2, 2] = pred["boxes"][2, 0]  # zero width
    gt = predictions_to_coco_gt([pred], [{"id": 9, "height": H, "width": W, "file_name": "a.png"}], CATS, score_thresh=0.5)
    anns = gt["annotations"]
    assert [a["id"] for a in anns] == [1, 2]
    assert all(a["image_id"] == 9 and a["iscrowd"] == 0 for a in anns)
    assert anns[0]["area"] == float((pred["masks"][3, 0] > 0.5).sum())
    assert gt["images"] == [{"file_name": "a.png", "id": 9, "height": H, "width": W}]
    assert gt["categories"] == CATS
    # Without masks the area is the box's.
    gt2 = predictions_to_coco_gt([{k: pred[k] for k in ("boxes", "labels", "scores")}], [{"image_id": 9, "height": H, "width": W}], None)
    a = gt2["annotations"][0]
    assert a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3])
    assert {c["id"] for c in gt2["categories"]} == {int(v) for v in pred["labels"][3:]}
    with pytest.raises(MalformedFieldError, match="not among the categories"):
        predictions_to_coco_gt([pred], [{"id": 9, "height": H, "width": W}], [{"id": 99, "name": "x"}])


# ------------------------------------------------------------------------------ evaluation


def test_predictions_equal_to_teacher_give_ap_100():
    preds = [_scene(s) for s in range(4)]
    ev = COCOEvaluator("bbox", CATS)
    ev.process(_inputs(preds[:2]), preds[:2])
    ev.process([dict(x, image_id=x["image_id"] + 2) for x in _inputs(preds[2:])], preds[2:])  # a second batch
    out = ev.evaluate()["bbox"]
    assert out["AP"] == pytest.approx(100.0) and out["AP50"] == pytest.approx(100.0) and out["APm"] == pytest.approx(100.0)
    assert math.isnan(out["APl"]) and ev.reason is None  # no large objects


def test_shifted_boxes_lower_ap():
    preds = [_scene(s) for s in range(4)]
    aps = []
    for shift in (0, 4, 10, 40):
        ev = COCOEvaluator("bbox", CATS)
        ev.process(_inputs(preds), [dict(p, boxes=p["boxes"] + shift) for p in preds])
        aps.append(ev.evaluate()["bbox"]["AP"])
    assert aps[0] == pytest.approx(100.0)
    assert aps[0] > aps[1] > aps[2] > aps[3]
    assert aps[3] < 5.0


def test_hand_computed_ap():
    """2 teacher objects, 1 found (score .9) and 1 false alarm (.8): recall .5 at precision 1 -> AP 51/101."""
    teacher = {"boxes": np.array([[10.0, 10, 60, 60], [100, 100, 160, 150]]), "labels": [1, 1], "scores": [0.9, 0.9]}
    pred = {"boxes": np.array([[10.0, 10, 60, 60], [200, 20, 250, 80]]), "labels": [1, 1], "scores": [0.9, 0.8]}
    ev = COCOEvaluator("bbox", CATS)
    ev.process([{"image_id": 1, "height": H, "width": W, "targets": teacher}], [pred])
    assert ev.evaluate()["bbox"]["AP"] == pytest.approx(100 * 51 / 101)


def test_segm_and_keypoints():
    preds = [_scene(s, masks=True, keypoints=17) for s in range(3)]
    for iou_type in ("segm", "keypoints"):
        ev = COCOEvaluator(iou_type, CATS)
        ev.process(_inputs(preds), preds)
        assert ev.evaluate()[iou_type]["AP"] == pytest.approx(100.0), iou_type
    ev = COCOEvaluator("segm", CATS)
    eroded = [dict(p, masks=np.pad(p["masks"][..., 6:-6, 6:-6], ((0, 0), (0, 0), (6, 6), (6, 6)))) for p in preds]
    ev.process(_inputs(preds), eroded)
    assert ev.evaluate()["segm"]["AP"] < 100.0


def test_keypoints_need_sigmas_for_other_layouts():
    preds = [_scene(s, keypoints=5) for s in range(2)]
    ev = COCOEvaluator("keypoints", CATS)
    ev.process(_inputs(preds), preds)
    with pytest.raises(MalformedFieldError, match="kpt_oks_sigmas"):
        ev.evaluate()
    ev = COCOEvaluator("keypoints", CATS, kpt_oks_sigmas=[0.05] * 5)
    ev.process(_inputs(preds), preds)
    assert ev.evaluate()["keypoints"]["AP"] == pytest.approx(100.0)


def test_empty_predictions_and_empty_ground_truth():
    preds = [_scene(s) for s in range(2)]
    none = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int), "scores": np.zeros(0)}
    ev = COCOEvaluator("bbox", CATS)
    ev.process(_inputs(preds), [none, none])
    assert ev.evaluate()["bbox"]["AP"] == 0.0 and ev.reason is None  # every object missed
    ev.reset()
    ev.process(_inputs([none, none]), preds)
    out = ev.evaluate()["bbox"]
    assert all(math.isnan(v) for v in out.values()) and "no (non-crowd) objects" in ev.reason
    ev.reset()
    assert all(math.isnan(v) for v in ev.evaluate()["bbox"].values()) and "no images" in ev.reason
    low = dict(preds[0], scores=np.full(len(preds[0]["scores"]), 0.1))  # the teacher is never sure
    ev.reset()
    ev.process(_inputs([low]), [preds[0]])
    assert math.isnan(ev.evaluate()["bbox"]["AP"])


def test_evaluator_refuses_inconsistent_batches():
    preds = [_scene(0)]
    ev = COCOEvaluator("bbox", CATS)
    with pytest.raises(MalformedFieldError):
        ev.process(_inputs(preds), preds * 2)
    ev.process(_inputs(preds), preds)
    with pytest.raises(MalformedFieldError, match="already processed"):
        ev.process(_inputs(preds), preds)
    with pytest.raises(MalformedFieldError, match="instances, targets or annotations"):
        ev.process([{"image_id": 5, "height": H, "width": W}], preds)
    with pytest.raises(MalformedFieldError):
        COCOEvaluator("mask")
    with pytest.raises(MalformedFieldError, match="segmentation"):
        ev2 = COCOEvaluator("segm", CATS)
        ev2.process(_inputs(preds), preds)
        ev2.evaluate()


def test_detectron2_style_inputs_and_outputs():
    preds = [_scene(s) for s in range(3)]
    inputs = [
        dataset_dict(f"frame{i}.png", i, H, W, annotations_from_prediction(p, score_thresh=0.5)) for i, p in enumerate(preds)
    ]
    assert inputs[0]["annotations"][0]["bbox_mode"] == BoxMode.XYXY_ABS
    outputs = [{"instances": to_detectron2_instances_dict(p, (H, W))} for p in preds]
    ev = COCOEvaluator("bbox", CATS, per_category=True)
    ev.process(inputs, outputs)
    out = ev.evaluate()["bbox"]
    assert out["AP"] == pytest.approx(100.0) and out["AP-person"] == pytest.approx(100.0)
    # COCO's own xywh annotations give the same ground truth.
    xywh = [dict(d, annotations=[dict(a, bbox=BoxMode.convert(a["bbox"], 0, 1), bbox_mode=BoxMode.XYWH_ABS)
                                 for a in d["annotations"]]) for d in inputs]
    ev.reset()
    ev.process(xywh, preds)
    assert ev.evaluate()["bbox"]["AP"] == pytest.approx(100.0)


def test_to_detectron2_instances_dict_fields():
    torch = pytest.importorskip("torch")
    pred = {k: torch.as_tensor(v) for k, v in _scene(5, 3, masks=True, keypoints=17).items()}
    d = to_detectron2_instances_dict(pred, (H, W))
    assert set(d) == {"image_size", "pred_boxes", "scores", "pred_classes", "pred_keypoints", "pred_masks"}
    assert d["image_size"] == (H, W) and d["pred_masks"].dtype == torch.bool and d["pred_masks"].shape == (3, H, W)
    assert d["pred_boxes"] is pred["boxes"]
    with pytest.raises(MalformedFieldError):
        to_detectron2_instances_dict(pred, (H + 1, W))
    with pytest.raises(MalformedFieldError):
        to_detectron2_instances_dict(pred, (0, W))
    with pytest.raises(MalformedFieldError, match="bbox_mode"):
        dataset_dict("a.png", 0, H, W, [{"bbox": [0, 0, 1, 1], "category_id": 1}])


def test_coco_evaluate_agrees_with_results_json_round_trip():
    preds = [_scene(s, 8) for s in range(3)]
    noisy = [dict(p, boxes=p["boxes"] + np.random.default_rng(7).normal(0, 3, p["boxes"].shape)) for p in preds]
    images = [{"id": i, "height": H, "width": W} for i in range(3)]
    gt = json.loads(json.dumps(predictions_to_coco_gt(preds, images, CATS)))
    results = json.loads(json.dumps(to_coco_results(noisy, [0, 1, 2])))
    metrics, reason = coco_evaluate(gt, results, "bbox")
    ev = COCOEvaluator("bbox", CATS)
    ev.process(_inputs(preds), noisy)
    assert reason is None and ev.evaluate()["bbox"] == pytest.approx(metrics, nan_ok=True)
    assert 20.0 < metrics["AP"] < 100.0


def test_rle_is_pycocotools_byte_for_byte_without_it():
    """Results JSON needs no pycocotools: the numpy RLE equals pycocotools' encoding and decodes back."""
    from pycocotools import mask as mask_util

    rng = np.random.default_rng(7)
    for i in range(200):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        m = rng.random((h, w)) < rng.random()
        if i % 4 == 0:
            m[:] = False
        ref = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
        ours = mask_to_rle(m)
        assert ours["counts"] == ref["counts"].decode("ascii") and ours["size"] == [h, w]
        assert np.array_equal(rle_to_mask(ours), m)
        assert np.array_equal(rle_to_mask({"size": [h, w], "counts": ref["counts"]}), m)
    with pytest.raises(MalformedFieldError):
        rle_to_mask({"size": [4, 4], "counts": "0"})  # covers 0 of 16 pixels


def test_dataset_evaluators_run_several_in_one_loop():
    gt = [_scene(s, masks=True) for s in range(3)]
    inputs = [{"image_id": i, "height": H, "width": W, "instances": g} for i, g in enumerate(gt)]
    both = DatasetEvaluators([COCOEvaluator("bbox", CATS), COCOEvaluator("segm", CATS)])
    both.reset()
    both.process(inputs, gt)
    out = both.evaluate()
    assert set(out) == {"bbox", "segm"} and out["bbox"]["AP"] > 99 and out["segm"]["AP"] > 99
    with pytest.raises(MalformedFieldError):
        DatasetEvaluators([COCOEvaluator("bbox", CATS), COCOEvaluator("bbox", CATS)]).evaluate()
