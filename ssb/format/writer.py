"""The streaming, crash-safe writer.

Each ``begin_frame`` ... ``end_frame`` pair becomes one self-contained
fragment (FRAME_HEADER, INDEX, content units) written and flushed in one go,
so whatever happens later, every fragment already written stays readable.

Atomicity (path targets): the stream is written to ``<path>.part``; a clean
:meth:`Writer.close` appends the END unit, fsyncs and renames it to ``<path>``
(``os.replace``).  A writer that raises inside its ``with`` block, calls
:meth:`Writer.abort` or is killed leaves ``<path>`` untouched (absent if it was
new) and ``<path>.part`` readable up to its last complete fragment; :func:`recover`
turns such a ``.part`` into a finished file.  Appending (``append=True``) writes
in place: a crash during an append leaves the fragments that existed before it,
and every complete fragment appended since, readable.
"""

from __future__ import annotations

import builtins
import dataclasses
import io
import operator
import os
from typing import Any, BinaryIO

from ssb.errors import LimitExceededError, MalformedFieldError, TruncatedError, UnsupportedVersionError
from ssb.format.layout import (
    END,
    EXTENSION_HEADER,
    FRAME_HAS_PTS,
    FRAME_HEADER,
    INDEX_ENTRY,
    INDEX_ENTRY_SIZE,
    INDEX_HEADER,
    PRESENT_BBOX,
    PRESENT_CLASS,
    PRESENT_GROUP,
    PRESENT_OBJECT,
    PRESENT_SCORE,
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
        A path (written atomically through ``<path>.part``) or a writable binary file
        object (written from its current position, never closed by the writer; it
        need not be seekable).
    header:
        The :class:`SequenceHeader`; optional when appending (must then equal the file's).
    limits:
        The limits the stream must respect (default :class:`Limits`), checked on every call.
    append:
        Continue an existing stream at ``target`` (a path) in place: its END unit and any
        incomplete tail are cut off, new frames must have larger frame indices.
    fsync:
        ``os.fsync`` after every fragment (durable against power loss, slower). The file
        is always fsynced before the final rename.
    """

    def __init__(
        self,
        target,
        header: SequenceHeader | None = None,
        limits: Limits | None = None,
        *,
        append: bool = False,
        fsync: bool = False,
    ):
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
            raise TypeError(
                f"cannot write an SSB stream to {type(target).__name__}: give a path or a binary file"
            )
        self.header = header
        self.offset = 0
        self._write(pack_preamble())
        self._write_unit(UnitType.SEQUENCE_HEADER, 0, seq_payload, "sequence_header")
        self.units_written = 1
        self._flush()

    # ------------------------------------------------------------------ frames
    def begin_frame(self, frame_index: int, pts: int | None = None, metadata: dict | None = None) -> None:
        """Open the fragment of ``frame_index`` (must exceed every earlier frame index)."""
        self._check_open()
        if self._frame is not None:
            raise RuntimeError(f"frame {self._frame['frame_index']} is still open: call end_frame() first")
        path = f"frame[{frame_index}]"
        frame_index = _as_int(frame_index, f"{path}.frame_index")
        pts = None if pts is None else _as_int(pts, f"{path}.pts")
        if self._last_frame is not None and frame_index <= self._last_frame:
            raise MalformedFieldError(
                f"frame index {frame_index} must exceed the previous one ({self._last_frame})",
                field=f"{path}.frame_index",
            )
        if self.frames_written >= self.limits.max_frames:
            raise LimitExceededError(
                f"more than Limits.max_frames={self.limits.max_frames} frames", field=path
            )
        values = {
            "frame_index": frame_index,
            "flags": 0 if pts is None else FRAME_HAS_PTS,
            "reserved": 0,
            "pts": 0 if pts is None else pts,
            "fragment_length": 1,
            "metadata": metadata or {},
        }
        header_len = len(FRAME_HEADER.pack(values, path=path, limits=self.limits))  # validates every field
        if header_len > self.limits.max_unit_size:
            raise LimitExceededError(
                f"frame header of {header_len} bytes, over Limits.max_unit_size={self.limits.max_unit_size}",
                field=f"{path}.header.length",
            )
        self._frame = {
            "frame_index": frame_index,
            "values": values,
            "units": [],
            "objects": 0,
            "size": 2 * UNIT_HEADER_SIZE + header_len + INDEX_HEADER.fixed_size,
        }

    def add_unit(
        self,
        type: UnitType | int,
        payload,
        *,
        object_id: int | None = None,
        class_id: int | None = None,
        group_id: int | None = None,
        bbox: tuple[float, float, float, float] | None = None,
        score: float | None = None,
        flags: int = 0,
    ) -> int:
        """Add a unit; returns its number (its position in ``Bitstream.units`` when read back).

        Inside a frame the unit joins the open fragment and its attributes go to the
        fragment's index.  Outside a frame the unit is written at once as a
        sequence-level unit, which carries no attributes (e.g. METADATA or EXTENSION).
        ``payload`` is any bytes-like object; METADATA payloads must be a JSON object
        and EXTENSION payloads must start with a namespace (see the specification).
        """
        self._check_open()
        frame = self._frame
        where = (
            f"frame[{frame['frame_index']}].unit[{len(frame['units'])}]"
            if frame is not None
            else f"unit[{self.units_written}]"
        )
        type_id = _as_int(type, f"{where}.type")
        if type_id in _STRUCTURAL_IDS or not 0 < type_id <= 0xFFFF:
            raise MalformedFieldError(
                f"unit type {type_id} cannot be added (structural, or not a u16 ≥ 1)", field=f"{where}.type"
            )
        data = payload if isinstance(payload, bytes) else memoryview(payload).tobytes()
        header = pack_unit_header(type_id, flags, data, limits=self.limits, path=f"{where}.header")
        _check_payload(type_id, data, self.limits, f"{where}.payload")
        if frame is None:
            if any(v is not None for v in (object_id, class_id, group_id, bbox, score)):
                raise MalformedFieldError(
                    "units outside a frame carry no index attributes; call begin_frame() first", field=where
                )
            self._check_unit_count(1, where)
            self._write(header)
            self._write(data)
            self._flush()
            self.units_written += 1
            return self.units_written - 1

        entry = _index_entry(type_id, flags, len(data), object_id, class_id, group_id, bbox, score, where)
        INDEX_ENTRY.pack(entry, path=f"{where}.index", limits=self.limits)  # validates every attribute
        if len(frame["units"]) >= self.limits.max_units_per_frame:
            raise LimitExceededError(
                f"more than Limits.max_units_per_frame={self.limits.max_units_per_frame} units", field=where
            )
        if object_id is not None and frame["objects"] >= self.limits.max_objects:
            raise LimitExceededError(
                f"more than Limits.max_objects={self.limits.max_objects} objects", field=where
            )
        self._check_unit_count(len(frame["units"]) + 3, where)  # + FRAME_HEADER, INDEX, this unit
        index_len = INDEX_HEADER.fixed_size + INDEX_ENTRY_SIZE * (len(frame["units"]) + 1)
        if index_len > self.limits.max_unit_size:
            raise LimitExceededError(
                f"the frame's INDEX would hold {index_len} bytes, over Limits.max_unit_size="
                f"{self.limits.max_unit_size}",
                field=where,
            )
        size = frame["size"] + INDEX_ENTRY_SIZE + UNIT_HEADER_SIZE + len(data)
        if size > _MAX_FRAGMENT:
            raise LimitExceededError(f"fragment would exceed {_MAX_FRAGMENT} bytes", field=where)
        frame["size"] = size
        frame["objects"] += object_id is not None
        frame["units"].append((header, data, entry))
        return self.units_written + 2 + len(frame["units"]) - 1

    def end_frame(self) -> None:
        """Write the open fragment (FRAME_HEADER, INDEX, units) and flush it to the file."""
        self._check_open()
        frame = self._frame
        if frame is None:
            raise RuntimeError("no open frame: call begin_frame() first")
        units = frame["units"]
        values = dict(frame["values"], fragment_length=frame["size"])
        fh_payload = FRAME_HEADER.pack(values, limits=self.limits, validate=False)
        index_len = INDEX_HEADER.fixed_size + INDEX_ENTRY_SIZE * len(units)
        offset = 2 * UNIT_HEADER_SIZE + len(fh_payload) + index_len
        table = [
            INDEX_HEADER.pack(
                {"entry_size": INDEX_ENTRY_SIZE, "reserved": 0, "entry_count": len(units)},
                limits=self.limits,
                validate=False,
            )
        ]
        for _, data, entry in units:
            entry["offset"] = offset
            table.append(INDEX_ENTRY.pack(entry, validate=False))
            offset += UNIT_HEADER_SIZE + len(data)
        assert offset == frame["size"], (offset, frame["size"])
        index_payload = b"".join(table)
        # every check happens before the first byte of the fragment is written
        path = f"frame[{frame['frame_index']}]"
        fh_header = pack_unit_header(
            UnitType.FRAME_HEADER, 0, fh_payload, limits=self.limits, path=f"{path}.header"
        )
        index_header = pack_unit_header(
            UnitType.INDEX, 0, index_payload, limits=self.limits, path=f"{path}.index.header"
        )
        for piece in (fh_header, fh_payload, index_header, index_payload):
            self._write(piece)
        for header, data, _ in units:
            self._write(header)
            self._write(data)
        self._flush()
        self.units_written += 2 + len(units)
        self.frames_written += 1
        self._last_frame = frame["frame_index"]
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
            if bs.version[1] > VERSION[1]:
                raise UnsupportedVersionError(
                    f"cannot append version {VERSION[0]}.{VERSION[1]} data to a "
                    f"{bs.version[0]}.{bs.version[1]} stream",
                    offset=10,
                    field="preamble.minor",
                )
            if header is not None and header != bs.header:
                raise MalformedFieldError(
                    "the sequence header differs from the file's", field="sequence_header"
                )
            self.header = bs.header
            resume = bs._data_end
            self.units_written = sum(1 for u in bs.units if u.offset < resume)
            self.frames_written = len(bs.frames)
            self._last_frame = bs.frames[-1].frame_index if bs.frames else None
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


def _pack_sequence_header(h: SequenceHeader, limits: Limits) -> bytes:
    if not isinstance(h, SequenceHeader):
        raise TypeError(f"header must be a SequenceHeader, got {type(h).__name__}")
    return SEQUENCE_HEADER.pack(
        dataclasses.asdict(h),
        path="sequence_header",
        limits=limits,
    )


def _as_int(value, path: str) -> int:
    """``value`` as a Python int (numpy integers accepted), else MalformedFieldError."""
    if isinstance(value, bool):
        raise MalformedFieldError(f"must be an int, got {value!r}", field=path)
    try:
        return operator.index(value)
    except TypeError:
        raise MalformedFieldError(f"must be an int, got {value!r}", field=path) from None


def _index_entry(
    type_id: int, flags: int, length: int, object_id, class_id, group_id, bbox, score, where: str
) -> dict:
    object_id = None if object_id is None else _as_int(object_id, f"{where}.object_id")
    class_id = None if class_id is None else _as_int(class_id, f"{where}.class_id")
    group_id = None if group_id is None else _as_int(group_id, f"{where}.group_id")
    present = 0
    for bit, value in (
        (PRESENT_OBJECT, object_id),
        (PRESENT_CLASS, class_id),
        (PRESENT_GROUP, group_id),
        (PRESENT_BBOX, bbox),
        (PRESENT_SCORE, score),
    ):
        if value is not None:
            present |= bit
    if bbox is not None:
        try:
            x0, y0, x1, y1 = (_as_float(v, f"{where}.bbox") for v in bbox)
        except (TypeError, ValueError, MalformedFieldError):
            raise MalformedFieldError(
                f"bbox must be 4 numbers (x0, y0, x1, y1), got {bbox!r}", field=f"{where}.bbox"
            ) from None
    else:
        x0 = y0 = x1 = y1 = 0.0
    return {
        "type": type_id,
        "flags": flags,
        "present": present,
        "reserved": 0,
        "offset": 0,
        "length": length,
        "object_id": 0 if object_id is None else object_id,
        "class_id": 0 if class_id is None else class_id,
        "group_id": 0 if group_id is None else group_id,
        "x0": x0,
        "y0": y0,
        "x1": x1,
        "y1": y1,
        "score": 0.0 if score is None else _as_float(score, f"{where}.score"),
    }


def _as_float(value, path: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MalformedFieldError(f"must be a number, got {value!r}", field=path) from None


def _check_payload(type_id: int, data: bytes, limits: Limits, path: str) -> None:
    """Syntax the specification puts on the payloads of METADATA and EXTENSION units."""
    if type_id == UnitType.METADATA:
        if len(data) > limits.max_metadata_size:
            raise LimitExceededError(
                f"METADATA payload of {len(data)} bytes, over Limits.max_metadata_size="
                f"{limits.max_metadata_size}",
                field=path,
            )
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


def recover(
    part_path: str | os.PathLike, path: str | os.PathLike | None = None, limits: Limits | None = None
) -> str:
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
