"""Churn under traffic at full size: 1,000 unrelated changes and 100 Allow-keeping changes to the
memcached policy, written to a real etcd while connections stream through the untracked seed
policy (tests/cluster/churn.py; the suite runs 120 + 20 of them).

The traffic is the cluster harness's back-to-back connection stream from one client, not the
lab's saturating load generator. Reported: connections ok / failed, conntrack entries for port
12211 sampled every 25 changes, and the distribution of the agent's own apply times.

Run (root): .venv/bin/python bench/bench_churn.py [--backend nftables]
Results go into docs/benchmarks.md by hand, with the command and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cluster"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "kernel"))

from agents import agent_env, seed_policy
from churn import run_churn
from etcd_harness import etcd_store, poll


def _pct(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="nftables")
    parser.add_argument("--unrelated", type=int, default=1000)
    parser.add_argument("--policy", type=int, default=100)
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"# {dt.date.today()} {platform.python_version()} {platform.machine()} load {load}")
    with agent_env(1, backend=args.backend) as env, etcd_store(env.etcd) as store:
        (node,) = env.nodes
        env.seed()
        env.apply(seed_policy())
        node.start()
        node.wait_in_sync()
        poll(node.reach, 30, "the seed policy to allow the client")
        r = run_churn(env, node, store, args.unrelated, args.policy)
    ms = r.apply_ms
    print(
        f"{args.backend}: {r.changes} changes; connections {r.connections_ok} ok, "
        f"{r.connections_failed} failed; conntrack entries for 12211 over "
        f"{len(r.tracked_samples)} samples: max {max(r.tracked_samples)}; "
        f"{len(ms)} applies: median {statistics.median(ms)} ms, p90 {_pct(ms, 0.9)} ms, "
        f"p99 {_pct(ms, 0.99)} ms, max {max(ms)} ms"
    )


if __name__ == "__main__":
    main()
