"""The streaming, crash-safe writer (it writes version 2.1; 1.x streams are read, never written).

Each ``begin_frame`` ... ``end_frame`` pair becomes one self-contained fragment (one
FRAME_HEADER unit holding the frame fields and its index, then the content payloads) written and
flushed in one go, so whatever happens later, every fragment already written stays readable.

Atomicity (path targets): the stream is written to ``<path>.part``; a clean :meth:`Writer.close`
appends the END unit, fsyncs and renames it to ``<path>`` (``os.replace``).  A writer that raises
inside its ``with`` block, calls :meth:`Writer.abort` or is killed leaves ``<path>`` untouched
(absent if it was new) and ``<path>.part`` readable up to its last complete fragment;
:func:`recover` turns such a ``.part`` into a finished file.  Appending (``append=True``) writes in
place: a crash during an append leaves the fragments that existed before it, and every complete
fragment appended since, readable.
"""

from __future__ import annotations

import builtins
import dataclasses
import io
import os
import zlib
from typing import Any, BinaryIO

from ssb.errors import LimitExceededError, MalformedFieldError, TruncatedError, UnsupportedVersionError
from ssb.format.entries import as_int, descriptor_entry, unit_entry
from ssb.format.fragment import check_frame_size
from ssb.format.layout import (
    END,
    EXTENSION_HEADER,
    FRAME_HAS_METADATA,
    FRAME_HAS_PTS,
    FRAME_V2,
    INDEX_ENTRY_V2,
    PRESENT_SAME,
    SEQUENCE_HEADER,
    STRUCTURAL_TYPES,
    UNIT_HEADER_SIZE,
    VERSION,
    UnitType,
    pack_preamble,
    pack_unit_header,
)
from ssb.format.limits import DEFAULT_LIMITS, Limits
from ssb.format.model import SequenceHeader
from ssb.format.reader import open_bitstream
from ssb.format.syntax import load_json

__all__ = ["Writer", "recover"]

_MAX_FRAGMENT = 0xFFFF_FFFF
_STRUCTURAL_IDS = frozenset(int(t) for t in STRUCTURAL_TYPES)


class Writer:
    """Write an SSB stream frame by frame.

    Parameters
    ----------
    target:
        A path (written atomically through ``<path>.part``) or a writable binary file object
        (written from its current position, never closed by the writer; it need not be seekable).
    header:
        The :class:`SequenceHeader`; optional when appending (must then equal the file's).
    limits:
        The limits the stream must respect (default :class:`Limits`), checked on every call.
    append:
        Continue an existing 2.x stream at ``target`` (a path) in place: its END unit and any
        incomplete tail are cut off, new frames must have larger frame indices.
    fsync:
        ``os.fsync`` after every fragment (durable against power loss, slower). The file is
        always fsynced before the final rename.
    """

    def __init__(self, target, header: SequenceHeader | None = None, limits: Limits | None = None, *,
                 append: bool = False, fsync: bool = False):
        self.limits = limits or DEFAULT_LIMITS
        self._fsync = fsync
        self._frame: dict[str, Any] | None = None
        self._closed = False
        self._path: str | None = None
        self._part: str | None = None
        self._owns_file = False
        self.units_written = 0  # units in the stream so far (structural included)
        self.frames_written = 0
        self._last_frame: int | None = None
        self._written: set[int] = set()  # frame indices written (references must name one)
        if append:
            self._open_append(target, header)
            return
        if header is None:
            raise TypeError("Writer needs a SequenceHeader (or append=True)")
        seq_payload = _pack_sequence_header(header, self.limits)
        if isinstance(target, (str, os.PathLike)):
            self._path = os.fspath(target)
            self._part = self._path + ".part"
            self._f: BinaryIO = builtins.open(self._part, "wb")
            self._owns_file = True
        elif hasattr(target, "write") and not isinstance(target, io.TextIOBase):
            self._f = target
        else:
            raise TypeError(f"cannot write an SSB stream to {type(target).__name__}: give a path or a binary file")
        self.header = header
        self.offset = 0
        self._write(pack_preamble())
        self._write_unit(UnitType.SEQUENCE_HEADER, 0, seq_payload, "sequence_header")
        self.units_written = 1
        self._flush()

    # ------------------------------------------------------------------ frames
    def begin_frame(self, frame_index: int, pts: int | None = None, metadata: dict | None = None,
                    refs=()) -> None:
        """Open the fragment of ``frame_index`` (must exceed every earlier frame index).

        ``refs``: the frame indices (already written) this frame is predicted from; a frame with
        none decodes alone.  ``pts``: presentation time in microseconds.
        """
        self._check_open()
        if self._frame is not None:
            raise RuntimeError(f"frame {self._frame['frame_index']} is still open: call end_frame() first")
        path = f"frame[{frame_index}]"
        frame_index = as_int(frame_index, f"{path}.frame_index")
        pts = None if pts is None else as_int(pts, f"{path}.pts")
        if self._last_frame is not None and frame_index <= self._last_frame:
            raise MalformedFieldError(f"frame index {frame_index} must exceed the previous one ({self._last_frame})",
                                      field=f"{path}.frame_index")
        if self.frames_written >= self.limits.max_frames:
            raise LimitExceededError(f"more than Limits.max_frames={self.limits.max_frames} frames", field=path)
        ref_list = sorted({as_int(r, f"{path}.refs") for r in refs}, reverse=True)
        for r in ref_list:
            if r not in self._written:
                raise MalformedFieldError(f"frame {frame_index} refers to frame {r}, which is not in the stream",
                                          field=f"{path}.refs")
        values = {
            "frame_index": frame_index,
            "flags": (FRAME_HAS_PTS if pts is not None else 0) | (FRAME_HAS_METADATA if metadata else 0),
            "fragment_length": 1,
            "pts": pts,
            "refs": [frame_index - r for r in ref_list],
            "metadata": dict(metadata) if metadata else None,
            "entries": [],
        }
        FRAME_V2.pack(values, path=path, limits=self.limits)  # validates every field before anything is written
        check_frame_size(values["metadata"], self.limits, path=f"{path}.metadata")
        self._frame = {"frame_index": frame_index, "values": values, "payloads": [], "objects": 0, "size": 0}

    def add_unit(self, type: UnitType | int, payload, *, object_id: int | None = None, class_id: int | None = None,
                 group_id: int | None = None, bbox: tuple[float, float, float, float] | None = None,
                 score: float | None = None, flags: int = 0) -> int:
        """Add a unit; returns its number (its position in ``Bitstream.units`` when read back).

        Inside a frame the unit joins the open fragment and its attributes go to the fragment's
        index.  Outside a frame the unit is written at once as a sequence-level unit, which carries
        no attributes (e.g. METADATA or EXTENSION).  ``payload`` is any bytes-like object; METADATA
        payloads must be a JSON object and EXTENSION payloads must start with a namespace.
        Boxes are stored as integer pixels (rounded) in 0..65535 and scores in [0, 1] to 1/65535.
        """
        self._check_open()
        frame = self._frame
        where = (f"frame[{frame['frame_index']}].unit[{len(frame['values']['entries'])}]" if frame is not None
                 else f"unit[{self.units_written}]")
        type_id = as_int(type, f"{where}.type")
        if type_id in _STRUCTURAL_IDS or not 0 < type_id <= 0xFFFF:
            raise MalformedFieldError(f"unit type {type_id} cannot be added (structural, or not a u16 ≥ 1)",
                                      field=f"{where}.type")
        data = payload if isinstance(payload, bytes) else memoryview(payload).tobytes()
        if len(data) > self.limits.max_unit_size:
            raise LimitExceededError(f"payload of {len(data)} bytes, over Limits.max_unit_size="
                                     f"{self.limits.max_unit_size}", field=f"{where}.payload")
        _check_payload(type_id, data, self.limits, f"{where}.payload")
        if frame is None:
            if any(v is not None for v in (object_id, class_id, group_id, bbox, score)):
                raise MalformedFieldError("units outside a frame carry no index attributes; call begin_frame() "
                                          "first", field=where)
            header = pack_unit_header(type_id, flags, data, limits=self.limits, path=f"{where}.header")
            self._check_unit_count(1, where)
            self._write(header)
            self._write(data)
            self._flush()
            self.units_written += 1
            return self.units_written - 1
        entry = unit_entry(type_id, flags, data, zlib.crc32(data), object_id, class_id, group_id, bbox, score, where)
        self._add_entry(entry, where, data)
        return self.units_written + len(frame["payloads"])  # FRAME_HEADER unit + earlier units of the frame

    def add_object(self, *, object_id: int | None = None, class_id: int | None = None, group_id: int | None = None,
                   bbox: tuple[float, float, float, float] | None = None, score: float | None = None,
                   type: UnitType | int = UnitType.OBJECT) -> None:
        """Describe an object in the open frame's index with no unit of its own (it costs its entry only)."""
        self._check_open()
        frame = self._frame
        if frame is None:
            raise RuntimeError("add_object() needs an open frame: call begin_frame() first")
        where = f"frame[{frame['frame_index']}].object[{len(frame['values']['entries'])}]"
        entry = descriptor_entry(as_int(type, f"{where}.type"), object_id, class_id, group_id, bbox, score, where)
        self._add_entry(entry, where, None)

    def _add_entry(self, entry: dict, where: str, data: bytes | None) -> None:
        frame = self._frame
        entries = frame["values"]["entries"]
        if len(entries) >= self.limits.max_units_per_frame:
            raise LimitExceededError(f"more than Limits.max_units_per_frame={self.limits.max_units_per_frame} "
                                     "index entries", field=where)
        if entry.get("object_id") is not None and frame["objects"] >= self.limits.max_objects:
            raise LimitExceededError(f"more than Limits.max_objects={self.limits.max_objects} objects", field=where)
        if data is not None:
            self._check_unit_count(len(frame["payloads"]) + 2, where)  # + FRAME_HEADER, this unit
            if frame["size"] + len(data) > _MAX_FRAGMENT:
                raise LimitExceededError(f"fragment would exceed {_MAX_FRAGMENT} bytes", field=where)
        INDEX_ENTRY_V2.pack(entry, path=f"{where}.index", limits=self.limits)  # validates every attribute
        entries.append(entry)
        frame["objects"] += entry.get("object_id") is not None
        if data is not None:
            frame["payloads"].append(data)
            frame["size"] += len(data)

    def end_frame(self) -> None:
        """Write the open fragment (FRAME_HEADER with its index, then the payloads) and flush it."""
        self._check_open()
        frame = self._frame
        if frame is None:
            raise RuntimeError("no open frame: call begin_frame() first")
        path = f"frame[{frame['frame_index']}]"
        values = dict(frame["values"], entries=_share_attributes(frame["values"]["entries"]))
        length = 1
        for _ in range(4):  # fragment_length is a varint inside the payload it measures: iterate to a fixed point
            payload = FRAME_V2.pack(dict(values, fragment_length=length), limits=self.limits, validate=False)
            total = UNIT_HEADER_SIZE + len(payload) + frame["size"]
            if total == length:
                break
            length = total
        if length > _MAX_FRAGMENT or len(payload) > self.limits.max_unit_size:
            raise LimitExceededError(f"fragment of {length} bytes (header {len(payload)}) is over the limits",
                                     field=path)
        header = pack_unit_header(UnitType.FRAME_HEADER, 0, payload, limits=self.limits, path=f"{path}.header")
        self._write(header)
        self._write(payload)
        for data in frame["payloads"]:
            self._write(data)
        self._flush()
        self.units_written += 1 + len(frame["payloads"])
        self.frames_written += 1
        self._last_frame = frame["frame_index"]
        self._written.add(frame["frame_index"])
        self._frame = None

    # ------------------------------------------------------------------ finishing
    def close(self) -> None:
        """Finish the stream: end an open frame, write END, and (paths) fsync and rename into place."""
        if self._closed:
            return
        if self._frame is not None:
            self.end_frame()
        end = END.pack({"frame_count": self.frames_written, "unit_count": self.units_written})
        self._write_unit(UnitType.END, 0, end, "end")
        self._flush()
        self._closed = True
        if self._owns_file:
            os.fsync(self._f.fileno())
            self._f.close()
            if self._part is not None:
                os.replace(self._part, self._path)
                _fsync_dir(self._path)

    def abort(self) -> None:
        """Stop without finishing: no END, no rename; complete fragments stay readable in ``.part``."""
        if self._closed:
            return
        self._closed = True
        self._frame = None
        if self._owns_file:
            self._f.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def part_path(self) -> str | None:
        """The temporary file being written (``None`` for file objects and appends)."""
        return self._part

    # ------------------------------------------------------------------ internals
    def _open_append(self, target, header: SequenceHeader | None) -> None:
        if not isinstance(target, (str, os.PathLike)):
            raise TypeError("append=True needs a path")
        self._path = os.fspath(target)
        with open_bitstream(self._path, limits=self.limits) as bs:
            for err in bs.errors:
                if not isinstance(err, TruncatedError):
                    raise err
            if bs.version[0] != VERSION[0] or bs.version[1] > VERSION[1]:
                raise UnsupportedVersionError(f"cannot append version {VERSION[0]}.{VERSION[1]} data to a "
                                              f"{bs.version[0]}.{bs.version[1]} stream", offset=8,
                                              field="preamble.major")
            if header is not None and header != bs.header:
                raise MalformedFieldError("the sequence header differs from the file's", field="sequence_header")
            self.header = bs.header
            resume = bs._data_end
            self.units_written = sum(1 for u in bs.units if u.offset < resume)
            self.frames_written = len(bs.frames)
            self._last_frame = bs.frames[-1].frame_index if bs.frames else None
            self._written = {f.frame_index for f in bs.frames}
        self._f = builtins.open(self._path, "r+b")
        self._owns_file = True
        self._f.seek(resume)
        self._f.truncate()
        self.offset = resume

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the writer is closed")

    def _check_unit_count(self, extra: int, where: str) -> None:
        if self.units_written + extra + 1 > self.limits.max_units:  # + 1: room for END
            raise LimitExceededError(f"more than Limits.max_units={self.limits.max_units} units", field=where)

    def _write(self, data) -> None:
        self._f.write(data)
        self.offset += len(data)

    def _write_unit(self, type_id: int, flags: int, payload: bytes, path: str) -> None:
        self._write(pack_unit_header(type_id, flags, payload, limits=self.limits, path=f"{path}.header"))
        self._write(payload)

    def _flush(self) -> None:
        self._f.flush()
        if self._fsync and self._owns_file:
            os.fsync(self._f.fileno())


_ATTRS = ("object_id", "class_id", "group_id", "x0", "y0", "x1", "y1", "score")


def _share_attributes(entries: list[dict]) -> list[dict]:
    """Entries with ``present`` bit 7 where an entry repeats the attributes of the one before it."""
    out, prev = [], None
    for e in entries:
        attrs = tuple(e.get(k) for k in _ATTRS)
        if prev is not None and attrs == prev and any(a is not None for a in attrs):
            e = dict(e, present=(e["present"] & ~0x1F) | PRESENT_SAME, **{k: None for k in _ATTRS})
        else:
            prev = attrs
        out.append(e)
    return out


def _pack_sequence_header(h: SequenceHeader, limits: Limits) -> bytes:
    if not isinstance(h, SequenceHeader):
        raise TypeError(f"header must be a SequenceHeader, got {type(h).__name__}")
    return SEQUENCE_HEADER.pack(dataclasses.asdict(h), path="sequence_header", limits=limits)


def _check_payload(type_id: int, data: bytes, limits: Limits, path: str) -> None:
    """Syntax the specification puts on the payloads of METADATA and EXTENSION units."""
    if type_id == UnitType.METADATA:
        if len(data) > limits.max_metadata_size:
            raise LimitExceededError(f"METADATA payload of {len(data)} bytes, over Limits.max_metadata_size="
                                     f"{limits.max_metadata_size}", field=path)
        load_json(data, path, 0)
    elif type_id == UnitType.EXTENSION:
        EXTENSION_HEADER.unpack(data, path=path, limits=limits)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def recover(part_path: str | os.PathLike, path: str | os.PathLike | None = None,
            limits: Limits | None = None) -> str:
    """Finish a stream a killed writer left behind: cut its incomplete tail, add END, rename it.

    ``path`` defaults to ``part_path`` without its ``.part`` suffix. Returns the final path.
    """
    part = os.fspath(part_path)
    if path is None:
        if not part.endswith(".part"):
            raise ValueError("give path= when part_path does not end in .part")
        path = part[: -len(".part")]
    Writer(part, append=True, limits=limits).close()
    os.replace(part, os.fspath(path))
    _fsync_dir(os.fspath(path))
    return os.fspath(path)
