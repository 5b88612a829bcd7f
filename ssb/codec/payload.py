"""Payload syntax of the units the feature codec writes (documented in docs/format.md, "Codec payloads").

``BASE`` (shared features of one frame), little-endian::

    u8  version          = 1
    u8  level            quality level, < the model's number of levels
    u16 out_h, out_w     split-feature size (the decoder's output)
    u16 latent_h, latent_w   = ceil(out / 2)
    u16 hyper_h, hyper_w     = ceil(latent / 4)
    u32 z_length         bytes of the hyper-latent string that follows
    z_length bytes       hyper-latent string (EntropyBottleneck)
    rest                 latent string (GaussianConditional)

``OBJECT`` descriptor (an object the encoder saw; class, box and score are also in the index)::

    u16 class_id, f32 x0, y0, x1, y1 (original pixels), f32 score
"""

from __future__ import annotations

import struct

from ssb.codec.feature_codec import CompressedFeatures, latent_sizes
from ssb.errors import MalformedFieldError, TruncatedError

BASE_VERSION = 1
_BASE = struct.Struct("<BBHHHHHHI")
_BASE_FIELDS = ("version", "level", "out_h", "out_w", "latent_h", "latent_w", "hyper_h", "hyper_w", "z_length")
_OBJECT = struct.Struct("<H5f")


def _field_offset(name: str) -> int:
    sizes = {"B": 1, "H": 2, "I": 4}
    return sum(sizes[c] for c in _BASE.format[1 : 1 + _BASE_FIELDS.index(name)])


def pack_base(item: CompressedFeatures) -> bytes:
    head = _BASE.pack(BASE_VERSION, item.level, *item.out_hw, *item.latent_hw, *item.hyper_hw, len(item.z))
    return head + item.z + item.y


def unpack_base(payload, *, num_levels: int, unit_offset: int = 0, field: str = "unit") -> CompressedFeatures:
    """Parse and validate a BASE payload; errors name the field and its absolute byte offset."""
    mv = memoryview(payload)
    if len(mv) < _BASE.size:
        raise TruncatedError(f"BASE payload of {len(mv)} bytes is shorter than its {_BASE.size}-byte header",
                             offset=unit_offset, field=f"{field}.payload")
    vals = dict(zip(_BASE_FIELDS, _BASE.unpack_from(mv, 0)))

    def bad(name: str, msg: str) -> MalformedFieldError:
        return MalformedFieldError(msg, offset=unit_offset + _field_offset(name), field=f"{field}.payload.{name}")

    if vals["version"] != BASE_VERSION:
        raise bad("version", f"unsupported BASE payload version {vals['version']}")
    if vals["level"] >= num_levels:
        raise bad("level", f"level {vals['level']} is not below the model's {num_levels} levels")
    if not (1 <= vals["out_h"] <= 4096 and 1 <= vals["out_w"] <= 4096):
        raise bad("out_h", f"split size {vals['out_h']}x{vals['out_w']} out of range")
    lat, hyp = latent_sizes((vals["out_h"], vals["out_w"]))
    if (vals["latent_h"], vals["latent_w"]) != lat:
        raise bad("latent_h", "latent size does not match the split size")
    if (vals["hyper_h"], vals["hyper_w"]) != hyp:
        raise bad("hyper_h", "hyper-latent size does not match the latent size")
    end_z = _BASE.size + vals["z_length"]
    if end_z > len(mv):
        raise TruncatedError(f"z_length {vals['z_length']} runs past the payload end ({len(mv)} bytes)",
                             offset=unit_offset + _field_offset("z_length"), field=f"{field}.payload.z_length")
    return CompressedFeatures(
        y=bytes(mv[end_z:]), z=bytes(mv[_BASE.size:end_z]), level=vals["level"],
        latent_hw=(vals["latent_h"], vals["latent_w"]), hyper_hw=(vals["hyper_h"], vals["hyper_w"]),
        out_hw=(vals["out_h"], vals["out_w"]),
    )


def pack_object(class_id: int, box, score: float) -> bytes:
    return _OBJECT.pack(int(class_id), *map(float, box), float(score))


def unpack_object(payload, *, unit_offset: int = 0, field: str = "unit") -> tuple[int, tuple[float, ...], float]:
    mv = memoryview(payload)
    if len(mv) != _OBJECT.size:
        raise MalformedFieldError(f"OBJECT descriptor must be {_OBJECT.size} bytes, got {len(mv)}",
                                  offset=unit_offset, field=f"{field}.payload")
    cid, x0, y0, x1, y1, score = _OBJECT.unpack(mv)
    return cid, (x0, y0, x1, y1), score
