"""Rate-accuracy points, BD-rates, matched-rate tables and the files ``ssb eval`` writes."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

__all__ = ["Point", "write_outputs", "load_points", "bd_rates", "summarize", "compare_features", "interp_log",
           "SSB_METHODS", "codes_features"]

#: methods that code features (the rest decode pixels and run the teachers on them)
SSB_METHODS = ("ssb", "ssb-teacher-boxes", "features", "original", "object-features")


def codes_features(method: str) -> bool:
    """Whether a method is SSB's (features coded or uncoded) rather than a pixel codec's."""
    return method in SSB_METHODS or method.startswith("ssb-")


@dataclass
class Point:
    """One candidate's accuracy on one task: COCO AP in percent against the teacher, at its rate."""

    task: str
    method: str  #: "ssb", "ssb-teacher-boxes", "features", "original", or "<codec>[-<variant>]"
    param: int  #: quality level (SSB), codec quality, crf ...
    bpp: float  #: bits per ORIGINAL pixel, container included
    AP: float
    AP50: float
    AP75: float
    bytes: int
    images: int
    objects: int


def interp_log(x: float, xs: list[float], ys: list[float]) -> float:
    """``y`` at ``x`` on the curve (linear in log x); NaN outside the measured range."""
    if not xs or x < xs[0] or x > xs[-1]:
        return math.nan
    return float(np.interp(math.log(x), np.log(xs), ys))


def _curve(points: list[Point], task: str, method: str):
    pts = sorted((p for p in points if p.task == task and p.method == method), key=lambda p: p.bpp)
    return [p.bpp for p in pts], [p.AP for p in pts], [p.AP50 for p in pts]


def bd_rates(points: list[Point], task: str = "detection", anchor: str = "ssb") -> dict[str, dict]:
    """BD-rate (%) of ``anchor`` against each other rate curve of ``task``, on AP and AP50 (negative: fewer bits)."""
    from ssb.metrics import bd_or_nan, bd_rate

    r_s, ap_s, ap50_s = _curve(points, task, anchor)
    out = {}
    others = sorted({p.method for p in points if p.task == task} - {anchor, "original", "features",
                                                                     "ssb-teacher-boxes"})
    if not r_s:
        return out
    for method in others:
        r, ap, ap50 = _curve(points, task, method)
        v, why = bd_or_nan(bd_rate, r, ap, r_s, ap_s, pareto=True)
        v50, why50 = bd_or_nan(bd_rate, r, ap50, r_s, ap50_s, pareto=True)
        out[method] = {"bd_rate_AP": v, "why_AP": why, "bd_rate_AP50": v50, "why_AP50": why50}
    return out


def summarize(points: list[Point], task: str, anchor: str = "ssb") -> dict:
    """Per anchor point: its AP and each pixel curve's AP interpolated at the same bpp; BD-rates."""
    ssb = sorted((p for p in points if p.task == task and p.method == anchor), key=lambda p: p.bpp)
    pixel: dict[str, list[Point]] = {}
    for p in sorted(points, key=lambda p: p.bpp):
        if p.task == task and not codes_features(p.method) and p.method != anchor:
            pixel.setdefault(p.method, []).append(p)
    rows = []
    for p in ssb:
        row = {"level": p.param, "bpp": p.bpp, "ssb_AP": p.AP, "ssb_AP50": p.AP50}
        for name, pts in pixel.items():
            xs = [q.bpp for q in pts]
            row[f"{name}_AP_at_bpp"] = interp_log(p.bpp, xs, [q.AP for q in pts])
            row[f"{name}_AP50_at_bpp"] = interp_log(p.bpp, xs, [q.AP50 for q in pts])
        rows.append(row)
    return {"matched_bpp": rows, "bd_rate": bd_rates(points, task, anchor)}


def compare_features(shared: list[Point], tuned: list[Point], *, method: str = "ssb-teacher-boxes") -> dict:
    """The omnipotence check: per shared-codec level, the task-tuned codec's AP at the same bpp.

    The tuned curve is interpolated (linear in log-rate, never extrapolated) at each shared level's
    bpp; ``ratio_AP`` is shared AP / tuned AP (the goal: at least 0.95).  ``method``:
    ``ssb-teacher-boxes`` (the heads on the teacher's person boxes) or ``ssb`` (detected boxes).
    """
    from ssb.metrics import bd_metric, bd_or_nan

    a = sorted((p for p in shared if p.method == method), key=lambda p: p.bpp)
    b = sorted((p for p in tuned if p.method == method), key=lambda p: p.bpp)
    xs = [p.bpp for p in b]
    rows = []
    for p in a:
        t_ap, t_ap50 = interp_log(p.bpp, xs, [q.AP for q in b]), interp_log(p.bpp, xs, [q.AP50 for q in b])
        rows.append({"level": p.param, "bpp": p.bpp, "shared_AP": p.AP, "tuned_AP_at_bpp": t_ap,
                     "ratio_AP": p.AP / t_ap if t_ap and not math.isnan(t_ap) else math.nan,
                     "shared_AP50": p.AP50, "tuned_AP50_at_bpp": t_ap50})
    bd = bd_or_nan(bd_metric, xs, [q.AP for q in b], [p.bpp for p in a], [p.AP for p in a], pareto=False)
    return {"method": method, "matched_bpp": rows, "bd_AP_shared_minus_tuned": bd,
            "tuned_points": [{"level": q.param, "bpp": q.bpp, "AP": q.AP, "AP50": q.AP50} for q in b]}


def write_outputs(points: list[Point], out_dir: Path, name: str = "rate_accuracy") -> list[Path]:
    """``<name>.csv`` (every point), ``<name>.json`` (points and per-task summaries) and, with
    matplotlib, ``<name>_<task>.png`` plots.  Returns the paths written."""
    out_dir = Path(out_dir)
    rows = [asdict(p) for p in points]
    written = [out_dir / f"{name}.csv", out_dir / f"{name}.json"]
    with open(written[0], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[fl.name for fl in fields(Point)])
        w.writeheader()
        w.writerows(rows)
    tasks = sorted({p.task for p in points})
    summary = {t: summarize(points, t) for t in tasks}
    written[1].write_text(json.dumps({"points": rows, "summary": summary}, indent=1, default=str))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    for task in tasks:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method in sorted({p.method for p in points if p.task == task} - {"original", "features"}):
            xs, ys, _ = _curve(points, task, method)
            ax.plot(xs, ys, "o-" if method.startswith("ssb") else ".--", label=method,
                    lw=2.5 if method.startswith("ssb") else 1)
        ref = next((p for p in points if p.task == task and p.method in ("original", "features")), None)
        if ref:
            ax.axhline(ref.AP, color="gray", lw=0.8, label=f"{ref.method} (ceiling)")
        ax.set_xscale("log")
        ax.set_xlabel("bits per original pixel")
        ax.set_ylabel(f"{task} AP@[.5:.95] vs teacher (%)")
        ax.set_title(f"{task}: accuracy vs rate (held-out real frames)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{name}_{task}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def load_points(path: str | Path) -> list[Point]:
    """The points of a ``<name>.csv`` written by :func:`write_outputs`."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    types = {fl.name: fl.type for fl in fields(Point)}
    conv = {"int": int, "float": float, "str": str}
    return [Point(**{k: conv[str(types[k])](v) for k, v in r.items() if k in types}) for r in rows]
