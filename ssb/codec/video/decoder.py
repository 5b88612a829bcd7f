"""``ssb.video`` decoder: stateful, it holds the decoded latents of the reference frames as it goes.

A plan for features walks each asked frame's dependency chain (the container's selection: its
key frame and the frames between); reference frames are decoded to their latent only (entropy
decoding and integer additions), the synthesis network runs only on the frames asked for.  A
plan for motion alone (``need={"motion"}``) reads only the MOTION units of the frames asked for:
no BASE or RESIDUAL byte, no reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from ssb.codec.base import DecodedFrame, Step, StreamDecoder, frame_size, index_objects
from ssb.codec.image import codec_of, feature_info_of
from ssb.codec.payload import located, model_context, parse_features
from ssb.codec.video.motion import MotionField, latent_motion, unpack_motion, warp_latent
from ssb.errors import MalformedFieldError, ModelMismatchError
from ssb.format import UnitType
from ssb.format.payloads import RESIDUAL

__all__ = ["VideoDecoder"]

_FEATURES = (int(UnitType.BASE), int(UnitType.MOTION), int(UnitType.RESIDUAL))


class VideoDecoder(StreamDecoder):
    """Decoder of ``ssb.video`` streams (see the module doc)."""

    codec_id = "ssb.video"
    provides = frozenset({"features", "motion"})
    feature_types = _FEATURES

    def __init__(self, bs, models):
        super().__init__(bs, models)
        self.codec = codec_of(bs, models)
        self.model_id = self.codec.identity.id
        video = (bs.header.metadata or {}).get("video")
        if not isinstance(video, dict) or not isinstance(video.get("model"), str):
            raise ModelMismatchError("an ssb.video stream names its video model (metadata video.model)",
                                     field="sequence_header.metadata.video")
        self.coder = models.model("video", video["model"], behind=self.model_id)
        self.object_motion = bool(video.get("object_motion"))
        from ssb.backbones.features import front_card

        card = front_card(self.codec.front_name)
        self.grid, self.input_size, self.stride = card.grid, card.input_size, card.feature_info[0].reduction
        self._refs: dict[int, tuple[torch.Tensor, int]] = {}  # frame index -> (decoded latent, level)
        h = bs.header
        self.fps = h.fps_num / h.fps_den if h.fps_num else 0.0

    @property
    def feature_info(self):
        return feature_info_of(self.codec)

    def unit_types(self, need: frozenset[str]) -> tuple[int, ...]:
        return _FEATURES if "features" in need else (int(UnitType.MOTION),)

    def plan(self, *, frames: Iterable[int] | None = None, classes=None, objects=None,
             need: Iterable[str] = ("features",)) -> Iterator[Step]:
        need = self.check_need(need)
        follow = "features" in need
        if not follow and self.object_motion and (classes is not None or objects is not None):
            # motion of some objects: their own MOTION units (and the index), nothing else
            sel = self.bs.select(frames=frames, classes=classes, objects=objects, include_shared=False,
                                 follow_refs=False)
        else:
            sel = self.bs.select(frames=frames, types=self.unit_types(need), include_shared=False, follow_refs=follow)
        if sel.missing:
            raise MalformedFieldError(f"frames {sel.missing[:5]} are references of the frames asked for but are not "
                                      "in the stream (lost or cut)", field="frames")
        return self._steps(sel, set(sel.targets), need)

    def reset(self) -> None:
        self._refs.clear()

    @torch.no_grad()
    def decode(self, step: Step) -> DecodedFrame:
        fr = step.frame
        size = frame_size(self.bs, fr)
        need = step.need
        units: dict[int, object] = {}
        for u in step.units:
            if not u.attributed:
                if int(u.type) in units:
                    raise MalformedFieldError(f"frame {fr.frame_index} holds more than one frame-level "
                                              f"{UnitType(int(u.type)).name} unit", offset=u.offset - u.header_size,
                                              field=f"unit[{u.number}]")
                units[int(u.type)] = u
        motion = self._motion(step, units, size)
        df = DecodedFrame(fr.frame_index, size, {}, None, sum(u.length for u in step.units), fr.pts, fr.key,
                          motion, index_objects(fr), self.fps)
        if "features" not in need:
            return df
        y_hat, level = self._latent(step, units, motion)
        self._refs[fr.frame_index] = (y_hat, level)
        for old in [k for k in self._refs if k < fr.frame_index]:  # references are the previous frame
            del self._refs[old]
        df.level = level
        if step.output:
            df.features["split"] = self.codec.synthesize(y_hat, level, self.grid)
        return df

    def _motion(self, step: Step, units: dict, size) -> MotionField | None:
        """The frame's motion field: its MOTION unit, with the objects' own MOTION units (streams with
        ``object_motion``) pasted over the grid; ``None`` when the step holds no MOTION unit."""
        parts = [u for u in step.units if int(u.type) == int(UnitType.MOTION)
                 and (u.attributed or u is units.get(int(UnitType.MOTION)))]
        if not parts:
            return None
        fields = [unpack_motion(u.payload(), ctx={"grid": self.grid}, gaussian=self.coder.gaussian_conditional,
                                frame_size=size, input_size=self.input_size, stride=self.stride, offset=u.offset,
                                field=f"unit[{u.number}]") for u in parts]
        if len(fields) == 1 and fields[0].vectors.shape[1:] == tuple(self.grid):
            return fields[0]
        vectors = np.zeros((2, *self.grid), dtype=np.int16)
        for f in sorted(fields, key=lambda f: f.vectors.shape[1] * f.vectors.shape[2], reverse=True):
            rows, cols = f.vectors.shape[1:]
            vectors[:, f.row0: f.row0 + rows, f.col0: f.col0 + cols] = f.vectors  # the frame's field first
        return MotionField(vectors, tuple(size), self.input_size, self.stride)

    def _latent(self, step: Step, units: dict, motion) -> tuple[torch.Tensor, int]:
        fr = step.frame
        ctx = model_context(self.codec, self.grid)
        base = units.get(int(UnitType.BASE))
        if fr.key:
            if base is None:
                raise MalformedFieldError(f"key frame {fr.frame_index} has no BASE unit", offset=fr.offset,
                                          field=f"frame[{fr.frame_index}]")
            item, strings = parse_features(base.payload(), ctx=ctx, offset=base.offset, field=f"unit[{base.number}]")
            with located(strings):
                return self.codec.decode_latent(item), item.level
        res = units.get(int(UnitType.RESIDUAL))
        if res is None or len(fr.refs) != 1:
            raise MalformedFieldError(f"predicted frame {fr.frame_index} needs one reference and a RESIDUAL unit",
                                      offset=fr.offset, field=f"frame[{fr.frame_index}]")
        ref = self._refs.get(fr.refs[0])
        if ref is None:
            raise MalformedFieldError(f"frame {fr.frame_index} predicts from frame {fr.refs[0]}, which was not decoded "
                                      "first (decode the dependency chain: plan() does)", field=f"frame[{fr.frame_index}]")
        ref_latent, ref_level = ref
        rec, _ = RESIDUAL.unpack(memoryview(res.payload()), base=res.offset, path=f"unit[{res.number}].payload",
                                 ctx=ctx)
        if rec["level"] != ref_level:
            raise MalformedFieldError(f"residual at level {rec['level']} over a reference at level {ref_level}",
                                      offset=rec.offsets["level"], field=f"unit[{res.number}].payload.level")
        pred = ref_latent
        if rec["flags"] & 1:
            if motion is None:
                raise MalformedFieldError("a motion-compensated residual without a MOTION unit",
                                          offset=rec.offsets["flags"], field=f"unit[{res.number}].payload.flags")
            pred = warp_latent(ref_latent, latent_motion(motion, tuple(ref_latent.shape[-2:])))
        path = f"unit[{res.number}].payload"
        with located({k: (rec.offsets[k], f"{path}.{k}") for k in ("z", "y")}):
            r = self.coder.decompress(bytes(rec["z"]), bytes(rec["y"]), tuple(ref_latent.shape[-2:]))
        return pred + r, ref_level
