"""Argument helpers and output plumbing shared by the sub-commands (nothing heavy imported here)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ssb.errors import MalformedFieldError

__all__ = ["frame_range", "id_list", "name_list", "unit_interval", "progress_enabled", "check_output",
           "ResultsWriter"]


def frame_range(text: str) -> range:
    """``"A:B"`` (B excluded), ``"A:"`` is refused (unbounded), ``"N"`` is one frame."""
    try:
        if ":" in text:
            a, b = text.split(":", 1)
            if not b:
                raise ValueError
            r = range(int(a or 0), int(b))
        else:
            r = range(int(text), int(text) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FRAMES as A:B or N, got {text!r}") from None
    if r.start < 0 or len(r) == 0:
        raise argparse.ArgumentTypeError(f"empty or negative frame range {text!r}")
    return r


def name_list(text: str) -> list[str]:
    """Comma-separated names (classes are resolved against the stream's label set later)."""
    out = [t.strip() for t in text.split(",") if t.strip()]
    if not out:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return out


def id_list(text: str) -> list[int]:
    try:
        return [int(t) for t in name_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def unit_interval(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return v


def int_at_least(low: int):
    """An argparse type: an integer >= ``low`` (``positive = int_at_least(1)``, ``count = int_at_least(0)``)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = low - 1
        if v < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return v

    parse.__name__ = f"integer >= {low}"
    return parse


positive = int_at_least(1)
count = int_at_least(0)


def progress_enabled(args) -> bool:
    """Progress bars only for a person watching: stderr is a terminal and ``--quiet`` is not given."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def check_output(path: str, option: str) -> Path:
    """Refuse (before any work) an output whose folder does not exist or cannot be written."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise MalformedFieldError(f"{p} is a folder; give a file name", field=option)
    if not parent.is_dir():
        raise MalformedFieldError(f"the folder {parent} does not exist", field=option)
    if not os.access(parent, os.W_OK):
        raise MalformedFieldError(f"cannot write in {parent}", field=option)
    return p


class ResultsWriter:
    """A JSON list written item by item: valid JSON on disk whenever a frame is done, even if a later
    frame fails (the list is closed by :meth:`close`, which ``with`` always calls)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._f.write("[")
        self._end = self._f.tell()
        self._f.write("]\n")
        self._f.flush()
        self.count = 0

    def extend(self, items) -> None:
        for item in items:
            self._f.seek(self._end)
            self._f.write(("," if self.count else "") + "\n" + json.dumps(item))
            self._end = self._f.tell()
            self._f.write("\n]\n")
            self.count += 1
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
