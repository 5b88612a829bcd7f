"""The contract every stream codec meets: a stateful encoder and a stateful decoder over the container.

An **encoder** turns frames (:class:`ssb.media.Frame`) into fragments, one call per frame, keeping
whatever state prediction needs (closed loop: it predicts from what its decoder will have)::

    enc = registry.encoder("ssb.image", models, quality=3)
    with Writer(path, enc.header(first_frame)) as w:
        for frame in frames:
            enc.encode(w, frame)

A **decoder** is made for one open stream; :meth:`StreamDecoder.plan` turns a query into the
frames to decode, in stream order, each with exactly the units it needs (reference frames
included, from the container's dependency selection), and :meth:`StreamDecoder.decode` decodes
one step, holding its references as it goes (CompressAI's ``decode_inter(x_ref, ...)`` with the
reference kept inside)::

    dec = registry.decoder(bs, models)
    for step in dec.plan(frames=range(10, 20), need={"features"}):
        df = dec.decode(step)          # DecodedFrame; step.output says whether it was asked for
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ssb.errors import MalformedFieldError

if TYPE_CHECKING:  # pragma: no cover
    from ssb.backbones.features import FeatureInfo
    from ssb.format import FrameEntry, SequenceHeader, UnitEntry, Writer

__all__ = ["DecodedFrame", "Step", "StreamDecoder", "StreamEncoder", "EncodeStats", "frame_size"]

FEATURES = "features"
MOTION = "motion"


@dataclass
class DecodedFrame:
    """What a decoder hands to the task heads for one frame (no pixels).

    ``features``: ``{name: tensor [1, C, h, w]}`` as described by the decoder's ``feature_info``
    (empty on a motion-only decode); ``motion``: the frame's decoded motion (``None`` for key
    frames or when not asked); ``objects``: what the index says about the frame's objects
    (descriptors and attributed units: ``object_id``, ``class_id``, ``bbox``, ``score``).
    """

    frame_index: int
    image_size: tuple[int, int]
    features: dict[str, Any] = field(default_factory=dict)
    level: int | None = None
    payload_bytes: int = 0
    pts: int | None = None
    key: bool = True
    motion: Any = None
    objects: list[Any] = field(default_factory=list)
    fps: float = 0.0  #: the stream's frame rate (0 when unknown)


@dataclass
class Step:
    """One frame of a decode plan: the units to read and whether the frame was asked for."""

    frame: FrameEntry
    units: list[UnitEntry]
    output: bool = True
    need: frozenset = frozenset({FEATURES})

    @property
    def nbytes(self) -> int:
        return sum(u.size for u in self.units)


def frame_size(bs, frame) -> tuple[int, int]:
    """(height, width) of a frame: its own metadata, else the sequence's picture size."""
    meta = frame.metadata or {}
    try:
        return int(meta.get("height", bs.header.height)), int(meta.get("width", bs.header.width))
    except (TypeError, ValueError):
        raise MalformedFieldError(f"frame {frame.frame_index}: bad size in its metadata",
                                  field=f"frame[{frame.frame_index}].metadata") from None


def index_objects(frame) -> list[Any]:
    """The objects a frame's index describes: its descriptors, then one attributed unit per object id."""
    seen, out = set(), []
    for o in [*frame.descriptors, *frame.units]:
        if o.class_id is None and o.object_id is None:
            continue
        key = ("object", o.object_id) if o.object_id is not None else ("entry", id(o))
        if key not in seen:
            seen.add(key)
            out.append(o)
    return out


@dataclass
class EncodeStats:
    """Bytes written by part (payloads), frames and pixels of an encode."""

    frames: int = 0
    pixels: int = 0
    bytes_by_type: dict[str, int] = field(default_factory=dict)
    objects: int = 0
    tracks: int = 0
    stream_bytes: int = 0  #: the whole file, container included (set when the writer closes)

    def add(self, kind: str, n: int) -> None:
        self.bytes_by_type[kind] = self.bytes_by_type.get(kind, 0) + n

    @property
    def payload_bytes(self) -> int:
        return sum(self.bytes_by_type.values())

    @property
    def bpp(self) -> float:
        """Bits per original pixel of the whole stream, container included (payloads if not closed)."""
        return 8.0 * (self.stream_bytes or self.payload_bytes) / max(self.pixels, 1)


class StreamEncoder:
    """Base of the encoders: subclasses set :attr:`codec_id` and implement :meth:`header` and :meth:`encode`."""

    codec_id: ClassVar[str] = ""

    def __init__(self, models, **options):
        self.models = models
        self.stats = EncodeStats()

    def header(self, first) -> SequenceHeader:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, writer: Writer, frame) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class StreamDecoder:
    """Base of the decoders of one open stream.

    Subclasses set :attr:`codec_id`, :attr:`feature_types` (the unit types whose payloads make
    the features) and implement :meth:`decode`; the default :meth:`plan` selects those types per
    frame through the container (following frame references).
    """

    codec_id: ClassVar[str] = ""
    #: what heads can ask of this decoder
    provides: ClassVar[frozenset[str]] = frozenset({FEATURES})
    feature_types: ClassVar[tuple[int, ...]] = ()

    def __init__(self, bs, models):
        self.bs = bs
        self.models = models
        #: the id of the codec model that coded the stream (heads trained behind another are refused)
        self.model_id: str | None = None

    @property
    def feature_info(self) -> tuple[FeatureInfo, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def unit_types(self, need: frozenset[str]) -> tuple[int, ...]:
        """The unit types a decode for ``need`` reads."""
        return self.feature_types

    def plan(self, *, frames: Iterable[int] | None = None, classes=None, objects=None,
             need: Iterable[str] = (FEATURES,)) -> Iterator[Step]:
        """The frames to decode for a query, in stream order, with the units each needs."""
        need = self.check_need(need)
        sel = self.bs.select(frames=frames, types=self.unit_types(need), include_shared=False)
        return self._steps(sel, set(sel.targets), need)

    def check_need(self, need: Iterable[str]) -> frozenset[str]:
        """``need`` as a set, refused when this decoder cannot provide it."""
        need = frozenset(need)
        unknown = need - self.provides
        if unknown:
            raise MalformedFieldError(f"{self.codec_id} streams provide {sorted(self.provides)}, not "
                                      f"{sorted(unknown)}", field="need")
        return need

    def _steps(self, sel, targets: set[int], need: frozenset = frozenset({FEATURES})) -> Iterator[Step]:
        by_frame: dict[int, list] = {}
        for u in sel.units:
            by_frame.setdefault(u.frame, []).append(u)
        for fi in sel.frames:
            yield self.step(self.bs.frame(fi), by_frame.get(fi, []), fi in targets, need)

    def every_frame(self, units, frames: Iterable[int] | None, need: frozenset = frozenset({FEATURES})
                    ) -> Iterator[Step]:
        """One step per frame of ``frames`` (all: ``None``), in stream order, each with its ``units``
        (a frame none of them belongs to gets a step without units: its result is then empty)."""
        by_frame: dict[int, list] = {}
        for u in sorted(units, key=lambda e: e.number):
            by_frame.setdefault(u.frame, []).append(u)
        allowed = None if frames is None else set(frames)
        for fr in self.bs.frames:
            if allowed is None or fr.frame_index in allowed:
                yield self.step(fr, by_frame.get(fr.frame_index, []), True, need)

    def step(self, fr, units: list, output: bool, need: frozenset = frozenset({FEATURES})) -> Step:
        """The step decoding ``units`` of frame ``fr``; its byte ranges are prefetched (one coalesced
        request per frame on a remote stream, nothing on a local one)."""
        self.bs.prefetch(u.span for u in units)
        return Step(fr, units, output, need)

    def decode(self, step: Step) -> DecodedFrame:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset(self) -> None:
        """Forget every reference (a new random access)."""
