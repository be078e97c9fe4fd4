"""Benchmarks of the etcd datastore against a real, freshly started single-member etcd.

usage: .venv/bin/python bench/bench_etcd.py [--objects 1000] [--batch 100] [--heps 5000]
       [--policies 1000] [--watch-samples 300]

Prints a markdown table (the figures in docs/datastore-etcd.md, section "Measured").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cluster"))

import contextlib

from etcd_harness import EtcdCluster, etcd_store

from felis.datastore import Unavailable
from felis.datastore.etcd import EtcdDatastore


def policy(name: str, order: int = 100) -> dict[str, Any]:
    """Shaped like the memcached doNotTrack policy."""
    return {
        "kind": "GlobalNetworkPolicy",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": name, "labels": {"projectcalico.org/tier": "default"}},
        "spec": {
            "tier": "default",
            "order": order,
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"selector": "memcached == 'client'"},
                    "destination": {"ports": [12211]},
                }
            ],
            "egress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"ports": [12211]},
                    "destination": {"selector": "memcached == 'client'"},
                }
            ],
            "selector": f"memcached == 'server' && shard == '{name}'",
            "types": ["Ingress", "Egress"],
            "doNotTrack": True,
            "applyOnForward": True,
        },
    }


def hep(i: int) -> dict[str, Any]:
    return {
        "kind": "HostEndpoint",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": f"node-{i:05d}-eth0", "labels": {"memcached": "server"}},
        "spec": {
            "node": f"node-{i:05d}",
            "interfaceName": "eth0",
            "expectedIPs": [f"198.18.{i // 256}.{i % 256}"],
        },
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def apply_batches(store: EtcdDatastore, objs: list[dict[str, Any]], batch: int) -> float:
    start = time.perf_counter()
    for at in range(0, len(objs), batch):
        store.apply(objs[at : at + batch])
    return len(objs) / (time.perf_counter() - start)


def bench_apply(cluster: EtcdCluster, count: int, batch: int) -> list[tuple[str, str]]:
    rows = []
    with etcd_store(cluster) as store:
        objs = [policy(f"p{i:05d}") for i in range(count)]
        rows.append(
            (
                f"apply {count} new policies, {batch} per transaction",
                apply_batches(store, objs, batch),
            )
        )
        rows.append((f"re-apply {count} unchanged policies", apply_batches(store, objs, batch)))
        changed = [policy(f"p{i:05d}", order=7) for i in range(count)]
        rows.append((f"apply {count} changed policies", apply_batches(store, changed, batch)))
        single = [policy(f"s{i:05d}") for i in range(200)]
        rows.append(
            ("apply 1 new policy per transaction (200 times)", apply_batches(store, single, 1))
        )
        latencies = []
        for i in range(200):
            start = time.perf_counter()
            store.get("GlobalNetworkPolicy", f"p{i:05d}")
            latencies.append((time.perf_counter() - start) * 1000)
    out = [(name, f"{value:,.0f} objects/s") for name, value in rows]
    out.append(
        (
            "get (1 policy) median / p99",
            f"{pct(latencies, 0.5):.2f} ms / {pct(latencies, 0.99):.2f} ms",
        )
    )
    return out


def bench_list(cluster: EtcdCluster, heps: int, policies: int, batch: int) -> list[tuple[str, str]]:
    with etcd_store(cluster) as store:
        apply_batches(store, [hep(i) for i in range(heps)], batch)
        apply_batches(store, [policy(f"l{i:05d}") for i in range(policies)], batch)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            listing = store.list()
            times.append(time.perf_counter() - start)
        assert len(listing.items) >= heps + policies
        by_kind = []
        for _ in range(5):
            start = time.perf_counter()
            store.list("HostEndpoint")
            store.list("GlobalNetworkPolicy")
            by_kind.append(time.perf_counter() - start)
    return [
        (
            f"list everything ({heps:,} HEPs + {policies:,} policies + earlier rows), median of 5",
            f"{statistics.median(times) * 1000:.0f} ms ({len(listing.items):,} objects)",
        ),
        (
            "list HostEndpoint + list GlobalNetworkPolicy, median of 5",
            f"{statistics.median(by_kind) * 1000:.0f} ms",
        ),
    ]


def bench_watch(cluster: EtcdCluster, samples: int) -> list[tuple[str, str]]:
    with etcd_store(cluster) as writer, etcd_store(cluster) as reader:
        since = writer.revision()
        stop = threading.Event()
        seen: dict[str, float] = {}
        done = threading.Event()

        def consume() -> None:
            for event in reader.watch(since, stop=stop, poll_interval=0.01):
                seen[event.name] = time.perf_counter()
                if len(seen) >= samples:
                    break
            done.set()

        thread = threading.Thread(target=consume, daemon=True)
        thread.start()
        sent: dict[str, float] = {}
        for i in range(samples):
            name = f"w{i:05d}"
            start = time.perf_counter()
            writer.apply([policy(name)])
            sent[name] = start
            # Pace the writes so each event is measured alone, not behind a queue.
            deadline = time.perf_counter() + 5
            while name not in seen and time.perf_counter() < deadline:
                time.sleep(0.0005)
        done.wait(30)
        stop.set()
        latencies = [(seen[n] - sent[n]) * 1000 for n in sent if n in seen]
    return [
        (
            f"watch latency, write call → event yielded ({len(latencies)} samples), median / p99",
            f"{pct(latencies, 0.5):.2f} ms / {pct(latencies, 0.99):.2f} ms",
        )
    ]


def bench_unavailable(cluster: EtcdCluster) -> list[tuple[str, str]]:
    store = etcd_store(cluster)
    for member in cluster.members:
        cluster.stop_member(member)
    start = time.perf_counter()
    with contextlib.suppress(Unavailable):
        store.revision()
    elapsed = time.perf_counter() - start
    store.close()
    return [("every member stopped → Unavailable", f"{elapsed * 1000:.1f} ms")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--heps", type=int, default=5000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--watch-samples", type=int, default=300)
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    with EtcdCluster() as cluster:
        rows += bench_apply(cluster, args.objects, args.batch)
        rows += bench_list(cluster, args.heps, args.policies, args.batch)
        rows += bench_watch(cluster, args.watch_samples)
    with EtcdCluster(size=3) as cluster:
        rows += bench_unavailable(cluster)
    print("| measurement | result |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
