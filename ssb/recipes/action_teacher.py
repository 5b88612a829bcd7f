"""The action teacher: per-track action labels from the ORIGINAL pixels, by a documented rule.

No labelled action clips install here, so the reference action model is trained (and evaluated)
against a *teacher* that runs on the original pixels of a real clip:

1. **People and tracks.**  The SSD-MobileNetV2 teacher (:class:`~ssb.recipes.teachers.PersonTeacher`)
   on every original frame, its ``person`` boxes scoring at least ``PERSON_SCORE`` (0.3, what the
   encoder's index keeps), linked into tracks by the SORT-style tracker the encoder uses
   (:class:`ssb.codec.tracking.Tracker`).
2. **Pose.**  MoveNet Lightning (:class:`~ssb.recipes.teachers.MoveNetTeacher`) on a square crop of
   each person box: 17 COCO keypoints per person and frame.
3. **The rule** (:func:`label_windows`), per track and frame ``t`` over the causal window of the
   last ``WINDOW`` = 16 frames ``[t - 15, t]`` (1.6 s at vtest's 10 fps):

   * the window gets **no label** (``-1``: neither trained on nor scored) when the track is in
     fewer than ``MIN_PRESENT`` = 10 of its frames, or *jumps* (a tracker identity switch: the box
     centre moves more than ``MAX_JUMP`` = 0.5 box heights in a frame, or the box height changes by
     more than ``MAX_SCALE`` = 1.35 times);
   * ``H`` = the median box height over the window (lengths are in body heights, so near and far
     people compare); positions are box centres averaged over ``SMOOTH`` = 3 frames at the
     window's start and end; ``speed`` = their distance / the time between them, in H/s;
     ``direction`` = the heading of that displacement (degrees, image axes: 0 = rightwards, 90 =
     down the image, i.e. toward this camera);
   * ``stride`` (MoveNet's pose dynamics) = the spread over the window of the vector from the right
     to the left ankle, ``sqrt(var(dx) + var(dy)) / H``, over the frames where both ankles score
     >= 0.3 and lie inside the box (MoveNet on a crop holding two people may find the other one);
     ``legs`` = such frames are at least half the window;
   * **walking** when ``speed >= WALK_SPEED`` (0.2 H/s), or ``speed >= SLOW_SPEED`` (0.05 H/s) with
     ``legs`` and ``stride >= STEP_STRIDE`` (0.08: legs that swing), labelled by the quarter of
     headings its direction falls in: ``walking_right`` (-45..45 deg), ``walking_toward`` (45..135:
     down the image), ``walking_left`` (135..225), ``walking_away`` (225..315: up the image);
     otherwise **standing**.

Classes considered and left out, with the measurements on vtest 0..599 that decided it:
*running* (no window is faster than 1.2 H/s: no example) and *turning* (38 windows whose heading
changes by 60 deg or more between the window's halves; their contact sheet shows about half are
boxes sliding between two people, not turns).  Known weakness: people walking slowly straight
toward or away from the camera (under 0.2 H/s in the image, legs overlapping in MoveNet's view)
read as standing.

The thresholds were set from the distributions and contact sheets of vtest frames 0..599 only
(never the held-out 620..794): ``python -m ssb.recipes.action_teacher --sheets DIR`` writes one
contact sheet per label (random windows: the person's crop at the window's first, middle and last
frame, with speed, stride, direction and an arrow).  Results against this teacher are *agreement
with this teacher*, not accuracy on a public benchmark.  Raw teacher outputs (boxes, track ids,
keypoints) are cached in ``$SSB_CACHE``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ACTION_LABELS", "WINDOW", "MIN_PRESENT", "WALK_SPEED", "SLOW_SPEED", "STEP_STRIDE", "PERSON_SCORE",
           "TeacherRun", "run_teacher", "label_windows", "window_measures", "rule", "contact_sheets", "main"]

#: the action classes of the reference model, in index order
ACTION_LABELS = ("standing", "walking_left", "walking_right", "walking_toward", "walking_away")
#: the walking label of each quarter of headings, from rightwards, clockwise in image axes (y down)
_HEADINGS = ("walking_right", "walking_toward", "walking_left", "walking_away")
#: frames in a window (1.6 s at 10 fps)
WINDOW = 16
#: a track must be present in at least this many frames of a window for it to get a label
MIN_PRESENT = 10
#: body heights per second
WALK_SPEED = 0.2
SLOW_SPEED = 0.05
#: ankle-separation swing, in body heights (spread over the window)
STEP_STRIDE = 0.08
#: positions are averaged over this many frames at the window's start, middle and end
SMOOTH = 3
#: a track "jumps" (the window gets no label) when its box centre moves more than this many box heights
#: in one frame, or its height changes by more than this factor
MAX_JUMP = 0.5
MAX_SCALE = 1.35
KEYPOINT_SCORE = 0.3
#: teacher person boxes kept (the encoder's index keeps the same: ``VideoEncoder(min_score=0.3)``)
PERSON_SCORE = 0.3
TEACHER_VERSION = 1
_L_ANKLE, _R_ANKLE = 15, 16


@dataclass
class TeacherRun:
    """Raw teacher outputs of a clip: one row per person detection."""

    frames: np.ndarray  #: [K] frame index
    track_ids: np.ndarray  #: [K]
    boxes: np.ndarray  #: [K, 4] xyxy original pixels
    scores: np.ndarray  #: [K]
    keypoints: np.ndarray  #: [K, 17, 3] MoveNet (x, y, score) in original pixels
    fps: float
    size: tuple[int, int]  #: (height, width)

    def at(self, frame: int) -> np.ndarray:
        """Row numbers of ``frame``'s detections."""
        return np.flatnonzero(self.frames == frame)

    def tracks(self) -> dict[int, np.ndarray]:
        """``{track id: its rows in frame order}``."""
        order = np.lexsort((self.frames, self.track_ids))
        ids = self.track_ids[order]
        cuts = np.flatnonzero(np.diff(ids)) + 1
        return {int(self.track_ids[g[0]]): g for g in np.split(order, cuts) if len(g)}


def _cache_path(video: Path, frames: range) -> Path:
    from ssb.backbones.teacher_weights import cache_dir
    from ssb.codec.zoo import teacher_fingerprint
    from ssb.recipes.teachers import MOVENET_FILE
    from ssb.resources import file_sha256, teacher_path

    key = json.dumps([file_sha256(video), frames.start, frames.stop, teacher_fingerprint(),
                      file_sha256(teacher_path(MOVENET_FILE))[:16], PERSON_SCORE, TEACHER_VERSION])
    return cache_dir() / f"action-teacher-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def run_teacher(video=None, frames: range = range(0, 795), *, progress: bool = True) -> TeacherRun:
    """People, tracks and MoveNet keypoints on the ORIGINAL frames of ``video`` (default vtest.avi), cached."""
    import torch

    from ssb.codec.tracking import Tracker
    from ssb.media import frames as media_frames
    from ssb.media import probe
    from ssb.recipes.teachers import PERSON_LABEL, MoveNetTeacher, PersonTeacher
    from ssb.resources import vtest_path

    video = Path(video or vtest_path())
    path = _cache_path(video, frames)
    if path.is_file():
        d = np.load(path)
        return TeacherRun(d["frames"], d["track_ids"], d["boxes"], d["scores"], d["keypoints"], float(d["fps"]),
                          tuple(int(v) for v in d["size"]))
    people, pose, tracker = PersonTeacher(PERSON_SCORE), MoveNetTeacher(num_threads=1), Tracker()
    rows: dict[str, list] = {"frames": [], "track_ids": [], "boxes": [], "scores": [], "keypoints": []}
    it = media_frames(video, frames=frames)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(frames), desc="action teacher", unit="frame")
    size = None
    with torch.no_grad():
        for fr in it:
            size = fr.image.shape[:2]
            det = people([fr.image])[0]
            ids = tracker.update(det["boxes"], np.full(len(det["boxes"]), PERSON_LABEL))
            kps = pose(fr.image, det["boxes"]) if len(det["boxes"]) else np.zeros((0, 17, 3), np.float32)
            rows["frames"] += [fr.index] * len(ids)
            rows["track_ids"] += ids
            rows["boxes"].append(det["boxes"].reshape(-1, 4))
            rows["scores"].append(det["scores"].reshape(-1))
            rows["keypoints"].append(kps)
    fps = probe(video).fps or 10.0
    run = TeacherRun(np.array(rows["frames"], np.int64), np.array(rows["track_ids"], np.int64),
                     np.concatenate(rows["boxes"]).astype(np.float32), np.concatenate(rows["scores"]).astype(np.float32),
                     np.concatenate(rows["keypoints"]).astype(np.float32), float(fps), tuple(size))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, frames=run.frames, track_ids=run.track_ids, boxes=run.boxes, scores=run.scores,
                        keypoints=run.keypoints, fps=run.fps, size=np.array(run.size))
    tmp.replace(path)
    return run


def _inside(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Which points ``[n, 2]`` lie in their box ``[n, 4]`` (MoveNet on a crop holding two people may
    find the other one: its keypoints then fall outside the tracked box)."""
    return ((points[:, 0] >= boxes[:, 0]) & (points[:, 0] <= boxes[:, 2]) & (points[:, 1] >= boxes[:, 1])
            & (points[:, 1] <= boxes[:, 3]))


def _continuous(f: np.ndarray, boxes: np.ndarray) -> bool:
    """No jump between consecutive detections of the window (a tracker identity switch): the box centre
    moves at most ``MAX_JUMP`` box heights a frame and the box height changes by at most ``MAX_SCALE``."""
    if len(f) < 2:
        return True
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
    c = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    gap = np.maximum(np.diff(f), 1)
    step = np.hypot(*np.diff(c, axis=0).T) / np.minimum(h[1:], h[:-1]) / gap
    ratio = np.maximum(h[1:] / h[:-1], h[:-1] / h[1:])
    return bool((step <= MAX_JUMP).all() and (ratio <= MAX_SCALE).all())


def window_measures(run: TeacherRun, rows: np.ndarray, fps: float | None = None) -> dict | None:
    """The rule's measures over one window (``rows``: a track's detections in it, frame order), or
    ``None`` when the window has too few frames or its track jumps."""
    if len(rows) < MIN_PRESENT:
        return None
    fps = fps or run.fps or 10.0
    f = run.frames[rows].astype(np.float64)
    boxes, kps = run.boxes[rows], run.keypoints[rows]
    if not _continuous(f, boxes):
        return None
    pos = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    h = max(float(np.median(boxes[:, 3] - boxes[:, 1])), 1.0)
    k = min(SMOOTH, len(f))
    p0, p1 = pos[:k].mean(axis=0), pos[-k:].mean(axis=0)
    disp = p1 - p0
    speed = float(np.hypot(*disp) / h / max((f[-k:].mean() - f[:k].mean()) / fps, 1e-6))
    ank = ((kps[:, _L_ANKLE, 2] >= KEYPOINT_SCORE) & (kps[:, _R_ANKLE, 2] >= KEYPOINT_SCORE)
           & _inside(kps[:, _L_ANKLE, :2], boxes) & _inside(kps[:, _R_ANKLE, :2], boxes))
    sep = (kps[:, _L_ANKLE, :2] - kps[:, _R_ANKLE, :2]) / h
    stride = float(np.sqrt(sep[ank].var(axis=0).sum())) if ank.sum() >= 4 else 0.0
    direction = float(np.degrees(np.arctan2(disp[1], disp[0])) % 360.0)
    return {"speed": speed, "stride": stride, "legs": bool(ank.mean() >= 0.5), "direction": direction, "height": h}


def rule(m: dict | None) -> int:
    """The label index of a window's measures (``-1``: no label)."""
    if m is None:
        return -1
    if m["speed"] >= WALK_SPEED or (m["speed"] >= SLOW_SPEED and m["stride"] >= STEP_STRIDE and m["legs"]):
        return ACTION_LABELS.index(_HEADINGS[int(((m["direction"] + 45.0) % 360.0) // 90.0)])
    return ACTION_LABELS.index("standing")


def label_windows(run: TeacherRun, window: int = WINDOW) -> dict[int, int]:
    """``{row: label}``: the label of each detection's track over the window ending at its frame."""
    out: dict[int, int] = {}
    for rows in run.tracks().values():
        f = run.frames[rows]
        for k, r in enumerate(rows):
            sel = rows[(f > f[k] - window) & (f <= f[k])]
            out[int(r)] = rule(window_measures(run, sel))
    return out


def contact_sheets(run: TeacherRun, labels: dict[int, int], out_dir, *, video=None, frames: range = range(0, 600),
                   per_label: int = 12, seed: int = 0) -> list[Path]:
    """One PNG per label: ``per_label`` random windows of that label (frames in ``frames`` only), each
    shown as the person's crop at the window's first, middle and last frame, with its measures."""
    import cv2

    from ssb.resources import read_video_frames, vtest_path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tracks = run.tracks()
    by_track = {int(r): tid for tid, rows in tracks.items() for r in rows}
    picks: dict[int, list[int]] = {}
    for lab in range(len(ACTION_LABELS)):
        rows = [r for r, v in labels.items() if v == lab and run.frames[r] in frames]
        if rows:
            picks[lab] = sorted(rng.choice(rows, size=min(per_label, len(rows)), replace=False).tolist())
    needed = set()
    windows = {}
    for lab, rows in picks.items():
        for r in rows:
            t_rows = tracks[by_track[r]]
            f = run.frames[t_rows]
            sel = t_rows[(f > run.frames[r] - WINDOW) & (f <= run.frames[r])]
            show = [sel[0], sel[len(sel) // 2], sel[-1]]
            windows[r] = show
            needed.update(int(run.frames[s]) for s in show)
    images = dict(read_video_frames(video or vtest_path(), sorted(needed)))
    paths = []
    for lab, rows in picks.items():
        tiles = []
        for r in rows:
            crops = []
            for s in windows[r]:
                x0, y0, x1, y1 = run.boxes[s]
                cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * 1.6
                img = images[int(run.frames[s])]
                m = np.array([[96 / side, 0, 48 - cx * 96 / side], [0, 96 / side, 48 - cy * 96 / side]])
                crops.append(cv2.warpAffine(img, m, (96, 96)))
            tile = np.concatenate(crops, axis=1)
            meas = window_measures(run, tracks[by_track[r]][(run.frames[tracks[by_track[r]]] > run.frames[r] - WINDOW)
                                                            & (run.frames[tracks[by_track[r]]] <= run.frames[r])])
            text = f"f{int(run.frames[r])} v{meas['speed']:.2f} s{meas['stride']:.2f} d{meas['direction']:.0f}"
            cv2.putText(tile, text, (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 0), 1, cv2.LINE_AA)
            if lab:  # the heading, as an arrow on the last crop
                a = np.radians(meas["direction"])
                cv2.arrowedLine(tile, (240, 80), (int(240 + 20 * np.cos(a)), int(80 + 20 * np.sin(a))), (255, 255, 0),
                                2, tipLength=0.4)
            tiles.append(tile)
        while len(tiles) % 3:
            tiles.append(np.zeros_like(tiles[0]))
        sheet = np.concatenate([np.concatenate(tiles[i : i + 3], axis=1) for i in range(0, len(tiles), 3)], axis=0)
        p = out_dir / f"teacher_{ACTION_LABELS[lab]}.png"
        cv2.imwrite(str(p), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        paths.append(p)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ssb.recipes.action_teacher", description=__doc__.split("\n")[0])
    p.add_argument("--sheets", default=None, help="write one contact sheet per label (training frames) here")
    p.add_argument("--last-frame", type=int, default=599, help="last frame the statistics cover (training: 599)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    run = run_teacher(progress=not args.no_progress)
    labels = label_windows(run)
    train = range(0, args.last_frame + 1)
    counts = np.bincount([v for r, v in labels.items() if v >= 0 and run.frames[r] in train],
                         minlength=len(ACTION_LABELS))
    print(f"teacher: {len(run.frames)} person detections, {len(run.tracks())} tracks")
    print("labels (frames 0..%d): " % args.last_frame + ", ".join(f"{n} {c}" for n, c in zip(ACTION_LABELS, counts)))
    if args.sheets:
        for path in contact_sheets(run, labels, args.sheets, frames=train):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
