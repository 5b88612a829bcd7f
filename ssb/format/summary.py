"""Decoding-free analytics: what a stream holds, computed from headers and indexes alone.

:func:`summarize` never reads a content payload, so its cost is the index, not the
file (``ssb info`` prints it).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

from ssb.format.labels import label_names
from ssb.format.layout import type_name
from ssb.format.reader import Bitstream

__all__ = ["summarize", "class_names"]


def class_names(metadata: dict[str, Any]) -> dict[int, str]:
    """Class id -> name from sequence metadata (a registered ``labels`` set and/or ``classes``)."""
    return label_names(metadata)


def _area(b: tuple[float, float, float, float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def summarize(bs: Bitstream, *, boxes: bool = True) -> dict[str, Any]:
    """Structure and per-class analytics of ``bs`` (a JSON-able dict).

    ``detections`` counts distinct (frame, object id) pairs of a class (a unit with a class
    but no object id counts alone); ``tracks`` counts distinct object ids; boxes come from
    the first unit of each detection that carries one.
    """
    names = class_names(bs.header.metadata)
    size = max(bs.size, 1)
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for u in bs.units:
        acc = by_type[type_name(u.type)]
        acc[0] += 1
        acc[1] += u.size
    frames = []
    detections: dict[int, dict[tuple, Any]] = defaultdict(dict)  # class -> {(frame, key): unit}
    tracks: dict[int, set[int]] = defaultdict(set)
    for fr in bs.frames:
        types: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        objects = set()
        frame_dets: dict[int, set] = defaultdict(set)
        for u in fr.units:
            acc = types[type_name(u.type)]
            acc[0] += 1
            acc[1] += u.size
        for u in [*fr.units, *fr.descriptors]:
            if u.object_id is not None:
                objects.add(u.object_id)
            if u.class_id is not None:
                key = (
                    fr.frame_index,
                    ("object", u.object_id) if u.object_id is not None else ("unit", id(u)),
                )
                frame_dets[u.class_id].add(key)
                det = detections[u.class_id]
                if key not in det or (det[key].bbox is None and u.bbox is not None):
                    det[key] = u
                if u.object_id is not None:
                    tracks[u.class_id].add(u.object_id)
        per_class = {c: len(keys) for c, keys in frame_dets.items()}
        frames.append(
            {
                "frame": fr.frame_index,
                "pts": fr.pts,
                "offset": fr.offset,
                "bytes": fr.length,
                "share": fr.length / size,
                "units": len(fr.units),
                "refs": list(fr.refs),
                "described": len(fr.descriptors),
                "types": {k: {"units": v[0], "bytes": v[1]} for k, v in sorted(types.items())},
                "objects": len(objects),
                "classes": {names.get(c, str(c)): n for c, n in sorted(per_class.items())},
            }
        )

    classes = {}
    box_list = []
    for cid in sorted(detections):
        dets = list(detections[cid].values())
        areas = [_area(u.bbox) for u in dets if u.bbox is not None]
        scores = [u.score for u in dets if u.score is not None]
        classes[str(cid)] = {
            "name": names.get(cid, str(cid)),
            "detections": len(dets),
            "frames": len({u.frame for u in dets}),
            "tracks": len(tracks[cid]),
            "box_area": (
                {"min": min(areas), "mean": sum(areas) / len(areas), "max": max(areas)} if areas else None
            ),
            "score_mean": sum(scores) / len(scores) if scores else None,
        }
        if boxes:
            box_list.extend(
                {
                    "frame": u.frame,
                    "object_id": u.object_id,
                    "class_id": cid,
                    "class": names.get(cid),
                    "group_id": u.group_id,
                    "bbox": list(u.bbox),
                    "score": u.score,
                    "unit": getattr(u, "number", None),
                }
                for u in dets
                if u.bbox is not None
            )
    box_list.sort(key=lambda b: (b["frame"], b["object_id"] if b["object_id"] is not None else -1))

    h = bs.header
    content = sum(u.length for fr in bs.frames for u in fr.units)
    gops = _gops(bs)
    out = {
        "version": f"{bs.version[0]}.{bs.version[1]}",
        "size": bs.size,
        "complete": bs.complete,
        "header": dataclasses.asdict(h),
        "totals": {
            "frames": len(bs.frames),
            "units": len(bs.units),
            "content_payload_bytes": content,
            "container_bytes": bs.size - content,
        },
        "types": {
            k: {"units": v[0], "bytes": v[1], "share": v[1] / size} for k, v in sorted(by_type.items())
        },
        "frames": frames,
        "gops": gops,
        "classes": classes,
        "errors": [str(e) for e in bs.errors],
    }
    if (h.metadata or {}).get("object_ids") == "tracks":
        out["tracks"] = _tracks(bs, names)
    if boxes:
        out["boxes"] = box_list
    out["bytes_read"] = bs.bytes_read
    out["bytes_read_fraction"] = bs.bytes_read / size
    return out


def _gops(bs: Bitstream) -> list[dict[str, Any]]:
    """Groups of pictures: each frame that decodes alone (no references) opens one."""
    gops: list[dict[str, Any]] = []
    for fr in bs.frames:
        if not fr.refs or not gops:
            gops.append({"key": fr.frame_index, "frames": 0, "last": fr.frame_index, "bytes": 0,
                         "key_bytes": fr.length})
        g = gops[-1]
        g["frames"] += 1
        g["last"] = fr.frame_index
        g["bytes"] += fr.length
    return gops


def _tracks(bs: Bitstream, names: dict[int, str], path_points: int = 8) -> list[dict[str, Any]]:
    """Object tracks from the index (object ids are track ids): class, first/last frame, a sampled path."""
    seen: dict[int, dict[str, Any]] = {}
    for fr in bs.frames:
        done = set()
        for u in [*fr.descriptors, *fr.units]:
            oid = u.object_id
            if oid is None or oid in done or u.bbox is None:
                continue
            done.add(oid)
            t = seen.setdefault(oid, {"id": oid, "class_id": u.class_id, "class": names.get(u.class_id),
                                      "first": fr.frame_index, "last": fr.frame_index, "frames": 0, "centres": []})
            t["last"] = fr.frame_index
            t["frames"] += 1
            x0, y0, x1, y1 = u.bbox
            t["centres"].append([fr.frame_index, round((x0 + x1) / 2, 1), round((y0 + y1) / 2, 1)])
    out = []
    for t in sorted(seen.values(), key=lambda t: (t["first"], t["id"])):
        c = t.pop("centres")
        step = max(1, -(-len(c) // path_points))
        t["path"] = c[::step] + ([c[-1]] if (len(c) - 1) % step else [])
        out.append(t)
    return out
