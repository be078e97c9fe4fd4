"""etcd leader changes under a stream of felis writes: lost, duplicated, stalled (issue 13.4).

A real three-member etcd on loopback (tests/cluster/etcd_harness.py, election timeout 500 ms),
one writer applying `--writes` creates/updates/deletes of GlobalNetworkSets one at a time
through felis' `EtcdDatastore` with its default client settings (5 s request timeout, 10 s
retry budget), and `--agents` agent loops, each on its own etcd client, with a dataplane that
records instead of programming a kernel. `--faults` leader changes are spread evenly over the
writes, alternating `etcdctl move-leader` and SIGKILL of the leader (restarted at once). Before
the writes, leadership is moved to the writer's first endpoint, so the first kill cuts the
writer's own connection with a request in flight.

The verdict (tests/cluster/leader_churn.py) reads etcd's history back and matches it write by
write; the agents must end equal to a fresh `felis agent --once`. Latency is per write, as the
writer saw it (one read round trip and one transaction, plus any retry).

usage: .venv/bin/python bench/bench_etcd_faults.py [--writes 1000] [--objects 100]
       [--agents 3] [--faults 4]
Prints a markdown table (the figures in docs/benchmarks-cluster.md, "Leader changes").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cluster"))

from etcd_harness import EtcdCluster, etcd_store
from leader_churn import (
    SEED,
    Fault,
    converged,
    make_leader,
    node_objects,
    plan_writes,
    run,
    start_agents,
    verdict,
)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def bench(writes: int, objects: int, agents: int, faults: int) -> dict[str, Any]:
    kinds: list[Fault] = ["kill-leader", "move-leader"]
    step = writes // (faults + 1)
    plan = [(step * (i + 1), kinds[i % 2]) for i in range(faults)]
    with (
        EtcdCluster(size=3) as cluster,
        etcd_store(cluster) as writer,
        etcd_store(cluster) as watcher,
    ):
        writer.apply([*node_objects(agents), *SEED])
        running = start_agents(cluster, agents)
        try:
            make_leader(cluster, cluster.members[0])
            outcome = run(cluster, writer, watcher, plan_writes(writes, objects), plan)
            final = writer.list("GlobalNetworkSet").items
            result = verdict(outcome, final)
            started = time.monotonic()
            behind = converged(cluster, running)
            result["converge_after_last_write"] = time.monotonic() - started
        finally:
            for agent in running:
                agent.close()
    latency = sorted(outcome.latency)
    stalls = [max(outcome.latency[at : at + 25]) for at, _ in plan]
    result.update(
        seconds=outcome.seconds,
        p50=statistics.median(latency),
        p99=latency[int(len(latency) * 0.99) - 1],
        max=latency[-1],
        stalls=stalls,
        agents_behind=behind,
        agents=agents,
        failed=outcome.failed,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--faults", type=int, default=4)
    args = parser.parse_args()
    r = bench(args.writes, args.objects, args.agents, args.faults)
    print("| measure | value |")
    print("|---|---|")
    print(
        f"| writes (acknowledged / raised) | {r['writes']} ({r['acknowledged']} / {r['errors']}) |"
    )
    print(f"| leader changes | {len(r['faults'])}: {'; '.join(r['faults'])} |")
    print(f"| lost acknowledged writes | {len(r['lost'])} |")
    print(f"| duplicated or unexplained updates | {len(r['duplicated_or_unexplained'])} |")
    print(f"| raised writes found applied (in doubt) | {len(r['in_doubt_applied'])} |")
    print(f"| final store = acknowledged writes | {r['final_matches']} |")
    print(f"| live watch = history | {r['live_watch_matches']} |")
    equal = r["agents"] - len(r["agents_behind"])
    print(f"| agents equal to a fresh --once | {equal}/{r['agents']} |")
    print(f"| agents converged after the last write | {_ms(r['converge_after_last_write'])} |")
    print(
        f"| write latency p50 / p99 / max | {_ms(r['p50'])} / {_ms(r['p99'])} / {_ms(r['max'])} |"
    )
    print(f"| longest write at each leader change | {', '.join(_ms(s) for s in r['stalls'])} |")
    print(f"| {r['writes']} writes took | {r['seconds']:.1f} s |")
    if r["fault_errors"] or r["failed"] or r["agents_behind"]:
        print(f"\nproblems: {r['fault_errors']} {r['failed']} {r['agents_behind']}")
        sys.exit(1)


if __name__ == "__main__":
    main()
