"""Results of a lab run: per-second samples, per-phase totals, results.json (pure).

results.json has one object per phase name (`stateful`, `donottrack`, `baseline`) plus `meta`:
```
{"meta": {"phases": [...], "backend": ..., "phase_seconds": ..., ...},
 "stateful": {"conn_per_s": ..., "connections_ok": ..., "connections_failed": ...,
              "conntrack_peak": ..., "conntrack_max": ..., "kernel_drops": ..., "series": [...]},
 ...}
```
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_NAME = "results.json"


@dataclass(frozen=True)
class Sample:
    """One second of one phase: load-generator counters plus the conntrack table."""

    t: float  # seconds since the phase's load started
    completed: int
    failed: int
    timed_out: int
    syn_retrans: int
    p50_us: int
    p99_us: int
    conntrack_count: int
    kernel_drops: int  # `conntrack -S` drop since the phase started


@dataclass
class PhaseResult:
    name: str
    backend: str | None
    conntrack_max: int
    duration_s: float = 0.0
    connections_ok: int = 0
    failed: int = 0
    timed_out: int = 0
    syn_retransmits: int = 0
    p50_us: int = 0
    p99_us: int = 0
    kernel_drops: int = 0
    early_drop: int = 0
    insert_failed: int = 0
    entries_port_end: int = 0
    leftover_rules: int = 0
    samples: list[Sample] = field(default_factory=list)

    @property
    def connections_failed(self) -> int:
        """Everything that did not complete: errors and timeouts (3 s deadline)."""
        return self.failed + self.timed_out

    @property
    def conn_per_s(self) -> float:
        return self.connections_ok / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def conntrack_peak(self) -> int:
        return max((s.conntrack_count for s in self.samples), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "conn_per_s": round(self.conn_per_s, 1),
            "connections_ok": self.connections_ok,
            "connections_failed": self.connections_failed,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "syn_retransmits": self.syn_retransmits,
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "conntrack_peak": self.conntrack_peak,
            "conntrack_max": self.conntrack_max,
            "kernel_drops": self.kernel_drops,
            "early_drop": self.early_drop,
            "insert_failed": self.insert_failed,
            "entries_12211_end": self.entries_port_end,
            "leftover_rules": self.leftover_rules,
            "duration_s": round(self.duration_s, 3),
            "backend": self.backend,
            "series": [asdict(s) for s in self.samples],
        }


def results_document(phases: Sequence[PhaseResult], meta: Mapping[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"meta": {**meta, "phases": [p.name for p in phases]}}
    for p in phases:
        doc[p.name] = p.to_dict()
    return doc


def write_results(directory: Path, doc: Mapping[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / RESULTS_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def phase_names(doc: Mapping[str, Any]) -> list[str]:
    names = doc.get("meta", {}).get("phases")
    if isinstance(names, list):
        return [str(n) for n in names if n in doc]
    return [k for k in doc if k != "meta"]


COLUMNS = (
    ("phase", "phase"),
    ("conn/s", "conn_per_s"),
    ("ok", "connections_ok"),
    ("failed", "connections_failed"),
    ("SYN retx", "syn_retransmits"),
    ("p99 ms", "p99_us"),
    ("ct peak", "conntrack_peak"),
    ("ct max", "conntrack_max"),
    ("drops", "kernel_drops"),
    ("12211 left", "entries_12211_end"),
)


def comparison_rows(doc: Mapping[str, Any]) -> list[list[str]]:
    """The comparison table as text cells, one row per phase, in run order."""
    rows = []
    for name in phase_names(doc):
        p = doc[name]
        row = []
        for _, key in COLUMNS:
            if key == "phase":
                row.append(name)
            elif key == "p99_us":
                row.append(f"{p.get(key, 0) / 1000:.1f}")
            elif key == "conn_per_s":
                row.append(f"{p.get(key, 0):.0f}")
            else:
                row.append(str(p.get(key, 0)))
        rows.append(row)
    return rows


def verdict(doc: Mapping[str, Any]) -> list[str]:
    """Plain-language findings: what the run shows (or fails to show)."""
    out = []
    st, dnt, base = doc.get("stateful"), doc.get("donottrack"), doc.get("baseline")
    if st:
        full = st["conntrack_peak"] >= st["conntrack_max"]
        out.append(
            f"stateful: {st['connections_failed']} failed connections, conntrack "
            f"{'reached' if full else 'peaked below'} its max ({st['conntrack_peak']}/"
            f"{st['conntrack_max']}), {st['kernel_drops']} kernel drops"
        )
    if dnt:
        out.append(
            f"donottrack: {dnt['connections_failed']} failed connections, "
            f"{dnt['entries_12211_end']} conntrack entries for 12211"
        )
    if st and dnt and st["conn_per_s"] > 0:
        ratio = dnt["conn_per_s"] / st["conn_per_s"]
        out.append(f"donottrack / stateful throughput: {ratio:.2f}x")
    if base and dnt and base["conn_per_s"] > 0:
        out.append(
            f"donottrack / baseline throughput: {dnt['conn_per_s'] / base['conn_per_s']:.2f}"
        )
    return out
