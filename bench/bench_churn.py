"""Churn under traffic at full size: 1,000 unrelated changes and 100 Allow-keeping changes to the
memcached policy, written to a real etcd while connections stream through the untracked seed
policy (tests/cluster/churn.py; the suite runs 120 + 20 of them).

The traffic (`--traffic lab`, the default) is the lab's own: a real memcached on the node and the
lab's compiled load generator, closed loop at 64 connections, from a client whose ephemeral
ports span 1024-65535 as in the lab. The same load runs alone for `--reference` seconds before
and after the churn, so the churn's rate is read against the machine's rate of the moment.
`--traffic stream` is the cluster harness's back-to-back stream (what the suite runs).
Reported: connections ok / failed (failed includes timed out), conntrack entries for port 12211
sampled every 25 changes, the load's rate during churn / reference, and the distribution of the
agent's own apply times.

Run (root): .venv/bin/python bench/bench_churn.py [--backend nftables] [--traffic lab]
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

import contextlib
import time

from agents import OTHER_PORT, agent_env, seed_policy
from churn import memcached_on, run_churn, saturating_load
from etcd_harness import etcd_store, poll


def _pct(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="nftables")
    parser.add_argument("--unrelated", type=int, default=1000)
    parser.add_argument("--policy", type=int, default=100)
    parser.add_argument("--traffic", choices=("lab", "stream"), default="lab")
    parser.add_argument("--reference", type=float, default=20.0, help="seconds of load alone")
    args = parser.parse_args()
    if args.traffic == "lab":
        lab_traffic(args)
        return
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


def lab_traffic(args: argparse.Namespace) -> None:
    with (
        agent_env(1, backend=args.backend, serve=False) as env,
        etcd_store(env.etcd) as store,
    ):
        (node,) = env.nodes
        env.topo.serve(node.ns, "0.0.0.0", OTHER_PORT)
        env.seed()
        env.apply(seed_policy())
        node.start()
        node.wait_in_sync()
        with memcached_on(env, node):

            def alone() -> float:
                with saturating_load(env, node) as finish:
                    time.sleep(args.reference)  # a measuring window, not a synchronisation
                    counts = finish()
                print(f"  load alone: {counts.rate:.0f} conn/s, {counts.failed} failed, "
                      f"{counts.timed_out} timed out")  # fmt: skip
                return counts.rate

            before = alone()
            loads = []

            @contextlib.contextmanager
            def traffic():  # type: ignore[no-untyped-def]
                with saturating_load(env, node) as finish:

                    def done():  # type: ignore[no-untyped-def]
                        loads.append(finish())
                        return loads[-1]

                    yield done

            r = run_churn(env, node, store, args.unrelated, args.policy, traffic=traffic)
            after = alone()
    ms = r.apply_ms
    load = loads[0]
    reference = statistics.median([before, after])
    print(
        f"{args.backend}: {r.changes} changes in {load.seconds:.0f} s under the lab load; "
        f"connections {r.connections_ok} ok, {r.connections_failed} failed "
        f"({load.failed} failed, {load.timed_out} timed out); rate {load.rate:.0f} conn/s = "
        f"{load.rate / reference:.2f} x load alone ({before:.0f}, {after:.0f}); conntrack "
        f"entries for 12211 over {len(r.tracked_samples)} samples: max {max(r.tracked_samples)}; "
        f"{len(ms)} applies: median {statistics.median(ms)} ms, p90 {_pct(ms, 0.9)} ms, "
        f"p99 {_pct(ms, 0.99)} ms, max {max(ms)} ms"
    )


if __name__ == "__main__":
    main()
