"""Benchmark of the embedded SQLite datastore.

    .venv/bin/python bench/bench_datastore.py [--dir DIR] [--objects 1000] [--rounds 5]

Measures: apply throughput (one 1,000-object apply into an empty store, a re-apply where
nothing changed, and one where everything changed), get/list latency, and watch latency
(write committed → event observed by a watcher thread) at two poll intervals. Prints a
markdown table; results are recorded in docs/benchmarks-datastore.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from felis.datastore import SqliteDatastore


def policy(i: int, generation: int = 0) -> dict[str, Any]:
    # Shaped like a real doNotTrack policy so JSON sizes are realistic (~600 bytes).
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {
            "name": f"policy-{i:05d}",
            "labels": {"app": "memcached", "gen": str(generation)},
        },
        "spec": {
            "tier": "default",
            "order": 100 + i,
            "selector": "memcached == 'server'",
            "doNotTrack": True,
            "applyOnForward": True,
            "types": ["Ingress", "Egress"],
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"selector": "memcached == 'client'"},
                    "destination": {"ports": [11211]},
                }
            ],
            "egress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"ports": [11211]},
                    "destination": {"selector": "memcached == 'client'"},
                }
            ],
        },
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def bench_apply(workdir: Path, objects: int, rounds: int) -> dict[str, float]:
    fresh, unchanged, changed = [], [], []
    for r in range(rounds):
        path = workdir / f"apply-{r}.db"
        with SqliteDatastore(path) as store:
            batch = [policy(i) for i in range(objects)]
            t0 = time.perf_counter()
            results = store.apply(batch)
            fresh.append(time.perf_counter() - t0)
            assert all(res.action == "created" for res in results)

            t0 = time.perf_counter()
            results = store.apply(batch)
            unchanged.append(time.perf_counter() - t0)
            assert all(res.action == "unchanged" for res in results)

            batch = [policy(i, generation=1) for i in range(objects)]
            t0 = time.perf_counter()
            results = store.apply(batch)
            changed.append(time.perf_counter() - t0)
            assert all(res.action == "updated" for res in results)
    return {
        "create": objects / statistics.median(fresh),
        "unchanged": objects / statistics.median(unchanged),
        "update": objects / statistics.median(changed),
    }


def bench_reads(workdir: Path, objects: int) -> dict[str, list[float]]:
    path = workdir / "reads.db"
    with SqliteDatastore(path) as store:
        store.apply([policy(i) for i in range(objects)])
        gets = []
        for _ in range(5000):
            name = f"policy-{random.randrange(objects):05d}"
            t0 = time.perf_counter()
            store.get("GlobalNetworkPolicy", name)
            gets.append(time.perf_counter() - t0)
        lists = []
        for _ in range(50):
            t0 = time.perf_counter()
            listing = store.list("GlobalNetworkPolicy")
            lists.append(time.perf_counter() - t0)
            assert len(listing.items) == objects
    return {"get": gets, "list": lists}


def bench_watch(workdir: Path, poll_interval: float, samples: int) -> list[float]:
    path = workdir / f"watch-{poll_interval}.db"
    with SqliteDatastore(path) as store:
        seen: dict[int, float] = {}
        stop = threading.Event()
        started = threading.Event()

        def watcher() -> None:
            iterator = store.watch(store.revision(), stop=stop, poll_interval=poll_interval)
            started.set()
            for event in iterator:
                seen[event.revision] = time.perf_counter()

        thread = threading.Thread(target=watcher)
        thread.start()
        started.wait()
        latencies = []
        for i in range(samples):
            # Random phase relative to the watcher's poll loop.
            time.sleep(random.uniform(0, poll_interval))
            created = store.create(policy(i))
            committed = time.perf_counter()
            revision = int(created["metadata"]["resourceVersion"])
            deadline = committed + 10
            while revision not in seen:
                if time.perf_counter() > deadline:
                    raise RuntimeError("watch event never arrived")
                time.sleep(0.0002)
            latencies.append(max(0.0, seen[revision] - committed))
        stop.set()
        thread.join()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="where to put the databases")
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--watch-samples", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        workdir = Path(tmp)
        apply_rates = bench_apply(workdir, args.objects, args.rounds)
        reads = bench_reads(workdir, args.objects)
        watch = {p: bench_watch(workdir, p, args.watch_samples) for p in (0.05, 0.01)}

    versions = f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    print(f"{versions}, {os.cpu_count()} CPUs,")
    print(f"databases under {args.dir or tempfile.gettempdir()}, synchronous=FULL, WAL\n")
    print("| measurement | result |")
    print("|---|---|")
    n = args.objects
    print(f"| apply {n} new objects (one transaction) | {apply_rates['create']:,.0f} objects/s |")
    print(f"| re-apply {n} unchanged objects | {apply_rates['unchanged']:,.0f} objects/s |")
    print(f"| apply {n} changed objects | {apply_rates['update']:,.0f} objects/s |")
    for name, values in (("get (1 object)", reads["get"]), (f"list ({n} objects)", reads["list"])):
        summary = f"{ms(statistics.median(values))} / {ms(pct(values, 0.99))}"
        print(f"| {name} latency median / p99 | {summary} |")
    for interval, values in watch.items():
        print(
            f"| watch latency, poll_interval={interval}s, median / p99 "
            f"| {ms(statistics.median(values))} / {ms(pct(values, 0.99))} |"
        )


if __name__ == "__main__":
    main()
