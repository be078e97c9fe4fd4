"""Lab benchmark: short-connection load against a real memcached, through felis' own rules.

Three parts, all in the lab's namespaces (198.18.0.0/15 only), every load bounded in count and
time:

1. Saturating load, interleaved rounds (a b c d a b c d ...):
   a `none`      no rules at all;
   b `stateful`  felis' tracked allow of 12211 (nftables backend);
   c `dnt-ipt`   felis' doNotTrack seed policy, iptables backend;
   d `dnt-nft`   felis' doNotTrack seed policy, nftables backend.
   Reported: per-scenario medians and, per round, the ratios to `none` and c/b, d/b.
2. Fixed-rate soak through the felis doNotTrack policy (default 10k conn/s for 60 s, each
   backend): failures, and the conntrack count sampled every second.
3. CPU per connection: whole-box busy time from /proc/stat deltas during fixed-rate runs
   (interleaved none / stateful / dnt-nft, plus the soaks), next to the CPU of memcached and the
   load generator alone (the box is shared with other jobs; the load average is recorded).

Run (root): .venv/bin/python bench/bench_lab.py [--rounds 5] [--rotate] [--seconds 6] [--out FILE]
[--client-ports LOW-HIGH] (default output lab-results/bench-lab.json, git-ignored; about 8 minutes
with the defaults; the client port range defaults to the lab's, 1024-65535)
Results go into docs/benchmarks-lab.md by hand (with the command and date).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from felis.conntrack import kernel as ct
from felis.lab import loadgen
from felis.lab import netns as ns
from felis.lab.cpu import cpu_times, proc_cpu
from felis.lab.errors import LabError
from felis.lab.firewall import Firewall
from felis.lab.signals import cleanup_on_signals
from felis.lab.topology import (
    DEFAULT_CLIENT_PORTS,
    LabConfig,
    Topology,
    format_port_range,
    parse_port_range,
)

SCENARIOS = ("none", "stateful", "dnt-ipt", "dnt-nft")
# Diagnostic, not in the default set: doNotTrack without the failsafe rules, to see what the
# per-packet walk through them costs.
EXTRA_SCENARIOS = ("dnt-nft-nofs",)
# scenario -> (backend, lab phase) for felis; `none` programs nothing.
PROGRAM = {
    "none": ("nftables", "baseline"),
    "stateful": ("nftables", "stateful"),
    "dnt-ipt": ("iptables", "donottrack"),
    "dnt-nft": ("nftables", "donottrack"),
    "dnt-nft-nofs": ("nftables", "donottrack"),
}
NO_FAILSAFES = {
    "FELIS_FAILSAFE_INBOUND_HOST_PORTS": "none",
    "FELIS_FAILSAFE_OUTBOUND_HOST_PORTS": "none",
}
RATIOS = (
    "stateful/none",
    "dnt-ipt/none",
    "dnt-nft/none",
    "dnt-ipt/stateful",
    "dnt-nft/stateful",
    "dnt-nft-nofs/none",
)


def run_header() -> dict[str, Any]:
    """When, how and where a lab bench ran: the head of its JSON (bench_flood shares it)."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "conntrack_max": ct.read_max(),
        },
    }


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


@dataclass
class Run:
    scenario: str
    round: int
    mode: str  # "saturating" or "rate"
    rate: float
    seconds: float
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    syn_retrans: int = 0
    skipped: int = 0
    p50_us: int = 0
    p99_us: int = 0
    conn_per_s: float = 0.0
    conntrack_samples: list[int] = field(default_factory=list)
    conntrack_end: int = 0
    entries_12211_end: int = 0
    kernel_drops: int = 0
    box_busy_s: float = 0.0
    box_cores: float = 0.0  # average busy cores during the load (2.0 = both)
    box_us_per_conn: float = 0.0
    procs_cpu_s: float = 0.0  # memcached + load generator
    procs_us_per_conn: float = 0.0
    # Packet processing runs in softirq, which /proc/PID/stat does not charge to a process;
    # memcached + client + the box's softirq is "ours" while other jobs share the box.
    softirq_s: float = 0.0
    ours_us_per_conn: float = 0.0
    loadavg_before: float = 0.0
    loadavg_after: float = 0.0
    leftover_rules: int = 0


class Bench:
    def __init__(self, cfg: LabConfig, topo: Topology) -> None:
        self.cfg = cfg
        self.topo = topo
        self.binary = loadgen.build()
        if self.binary is None:
            sys.exit("bench_lab: needs a C compiler for the load generator")
        self.firewalls = {
            b: Firewall(cfg, b, cfg.run_dir / f"fw-{b}") for b in ("iptables", "nftables")
        }

    @contextmanager
    def scenario(self, name: str, run: Run) -> Iterator[None]:
        backend, phase = PROGRAM[name]
        fw = self.firewalls[backend]
        run.leftover_rules = fw.flush_leftovers()
        ns.run(["conntrack", "-F"], netns=self.cfg.server_netns, check=False)
        saved = {k: os.environ.get(k) for k in NO_FAILSAFES}
        if name.endswith("-nofs"):
            os.environ.update(NO_FAILSAFES)
        try:
            fw.program(phase)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        try:
            yield
        finally:
            fw.cleanup()

    def measure(self, name: str, rnd: int, seconds: float, rate: float = 0.0) -> Run:
        cfg = self.cfg
        run = Run(name, rnd, "rate" if rate else "saturating", rate, seconds)
        with self.scenario(name, run):
            spec = loadgen.LoadSpec(
                dst=cfg.server_ip,
                port=cfg.port,
                source_base=cfg.source_base,
                source_count=cfg.source_count,
                threads=2,
                # Open loop: a high in-flight cap, so a stall on the shared box delays
                # connections instead of skipping them.
                concurrency=64 if not rate else 2048,
                rate=rate,
                # Bounded twice: by time, and by a count no 2-core box reaches in that time.
                count=int((rate or 60_000) * seconds * 1.2),
                duration=seconds,
            )
            drops_before = ct.read_stats(cfg.server_netns).get("drop", 0)
            memcached = self.topo.memcached_pid()
            run.loadavg_before = loadavg()
            busy0, total0, soft0 = cpu_times()
            mc0 = proc_cpu(memcached) if memcached else 0.0
            with loadgen.LoadProcess(spec, cfg.client_netns, self.binary) as proc:
                lg_pid = proc.pid
                lg_cpu = 0.0
                for _ in proc.reports():
                    run.conntrack_samples.append(ct.read_count(cfg.server_netns))
                    lg_cpu = max(lg_cpu, proc_cpu(lg_pid))
                summary = proc.summary
            busy1, total1, soft1 = cpu_times()
            mc1 = proc_cpu(memcached) if memcached else 0.0
            run.loadavg_after = loadavg()
            assert summary is not None
            run.completed = summary.completed
            run.failed = summary.failed
            run.timed_out = summary.timed_out
            run.syn_retrans = summary.syn_retrans
            run.skipped = summary.skipped
            run.p50_us, run.p99_us = summary.p50_us, summary.p99_us
            run.conn_per_s = summary.completed / summary.t if summary.t else 0.0
            run.conntrack_end = ct.read_count(cfg.server_netns)
            run.entries_12211_end = ct.count_port_entries(cfg.port, cfg.server_netns)
            run.kernel_drops = ct.read_stats(cfg.server_netns).get("drop", 0) - drops_before
            ncpu = os.cpu_count() or 1
            run.box_busy_s = busy1 - busy0
            run.box_cores = ncpu * (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0
            run.procs_cpu_s = (mc1 - mc0) + lg_cpu
            run.softirq_s = soft1 - soft0
            if run.completed:
                run.box_us_per_conn = 1e6 * run.box_busy_s / run.completed
                run.procs_us_per_conn = 1e6 * run.procs_cpu_s / run.completed
                run.ours_us_per_conn = 1e6 * (run.procs_cpu_s + run.softirq_s) / run.completed
        return run


def ratios(runs: list[Run]) -> dict[str, Any]:
    """Per-scenario medians and within-round ratios of the saturating runs."""
    by_round: dict[int, dict[str, float]] = {}
    for r in runs:
        by_round.setdefault(r.round, {})[r.scenario] = r.conn_per_s
    out: dict[str, Any] = {
        "median_conn_per_s": {},
        "median_ratio": {},
        "rounds_above_1": {},
        "per_round": [],
    }
    for s in (*SCENARIOS, *EXTRA_SCENARIOS):
        rates = [r.conn_per_s for r in runs if r.scenario == s]
        out["median_conn_per_s"][s] = round(statistics.median(rates)) if rates else None
    for rnd, vals in sorted(by_round.items()):
        row: dict[str, Any] = {"round": rnd, **{s: round(v) for s, v in vals.items()}}
        if vals.get("none"):
            for s in (*SCENARIOS[1:], *EXTRA_SCENARIOS):
                if s in vals:
                    row[f"{s}/none"] = round(vals[s] / vals["none"], 3)
        if vals.get("stateful"):
            for s in ("dnt-ipt", "dnt-nft"):
                if s in vals:
                    row[f"{s}/stateful"] = round(vals[s] / vals["stateful"], 3)
        out["per_round"].append(row)
    for key in RATIOS:
        found = [float(row[key]) for row in out["per_round"] if key in row]
        out["median_ratio"][key] = round(statistics.median(found), 3) if found else None
        out["rounds_above_1"][key] = f"{sum(1 for v in found if v > 1.0)}/{len(found)}"
    return out


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def describe(r: Run) -> str:
    peak = max(r.conntrack_samples, default=0)
    return (
        f"{r.scenario:9} round {r.round} {r.mode:10} {r.conn_per_s:8.0f} conn/s  "
        f"failed {r.failed + r.timed_out}  ct peak {peak} end {r.conntrack_end}  "
        f"box {r.box_cores:.2f} cores {r.box_us_per_conn:.0f} us/conn "
        f"(ours {r.ours_us_per_conn:.0f})  load {r.loadavg_after:.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=6.0, help="saturating run length")
    ap.add_argument("--soak-rate", type=float, default=10_000.0)
    ap.add_argument("--soak-seconds", type=float, default=60.0)
    ap.add_argument("--soak-backends", default="nftables,iptables")
    ap.add_argument("--cpu-rounds", type=int, default=3, help="fixed-rate CPU rounds")
    ap.add_argument("--cpu-seconds", type=float, default=10.0)
    ap.add_argument("--parts", default="saturating,cpu,soak")
    ap.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"saturating scenarios, in round order; also {', '.join(EXTRA_SCENARIOS)}",
    )
    ap.add_argument(
        "--rotate",
        action="store_true",
        help="start each round one scenario later (a b c d, b c d a, ...) against position bias",
    )
    ap.add_argument("--out", type=Path, default=Path("lab-results/bench-lab.json"))
    ap.add_argument(
        "--client-ports",
        default=format_port_range(DEFAULT_CLIENT_PORTS),
        help="the client's ephemeral port range, LOW-HIGH (the lab's default)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_lab: needs root (network namespaces)")
    parts = set(args.parts.split(","))
    try:
        client_ports = parse_port_range(args.client_ports)
    except LabError as exc:
        sys.exit(f"bench_lab: {exc}")
    cfg = LabConfig(
        server_netns="felis-bench-s",
        client_netns="felis-bench-c",
        node_name="memcached-node-1",
        client_ports=client_ports,
        run_dir=Path("/run/felis-lab-bench"),
    )
    doc: dict[str, Any] = {
        **run_header(),
        "client_ports": format_port_range(client_ports),
        "loadavg_start": loadavg(),
    }
    saturating: list[Run] = []
    cpu: list[Run] = []
    soak: list[Run] = []
    topo = Topology(cfg)
    with cleanup_on_signals(), topo:
        bench = Bench(cfg, topo)
        if "saturating" in parts:
            order = args.scenarios.split(",")
            unknown = set(order) - set(PROGRAM)
            if unknown:
                sys.exit(f"bench_lab: unknown scenario {sorted(unknown)[0]}")
            for rnd in range(1, args.rounds + 1):
                shift = (rnd - 1) % len(order) if args.rotate else 0
                for s in order[shift:] + order[:shift]:
                    r = bench.measure(s, rnd, args.seconds)
                    saturating.append(r)
                    log(describe(r))
        if "cpu" in parts:
            for rnd in range(1, args.cpu_rounds + 1):
                for s in ("none", "stateful", "dnt-nft"):
                    r = bench.measure(s, rnd, args.cpu_seconds, rate=args.soak_rate)
                    cpu.append(r)
                    log(describe(r))
        if "soak" in parts:
            for backend in args.soak_backends.split(","):
                name = {"nftables": "dnt-nft", "iptables": "dnt-ipt"}[backend]
                r = bench.measure(name, 1, args.soak_seconds, rate=args.soak_rate)
                soak.append(r)
                log(describe(r))
    doc["loadavg_end"] = loadavg()
    doc["conntrack_max_end"] = ct.read_max()
    doc["saturating"] = {"runs": [asdict(r) for r in saturating], **ratios(saturating)}
    doc["cpu"] = {"runs": [asdict(r) for r in cpu]}
    for s in ("none", "stateful", "dnt-nft"):
        vals = [r.box_us_per_conn for r in cpu if r.scenario == s]
        procs = [r.procs_us_per_conn for r in cpu if r.scenario == s]
        ours = [r.ours_us_per_conn for r in cpu if r.scenario == s]
        if vals:
            doc["cpu"][s] = {
                "median_box_us_per_conn": round(statistics.median(vals), 1),
                "median_procs_us_per_conn": round(statistics.median(procs), 1),
                "median_ours_us_per_conn": round(statistics.median(ours), 1),
                "median_box_cores": round(
                    statistics.median(r.box_cores for r in cpu if r.scenario == s), 2
                ),
                "cores_for_50k_conn_per_s": round(statistics.median(vals) * 50_000 / 1e6, 2),
            }
    doc["soak"] = [
        {**asdict(r), "conntrack_max_sampled": max(r.conntrack_samples, default=0)} for r in soak
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    summary = {k: v for k, v in doc["saturating"].items() if k != "runs"}
    print(json.dumps({"saturating": summary, "cpu": {k: v for k, v in doc["cpu"].items()
                      if k != "runs"}}, indent=2))  # fmt: skip
    for r in soak:
        print(describe(r))
    log(f"written {args.out}")


if __name__ == "__main__":
    main()
