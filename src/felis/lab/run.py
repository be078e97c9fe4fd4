"""`felis lab run`: the demo. Phases against the same memcached, same load, same duration.

* `stateful`: felis programs a normal (tracked) allow for TCP 12211; every closed connection
  sits in conntrack as TIME_WAIT for 120 s, the table fills, new connections fail.
* `donottrack`: felis programs the seed's doNotTrack policy; 12211 never enters conntrack.
* `handwritten` (not in the default set): the minimal ruleset a person would write for the same
  policy, programmed by the lab itself: the reference felis' doNotTrack rules are measured by.
* `baseline`: no rules at all: the machine's ceiling.
* `flood` (not in the default set) stands for three phases, `noflood`, `flood-xdp` and
  `flood-raw`: the donottrack rules plus a DoS blocklist, at peace and under a SYN flood from
  blocklisted sources, dropped in XDP or in the raw table (see `felis.lab.flood`).

Between phases the rules are removed, the lab checks that nothing is left and flushes the
server namespace's conntrack table, so no phase inherits the previous one's entries. With
`--rounds N` the phases run N times, interleaved (see `felis.lab.rounds`).
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

from felis import sysexec
from felis.conntrack import kernel as ct
from felis.lab import flood, loadgen
from felis.lab import netns as ns
from felis.lab.chart import CHART_NAME, render_chart
from felis.lab.cpu import cpu_times, proc_cpu
from felis.lab.errors import LabError
from felis.lab.firewall import Firewall
from felis.lab.flood import (
    DEFAULT_FLOOD_RATE,
    DEFAULT_FLOOD_VIA,
    DRIVER,
    FLOOD,
    FLOOD_PHASES,
    FLOODED,
    Flooder,
    FloodRig,
    check_via,
    expand_phases,
    link_mac,
    nic_like,
    xdp_dropped,
)
from felis.lab.handwritten import HANDWRITTEN
from felis.lab.manifests import PHASES
from felis.lab.results import (
    RESULTS_NAME,
    FloodFigures,
    PhaseResult,
    Sample,
    comparison_rows,
    results_document,
    round_count,
    rounds_rows,
    scale_note,
    verdict,
    write_results,
)
from felis.lab.rounds import round_order
from felis.lab.signals import cleanup_on_signals
from felis.lab.sysctl import ConntrackMaxGuard, read_conntrack_max
from felis.lab.topology import LabConfig, Topology, format_port_range

DEFAULT_PHASE_SECONDS = 30.0
# Every phase `--phases` accepts; the default set is manifests.PHASES (the demo's three).
ALL_PHASES = (*PHASES[:2], HANDWRITTEN, *PHASES[2:], *FLOOD_PHASES)
MARK_STYLES = {"ok": "green", "FAIL": "bold red", "note": "yellow"}
VIA_WORDS = {
    DRIVER: "as driver frames (like a NIC's)",
    flood.SOCKET: "from an AF_PACKET socket",
}


@dataclass
class RunOptions:
    phase_seconds: float = DEFAULT_PHASE_SECONDS
    conntrack_max: int | None = None
    results: Path = Path("lab-results")
    backend: str = "nftables"
    phases: Sequence[str] = PHASES
    rounds: int = 1
    threads: int = 2
    concurrency: int = 64
    config: LabConfig = field(default_factory=LabConfig)
    chart: bool = True
    flood_rate: float = DEFAULT_FLOOD_RATE
    flood_via: str = DEFAULT_FLOOD_VIA
    # Queues per end of the veth pair in driver-mode flood phases; None: one per core.
    flood_queues: int | None = None
    # The felis command line; tests substitute a stand-in to exercise the orchestration.
    felis: Sequence[str] | None = None

    def __post_init__(self) -> None:
        # Checked here, so a bad value is refused before anything is printed or built.
        if self.phase_seconds <= 0:
            raise LabError("--phase-seconds must be positive")
        if self.rounds < 1:
            raise LabError(f"--rounds must be at least 1, not {self.rounds}")
        if self.flood_rate <= 0:
            raise LabError(f"--flood-rate must be positive, not {self.flood_rate:g}")
        check_via(self.flood_via)


def parse_phases(text: str) -> list[str]:
    """The phases to run, in order; `flood` stands for its three phases."""
    phases = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in phases if p not in (*ALL_PHASES, FLOOD)]
    if bad or not phases:
        raise LabError(
            f"--phases: unknown phase {bad[0] if bad else text!r}; "
            f"use some of {','.join((*ALL_PHASES[:4], FLOOD, *FLOOD_PHASES))}"
        )
    phases = expand_phases(phases)
    if len(set(phases)) != len(phases):
        raise LabError("--phases: each phase may appear once")
    return phases


OnSample = Callable[[str, Sample, int], None]


def phase_label(phase: str, rnd: int, rounds: int) -> str:
    """How the progress view names one run of a phase."""
    return phase if rounds == 1 else f"{phase} {rnd}"


def label_width(opts: RunOptions) -> int:
    """Width of the progress view's first column: fits every label of the run (at least 10)."""
    labels = [phase_label(p, opts.rounds, opts.rounds) for p in opts.phases]
    return max([PROGRESS_COLUMNS[0][1], *(len(label) for label in labels)])


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

    def __init__(self, console: Console, phase_width: int = PROGRESS_COLUMNS[0][1]) -> None:
        self.console = console
        self.columns = (("phase", phase_width), *PROGRESS_COLUMNS[1:])
        self.live: Live | None = None
        self.rows: dict[str, tuple[str, ...]] = {}
        # per phase: completed total, failed total, time of the last sample, last rates
        self.state: dict[str, tuple[int, int, float, float, float]] = {}

    def _table(self) -> Table:
        table = Table(title="felis lab run (live)", min_width=0)
        for col, _ in self.columns:
            table.add_column(col, justify="left" if col == "phase" else "right", no_wrap=True)
        for row in self.rows.values():
            table.add_row(*row)
        return table

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            self.live = Live(self._table(), console=self.console, refresh_per_second=4)
            self.live.__enter__()
        else:
            self.console.print(self._line([c for c, _ in self.columns]), highlight=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def _line(self, cells: Sequence[str]) -> str:
        return " ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, (_, w)) in enumerate(zip(cells, self.columns, strict=True))
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
    rnd: int,
    opts: RunOptions,
    fw: Firewall,
    binary: Path | None,
    on_sample: OnSample | None,
    *,
    memcached_pid: int | None = None,
    rig: FloodRig | None = None,
) -> PhaseResult:
    cfg = opts.config
    server = cfg.server_netns
    # An XDP program a cleanup left behind counts (and is removed) like a leftover rule.
    leftovers = fw.flush_leftovers() + fw.flush_xdp()
    ns.run(["conntrack", "-F"], netns=server, check=False)
    fw.program(phase)
    flooder: Flooder | None = None
    try:
        table_max = ct.read_max(server)
        result = PhaseResult(name=phase, backend=fw.backend if phase != "baseline" else None,
                             conntrack_max=table_max, leftover_rules=leftovers,
                             round=rnd)  # fmt: skip
        label = phase_label(phase, rnd, opts.rounds)
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
        figures: FloodFigures | None = None
        xdp_before = 0
        if phase in FLOOD_PHASES:
            if rig is None:
                raise LabError(f"phase {phase}: no flooder was prepared")
            mode = fw.xdp_mode()
            rate = rig.rate if phase in FLOODED else 0.0
            figures = FloodFigures(rate_pps=rate, xdp_mode=mode, via=rig.via)
            xdp_before = xdp_dropped(server, cfg.interface) if mode else 0
            if phase in FLOODED:
                # Started first and waited for, so the whole load runs under the flood.
                flooder = Flooder(rig.spec(opts.phase_seconds), cfg.client_netns, rig.binary)
        retrans_before = ns.tcp_retrans_segs(cfg.client_netns)
        cpu_before = cpu_times()
        mc_before = proc_cpu(memcached_pid)
        with loadgen.LoadProcess(spec, cfg.client_netns, binary) as proc:
            for report in proc.reports():
                if flooder is not None:
                    flooder.sample_cpu()
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
                    on_sample(label, sample, table_max)
            summary = proc.summary
        if flooder is not None and figures is not None:
            flooded = flooder.stop()
            figures.flooder_cpu_s = flooder.cpu_s
            if flooded is not None:
                figures.sent, figures.errors, figures.seconds = (
                    flooded.sent, flooded.errors, flooded.seconds
                )  # fmt: skip
                figures.generated = flooded.generated
        cpu_after = cpu_times()
        result.cpu_busy_s = cpu_after.busy - cpu_before.busy
        result.softirq_s = cpu_after.softirq - cpu_before.softirq
        result.memcached_cpu_s = proc_cpu(memcached_pid) - mc_before
        result.tcp_retrans_segs = ns.tcp_retrans_segs(cfg.client_netns) - retrans_before
        if figures is not None:
            if figures.xdp_mode is not None:
                figures.xdp_dropped = xdp_dropped(server, cfg.interface) - xdp_before
            result.flood = figures
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
        if flooder is not None:
            flooder.kill()
        fw.cleanup()


def flood_links(
    phase: str, opts: RunOptions, rig: FloodRig | None
) -> contextlib.AbstractContextManager[Any]:
    """The veth pair set up like a NIC for a driver-mode flood phase (`flood.nic_like`), all
    three flood phases alike, so `noflood` and `flood-raw` receive the way `flood-xdp` does (an
    XDP program puts a veth in NAPI mode by itself); nothing for the other phases."""
    if phase not in FLOOD_PHASES or rig is None or rig.via != DRIVER:
        return contextlib.nullcontext()
    cfg = opts.config
    return nic_like(cfg.server_netns, cfg.client_netns, cfg.interface, opts.flood_queues)


def run_lab(opts: RunOptions, on_sample: OnSample | None = None) -> dict[str, Any]:
    """Build the lab, run the phases, tear everything down; returns the results document.

    The topology and the conntrack-max change are undone on every way out: normal return,
    exception, Ctrl-C and SIGTERM (see `cleanup_on_signals`).
    """
    phases = expand_phases(list(opts.phases))
    fw = Firewall(opts.config, opts.backend, opts.config.run_dir, felis=opts.felis)
    binary = loadgen.build()
    flood_binary = flood.build() if set(phases) & set(FLOOD_PHASES) else None
    generator = (
        flood.build_generator() if flood_binary is not None and opts.flood_via == DRIVER else None
    )
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
        # Read back, so the results say what the clients really used.
        client_ports = format_port_range(topo.client_port_range())
        rig = None
        if flood_binary is not None:
            cfg = opts.config
            rig = FloodRig(
                binary=flood_binary,
                iface=cfg.interface,
                dst_mac=link_mac(cfg.server_netns, cfg.interface),
                dst=cfg.server_ip,
                port=cfg.port,
                rate=opts.flood_rate,
                via=opts.flood_via,
                generator=generator,
            )
        for rnd in range(1, opts.rounds + 1):
            for phase in round_order(phases, rnd):
                with flood_links(phase, opts, rig):
                    result = run_phase(phase, rnd, opts, fw, binary, on_sample,
                                       memcached_pid=topo.memcached_pid(), rig=rig)  # fmt: skip
                results.append(result)
    cfg = opts.config
    meta = {
        "started": started,
        "backend": opts.backend,
        "phase_seconds": opts.phase_seconds,
        "rounds": opts.rounds,
        "client_ports": client_ports,
        "conntrack_max_setting": opts.conntrack_max,
        "conntrack_max_original": original,
        "loadgen": "c" if binary is not None else "python",
        **(
            {"flood": flood.describe(opts.flood_rate, opts.flood_via)}
            if flood_binary is not None
            else {}
        ),
        "load": {"threads": opts.threads, "concurrency": opts.concurrency, "deadline_ms": 3000},
        "lab": {k: str(v) for k, v in asdict(cfg).items()},
        # Checked after the fact, so the report says what is true, not what was intended.
        "restored": {
            "conntrack_max_now": read_conntrack_max(),
            "namespaces_left": [
                n for n in (cfg.server_netns, cfg.client_netns) if sysexec.netns_exists(n)
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
    removal = "felis' rules removed after each phase (`felis agent --cleanup`)"
    if HANDWRITTEN in meta.get("phases", []):
        removal += ", the hand-written ones by the lab"
    if "flood" in meta:
        removal += ", XDP with them; the flooder stopped"
    parts.append(removal)
    return "Restored: " + "; ".join(parts) + "."


def print_table(console: Console, title: str, header: Sequence[str], rows: list[list[str]]) -> None:
    """One column per header, the first left-aligned (labels), the rest right (figures)."""
    table = Table(title=title, min_width=0)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def print_report(doc: dict[str, Any], console: Console, results: Path) -> bool:
    """The comparison table, the verdict, where the files are and what was undone.

    Returns whether every required outcome showed.
    """
    header, rows = comparison_rows(doc)
    print_table(console, "felis lab: comparison", header, rows)
    if round_count(doc) > 1:
        for title, (header, rows) in rounds_rows(doc).items():
            if len(header) > 1:
                print_table(console, title, header, rows)
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


def elapsed_hint(phases: int, seconds: float, rounds: int = 1) -> float:
    """Rough wall time of a run: load + 3 s drain + ~4 s of setup per phase and round."""
    return rounds * phases * (seconds + 7.0) + 3.0


def intro(opts: RunOptions) -> str:
    """What is about to happen, in one paragraph."""
    phases = list(opts.phases)
    minutes = elapsed_hint(len(phases), opts.phase_seconds, opts.rounds) / 60
    rounds = (
        f" × {opts.rounds} rounds (interleaved, each round starting one phase later)"
        if opts.rounds > 1
        else ""
    )
    text = (
        f"felis lab run: {len(phases)} phases ({', '.join(phases)}){rounds} of "
        f"{opts.phase_seconds:g} s saturating memcached load each, about {minutes:.1f} min; "
        f"felis programs the server namespace with the {opts.backend} backend."
    )
    if HANDWRITTEN in phases:
        text += (
            f" The {HANDWRITTEN} phase is the lab's own minimal ruleset for the same policy, "
            f"on the same backend: the reference."
        )
    if set(phases) & set(FLOODED):
        text += (
            f" In {' and '.join(p for p in phases if p in FLOODED)} a SYN flood of "
            f"{opts.flood_rate:,.0f} pkt/s from blocklisted sources ({flood.BLOCKLIST}, spoofed) "
            f"hits the server while the clients run, sent {VIA_WORDS[opts.flood_via]}; the "
            "blocklist is dropped in XDP or, with --no-xdp, in the raw table."
        )
    if opts.conntrack_max is not None:
        text += (
            f" nf_conntrack_max is set to {opts.conntrack_max:,} for the run "
            f"(now {read_conntrack_max():,}; restored at the end, even on Ctrl-C)."
        )
    return text


__all__ = [
    "ALL_PHASES",
    "RunOptions",
    "elapsed_hint",
    "intro",
    "label_width",
    "parse_phases",
    "print_report",
    "run_lab",
]
