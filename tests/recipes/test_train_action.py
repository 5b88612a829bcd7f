"""``ssb.recipes.train_action`` on a synthetic labelled folder (UCF-101 layout) and CSV (unit tests only).

Clips are generated here: a textured background and a bright square moving left or right.  The
tiny-config test codes them with the tiny codec of ``tests/codec/tiny_codec.py`` (no teacher, no
index objects: whole-frame windows); the ``main()`` test runs the real command on two tiny clips.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ssb.errors import SSBError

_spec = importlib.util.spec_from_file_location("tiny_codec", Path(__file__).parents[1] / "codec" / "tiny_codec.py")
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)

H, W, FRAMES = 72, 96, 10


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("SSB_CACHE", str(tmp_path / "cache"))
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def write_clip(path: Path, direction: int, seed: int, frames: int = FRAMES) -> Path:
    import cv2

    rng = np.random.default_rng(abs(seed))
    yy, xx = np.mgrid[0:H, 0:W]
    bg = np.stack([xx * 255 / W, yy * 255 / H, 128 + 60 * np.sin(xx / 5.0)], -1)
    x0 = 30 + int(rng.integers(-6, 7))
    path.parent.mkdir(parents=True, exist_ok=True)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    for t in range(frames):
        img = bg + rng.normal(0, 2, bg.shape)
        x = x0 + direction * 3 * t
        img[20:50, x : x + 18] = [40, 40, 250]  # BGR: red
        out.write(np.clip(img, 0, 255).astype(np.uint8))
    out.release()
    return path


def folder(root: Path, per_label: int = 3) -> Path:
    for label, direction in (("move_left", -1), ("move_right", 1)):
        for i in range(per_label):
            write_clip(root / label / f"c{i}.avi", direction, seed=10 * direction + i)
    (root / "notes.txt").write_text("not a label folder")
    return root


def tiny_models():
    from ssb.pipeline import Models

    return Models(zoo=tiny.TinyModels(extra={"video": tiny.tiny_video_coder()}))


def test_folder_layout_and_csv(tmp_path):
    from ssb.recipes.train_action import folder_clips

    data = folder(tmp_path / "clips", per_label=2)
    clips = folder_clips(data)
    assert [(c.parent.name, lab, box) for c, lab, box in clips] == [("move_left", "move_left", None)] * 2 + \
        [("move_right", "move_right", None)] * 2
    csv = tmp_path / "clips" / "list.csv"
    csv.write_text("clip,label,x0,y0,x1,y1\nmove_left/c0.avi,left\n\nmove_right/c1.avi,right,1,2,30,40\n")
    assert [(c.name, lab, box) for c, lab, box in folder_clips(csv)] == [("c0.avi", "left", None),
                                                                        ("c1.avi", "right", (1.0, 2.0, 30.0, 40.0))]
    for text, match in (("a.avi,x\n", "at least 2 labels"), ("move_left/c0.avi,l,1,2,3\n", "clip,label"),
                        ("move_left/c0.avi,l,5,2,3,9\nmove_left/c1.avi,m\n", "x0 < x1")):
        csv.write_text(text)
        with pytest.raises((SSBError, FileNotFoundError), match=match if "labels" not in match else None):
            folder_clips(csv)
    with pytest.raises(FileNotFoundError):
        folder_clips(tmp_path / "absent")


def test_tiny_config_trains_from_a_labelled_folder(tmp_path):
    from ssb.codec import zoo
    from ssb.pipeline import analyze, encode
    from ssb.recipes.train_action import ActionTrainConfig, train_folder
    from ssb.tasks.action import ActionHead

    data = folder(tmp_path / "clips")
    cfg = ActionTrainConfig(window=6, min_frames=3, width=16, epochs=40, batch_size=16, lr=1e-2, level=1)
    models = tiny_models()
    path, meta = train_folder(data, cfg, tmp_path / "out", models=models, index_objects=False, val_fraction=0.34,
                              progress=False)
    assert path == tmp_path / "out" / "action.pt"
    ckpt = zoo.read("action", path)
    assert ckpt["identity"].id == "action-user.s8@1" and ckpt["identity"].behind == tiny.TINY_ID
    assert ckpt["config"]["labels"] == ["move_left", "move_right"] and ckpt["config"]["whole_frame"] is True
    assert meta["clips"] == 6 and meta["train_clips"] == 4 and meta["validation"]["clips"] == 2
    assert meta["validation"]["clip_top1"] == 1.0  # moving left vs right is separable from the MOTION units
    head = ActionHead(weights=path)
    assert head.whole_frame and head.label_names == ("move_left", "move_right")
    # the trained head on a new clip, through the analysis path
    clip = write_clip(tmp_path / "new.avi", 1, seed=99)
    encode(clip, tmp_path / "new.ssb", codec="ssb.video", quality=1, models=models, index_objects=False)
    res = analyze(tmp_path / "new.ssb", tasks=["action"], models=type(models)(zoo=models.zoo, heads={"action": head}))
    last = res.frames[-1].predictions["action"]
    assert last["track_ids"].tolist() == [0] and head.label_names[int(last["labels"][0])] == "move_right"


@pytest.mark.teacher
def test_main_trains_with_the_real_codec(tmp_path, capsys):
    from ssb.recipes.train_action import main

    data = tmp_path / "clips"
    for label, direction in (("left", -1), ("right", 1)):
        write_clip(data / label / "a.avi", direction, seed=direction, frames=8)
    out = tmp_path / "run"
    assert main(["--data", str(data), "-o", str(out), "--window", "4", "--min-frames", "2", "--epochs", "2",
                 "--val-fraction", "0", "--no-progress"]) == 0
    log = json.loads((out / "train_log.json").read_text())
    assert log["clips"] == 2 and log["windows"] > 0
    assert "wrote" in capsys.readouterr().out and (out / "action.pt").is_file()


def test_ssb_train_task_action_runs_the_action_recipe(tmp_path, monkeypatch):
    """`ssb train --task action --data DIR -o OUT` is the recipe's main() with those arguments."""
    import ssb.recipes.train_action as recipe
    from ssb.cli import main as cli

    seen = []
    monkeypatch.setattr(recipe, "main", lambda argv: seen.append(argv) or 0)
    data = tmp_path / "clips"
    (data / "left").mkdir(parents=True)
    assert cli(["train", "--task", "action", "--data", str(data), "-o", str(tmp_path / "run"), "--seed", "3",
                "--no-progress"]) == 0
    assert seen == [["-o", str(tmp_path / "run"), "--seed", "3", "--data", str(data), "--no-progress"]]
    assert cli(["train", "--data", str(data), "-o", str(tmp_path / "x")]) == 2  # --data without --task action
