"""Propagation and initial-sync benchmark of `felis agent` on a real etcd (root needed).

Uses the cluster tests' environment (tests/cluster/agents.py): node network namespaces, each
running the real `felis agent` process against one real etcd member over a veth bridge.

1. Propagation: a change written to etcd (one GlobalNetworkSet update: new set member on every
   node) → every agent has programmed its kernel. Start = just before the etcd write in this
   process; end = the timestamp of the agent's "datastore change" log line, written after
   its nft transaction returned (millisecond resolution, same clock). 1 and 10 agents.
2. Initial sync: 5,000 HostEndpoints + 1,000 GlobalNetworkPolicies in etcd, one node (one local
   HEP; one policy in ten selects it, or all of them). Measured as the agent daemon's start →
   "sync" log line, and `felis agent --once` wall time (both include Python start-up), plus an
   in-process breakdown (etcd list, calc, kernel apply).

Run: sudo .venv/bin/python bench/bench_propagation.py [--rounds N] [--backend nftables]
Results go into docs/benchmarks-cluster.md by hand (with the command and date).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cluster"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from agents import AgentEnv, AgentNode, agent_env, hep
from etcd_harness import etcd_store, poll

from felis.agent.agent import Agent, AgentSettings
from felis.calc import HostInterface
from felis.dataplane.kernel import open_dataplane
from felis.dataplane.spec import Family
from felis.datastore import Datastore
from felis.model import load_documents, to_dict
from workloads import big_cluster

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO felis\.agent: (\w[\w ]*): ")


def _log_events(node: AgentNode, reason: str) -> list[float]:
    """Wall-clock times of the agent's log lines for applies made for `reason`."""
    times = []
    for line in node.log_text().splitlines():
        match = LOG_LINE.match(line)
        if match and match.group(2) == reason:
            stamp = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            times.append(stamp.timestamp())
    return times


def _gns(round_: int) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkSet",
        "metadata": {"name": "bench-clients", "labels": {"memcached": "client"}},
        "spec": {"nets": [f"198.18.{100 + round_ // 60}.{4 * (round_ % 60) + 1}/32"]},
    }


def _seed(env: AgentEnv, store: Datastore) -> None:
    docs = [hep(n.name, n.server_ip) for n in env.nodes]
    for doc in docs:
        (resource,) = load_documents(doc.encode(), "bench")
        store.apply([to_dict(resource)])
    from agents import seed_policy

    (policy,) = load_documents(seed_policy().encode(), "bench")
    store.apply([to_dict(policy), _gns(0)])


def propagation(agents: int, rounds: int, backend: str) -> list[float]:
    with agent_env(agents, backend=backend, serve=False) as env, etcd_store(env.etcd) as store:
        _seed(env, store)
        for node in env.nodes:
            node.start("--log-level", "info")
        for node in env.nodes:
            node.wait_in_sync(timeout=120)
        latencies: list[float] = []
        for round_ in range(1, rounds + 1):
            seen = {n.name: len(_log_events(n, "datastore change")) for n in env.nodes}
            started = time.time()
            store.apply([_gns(round_)])
            for node in env.nodes:
                poll(
                    lambda n=node, s=seen: len(_log_events(n, "datastore change")) > s[n.name],
                    60,
                    f"{node.name} round {round_}",
                )
                latencies.append(_log_events(node, "datastore change")[seen[node.name]] - started)
        final = _gns(rounds)["spec"]["nets"][0]
        for node in env.nodes:  # the last change really is in every kernel
            assert any(final in m for m in node.kernel.set_members().values()), node.name
        return latencies


def initial_sync(spread: int, backend: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    with agent_env(1, backend=backend, serve=False) as env, etcd_store(env.etcd) as store:
        (node,) = env.nodes
        objects = big_cluster(node.name, node.server_ip, spread)
        for start in range(0, len(objects), 100):  # etcd's default limit: 128 ops per txn
            store.apply(objects[start : start + 100])
        # In-process breakdown, into a fresh namespace.
        twin = env.twin(node, "inproc")
        interfaces = [HostInterface("eth0", (node.server_ip,))]
        agent = Agent(
            AgentSettings(node=node.name),
            store,
            open_dataplane(backend, netns=twin),
            lambda: interfaces,
        )
        began = time.perf_counter()
        agent._snapshot()
        listed = time.perf_counter()
        agent._refresh_interfaces()
        result = agent._calculator.result()
        computed = time.perf_counter()
        agent.dataplane.apply(result.spec)
        applied = time.perf_counter()
        figures |= {
            "list": listed - began,
            "calc": computed - listed,
            "kernel": applied - computed,
            "chains": float(
                sum(len(t.chains) for t in result.spec.ruleset(Family.V4).tables.values())
            ),
        }
        # `felis agent --once` in another fresh namespace, process start to exit.
        once = env.twin(node, "once")
        began = time.perf_counter()
        env.felis("agent", "--node", node.name, "--once", "--backend", backend, ns=once)
        figures["once"] = time.perf_counter() - began
        # The daemon: spawn → its "sync" log line (kernel programmed).
        started = time.time()
        node.start()
        poll(lambda: _log_events(node, "sync"), 120, "the daemon's initial sync")
        figures["daemon"] = _log_events(node, "sync")[0] - started
        apply_ms = re.search(r"^.*INFO felis\.agent: sync: .*\((\d+) ms\)$", node.log_text(), re.M)
        figures["daemon_apply"] = float(apply_ms.group(1)) / 1000 if apply_ms else 0.0
    return figures


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--backend", default="nftables")
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"# {dt.date.today()} {platform.python_version()} {platform.machine()} load {load}")
    for agents in (1, 10):
        values = propagation(agents, args.rounds, args.backend)
        print(
            f"propagation, {agents:2d} agent(s), {len(values)} samples: "
            f"p50 {statistics.median(values) * 1000:.0f} ms, "
            f"p99 {_pct(values, 0.99) * 1000:.0f} ms, "
            f"max {max(values) * 1000:.0f} ms"
        )
    for spread, label in ((10, "typical (100 policies apply)"), (1, "worst (all 1,000 apply)")):
        f = initial_sync(spread, args.backend)
        print(
            f"initial sync, {label}: daemon start→programmed {f['daemon']:.2f} s "
            f"(its kernel apply {f['daemon_apply']:.2f} s); --once {f['once']:.2f} s; "
            f"in-process list {f['list']:.2f} s + calc {f['calc']:.2f} s "
            f"+ kernel {f['kernel']:.2f} s "
            f"({f['chains']:.0f} IPv4 chains)"
        )


if __name__ == "__main__":
    main()
