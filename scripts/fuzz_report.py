"""What a payload fuzz run found (``scripts/fuzz_payloads.py``): :class:`Report` (counts, the table),
outcome keys, and the reproducers of findings saved under ``--findings``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fuzz_seeds import FAMILIES

if TYPE_CHECKING:
    from fuzz_mutations import Case


@dataclass
class Report:
    """What a run found; :meth:`table` renders it."""

    seed: int
    cases: int = 0
    seconds: float = 0.0
    restarts: int = 0
    #: (path, key) -> count; key "ok", "SSBError:<class>" or a finding's
    outcomes: Counter = field(default_factory=Counter)
    worst: Counter = field(default_factory=Counter)  # per case, the worse of both paths
    families: dict = field(default_factory=dict)  # family -> Counter(cases, payload, codec, ok)
    fields: Counter = field(default_factory=Counter)  # normalized error field -> count (analyze path)
    origins: Counter = field(default_factory=Counter)  # innermost ssb module of an SSBError -> count
    findings: list = field(default_factory=list)
    generator_errors: list = field(default_factory=list)  # cases the mutators failed to make (fuzzer bugs)
    slowest: float = 0.0
    peak_rss: int = 0
    baseline_rss: int = 0

    def record(self, case: Case, result: dict) -> None:
        fam = self.families.setdefault(case.family, Counter())
        fam["cases"] += 1
        keys = []
        for path in ("analyze", "pixels"):
            o = result[path]
            key = _key(o)
            keys.append(key)
            self.outcomes[(path, key)] += 1
            self.slowest = max(self.slowest, o.get("seconds", 0.0))
            if o["kind"] == "ssb":
                self.origins[o.get("origin")] += 1
                if path == "analyze":
                    self.fields[_norm_field(o.get("field"))] += 1
            if path == "analyze":
                if o["kind"] == "ok":
                    fam["ok"] += 1
                elif o["kind"] == "ssb" and o.get("codec") and o["cls"] != "ChecksumError":
                    fam["codec"] += 1
                    if reached_payload(o):
                        fam["payload"] += 1
                    if (o.get("origin") or "").startswith("ssb.entropy"):
                        fam["entropy"] += 1
        self.worst[max(keys, key=_severity)] += 1
        self.cases += 1

    def table(self) -> str:
        rate = self.cases / self.seconds if self.seconds else 0.0
        head = (f"cases: {self.cases} (seed {self.seed}), {self.seconds / 60:.1f} min, {rate:.2f} cases/s, "
                f"worker restarts: {self.restarts}, slowest path {self.slowest:.1f} s, "
                f"worker RSS baseline {self.baseline_rss / 2**20:.0f} MiB, peak {self.peak_rss / 2**20:.0f} MiB")
        lines = [head, "", f"{'outcome':44s} {'analyze':>9s} {'pixels':>9s} {'case':>9s}"]
        keys = sorted({k for _, k in self.outcomes} | set(self.worst), key=lambda k: (_severity(k), k))
        for k in keys:
            label = "bounded success" if k == "ok" else k
            lines.append(f"{label:44s} {self.outcomes[('analyze', k)]:9d} {self.outcomes[('pixels', k)]:9d} "
                         f"{self.worst[k]:9d}")
        if self.generator_errors:
            lines += ["", f"cases the mutators could not make (fuzzer bugs): {len(self.generator_errors)}"]
            lines += [f"  {e[:200]}" for e in self.generator_errors[:10]]
        lines += ["", f"findings (crash, hang, memory, other exceptions, unbounded): {len(self.findings)}"]
        for f in self.findings[:50]:
            lines.append(f"  case {f['case']} [{f['family']}/{f['seed']}] {f['path']}: {f['key']}: "
                         f"{f.get('message', '')[:160]}  -> {f.get('reproducer')}")
        lines += ["", (f"{'family':8s} {'cases':>7s} {'codec':>7s} {'payload':>8s} {'entropy':>8s} {'ok':>7s}  "
                       "(analyze path: SSBError raised inside ssb.codec/ssb.entropy, of which in payload fields / "
                       "the entropy decoder; bounded successes)")]
        for name in FAMILIES:
            c = self.families.get(name, Counter())
            lines.append(f"{name:8s} {c['cases']:7d} {c['codec']:7d} {c['payload']:8d} {c['entropy']:8d} {c['ok']:7d}")
        lines += ["", "most frequent error fields (analyze path):"]
        for fld, n in self.fields.most_common(25):
            lines.append(f"  {n:7d}  {fld}")
        lines += ["", "where SSBErrors were raised (innermost ssb module, both paths):"]
        for mod, n in self.origins.most_common(20):
            lines.append(f"  {n:7d}  {mod}")
        return "\n".join(lines)


_SEVERITY = {"ok": 0}


def _key(o: dict) -> str:
    kind = o["kind"]
    if kind == "ok":
        return "ok"
    if kind == "ssb":
        return f"SSBError:{o['cls']}"
    if kind == "exception":
        return f"FINDING exception:{o['cls']}"
    return f"FINDING {kind}"


def _severity(key: str) -> int:
    return 0 if key == "ok" else (1 if key.startswith("SSBError") else 2)


def _norm_field(f: str | None) -> str:
    return re.sub(r"\[\d+\]", "[*]", f) if f else "(none)"


def reached_payload(o: dict) -> bool:
    """An SSBError raised while parsing or entropy-decoding a payload inside the codec (not a CRC)."""
    f = o.get("field") or ""
    return (o.get("kind") == "ssb" and bool(o.get("codec")) and o.get("cls") != "ChecksumError"
            and (".payload" in f or "payload" in f.split(".")[0] or (o.get("origin") or "").startswith(
                ("ssb.entropy", "ssb.codec.mask_coding", "ssb.codec.video.motion"))))


def _save(folder: Path, case: Case, run_seed: int, path: str, key: str, outcome: dict) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    kind = re.sub(r"[^A-Za-z0-9_.-]+", "_", key.replace("FINDING ", ""))
    stem = folder / f"{kind}-s{run_seed}-c{case.index}"
    stem.with_suffix(".ssb").write_bytes(case.data)
    info = {"case": case.index, "seed": run_seed, "family": case.family, "seed_stream": case.seed,
            "mutations": case.steps, "path": path, "key": key, "outcome": outcome,
            "replay": f"python scripts/fuzz_payloads.py --replay {stem.with_suffix('.ssb')}"}
    stem.with_suffix(".json").write_text(json.dumps(info, indent=2, default=str))
    if outcome.get("traceback"):
        stem.with_suffix(".txt").write_text(outcome["traceback"])
    return str(stem.with_suffix(".ssb"))
