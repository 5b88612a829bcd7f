"""Codec payloads <-> :class:`~ssb.codec.feature_codec.CompressedFeatures`, through the declared syntax.

The syntax (fields, bounds, checks against the model) is :mod:`ssb.format.payloads`; this module
only maps decoded records to the codec's objects.  Writers emit the 2.x payloads; readers also
take the 1.x payloads of streams written by release 0.1 (told apart by their first byte).
"""

from __future__ import annotations

import contextlib

from ssb.codec.feature_codec import CompressedFeatures, latent_sizes
from ssb.errors import MalformedFieldError, SSBError, TruncatedError
from ssb.format.payloads import BASE_V1, FEATURES, OBJECT_GROUP, OBJECT_GROUP_V1, OBJECT_SCALE

__all__ = ["pack_features", "unpack_features", "pack_window", "unpack_window", "model_context", "parse_features",
           "parse_window", "located", "pack_object_scale", "parse_object_scale"]

#: the field an entropy model names in its errors -> the payload field holding its string
_STRINGS = {"EntropyBottleneck.payload": "z", "GaussianConditional.payload": "y"}


def model_context(codec, grid: tuple[int, int], frame: tuple[int, int] | None = None) -> dict:
    """What a payload is checked against: the codec's quality levels, the split grid, the frame size."""
    ctx = {"levels": codec.config.num_levels, "grid": tuple(grid)}
    if frame is not None:
        ctx["frame"] = tuple(frame)
    return ctx


def _item(rec: dict, rows: int, cols: int) -> CompressedFeatures:
    lat, hyp = latent_sizes((rows, cols))
    return CompressedFeatures(y=bytes(rec["y"]), z=bytes(rec["z"]), level=rec["level"], latent_hw=lat,
                              hyper_hw=hyp, out_hw=(rows, cols))


def _version(payload, offset: int, field: str) -> int:
    if len(payload) < 1:
        raise TruncatedError("empty payload", offset=offset, field=f"{field}.payload")
    return payload[0]


def pack_features(item: CompressedFeatures) -> bytes:
    """A 2.x features payload (BASE, BACKGROUND)."""
    rows, cols = item.out_hw
    return FEATURES.pack({"version": 2, "level": item.level, "rows": rows, "cols": cols, "z": item.z, "y": item.y})


def _strings(rec, path: str) -> dict:
    """Where the entropy-coded strings of a record are: ``{"z"|"y": (absolute offset, field path)}``."""
    return {k: (rec.offsets[k], f"{path}.{k}") for k in ("z", "y") if k in rec.offsets}


@contextlib.contextmanager
def located(strings: dict):
    """Re-raise an entropy decoder's error about its string (it knows neither the unit nor where the
    string sits) with the payload's field path and the absolute byte offset; ``strings`` from
    :func:`parse_features` / :func:`parse_window`."""
    try:
        yield
    except SSBError as exc:
        name = _STRINGS.get(exc.field or "")
        if name is None or name not in strings:
            raise
        start, path = strings[name]
        try:
            moved = type(exc)(exc.message, offset=start + (exc.offset or 0), field=path)
        except TypeError:  # a subclass with another signature: keep it as it is
            raise exc from None
        raise moved from exc


def parse_features(payload, *, ctx: dict, offset: int = 0, field: str = "unit") -> tuple[CompressedFeatures, dict]:
    """:func:`unpack_features`, and where its strings are (for :func:`located`)."""
    mv = memoryview(payload)
    path = f"{field}.payload"
    version = _version(mv, offset, field)
    if version == 1:
        rec, _ = BASE_V1.unpack(mv, base=offset, path=path, ctx=ctx)
        return _item(rec, rec["out_h"], rec["out_w"]), _strings(rec, path)
    if version == 2:
        rec, _ = FEATURES.unpack(mv, base=offset, path=path, ctx=ctx)
        return _item(rec, rec["rows"], rec["cols"]), _strings(rec, path)
    raise MalformedFieldError(f"unsupported features payload version {version}", offset=offset,
                              field=f"{path}.version")


def unpack_features(payload, *, ctx: dict, offset: int = 0, field: str = "unit") -> CompressedFeatures:
    """Parse and check a features payload (2.x, or a 1.x BASE) against the model context ``ctx``."""
    return parse_features(payload, ctx=ctx, offset=offset, field=field)[0]


def pack_window(row0: int, col0: int, item: CompressedFeatures) -> bytes:
    """A 2.x grouped OBJECT payload: a window of the split grid and its features."""
    rows, cols = item.out_hw
    return OBJECT_GROUP.pack({"version": 2, "row0": row0, "col0": col0, "level": item.level, "rows": rows,
                              "cols": cols, "z": item.z, "y": item.y})


def parse_window(payload, *, ctx: dict, offset: int = 0, field: str = "unit"
                 ) -> tuple[int, int, CompressedFeatures, dict]:
    """:func:`unpack_window`, and where its strings are (for :func:`located`)."""
    mv = memoryview(payload)
    path = f"{field}.payload"
    version = _version(mv, offset, field)
    if version == 1:
        rec, _ = OBJECT_GROUP_V1.unpack(mv, base=offset, path=path, ctx=ctx)
        return rec["row0"], rec["col0"], _item(rec, rec["out_h"], rec["out_w"]), _strings(rec, path)
    if version == 2:
        rec, _ = OBJECT_GROUP.unpack(mv, base=offset, path=path, ctx=ctx)
        return rec["row0"], rec["col0"], _item(rec, rec["rows"], rec["cols"]), _strings(rec, path)
    raise MalformedFieldError(f"unsupported OBJECT group payload version {version}", offset=offset,
                              field=f"{path}.version")


def unpack_window(payload, *, ctx: dict, offset: int = 0, field: str = "unit") -> tuple[int, int, CompressedFeatures]:
    """``(row0, col0, features)`` of a grouped OBJECT payload (2.x or 1.x); the window must fit ``ctx["grid"]``."""
    return parse_window(payload, ctx=ctx, offset=offset, field=field)[:3]


def pack_object_scale(window: tuple[int, int, int, int], item: CompressedFeatures) -> bytes:
    """An OBJECT_SCALE payload: the object's window ``(x0, y0, width, height)`` in frame pixels and
    the features of that window resampled to the object scale."""
    rows, cols = item.out_hw
    x0, y0, w, h = (int(v) for v in window)
    return OBJECT_SCALE.pack({"version": 1, "level": item.level, "x0": x0, "y0": y0, "width": w, "height": h,
                              "rows": rows, "cols": cols, "z": item.z, "y": item.y})


def parse_object_scale(payload, *, ctx: dict, offset: int = 0, field: str = "unit"
                       ) -> tuple[tuple[int, int, int, int], CompressedFeatures, dict]:
    """``(window (x0, y0, width, height), features, strings)`` of an OBJECT_SCALE payload, checked
    against the model context (levels, frame size)."""
    mv = memoryview(payload)
    path = f"{field}.payload"
    version = _version(mv, offset, field)
    if version != 1:
        raise MalformedFieldError(f"unsupported OBJECT_SCALE payload version {version}", offset=offset,
                                  field=f"{path}.version")
    rec, _ = OBJECT_SCALE.unpack(mv, base=offset, path=path, ctx=ctx)
    window = (rec["x0"], rec["y0"], rec["width"], rec["height"])
    return window, _item(rec, rec["rows"], rec["cols"]), _strings(rec, path)
