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
from rich.text import Text

from felis.conntrack import kernel as ct
from felis.lab import loadgen
from felis.lab import netns as ns
from felis.lab.chart import CHART_NAME, render_chart
from felis.lab.errors import LabError
from felis.lab.firewall import Firewall
from felis.lab.manifests import PHASES
from felis.lab.results import (
    RESULTS_NAME,
    PhaseResult,
    Sample,
    comparison_rows,
    results_document,
    scale_note,
    verdict,
    write_results,
)
from felis.lab.signals import cleanup_on_signals
from felis.lab.sysctl import ConntrackMaxGuard, read_conntrack_max
from felis.lab.topology import LabConfig, Topology

DEFAULT_PHASE_SECONDS = 30.0
MARK_STYLES = {"ok": "green", "FAIL": "bold red", "note": "yellow"}


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


# (title, width) of the progress columns: narrow enough for an 80-column terminal.
PROGRESS_COLUMNS = (
    ("phase", 10),
    ("t", 4),
    ("conn/s", 7),
    ("fail/s", 6),
    ("failed", 7),
    ("conntrack", 13),
    ("drops", 7),
)


class ProgressView:
    """Live per-second view while a phase runs; aligned plain lines when not on a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self.rows: dict[str, tuple[str, ...]] = {}
        # per phase: completed total, failed total, time of the last sample, last rates
        self.state: dict[str, tuple[int, int, float, float, float]] = {}

    def _table(self) -> Table:
        table = Table(title="felis lab run (live)", min_width=0)
        for col, _ in PROGRESS_COLUMNS:
            table.add_column(col, justify="left" if col == "phase" else "right", no_wrap=True)
        for row in self.rows.values():
            table.add_row(*row)
        return table

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            self.live = Live(self._table(), console=self.console, refresh_per_second=4)
            self.live.__enter__()
        else:
            self.console.print(self._line([c for c, _ in PROGRESS_COLUMNS]), highlight=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    @staticmethod
    def _line(cells: Sequence[str]) -> str:
        return " ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, (_, w)) in enumerate(zip(cells, PROGRESS_COLUMNS, strict=True))
        )

    def __call__(self, phase: str, s: Sample, table_max: int) -> None:
        ok, bad, prev_t, rate, fail_rate = self.state.get(phase, (0, 0, 0.0, 0.0, 0.0))
        fails = s.failed + s.timed_out
        dt = s.t - prev_t
        if dt >= 0.5:
            # The drain after the load is a sliver of a second; as a rate it means nothing.
            rate, fail_rate = s.completed / dt, fails / dt
        self.state[phase] = (ok + s.completed, bad + fails, s.t, rate, fail_rate)
        row = (
            phase,
            f"{s.t:.0f}s",
            f"{rate:.0f}",
            f"{fail_rate:.0f}",
            str(bad + fails),
            f"{s.conntrack_count}/{table_max}",
            str(s.kernel_drops),
        )
        self.rows[phase] = row
        if self.live is not None:
            self.live.update(self._table())
        else:
            self.console.print(self._line(row), highlight=False)


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
    topo = Topology(opts.config)
    with cleanup_on_signals(), guard, topo:
        original = guard.original if isinstance(guard, ConntrackMaxGuard) else read_conntrack_max()
        for phase in phases:
            results.append(run_phase(phase, opts, fw, binary, on_sample))
    cfg = opts.config
    meta = {
        "started": started,
        "backend": opts.backend,
        "phase_seconds": opts.phase_seconds,
        "conntrack_max_setting": opts.conntrack_max,
        "conntrack_max_original": original,
        "loadgen": "c" if binary is not None else "python",
        "load": {"threads": opts.threads, "concurrency": opts.concurrency, "deadline_ms": 3000},
        "lab": {k: str(v) for k, v in asdict(cfg).items()},
        # Checked after the fact, so the report says what is true, not what was intended.
        "restored": {
            "conntrack_max_now": read_conntrack_max(),
            "namespaces_left": [
                n for n in (cfg.server_netns, cfg.client_netns) if ns.netns_exists(n)
            ],
            "removed": topo.removed,
            "leftover_rules": sum(r.leftover_rules for r in results),
        },
    }
    doc = results_document(results, meta)
    write_results(opts.results, doc)
    if opts.chart:
        render_chart(doc, opts.results / CHART_NAME)
    return doc


def restored_line(doc: dict[str, Any]) -> str:
    meta = doc.get("meta", {})
    info = meta.get("restored", {})
    original, now = meta.get("conntrack_max_original"), info.get("conntrack_max_now")
    parts = []
    if meta.get("conntrack_max_setting") is not None:
        same = "as before" if original == now else f"WAS {original}"
        parts.append(f"nf_conntrack_max back to {now} ({same})")
    else:
        parts.append(f"nf_conntrack_max untouched ({now})")
    left = info.get("namespaces_left", [])
    lab = meta.get("lab", {})
    names = [lab.get("server_netns", "?"), lab.get("client_netns", "?")]
    if left:
        parts.append(f"namespaces STILL PRESENT: {', '.join(left)} (run `felis lab down`)")
    else:
        parts.append(f"namespaces {' and '.join(names)} removed, with the veth pair and memcached")
    parts.append("felis' rules removed after each phase (`felis agent --cleanup`)")
    return "Restored: " + "; ".join(parts) + "."


def print_report(doc: dict[str, Any], console: Console, results: Path) -> bool:
    """The comparison table, the verdict, where the files are and what was undone.

    Returns whether every required outcome showed.
    """
    header, rows = comparison_rows(doc)
    table = Table(title="felis lab: comparison", min_width=0)
    for i, title in enumerate(header):
        table.add_column(title, justify="left" if i == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    ok, head, marks = verdict(doc)
    console.print(head, highlight=False, markup=False, style="bold")
    # A grid keeps wrapped sentences indented under their own text, not under the mark.
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    for mark, text in marks:
        grid.add_row(Text(f"[{mark}]", style=MARK_STYLES[mark]), Text(text))
    console.print(grid)
    note = scale_note(doc)
    if note:
        console.print(note, highlight=False, markup=False)
    files = f"Results: {results / RESULTS_NAME}"
    if (results / CHART_NAME).exists():
        files += f"   Chart: {results / CHART_NAME}"
    console.print(files, highlight=False, markup=False)
    console.print(restored_line(doc), highlight=False, markup=False)
    return ok


def elapsed_hint(phases: int, seconds: float) -> float:
    """Rough wall time of a run: load + 3 s drain + ~4 s of setup per phase."""
    return phases * (seconds + 7.0) + 3.0


def intro(opts: RunOptions) -> str:
    """What is about to happen, in one paragraph."""
    phases = list(opts.phases)
    minutes = elapsed_hint(len(phases), opts.phase_seconds) / 60
    text = (
        f"felis lab run: {len(phases)} phases ({', '.join(phases)}) of {opts.phase_seconds:g} s "
        f"saturating memcached load each, about {minutes:.1f} min; felis programs the server "
        f"namespace with the {opts.backend} backend."
    )
    if opts.conntrack_max is not None:
        text += (
            f" nf_conntrack_max is set to {opts.conntrack_max:,} for the run "
            f"(now {read_conntrack_max():,}; restored at the end, even on Ctrl-C)."
        )
    return text


__all__ = ["RunOptions", "elapsed_hint", "intro", "parse_phases", "print_report", "run_lab"]
