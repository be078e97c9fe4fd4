"""Cost of the seed's untracked flow against the node's untracked policy count.

The node carries the seed (memcached on 12211, doNotTrack) plus N other doNotTrack policies
selecting the same host endpoint, each allowing its own TCP port (20000 + i) from the same
clients, with the return rule: N = 0, 1, 100, 1,000, ordered before the memcached policy
(`before-N`: the memcached flow's walk meets all of them first) or after it (`after-N`). The
hand-written ruleset of the lab is the reference in every round. Everything runs in the lab's
namespaces (198.18.0.0/15 only); every load is bounded in count and time.

Per scenario: conn/s of the memcached load at saturation relative to `handwritten` in the same
round (median over rounds, start rotated each round), whole-box CPU µs per connection, failed
connections, and the number of rules felis programmed in the raw table.

Run (root), no Makefile needed:
    .venv/bin/python bench/bench_policy_count.py [--backends nftables,iptables] [--rounds 4]
        [--seconds 6] [--counts 1,100,1000] [--out lab-results/policy-count.json]
(about 5 minutes per backend with the defaults). Figures go into docs/benchmarks-lab.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from felis.conntrack import kernel as ct
from felis.lab import loadgen
from felis.lab import netns as ns
from felis.lab.cpu import cpu_times
from felis.lab.firewall import Firewall
from felis.lab.handwritten import HANDWRITTEN
from felis.lab.manifests import API_VERSION, phase_documents
from felis.lab.rounds import round_order
from felis.lab.signals import cleanup_on_signals
from felis.lab.topology import LabConfig, Topology

MEMCACHED_ORDER = 500.0
FIRST_OTHER_PORT = 20000


def other_policy(index: int, before: bool) -> dict[str, Any]:
    port = FIRST_OTHER_PORT + index
    clients = {"selector": "memcached == 'client'"}
    return {
        "apiVersion": API_VERSION,
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": f"other-{index:04d}"},
        "spec": {
            "selector": "memcached == 'server'",
            # Orders below (before) or above (after) the memcached policy's.
            "order": index / 10 if before else MEMCACHED_ORDER + 1 + index,
            "doNotTrack": True,
            "applyOnForward": True,
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": clients,
                    "destination": {"ports": [port]},
                }
            ],
            "egress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"ports": [port]},
                    "destination": clients,
                }
            ],
        },
    }


def scenario_documents(name: str, cfg: LabConfig) -> list[dict[str, Any]]:
    docs = phase_documents("donottrack", cfg)
    for doc in docs:
        if doc["kind"] == "GlobalNetworkPolicy":
            doc["spec"]["order"] = MEMCACHED_ORDER
    if name == "seed":
        return docs
    placement, _, count = name.partition("-")
    return docs + [other_policy(i, placement == "before") for i in range(int(count))]


@dataclass
class Run:
    backend: str
    scenario: str
    round: int
    conn_per_s: float = 0.0
    failed: int = 0
    cpu_us_per_conn: float = 0.0
    raw_rules: int = 0
    entries_12211_end: int = 0


def raw_rule_count(cfg: LabConfig, backend: str) -> int:
    if backend == "nftables":
        text = ns.run(["nft", "list", "ruleset"], netns=cfg.server_netns).stdout
        # Rules of the raw layer (felis' and the hand-written table's): chains named raw-….
        count, in_raw = 0, False
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith("chain "):
                in_raw = stripped.split()[1].startswith("raw-")
            elif in_raw and stripped and not stripped.startswith(("type ", "}", "policy")):
                count += 1
        return count
    text = ns.run(["iptables-save", "-t", "raw"], netns=cfg.server_netns).stdout
    return sum(1 for line in text.splitlines() if line.startswith("-A "))


def measure(
    cfg: LabConfig, fw: Firewall, binary: Path, scenario: str, rnd: int, seconds: float
) -> Run:
    run = Run(fw.backend, scenario, rnd)
    fw.flush_leftovers()
    ns.run(["conntrack", "-F"], netns=cfg.server_netns, check=False)
    if scenario == HANDWRITTEN:
        fw.program(HANDWRITTEN)
    else:
        fw.program_documents(scenario, scenario_documents(scenario, cfg))
    try:
        run.raw_rules = raw_rule_count(cfg, fw.backend)
        spec = loadgen.LoadSpec(
            dst=cfg.server_ip,
            port=cfg.port,
            source_base=cfg.source_base,
            source_count=cfg.source_count,
            threads=2,
            concurrency=64,
            count=int(60_000 * seconds * 1.2),
            duration=seconds,
        )
        before = cpu_times()
        _, summary = loadgen.run_load(spec, cfg.client_netns, binary)
        after = cpu_times()
        run.conn_per_s = summary.completed / summary.t if summary.t else 0.0
        run.failed = summary.failed + summary.timed_out
        if summary.completed:
            run.cpu_us_per_conn = 1e6 * (after.busy - before.busy) / summary.completed
        run.entries_12211_end = ct.count_port_entries(cfg.port, cfg.server_netns)
    finally:
        fw.cleanup()
    return run


def summarise(runs: list[Run], scenarios: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for backend in dict.fromkeys(r.backend for r in runs):
        mine = [r for r in runs if r.backend == backend]
        reference = {r.round: r.conn_per_s for r in mine if r.scenario == HANDWRITTEN}
        rows = {}
        for scenario in scenarios:
            these = [r for r in mine if r.scenario == scenario]
            ratios = [r.conn_per_s / reference[r.round] for r in these if reference.get(r.round)]
            rows[scenario] = {
                "median_vs_handwritten": round(statistics.median(ratios), 3) if ratios else None,
                "median_conn_per_s": round(statistics.median(r.conn_per_s for r in these)),
                "median_cpu_us_per_conn": round(
                    statistics.median(r.cpu_us_per_conn for r in these), 1
                ),
                "failed": sum(r.failed for r in these),
                "raw_rules": these[0].raw_rules if these else None,
                "entries_12211_end": max(r.entries_12211_end for r in these),
            }
        out[backend] = rows
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--backends", default="nftables,iptables")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--counts", default="1,100,1000")
    ap.add_argument("--out", type=Path, default=Path("lab-results/policy-count.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_policy_count: needs root (network namespaces)")
    counts = [int(c) for c in args.counts.split(",")]
    scenarios = [HANDWRITTEN, "seed"]
    scenarios += [f"{where}-{n}" for n in counts for where in ("before", "after")]
    cfg = LabConfig(
        server_netns="felis-pc-s",
        client_netns="felis-pc-c",
        node_name="memcached-node-1",
        run_dir=Path("/run/felis-lab-policy-count"),
    )
    runs: list[Run] = []
    topo = Topology(cfg)
    with cleanup_on_signals(), topo:
        binary = loadgen.build()
        if binary is None:
            sys.exit("bench_policy_count: needs a C compiler for the load generator")
        for backend in args.backends.split(","):
            fw = Firewall(cfg, backend, cfg.run_dir / backend)
            for rnd in range(1, args.rounds + 1):
                for scenario in round_order(scenarios, rnd):
                    run = measure(cfg, fw, binary, scenario, rnd, args.seconds)
                    runs.append(run)
                    print(
                        f"{backend:9} r{rnd} {scenario:12} {run.conn_per_s:8.0f} conn/s "
                        f"{run.cpu_us_per_conn:6.1f} us/conn failed {run.failed} "
                        f"raw rules {run.raw_rules}",
                        file=sys.stderr,
                        flush=True,
                    )
    summary = summarise(runs, scenarios)
    doc = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "summary": summary,
        "runs": [asdict(r) for r in runs],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
