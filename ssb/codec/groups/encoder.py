"""``ssb.grouped`` encoder: background + one independently decodable group per object.

Each frame is coded as one ``BACKGROUND`` unit (index: ``group_id`` 0): the split features of the
frame with every object's pixels filled (``layout.background_fill``), over the full split grid;
then per group ``g`` (one per object instance; index: ``group_id`` g, ``object_id``, ``class_id``
when known, ``bbox`` of its mask, ``score``) a ``GROUP_MASK`` unit (its lossless mask) and an
``OBJECT`` unit: the split features of a window of the grid around the mask, computed from the
frame with every pixel OUTSIDE the mask filled (``layout.fill``), coded by the same codec with
its own hyperprior strings.

**Group independence (exact).**  Group ``g``'s input is ``fill_outside(frame, mask_g)``: its
window, its teacher-front features and its bits are a function of ``g``'s mask and of the pixels
inside it only, and decoding it reads only its own units.  (Batch-1 calls everywhere, so the
arithmetic never depends on what else is in the frame.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssb.codec.base import EncodeStats, StreamEncoder
from ssb.codec.group_masks import GroupInfo, check_labels, describe_groups, labels_from_detections
from ssb.codec.groups.layout import GroupLayout, front_window, group_window, masked_input
from ssb.codec.image import ObjectFn, size_metadata, stream_header
from ssb.codec.mask_coding import mask_bbox, pack_group_mask
from ssb.codec.payload import pack_features, pack_window
from ssb.errors import MalformedFieldError
from ssb.format import SequenceHeader, UnitType

__all__ = ["GroupEncoder", "GroupEncodeStats", "encode_group", "CODEC_ID"]

CODEC_ID = "ssb.grouped"


@torch.no_grad()
def encode_group(codec, front, image: np.ndarray, mask: np.ndarray, level: int, layout: GroupLayout
                 ) -> tuple[bytes, tuple[int, int, int, int]]:
    """``OBJECT`` payload and window of one group: a function of ``mask`` and ``image[mask]`` only."""
    box = mask_bbox(mask)
    if box is None:
        raise MalformedFieldError("a group mask must hold at least one pixel", field="mask")
    window = group_window(box, image.shape[:2], layout)
    feats = front_window(front, masked_input(image, mask, layout.input_size, layout.fill), window, layout)
    item = codec.compress(feats, level)[0]
    return pack_window(window[0], window[1], item), window


@dataclass
class GroupEncodeStats(EncodeStats):
    """:class:`EncodeStats` plus groups and mask-box pixels."""

    groups: int = 0
    mask_pixels: int = 0  #: pixels of the masks' bounding boxes (what the mask coder codes)

    @property
    def background_bytes(self) -> int:
        return self.bytes_by_type.get("BACKGROUND", 0)

    @property
    def object_bytes(self) -> int:
        return self.bytes_by_type.get("OBJECT", 0)

    @property
    def mask_bytes(self) -> int:
        return self.bytes_by_type.get("GROUP_MASK", 0)

    @property
    def feature_bytes(self) -> int:
        return self.background_bytes + self.object_bytes

    @property
    def mask_bits_per_pixel(self) -> float:
        """Mask bits per mask-box pixel."""
        return 8.0 * self.mask_bytes / max(self.mask_pixels, 1)


class GroupEncoder(StreamEncoder):
    """Encode frames as grouped SSB frames (background + one unit pair per object).

    ``detector`` (split features of the ORIGINAL frame -> boxes in frame pixels) makes the groups
    when no ``labels`` image is given, and names the class of given groups; for a video it is
    masked by MOG2 foreground (a static camera; :attr:`warmup` frames of history are fed through
    :meth:`observe` before the first coded frame), for still images by the boxes themselves.
    ``quality`` codes the groups and ``background_quality`` (default: ``quality``) the background.
    A frame's ``info["labels"]`` (a label image) overrides ``labels`` for that frame.
    """

    codec_id = CODEC_ID
    #: frames of background-subtraction history wanted before the first coded frame of a video
    warmup = 100

    def __init__(self, models, *, quality: int = 3, background_quality: int | None = None,
                 detector: ObjectFn | None = None, labels: np.ndarray | None = None, min_score: float = 0.5,
                 fill: str = "grey", background_fill: str = "grey"):
        super().__init__(models)
        self.stats = GroupEncodeStats()
        self.codec = models.codec()
        self.level = int(quality)
        self.background_level = self.level if background_quality is None else int(background_quality)
        for q in (self.level, self.background_level):
            self.codec._check_level(q)
        self.detector = detector
        self.labels = labels
        self.min_score = float(min_score)
        self.layout = GroupLayout.for_codec(self.codec, fill=fill, background_fill=background_fill)
        self._foreground = None

    def header(self, first) -> SequenceHeader:
        h, w = first.image.shape[:2]
        extra = {"groups": self.layout.metadata()} if self.layout.metadata() else {}
        return stream_header(self.codec_id, self.codec, w, h, first.fps, **extra)

    def observe(self, frame) -> np.ndarray | None:
        """Feed a video frame to the foreground model (history before the first coded frame too)."""
        if not frame.video or self.labels is not None:
            return None
        if self._foreground is None:
            from ssb.codec.group_masks import ForegroundModel

            self._foreground = ForegroundModel()
        return self._foreground.apply(frame.image)

    @torch.no_grad()
    def groups_of(self, image: np.ndarray, foreground: np.ndarray | None, labels: np.ndarray | None = None
                  ) -> tuple[np.ndarray, list[GroupInfo]]:
        """The frame's label image (``labels``, else the encoder's, else from the detector) and group
        descriptions."""
        from ssb.backbones.ssd_mobilenet_v2 import preprocess

        shape = image.shape[:2]
        front = self.models.front()
        dets = self.detector(front(preprocess([image], size=self.layout.input_size)), [shape])[0] \
            if self.detector else None
        fixed = self.labels if labels is None else labels
        if fixed is not None:
            labels = check_labels(fixed, shape)
            return labels, describe_groups(labels, dets)
        if dets is None:
            raise MalformedFieldError("grouping a frame without a label image needs the encoder-side detector",
                                      field="groups")
        return labels_from_detections(dets, shape, foreground, min_score=self.min_score)

    @torch.no_grad()
    def encode(self, writer, frame) -> None:
        """Append one fragment: BACKGROUND, then GROUP_MASK + OBJECT per group."""
        image = np.asarray(frame.image)
        h, w = image.shape[:2]
        labels, infos = self.groups_of(image, self.observe(frame), frame.info.get("labels"))
        lay, front, st = self.layout, self.models.front(), self.stats
        writer.begin_frame(frame.index, pts=frame.pts, metadata=size_metadata(writer, h, w))
        bg_input = masked_input(image, labels == 0, lay.input_size, lay.background_fill)
        payload = pack_features(self.codec.compress(front(bg_input), self.background_level)[0])
        writer.add_unit(UnitType.BACKGROUND, payload, group_id=0)
        st.add("BACKGROUND", len(payload))
        for k, info in enumerate(infos):
            mask = labels == info.group_id
            x0, y0, x1, y1 = mask_bbox(mask)
            attrs = {"object_id": k, "group_id": info.group_id, "bbox": (float(x0), float(y0), float(x1), float(y1))}
            if info.class_id is not None:
                attrs.update(class_id=info.class_id, score=min(max(info.score, 0.0), 1.0))
            mask_payload = pack_group_mask(mask)
            writer.add_unit(UnitType.GROUP_MASK, mask_payload, **attrs)
            obj_payload, _ = encode_group(self.codec, front, image, mask, self.level, lay)
            writer.add_unit(UnitType.OBJECT, obj_payload, **attrs)
            st.add("GROUP_MASK", len(mask_payload))
            st.add("OBJECT", len(obj_payload))
            st.mask_pixels += (x1 - x0) * (y1 - y0)
            st.groups += 1
        writer.end_frame()
        st.frames += 1
        st.pixels += h * w
        st.objects += len(infos)
