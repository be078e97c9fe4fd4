"""Policy calculation benchmark: one node of a large cluster.

Cluster: 5,000 host endpoints (2 on the measured node), 1,000 GlobalNetworkPolicies in 5 tiers
(3 rules each, a quarter doNotTrack, a quarter applyOnForward), 500 distinct rule selectors,
200 GlobalNetworkSets. Two scenarios: every policy selects the node's endpoints (worst case:
all 1,000 are rendered) and one policy in ten does.

Measures
- full compute: `felis.calc.compute` from model objects to the complete DataplaneSpec;
- rendering that spec with the iptables and nftables renderers (when importable);
- one label change on another node's HEP → new spec with new set membership (`Calculator`);
- one label change on a local HEP (full relayout, policy chains reused from the cache).

Run: .venv/bin/python bench/bench_calc.py
Results go into docs/benchmarks-calc.md by hand (with the command and date).
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

from felis.calc import Calculator, HostInterface, compute
from felis.dataplane.spec import DataplaneSpec, Family
from felis.model import from_dict

NODE = "node-0"
N_HEPS = 5_000
N_LOCAL = 2
N_POLICIES = 1_000
N_SELECTORS = 500
N_SETS = 200
N_TIERS = 5


def _hep(i: int) -> dict[str, Any]:
    local = i < N_LOCAL
    octets = f"{10 + i // 65536}.{(i // 256) % 256}.{i % 256}"
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "HostEndpoint",
        "metadata": {
            "name": f"hep-{i}",
            "labels": {
                "app": f"app{i % N_SELECTORS}",
                "role": "server" if local else "client",
                "zone": f"z{i % 7}",
            },
        },
        "spec": {
            "node": NODE if local else f"node-{1 + i // 4}",
            "interfaceName": f"eth{i}" if local else "eth0",
            "expectedIPs": [f"10.{octets}", f"fd00::{i:x}"],
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        },
    }


def _policy(i: int, spread: int) -> dict[str, Any]:
    def sel(k: int) -> str:
        return f"app == 'app{(i * 7 + k) % N_SELECTORS}'"

    spec: dict[str, Any] = {
        "tier": f"tier-{i % N_TIERS}",
        "order": float(i % 50),
        # spread 1: every policy selects this node's endpoints; spread 10: one in ten does.
        "selector": "role == 'server'" if i % spread == 0 else f"role == 'r{i % spread}'",
        "ingress": [
            {
                "action": "Allow",
                "protocol": "TCP",
                "source": {"selector": sel(0)},
                "destination": {"ports": [80, 443, "http"]},
            },
            {"action": "Deny", "source": {"selector": sel(1), "nets": ["192.168.0.0/16"]}},
        ],
        "egress": [{"action": "Allow", "destination": {"selector": sel(2)}}],
    }
    flavour = i % 4
    if flavour == 0:
        spec.update(doNotTrack=True, applyOnForward=True)
    elif flavour == 1:
        spec["applyOnForward"] = True
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": f"policy-{i}"},
        "spec": spec,
    }


def _gns(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkSet",
        "metadata": {"name": f"set-{i}", "labels": {"app": f"app{i % N_SELECTORS}"}},
        "spec": {"nets": [f"172.{16 + i // 256}.{i % 256}.0/24", f"fd01:{i:x}::/64"]},
    }


def _tier(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Tier",
        "metadata": {"name": f"tier-{i}"},
        "spec": {"order": float(i * 10), "defaultAction": "Deny" if i % 2 else "Pass"},
    }


def _time(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall time and median CPU time (the latter is robust on a shared machine)."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def _renderers() -> list[tuple[str, Callable[[DataplaneSpec], object]]]:
    out: list[tuple[str, Callable[[DataplaneSpec], object]]] = []
    try:
        from felis.dataplane import iptables

        out.append(
            ("iptables+ipset", lambda s: [iptables.render_full(r) for r in s.rulesets.values()])
        )
    except ImportError:
        print("iptables renderer not importable; skipped")
    try:
        from felis.dataplane import nftables

        out.append(("nftables", lambda s: [nftables.render_full(r) for r in s.rulesets.values()]))
    except ImportError:
        print("nftables renderer not importable; skipped")
    return out


def main() -> None:
    print(f"python {platform.python_version()} on {platform.machine()} ({platform.node()})")
    for spread in (1, 10):
        print(f"\n== {N_POLICIES // spread} of {N_POLICIES} policies select this node's HEPs")
        scenario(spread)


def scenario(spread: int) -> None:
    start = time.perf_counter()
    docs = (
        [_tier(i) for i in range(N_TIERS)]
        + [_hep(i) for i in range(N_HEPS)]
        + [_policy(i, spread) for i in range(N_POLICIES)]
        + [_gns(i) for i in range(N_SETS)]
    )
    resources = [from_dict(d) for d in docs]
    print(f"model objects: {len(resources)} built in {time.perf_counter() - start:.2f}s")
    interfaces = [HostInterface(f"eth{i}") for i in range(N_LOCAL)]

    result = compute(resources, NODE, interfaces)
    v4 = result.spec.ruleset(Family.V4)
    n_chains = sum(len(t.chains) for r in result.spec.rulesets.values() for t in r.tables.values())
    n_rules = sum(
        len(c.rules)
        for r in result.spec.rulesets.values()
        for t in r.tables.values()
        for c in t.chains.values()
    )
    print(
        f"spec: {n_chains} chains, {n_rules} rules, {len(v4.sets)} v4 sets, "
        f"{sum(len(s.members) for s in v4.sets.values())} v4 members"
    )

    median, cpu = _time(lambda: compute(resources, NODE, interfaces), 5)
    print(f"full compute: median {median * 1000:.0f} ms wall, {cpu * 1000:.0f} ms CPU")
    total = median
    for name, render in _renderers():
        r_median, r_cpu = _time(lambda render=render: render(result.spec), 5)  # type: ignore[misc]
        total += r_median
        print(f"render {name}: median {r_median * 1000:.0f} ms wall, {r_cpu * 1000:.0f} ms CPU")
    print(f"compute + rendering: {total * 1000:.0f} ms")

    calc = Calculator(NODE)
    calc.set_interfaces(interfaces)
    for resource in resources:
        calc.upsert(resource)
    base = calc.result()
    remote = [d for d in docs if d["kind"] == "HostEndpoint"][N_LOCAL:]
    samples = []
    for n in range(300):
        doc = remote[(n * 37) % len(remote)]
        labels = dict(doc["metadata"]["labels"])
        labels["app"] = f"app{(int(labels['app'][3:]) + 1 + n) % N_SELECTORS}"
        doc["metadata"]["labels"] = labels
        changed = from_dict(doc)  # model building is not part of the measured step
        start = time.perf_counter()
        calc.upsert(changed)
        new = calc.result()
        samples.append(time.perf_counter() - start)
    assert new.spec.ruleset(Family.V4).tables is base.spec.ruleset(Family.V4).tables
    print(
        f"remote label change -> new spec: median {statistics.median(samples) * 1000:.2f} ms, "
        f"p99 {sorted(samples)[int(len(samples) * 0.99)] * 1000:.2f} ms"
    )

    local = next(d for d in docs if d["kind"] == "HostEndpoint")
    samples = []
    for n in range(10):
        local["metadata"]["labels"] = {**local["metadata"]["labels"], "zone": f"z{n}"}
        changed = from_dict(local)
        start = time.perf_counter()
        calc.upsert(changed)
        calc.result()
        samples.append(time.perf_counter() - start)
    print(f"local label change (relayout): median {statistics.median(samples) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
