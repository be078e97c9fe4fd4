"""`felis lab run`: the demo. Three phases against the same memcached, same load, same duration.

* `stateful`: felis programs a normal (tracked) allow for TCP 12211; every closed connection
  sits in conntrack as TIME_WAIT for 120 s, the table fills, new connections fail.
* `donottrack`: felis programs the seed's doNotTrack policy; 12211 never enters conntrack.
* `baseline`: no rules at all: the machine's ceiling.

Between phases the agent removes its rules, the lab checks that nothing is left and flushes the
server namespace's conntrack table, so no phase inherits the previous one's entries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from felis.conntrack import kernel as ct
from felis.lab import loadgen
from felis.lab import netns as ns
from felis.lab.chart import CHART_NAME, render_chart
from felis.lab.errors import LabError
from felis.lab.firewall import Firewall
from felis.lab.manifests import PHASES
from felis.lab.results import (
    COLUMNS,
    PhaseResult,
    Sample,
    comparison_rows,
    results_document,
    verdict,
    write_results,
)
from felis.lab.signals import cleanup_on_signals
from felis.lab.sysctl import ConntrackMaxGuard
from felis.lab.topology import LabConfig, Topology

DEFAULT_PHASE_SECONDS = 30.0


@dataclass
class RunOptions:
    phase_seconds: float = DEFAULT_PHASE_SECONDS
    conntrack_max: int | None = None
    results: Path = Path("lab-results")
    backend: str = "nftables"
    phases: Sequence[str] = PHASES
    threads: int = 2
    concurrency: int = 64
    config: LabConfig = field(default_factory=LabConfig)
    chart: bool = True
    # The felis command line; tests substitute a stand-in to exercise the orchestration.
    felis: Sequence[str] | None = None


def parse_phases(text: str) -> list[str]:
    phases = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in phases if p not in PHASES]
    if bad or not phases:
        raise LabError(
            f"--phases: unknown phase {bad[0] if bad else text!r}; use {','.join(PHASES)}"
        )
    if len(set(phases)) != len(phases):
        raise LabError("--phases: each phase may appear once")
    return phases


OnSample = Callable[[str, Sample, int], None]


class ProgressView:
    """Live per-second view while a phase runs; plain lines when not on a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self.rows: dict[str, tuple[str, ...]] = {}
        self.totals: dict[str, list[int]] = {}

    def _table(self) -> Table:
        table = Table(title="felis lab run")
        for col in ("phase", "t", "conn/s", "failed/s", "failed total", "conntrack", "drops"):
            table.add_column(col, justify="right")
        for row in self.rows.values():
            table.add_row(*row)
        return table

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            self.live = Live(self._table(), console=self.console, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def __call__(self, phase: str, s: Sample, table_max: int) -> None:
        ok, bad, prev_t = self.totals.setdefault(phase, [0, 0, 0])
        dt = max(s.t - prev_t / 1000, 1e-3)
        fails = s.failed + s.timed_out
        self.totals[phase] = [ok + s.completed, bad + fails, int(s.t * 1000)]
        row = (
            phase,
            f"{s.t:.0f}s",
            f"{s.completed / dt:.0f}",
            f"{fails / dt:.0f}",
            str(bad + fails),
            f"{s.conntrack_count}/{table_max}",
            str(s.kernel_drops),
        )
        self.rows[phase] = row
        if self.live is not None:
            self.live.update(self._table())
        else:
            self.console.print("  ".join(row), highlight=False)


def run_phase(
    phase: str,
    opts: RunOptions,
    fw: Firewall,
    binary: Path | None,
    on_sample: OnSample | None,
) -> PhaseResult:
    cfg = opts.config
    server = cfg.server_netns
    leftovers = fw.flush_leftovers()
    ns.run(["conntrack", "-F"], netns=server, check=False)
    fw.program(phase)
    try:
        table_max = ct.read_max(server)
        result = PhaseResult(name=phase, backend=fw.backend if phase != "baseline" else None,
                             conntrack_max=table_max, leftover_rules=leftovers)  # fmt: skip
        before = ct.read_stats(server)
        spec = loadgen.LoadSpec(
            dst=cfg.server_ip,
            port=cfg.port,
            source_base=cfg.source_base,
            source_count=cfg.source_count,
            threads=opts.threads,
            concurrency=opts.concurrency,
            duration=opts.phase_seconds,
        )
        with loadgen.LoadProcess(spec, cfg.client_netns, binary) as proc:
            for report in proc.reports():
                stats = ct.read_stats(server)
                sample = Sample(
                    t=report.t,
                    completed=report.completed,
                    failed=report.failed,
                    timed_out=report.timed_out,
                    syn_retrans=report.syn_retrans,
                    p50_us=report.p50_us,
                    p99_us=report.p99_us,
                    conntrack_count=ct.read_count(server),
                    kernel_drops=stats.get("drop", 0) - before.get("drop", 0),
                )
                result.samples.append(sample)
                if on_sample is not None:
                    on_sample(phase, sample, table_max)
            summary = proc.summary
        if summary is None:
            raise LabError(f"phase {phase}: the load generator gave no summary")
        after = ct.read_stats(server)
        result.duration_s = summary.t
        result.connections_ok = summary.completed
        result.failed = summary.failed
        result.timed_out = summary.timed_out
        result.syn_retransmits = summary.syn_retrans
        result.p50_us = summary.p50_us
        result.p99_us = summary.p99_us
        result.kernel_drops = after.get("drop", 0) - before.get("drop", 0)
        result.early_drop = after.get("early_drop", 0) - before.get("early_drop", 0)
        result.insert_failed = after.get("insert_failed", 0) - before.get("insert_failed", 0)
        result.entries_port_end = ct.count_port_entries(cfg.port, server)
        return result
    finally:
        fw.cleanup()


def run_lab(opts: RunOptions, on_sample: OnSample | None = None) -> dict[str, Any]:
    """Build the lab, run the phases, tear everything down; returns the results document.

    The topology and the conntrack-max change are undone on every way out: normal return,
    exception, Ctrl-C and SIGTERM (see `cleanup_on_signals`).
    """
    phases = list(opts.phases)
    if opts.phase_seconds <= 0:
        raise LabError("--phase-seconds must be positive")
    fw = Firewall(opts.config, opts.backend, opts.config.run_dir, felis=opts.felis)
    binary = loadgen.build()
    results: list[PhaseResult] = []
    guard: contextlib.AbstractContextManager[Any] = (
        ConntrackMaxGuard(opts.conntrack_max, opts.config.run_dir)
        if opts.conntrack_max is not None
        else contextlib.nullcontext()
    )
    started = datetime.now(UTC).isoformat(timespec="seconds")
    with cleanup_on_signals(), guard, Topology(opts.config):
        for phase in phases:
            results.append(run_phase(phase, opts, fw, binary, on_sample))
    meta = {
        "started": started,
        "backend": opts.backend,
        "phase_seconds": opts.phase_seconds,
        "conntrack_max_setting": opts.conntrack_max,
        "loadgen": "c" if binary is not None else "python",
        "load": {"threads": opts.threads, "concurrency": opts.concurrency, "deadline_ms": 3000},
        "lab": {k: str(v) for k, v in asdict(opts.config).items()},
    }
    doc = results_document(results, meta)
    write_results(opts.results, doc)
    if opts.chart:
        render_chart(doc, opts.results / CHART_NAME)
    return doc


def print_comparison(doc: dict[str, Any], console: Console) -> None:
    table = Table(title="felis lab: comparison")
    for title, _ in COLUMNS:
        table.add_column(title, justify="left" if title == "phase" else "right", no_wrap=True)
    for row in comparison_rows(doc):
        table.add_row(*row)
    console.print(table)
    for line in verdict(doc):
        console.print(line, highlight=False)


def elapsed_hint(phases: int, seconds: float) -> float:
    """Rough wall time of a run: load + 3 s drain + ~4 s of setup per phase."""
    return phases * (seconds + 7.0) + 3.0


__all__ = ["RunOptions", "elapsed_hint", "parse_phases", "print_comparison", "run_lab"]
