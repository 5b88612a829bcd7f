"""``ssb.video`` encoder: key frames intra-coded, the others predicted, closed loop, with object tracks.

Per frame the teacher front runs on the ORIGINAL pixels and the codec's analysis gives the gained
latent ``y`` (float).  A **key frame** (the first, then every ``gop`` frames, and any frame whose
prediction would cost more than ``intra_ratio`` of its intra coding: a scene cut) is coded as
``ssb.image`` codes a frame: one BASE unit.  A **predicted frame** refers to the previous frame:
the prediction is the previous frame's *decoded* latent (exactly what the decoder will hold),
warped by the coded motion when that predicts better (``RESIDUAL`` flag bit 0), and the RESIDUAL
unit codes ``r = round(y - prediction)`` with a dead zone: elements whose change is below
``deadzone`` quantization steps are not coded (static regions cost nearly nothing; the error
such an element carries stays below ``deadzone`` steps and cannot accumulate, since the next
residual is taken against the reference as decoded).  Every frame after the first also carries
its MOTION unit (motion relative to the previous frame, for analysis and prediction).

Objects: the encoder-side detector's boxes, linked into tracks (:mod:`ssb.codec.tracking`), are
described in each frame's index with their track id as object id.  With ``object_motion`` each
tracked object's motion is a MOTION unit of its own, attributed to the track in the index (the
window of split cells its box covers), and the frame-level MOTION unit holds the rest of the field
(the object cells zeroed): "how did track 7 move" reads track 7's MOTION units only.  A decoder
that predicts merges them back into the whole field, so the prediction is the same.
"""

from __future__ import annotations

import torch

from ssb.codec.base import StreamEncoder
from ssb.codec.image import ImageEncoder, size_metadata, stream_header
from ssb.codec.payload import pack_features
from ssb.codec.tracking import Tracker
from ssb.codec.video.motion import MotionEstimator, MotionField, latent_motion, pack_motion, warp_latent
from ssb.errors import MalformedFieldError
from ssb.format import SequenceHeader, UnitType
from ssb.format.payloads import RESIDUAL

__all__ = ["VideoEncoder", "CODEC_ID", "DEFAULT_GOP", "DEFAULT_DEADZONE", "DEADZONES", "deadzone_for", "residual_of"]

CODEC_ID = "ssb.video"
#: a key frame every 64 frames: 6.4 s at vtest's 10 fps (a static camera changes little)
DEFAULT_GOP = 64
#: residual dead zone in quantization steps, per quality level (tuned on vtest training frames
#: 420-594, never on the held-out 620-794): coarse levels have large steps, so a skipped element
#: costs more accuracy there and the zone is narrower; from level 3 on one step is best
DEADZONES = (0.625, 0.75, 0.875, 1.0)
#: ``None``: the per-level default (:data:`DEADZONES`)
DEFAULT_DEADZONE = None


def deadzone_for(level: int) -> float:
    """The default residual dead zone of quality ``level``."""
    return DEADZONES[min(int(level), len(DEADZONES) - 1)]
FLAG_MC = 1


def residual_of(y: torch.Tensor, ref: torch.Tensor, motion, deadzone: float, motion_compensation: bool = True
                ) -> tuple[int, torch.Tensor, torch.Tensor]:
    """``(flags, integer residual, prediction)`` of a predicted frame's gained latent ``y`` over the
    decoded reference latent ``ref``: the warped reference when it predicts better (5 % lower L1),
    and the dead zone applied.  The encoder and the video model's training recipe share it."""
    pred, flags = ref, 0
    if motion_compensation and motion is not None and motion.moving.any():
        warped = warp_latent(ref, latent_motion(motion, tuple(ref.shape[-2:])))
        if float((y - warped).abs().sum()) < 0.95 * float((y - ref).abs().sum()):
            pred, flags = warped, FLAG_MC
    d = y - pred
    return flags, torch.where(d.abs() < deadzone, torch.zeros_like(d), torch.round(d)), pred


class VideoEncoder(StreamEncoder):
    """Encode a clip as an ``ssb.video`` stream (see the module doc)."""

    codec_id = CODEC_ID

    def __init__(self, models, *, quality: int = 3, detector=None, gop: int = DEFAULT_GOP,
                 deadzone: float | None = DEFAULT_DEADZONE, intra_ratio: float = 0.8, min_score: float = 0.3,
                 motion_compensation: bool = True, object_motion: bool = False):
        super().__init__(models)
        if int(gop) < 1:
            raise MalformedFieldError(f"gop must be >= 1, got {gop}", field="gop")
        if deadzone is not None and not 0.5 <= float(deadzone) <= 8:
            raise MalformedFieldError(f"deadzone must be in [0.5, 8] quantization steps, got {deadzone}",
                                      field="deadzone")
        self._intra = ImageEncoder(models, quality=quality, detector=detector, min_score=min_score)
        self.stats = self._intra.stats
        self.codec, self.level = self._intra.codec, self._intra.level
        self.coder = models.get("video", behind=self.codec.identity.id)
        self.gop, self.intra_ratio = int(gop), float(intra_ratio)
        self.deadzone = deadzone_for(self.level) if deadzone is None else float(deadzone)
        self.motion_compensation = bool(motion_compensation)
        self.object_motion = bool(object_motion)
        if self.object_motion and self._intra.detector is None:
            raise MalformedFieldError("object_motion needs the encoder-side detector (index objects)",
                                      field="object_motion")
        from ssb.backbones.features import front_card

        card = front_card(self.codec.front_name)
        self.grid = card.grid
        self._motion = MotionEstimator(card.grid, card.input_size, card.feature_info[0].reduction)
        self._tracker = Tracker()
        self._ref: torch.Tensor | None = None
        self._ref_index: int | None = None
        self._since_key = 0
        self.key_frames = 0

    def header(self, first) -> SequenceHeader:
        h, w = first.image.shape[:2]
        video = {"model": self.coder.identity.id, **({"object_motion": True} if self.object_motion else {})}
        return stream_header(self.codec_id, self.codec, w, h, first.fps, object_ids="tracks", video=video)

    def observe(self, frame) -> None:
        """Frames before the first coded one (``--frames A:B`` of a clip) prime the motion estimate."""
        self._motion(frame.image)

    @torch.no_grad()
    def encode(self, writer, frame) -> None:
        image = frame.image
        h, w = image.shape[:2]
        split = self._intra.split(image)
        y = self.codec.analyze_latent(split, self.level)
        motion = self._motion(image)
        intra, y_intra = self.codec.code_latent(y, self.level, self.grid)
        intra_payload = pack_features(intra)
        key = self._ref is None or self._since_key >= self.gop - 1 or (h, w) != (writer.header.height,
                                                                            writer.header.width)
        pred_units = None if key else self._predict(y, motion)
        if pred_units is not None and len(pred_units[1]) > self.intra_ratio * len(intra_payload):
            pred_units = None  # a scene cut: prediction costs nearly what intra does
        refs = () if pred_units is None else (self._ref_index,)
        writer.begin_frame(frame.index, pts=frame.pts, metadata=size_metadata(writer, h, w), refs=refs)
        if pred_units is None:
            writer.add_unit(UnitType.BASE, intra_payload)
            self.stats.add("BASE", len(intra_payload))
            self._ref, self._since_key = y_intra, 0
            self.key_frames += 1
        else:
            self._since_key += 1
            self._ref = pred_units[2]
        objects = self._track(split, (h, w))
        own = self._write_motion(writer, motion, objects) if motion is not None else set()
        if pred_units is not None:
            writer.add_unit(UnitType.RESIDUAL, pred_units[1])
            self.stats.add("RESIDUAL", len(pred_units[1]))
        self._ref_index = frame.index
        for tid, label, box, score in objects:
            if tid not in own:
                writer.add_object(object_id=tid, class_id=label, bbox=box, score=score)
        writer.end_frame()
        self.stats.frames += 1
        self.stats.pixels += h * w

    def _predict(self, y: torch.Tensor, motion) -> tuple[int, bytes, torch.Tensor]:
        """``(flags, RESIDUAL payload, the decoder's latent)`` of a predicted frame."""
        flags, r, pred = residual_of(y, self._ref, motion, self.deadzone, self.motion_compensation)
        z_str, r_str = self.coder.compress(r)
        payload = RESIDUAL.pack({"version": 1, "level": self.level, "flags": flags, "z": z_str, "y": r_str})
        return flags, payload, pred + r

    def _write_motion(self, writer, motion, objects) -> set[int]:
        """The frame's MOTION unit(s); returns the track ids that got a MOTION unit of their own."""
        gaussian = self.coder.gaussian_conditional
        if not self.object_motion:
            payload = pack_motion(motion, gaussian)
            writer.add_unit(UnitType.MOTION, payload)
            self.stats.add("MOTION", len(payload))
            return set()
        windows = [(o, motion.cells_of(o[2])) for o in objects]
        rest = motion.vectors.copy()
        for _, (rs, cs) in windows:
            rest[:, rs, cs] = 0
        payload = pack_motion(MotionField(rest, motion.frame_size, motion.input_size, motion.stride), gaussian)
        writer.add_unit(UnitType.MOTION, payload)
        self.stats.add("MOTION", len(payload))
        for (tid, label, box, score), (rs, cs) in windows:
            part = MotionField(motion.vectors[:, rs, cs].copy(), motion.frame_size, motion.input_size, motion.stride,
                               rs.start, cs.start)
            payload = pack_motion(part, gaussian)
            writer.add_unit(UnitType.MOTION, payload, object_id=tid, class_id=label, bbox=box, score=score)
            self.stats.add("MOTION", len(payload))
        return {o[0] for o, _ in windows}

    def _track(self, split, size) -> list[tuple[int, int, tuple, float]]:
        """This frame's detections linked into tracks: ``(track id, class, box, score)``."""
        det = self._intra.detector
        if det is None:
            return []
        d = det(split, [size])[0]
        keep = d["scores"] >= self._intra.min_score
        boxes, labels, scores = d["boxes"][keep], d["labels"][keep], d["scores"][keep]
        ids = self._tracker.update(boxes.numpy(), labels.numpy())
        self.stats.objects += len(ids)
        self.stats.tracks = self._tracker.next_id - 1
        # boxes as the index stores them (integer pixels), so a decoder finds the same cells of an object
        return [(int(tid), int(label), tuple(float(round(v)) for v in box), min(max(score, 0.0), 1.0))
                for box, label, score, tid in zip(boxes.tolist(), labels.tolist(), scores.tolist(), ids)]
