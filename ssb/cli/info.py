"""``ssb info FILE``: the structure of an SSB file and what it holds, from headers and indexes alone.

No payload is read (unless ``--verify``) and nothing heavier than numpy is imported;
the last line says how many bytes of the file were read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="SSB file to describe")
    parser.add_argument("--json", action="store_true", help="print one JSON document (with every box)")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="also read every payload and check its checksum (reads the whole file)",
    )
    parser.add_argument(
        "--max-frames",
        type=_max_frames,
        default=DEFAULT_MAX_FRAMES,
        metavar="N|all",
        help=f"list at most N frames in the text output (default {DEFAULT_MAX_FRAMES}; 'all' lists every frame)",
    )


DEFAULT_MAX_FRAMES = 20


def _max_frames(text: str) -> int | None:
    if text == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of frames or 'all', got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a number of frames >= 0 or 'all', got {n}")
    return n


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def _text(report: dict, path: str, max_frames: int | None) -> str:
    h, t = report["header"], report["totals"]
    fps = f"{h['fps_num']}/{h['fps_den']} fps" if h["fps_num"] else "no frame rate"
    state = "complete" if report["complete"] else "INCOMPLETE (no END unit)"
    lines = [
        f"{path}: SSB {report['version']}, {h['width']}x{h['height']}, {fps}, codec {h['codec']!r}, "
        f"{t['frames']} frames, {t['units']} units, {_size(report['size'])}, {state}"
    ]
    lines.append("bytes by unit type:")
    for name, v in sorted(report["types"].items(), key=lambda kv: -kv[1]["bytes"]):
        lines.append(f"  {name:<16} {v['units']:>8} units {_size(v['bytes']):>10} {100 * v['share']:6.2f}%")
    frames = report["frames"]
    shown = frames if max_frames is None else frames[:max_frames]
    if frames:
        lines.append("frames:")
        lines.append(
            f"  {'frame':>7} {'pts':>12} {'units':>6} {'bytes':>10} {'share':>7} {'objects':>7}  "
            "unit types / classes"
        )
        for fr in shown:
            types = " ".join(f"{k}:{v['units']}" for k, v in fr["types"].items())
            if fr.get("refs"):
                types += " <- " + ",".join(map(str, fr["refs"]))
            classes = " ".join(f"{k}:{n}" for k, n in fr["classes"].items())
            pts = "-" if fr["pts"] is None else str(fr["pts"])
            lines.append(
                f"  {fr['frame']:>7} {pts:>12} {fr['units']:>6} {_size(fr['bytes']):>10} "
                f"{100 * fr['share']:6.2f}% {fr['objects']:>7}  {types}"
                + (f" | {classes}" if classes else "")
            )
        if len(shown) < len(frames):
            lines.append(f"  ... {len(frames) - len(shown)} more frames (--max-frames all lists them)")
    gops = report.get("gops") or []
    if any(g["frames"] > 1 for g in gops):
        sizes = [g["frames"] for g in gops]
        key = sum(g["key_bytes"] for g in gops)
        total = sum(g["bytes"] for g in gops)
        lines.append(f"dependencies: {len(gops)} group(s) of pictures of {min(sizes)}..{max(sizes)} frames, key frames "
                     f"{_size(key)} ({100 * key / max(total, 1):.1f}% of the frames' bytes); a frame decodes from its "
                     "key frame and the frames between")
    if report["classes"]:
        lines.append("objects by class (from the index, no decoding):")
        for cid, c in report["classes"].items():
            area = c["box_area"]
            box = (
                f", box area min/mean/max {area['min']:.0f}/{area['mean']:.0f}/{area['max']:.0f} px²"
                if area
                else ""
            )
            score = f", mean score {c['score_mean']:.3f}" if c["score_mean"] is not None else ""
            lines.append(
                f"  {c['name']} (class {cid}): {c['detections']} detections in {c['frames']} frames, "
                f"{c['tracks']} object ids{box}{score}"
            )
    tracks = report.get("tracks")
    if tracks:
        lines.append(f"tracks (from the index): {len(tracks)}")
        for t in tracks[:max_frames or 20]:
            path = " ".join(f"{f}:({x:.0f},{y:.0f})" for f, x, y in t["path"])
            lines.append(f"  track {t['id']:>5} {t['class'] or t['class_id']}: frames {t['first']}..{t['last']} "
                         f"({t['frames']} seen)  {path}")
        if len(tracks) > (max_frames or 20):
            lines.append(f"  ... {len(tracks) - (max_frames or 20)} more tracks")
    for err in report["errors"]:
        lines.append(f"warning: {err}")
    for err in report.get("verify_errors", []):
        lines.append(f"damaged: {err}")
    lines.append(
        f"read {report['bytes_read']} of {report['size']} bytes "
        f"({100 * report['bytes_read_fraction']:.2f}%)"
        + ("" if report.get("verified") else ": headers and indexes only")
        + (f"; transferred {report['transferred']} bytes in {report['requests']} request(s)"
           if "transferred" in report else "")
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ssb.format import open as ssb_open
    from ssb.format import summarize

    with ssb_open(args.file) as bs:
        report = summarize(bs, boxes=args.json)
        src = bs._src
        if hasattr(src, "bytes_transferred"):  # a remote source: what went over the network
            report["transferred"], report["requests"] = src.bytes_transferred, src.requests
        if args.verify:
            report["verified"] = True
            report["verify_errors"] = [str(e) for e in bs.check()]
            report["bytes_read"] = bs.bytes_read
            report["bytes_read_fraction"] = bs.bytes_read / max(bs.size, 1)
    text = json.dumps(report, indent=1) if args.json else _text(report, args.file, args.max_frames)
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `ssb info f | head`: the reader went away, which is not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's final flush quiet
        return 0
    damaged = report["errors"] or report.get("verify_errors")
    return 1 if damaged else 0
