"""The codec registry: one table of stream codecs, keyed by the codec id a stream's header names.

Each codec is an encoder class and a decoder class (:mod:`ssb.codec.base`); a stream says which
codec wrote it in its SEQUENCE_HEADER ``codec`` field and which model weights in its metadata
(``"model"``).  Sources, looked up in this order:

1. codecs registered at run time with :func:`register`;
2. SSB's own, in :data:`BUILTIN` as ``"module:attr"`` strings imported when used (nothing
   registers itself by import side effect);
3. third-party codecs published in the ``ssb.codecs`` entry-point group, e.g.
   ``[project.entry-points."ssb.codecs"] tiny = "mypkg.codec:TINY"`` (a :class:`CodecSpec`).

Streams written by release 0.1 (format 1.x) named the model in ``codec``; :func:`stream_codec`
maps them to ``ssb.image`` or ``ssb.grouped``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata

from ssb.errors import MalformedFieldError, ModelMismatchError

__all__ = ["CodecSpec", "BUILTIN", "ENTRY_POINT_GROUP", "register", "resolve", "list_codecs", "stream_codec",
           "encoder", "decoder"]

ENTRY_POINT_GROUP = "ssb.codecs"


@dataclass(frozen=True)
class CodecSpec:
    """A stream codec: its id (the header's ``codec``), encoder and decoder classes, and a line of help."""

    name: str
    encoder: type
    decoder: type
    doc: str = ""


BUILTIN: dict[str, tuple[str, str, str]] = {
    "ssb.image": ("ssb.codec.image:ImageEncoder", "ssb.codec.image:ImageDecoder",
                  "each frame coded alone: one BASE unit of shared split features"),
    "ssb.grouped": ("ssb.codec.groups:GroupEncoder", "ssb.codec.groups:GroupedDecoder",
                    "background + one independently decodable group (mask + features) per object"),
    "ssb.video": ("ssb.codec.video:VideoEncoder", "ssb.codec.video:VideoDecoder",
                  "key frames + predicted frames (MOTION + RESIDUAL units), object tracks in the index"),
}
_REGISTERED: dict[str, CodecSpec] = {}
#: 0.1 streams named the model in the header's codec field
_LEGACY = {"omni-ssd-mbv2.s8"}


def register(spec: CodecSpec) -> CodecSpec:
    """Add (or override) a codec at run time."""
    _REGISTERED[spec.name] = spec
    return spec


def _load(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def list_codecs() -> list[str]:
    return sorted(set(_REGISTERED) | set(BUILTIN) | set(_entry_points()))


def resolve(name: str) -> CodecSpec:
    """The :class:`CodecSpec` of codec ``name``; a clear error naming the known ones otherwise."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in BUILTIN:
        enc, dec, doc = BUILTIN[name]
        return CodecSpec(name, _load(enc), _load(dec), doc)
    eps = _entry_points()
    if name in eps:
        spec = eps[name].load()
        if not isinstance(spec, CodecSpec):
            raise ModelMismatchError(f"entry point {name!r} ({eps[name].value}) is not an ssb.codec.registry.CodecSpec",
                                     field="codec")
        return spec
    raise ModelMismatchError(f"unknown codec {name!r}; this installation knows {', '.join(list_codecs())}",
                             field="codec")


def stream_codec(bs) -> str:
    """The codec id of an open stream (0.1 streams mapped to ``ssb.image`` / ``ssb.grouped``)."""
    name = bs.header.codec
    if bs.version[0] < 2 and name in _LEGACY:
        return "ssb.grouped" if "groups" in (bs.header.metadata or {}) else "ssb.image"
    return name


def encoder(name: str, models, **options):
    """A fresh encoder of codec ``name`` (options: ``quality``, ``detector``, codec-specific ones); an
    option the codec's encoder does not take is refused by name (e.g. ``object_scale`` for ssb.video)."""
    import inspect

    make = resolve(name).encoder
    try:
        params = inspect.signature(make).parameters
    except (TypeError, ValueError):  # a builtin or C callable: let it check its own options
        params = {}
    if params and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(options) - set(params))
        if unknown:
            known = ", ".join(k for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)
            raise MalformedFieldError(f"codec {name} takes no option {', '.join(unknown)} (its options: {known})",
                                      field=unknown[0])
    return make(models, **options)


def decoder(bs, models, **options):
    """The decoder of an open stream, chosen by the codec its header names."""
    name = stream_codec(bs)
    try:
        spec = resolve(name)
    except ModelMismatchError as exc:
        raise ModelMismatchError(f"the stream was written by codec {name!r}, which this installation does not "
                                 f"have ({exc.message})", field="sequence_header.codec") from None
    return spec.decoder(bs, models, **options)
