"""Dataplane benchmark: calc + render, full apply, incremental apply, idle re-apply.

For both backends and rulesets of about 1k, 10k and 50k kernel rules (both families, all
tables, after port expansion), generated the way `bench_calc.py` generates its cluster (5,000
host endpoints, policies in 5 tiers, 500 rule selectors, 200 network sets) and pushed through
`felis.calc`, so the rules are felis' real output:

(a) calc + render: `compute()` and a cold `render_full` of both families (a fresh render
    cache), CPU time, median;
(b) full apply through felis (`Dataplane.apply` on an empty namespace: read back, render with
    cold memos, write) against loading felis' own `render_full` text by hand (`ipset restore` +
    `iptables-restore --noflush` + `ip6tables-restore --noflush`, or `nft -f` per family), each
    trial in a freshly emptied namespace, the two interleaved; medians and their ratio;
(c) incremental apply: one policy rule changed (a port) or one set member changed (a remote
    host endpoint's label), `Calculator.upsert` + `result()` then `Dataplane.apply`, interleaved;
    median and p99 of the apply, and of the whole (calc + apply);
(d) idle re-apply (nothing changed) with the remembered state, and with a fresh read-back each
    time (`remember=False`, what `drift()` costs).

Needs root. Everything happens in a private network namespace: the script re-executes itself
under `unshare -n` and refuses to run in the namespace of PID 1, so the host's firewall is
never touched (the namespace disappears with the process).

Run:   sudo .venv/bin/python bench/bench_dataplane.py [--quick]
Results go into docs/benchmarks-dataplane.md by hand (with the command and date).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_calc as cluster
from felis.calc import Calculator, HostInterface, compute
from felis.dataplane import iptables, nftables
from felis.dataplane.kernel import (
    Dataplane,
    IptablesDataplane,
    NftablesDataplane,
    open_dataplane,
)
from felis.dataplane.memo import RenderCache
from felis.dataplane.rule_identity import expand_rules
from felis.dataplane.spec import DataplaneSpec
from felis.model import Resource, from_dict

MARK = "FELIS_BENCH_PRIVATE_NETNS"
# Policies per size: ~20 kernel rules per policy in this cluster (both families).
SIZES = {"1k": 50, "10k": 500, "50k": 2500}


# -- namespace safety ---------------------------------------------------------------------------


def _netns_id() -> str:
    return os.readlink("/proc/self/ns/net")


def ensure_private_netns() -> None:
    """Re-execute under `unshare -n`; the parent's namespace id travels in the environment so
    the child can prove it is elsewhere (reading PID 1's namespace may be forbidden)."""
    if MARK not in os.environ:
        os.environ[MARK] = _netns_id()
        os.execvp("unshare", ["unshare", "-n", sys.executable, *sys.argv])
    if _netns_id() == os.environ[MARK]:
        sys.exit("refusing to run: not in a private network namespace")
    sh(["ip", "link", "set", "lo", "up"])


def sh(argv: list[str], text: str | None = None) -> None:
    subprocess.run(argv, input=text, text=True, check=True, capture_output=True)


def reset_netns() -> None:
    """Empty this (private) namespace's firewall: a fresh namespace for the next trial."""
    if _netns_id() == os.environ.get(MARK, _netns_id()):
        raise RuntimeError("not in a private network namespace")
    sh(["nft", "flush", "ruleset"])
    sh(["ipset", "destroy"])


# -- cluster --------------------------------------------------------------------------------------


def cluster_docs(n_policies: int) -> list[dict[str, Any]]:
    return (
        [cluster._tier(i) for i in range(cluster.N_TIERS)]
        + [cluster._hep(i) for i in range(cluster.N_HEPS)]
        + [cluster._policy(i, 1) for i in range(n_policies)]
        + [cluster._gns(i) for i in range(cluster.N_SETS)]
    )


INTERFACES = [HostInterface(f"eth{i}") for i in range(cluster.N_LOCAL)]


def kernel_rules(spec: DataplaneSpec) -> int:
    return sum(
        len(expand_rules(chain.rules))
        for ruleset in spec.rulesets.values()
        for table in ruleset.tables.values()
        for chain in table.chains.values()
    ) + sum(
        len(table.hooks) for ruleset in spec.rulesets.values() for table in ruleset.tables.values()
    )


def set_members(spec: DataplaneSpec) -> int:
    return sum(len(s.members) for r in spec.rulesets.values() for s in r.sets.values())


# -- measuring ------------------------------------------------------------------------------------


def cpu(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def wall(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


def render_full(backend: str, spec: DataplaneSpec, cache: RenderCache) -> None:
    for ruleset in spec.rulesets.values():
        if backend == "iptables":
            iptables.render_full(ruleset, cache=cache)
        else:
            nftables.render_full(ruleset, cache=cache)


def new_dataplane(backend: str) -> IptablesDataplane | NftablesDataplane:
    """A dataplane with its own, empty render cache."""
    return IptablesDataplane() if backend == "iptables" else NftablesDataplane()


def load_by_hand(backend: str, texts: list[tuple[str, str]]) -> None:
    for tool, text in texts:
        if tool == "nft":
            sh(["nft", "-f", "-"], text)
        elif tool == "ipset":
            sh(["ipset", "restore"], text)
        else:
            sh([tool, "--noflush", "--wait", "10"], text)


def rendered_texts(backend: str, spec: DataplaneSpec) -> list[tuple[str, str]]:
    texts: list[tuple[str, str]] = []
    for ruleset in spec.rulesets.values():
        if backend == "nftables":
            texts.append(("nft", nftables.render_full(ruleset)))
            continue
        plan = iptables.render_full(ruleset)
        if plan.ipset_prepare:
            texts.append(("ipset", plan.ipset_prepare))
        texts.append((iptables.restore_command(ruleset.family), plan.restore))
    return texts


# -- scenario -------------------------------------------------------------------------------------


def scenario(size: str, n_policies: int, backends: list[str], repeat: int, changes: int) -> None:
    docs = cluster_docs(n_policies)
    resources: list[Resource] = [from_dict(d) for d in docs]
    spec = compute(resources, cluster.NODE, INTERFACES).spec
    print(
        f"\n== {size}: {n_policies} policies -> {kernel_rules(spec)} kernel rules, "
        f"{sum(len(t.chains) for r in spec.rulesets.values() for t in r.tables.values())} "
        f"chains, {set_members(spec)} set members (both families)"
    )

    # (a) calc + cold render, CPU time.
    calc_t = [cpu(lambda: compute(resources, cluster.NODE, INTERFACES)) for _ in range(repeat)]
    print(f"(a) calc: median {ms(statistics.median(calc_t))} CPU")
    for backend in backends:
        samples = []
        for _ in range(repeat):
            fresh = compute(resources, cluster.NODE, INTERFACES).spec
            cache = RenderCache()
            samples.append(cpu(lambda: render_full(backend, fresh, cache)))  # noqa: B023
        warm = cpu(lambda: render_full(backend, fresh, cache))  # noqa: B023
        print(
            f"(a) render {backend} (both families): cold median {ms(statistics.median(samples))}"
            f" CPU, memoised {ms(warm)}; calc + render "
            f"{ms(statistics.median(calc_t) + statistics.median(samples))}"
        )

    for backend in backends:
        full_apply(backend, resources, repeat)
        incremental(backend, docs, resources, changes)


def full_apply(backend: str, resources: list[Resource], repeat: int) -> None:
    # (b) felis apply (cold cache) vs the same text by hand, interleaved, fresh namespace each.
    by_hand, felis, felis_warm = [], [], []
    for _ in range(repeat):
        spec = compute(resources, cluster.NODE, INTERFACES).spec
        texts = rendered_texts(backend, spec)
        reset_netns()
        by_hand.append(wall(lambda: load_by_hand(backend, texts)))  # noqa: B023
        reset_netns()
        spec = compute(resources, cluster.NODE, INTERFACES).spec
        dataplane = new_dataplane(backend)
        felis.append(wall(lambda: dataplane.apply(spec)))  # noqa: B023
        reset_netns()
        # The same with the spec already rendered once into the dataplane's cache (what a
        # previous apply leaves memoised): the kernel-facing part alone.
        dataplane = new_dataplane(backend)
        render_full(backend, spec, dataplane.cache)
        felis_warm.append(wall(lambda: dataplane.apply(spec)))  # noqa: B023
        assert not dataplane.drift(spec), "full apply left a difference"
    hand, cold, warm = (statistics.median(x) for x in (by_hand, felis, felis_warm))
    print(
        f"(b) {backend} full apply: by hand {ms(hand)}, felis {ms(cold)} "
        f"(ratio {cold / hand:.2f}), felis with render memoised {ms(warm)} "
        f"(ratio {warm / hand:.2f})"
    )


def incremental(
    backend: str, docs: list[dict[str, Any]], resources: list[Resource], changes: int
) -> None:
    reset_netns()
    calc = Calculator(cluster.NODE)
    calc.set_interfaces(INTERFACES)
    for resource in resources:
        calc.upsert(resource)
    spec = calc.result().spec
    dataplane: Dataplane = open_dataplane(backend)
    dataplane.apply(spec)

    policies = [d for d in docs if d["kind"] == "GlobalNetworkPolicy"]
    remote = [d for d in docs if d["kind"] == "HostEndpoint"][cluster.N_LOCAL :]
    apply_t: dict[str, list[float]] = {"rule": [], "member": []}
    total_t: dict[str, list[float]] = {"rule": [], "member": []}
    wrote: dict[str, int] = {"rule": 0, "member": 0}
    for n in range(changes):
        for kind in ("rule", "member"):
            if kind == "rule":
                doc = policies[(n * 13) % len(policies)]
                doc["spec"]["ingress"][0]["destination"]["ports"][0] = 1000 + n
            else:
                doc = remote[(n * 37) % len(remote)]
                labels = dict(doc["metadata"]["labels"])
                labels["app"] = f"app{(int(labels['app'][3:]) + 1 + n) % cluster.N_SELECTORS}"
                doc["metadata"]["labels"] = labels
            model = from_dict(doc)
            start = time.perf_counter()
            calc.upsert(model)
            spec = calc.result().spec
            mid = time.perf_counter()
            report = dataplane.apply(spec)
            end = time.perf_counter()
            apply_t[kind].append(end - mid)
            total_t[kind].append(end - start)
            wrote[kind] += report.wrote
    for kind, what in (("rule", "one policy rule"), ("member", "one set member")):
        print(
            f"(c) {backend} {what} changed: apply median {ms(statistics.median(apply_t[kind]))}"
            f", p99 {ms(p99(apply_t[kind]))}; calc + apply median "
            f"{ms(statistics.median(total_t[kind]))}, p99 {ms(p99(total_t[kind]))} "
            f"({wrote[kind]}/{changes} wrote)"
        )
    start = time.perf_counter()
    differences = dataplane.drift(spec)
    drift_t = time.perf_counter() - start
    assert not differences, f"remembered state diverged from the kernel: {differences}"

    # (d) idle re-apply.
    idle = [wall(lambda: dataplane.apply(spec)) for _ in range(20)]
    fresh: Dataplane = (
        IptablesDataplane(remember=False)
        if backend == "iptables"
        else NftablesDataplane(remember=False)
    )
    reread = [wall(lambda: fresh.apply(spec)) for _ in range(5)]
    print(
        f"(d) {backend} idle re-apply: {ms(statistics.median(idle))} median (remembered state),"
        f" {ms(statistics.median(reread))} with a fresh read-back; drift() {ms(drift_t)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1k and 10k only, fewer repeats")
    parser.add_argument("--backend", choices=["iptables", "nftables"], action="append")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (private network namespaces)")
    ensure_private_netns()
    print(f"python {platform.python_version()} on {platform.machine()}, {time.ctime()}")
    print(f"load average {os.getloadavg()}")
    backends = args.backend or ["iptables", "nftables"]
    sizes = {k: v for k, v in SIZES.items() if not (args.quick and k == "50k")}
    for size, n_policies in sizes.items():
        big = n_policies >= 2500
        scenario(
            size,
            n_policies,
            backends,
            repeat=3 if (args.quick or big) else 5,
            changes=20 if args.quick else 50,
        )
    print(f"\nload average {os.getloadavg()}")


if __name__ == "__main__":
    main()
