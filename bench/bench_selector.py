"""Selector benchmarks: compiled evaluation rate and LabelIndex cost.

Run: .venv/bin/python bench/bench_selector.py
Results go into docs/benchmarks-selector.md by hand (with the command and date).
"""

from __future__ import annotations

import platform
import random
import statistics
import time

from felis.selector import LabelIndex, Selector, parse
from felis.selector.parser import parse_ast

N_OBJECTS = 10_000
N_SELECTORS = 1_000
N_CHANGES = 5_000
N_APPS = 200


def bench_evaluate() -> None:
    sel = parse('a == "x" && b in {"p", "q"} && !has(c)')
    inputs = [
        {"a": "x", "b": "q", "d": "z"},  # match: all three terms run
        {"a": "y", "b": "q"},  # fails on the first term
        {"a": "x", "b": "q", "c": "1"},  # fails on the last term
    ]
    for labels in inputs:
        evaluate = sel.evaluate
        n = 2_000_000
        start = time.perf_counter()
        for _ in range(n):
            evaluate(labels)
        elapsed = time.perf_counter() - start
        interp = sel.root.evaluate
        m = 200_000
        start = time.perf_counter()
        for _ in range(m):
            interp(labels)
        interp_rate = m / (time.perf_counter() - start)
        print(
            f"evaluate {str(sel)!r} on {labels}: {n / elapsed / 1e6:.2f} M/s compiled, "
            f"{interp_rate / 1e6:.2f} M/s interpreted, result={evaluate(labels)}"
        )


def bench_parse() -> None:
    texts = [
        f"app == 'app{i}' && tier in {{'web', 'api'}} && !has(canary) || env != 'dev-{i}'"
        for i in range(2_000)
    ]
    start = time.perf_counter()
    for text in texts:
        Selector(parse_ast(text))
    elapsed = time.perf_counter() - start
    print(
        f"parse + compile (uncached) of a 4-term selector: {elapsed / len(texts) * 1e6:.0f} µs each"
    )
    for text in texts[:1000]:
        parse(text)
    start = time.perf_counter()
    for _ in range(10):
        for text in texts[:1000]:
            parse(text)
    elapsed = time.perf_counter() - start
    print(f"parse() cache hit: {elapsed / 10_000 * 1e6:.2f} µs each")


def make_objects(rng: random.Random) -> dict[int, dict[str, str]]:
    objects: dict[int, dict[str, str]] = {}
    for i in range(N_OBJECTS):
        labels = {
            "app": f"app{rng.randrange(N_APPS)}",
            "tier": rng.choice(["web", "api", "db", "cache"]),
            "env": rng.choice(["prod", "staging", "dev"]),
            "zone": f"z{rng.randrange(10)}",
            "host": f"host-{i}",
            "projectcalico.org/orchestrator": "k8s",
        }
        if rng.random() < 0.02:
            labels["canary"] = "true"
        if rng.random() < 0.005:
            labels["quarantine"] = "true"
        if rng.random() < 0.10:
            labels[f"role-{rng.randrange(50)}"] = ""
        objects[i] = labels
    return objects


def make_selectors(rng: random.Random) -> dict[int, Selector]:
    def app() -> str:
        return f"app{rng.randrange(N_APPS)}"

    texts: list[str] = []
    for _ in range(500):
        texts.append(f"app == '{app()}'")
    for _ in range(150):
        texts.append(f"app == '{app()}' && tier in {{'web', 'api'}}")
    for _ in range(100):
        texts.append(
            f"env == 'prod' && zone == 'z{rng.randrange(10)}' && !has(canary) && tier != 'db'"
        )
    for _ in range(100):
        texts.append(f"has(role-{rng.randrange(50)})")
    for _ in range(50):
        texts.append(f"tier == 'cache' && env == 'dev' || app in {{'{app()}', '{app()}'}}")
    for _ in range(40):
        texts.append(f"app starts with 'app1{rng.randrange(10)}' && env == 'dev'")
    for _ in range(20):
        texts.append(f"!has(quarantine) && app not in {{'{app()}'}}")  # matches nearly all
    for _ in range(20):
        texts.append(f"has(canary) || !has(role-{rng.randrange(50)})")  # no shortcut: full scan
    for _ in range(N_SELECTORS - len(texts)):
        texts.append(f"(zone == 'z{rng.randrange(10)}' || has(canary)) && app == '{app()}'")
    # Distinct text per selector so nothing is shared through parse()'s cache.
    return {i: parse(f"{text} && host != 'none-{i}'") for i, text in enumerate(texts)}


def bench_index() -> None:
    rng = random.Random(42)
    objects = make_objects(rng)
    selectors = make_selectors(rng)
    flips = 0

    def on_change(sel_id: int, obj_id: int, matched: bool) -> None:
        nonlocal flips
        flips += 1

    for order in ("objects then selectors", "selectors then objects"):
        flips = 0
        index: LabelIndex[int, int] = LabelIndex(on_change)
        start = time.perf_counter()
        if order == "objects then selectors":
            for obj_id, labels in objects.items():
                index.update_labels(obj_id, labels)
            for sel_id, sel in selectors.items():
                index.update_selector(sel_id, sel)
        else:
            for sel_id, sel in selectors.items():
                index.update_selector(sel_id, sel)
            for obj_id, labels in objects.items():
                index.update_labels(obj_id, labels)
        elapsed = time.perf_counter() - start
        print(
            f"LabelIndex initial {N_SELECTORS} selectors x {N_OBJECTS} objects ({order}): "
            f"{elapsed:.3f} s, {flips} memberships"
        )

    # Single-object label changes on the last (fully loaded) index.
    latencies: list[float] = []
    ids = list(objects)
    for n in range(N_CHANGES):
        obj_id = rng.choice(ids)
        labels = dict(objects[obj_id])
        kind = n % 4
        if kind == 0:
            labels["app"] = f"app{rng.randrange(N_APPS)}"
        elif kind == 1:
            labels["tier"] = rng.choice(["web", "api", "db", "cache"])
        elif kind == 2:
            if "canary" in labels:
                del labels["canary"]
            else:
                labels["canary"] = "true"
        else:
            labels["zone"] = f"z{rng.randrange(10)}"
        objects[obj_id] = labels
        start = time.perf_counter()
        index.update_labels(obj_id, labels)
        latencies.append(time.perf_counter() - start)
    latencies.sort()
    median = statistics.median(latencies) * 1e6
    p99 = latencies[int(len(latencies) * 0.99)] * 1e6
    print(
        f"LabelIndex one label change ({N_CHANGES} changes, mixed keys): "
        f"median {median:.1f} µs, p99 {p99:.1f} µs, max {latencies[-1] * 1e6:.1f} µs"
    )

    # Sanity: the incremental result equals a brute-force recomputation.
    for sel_id, sel in selectors.items():
        expected = {o for o, labels in objects.items() if sel.evaluate(labels)}
        assert index.matches(sel_id) == expected, sel


def main() -> None:
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.node()}")
    bench_evaluate()
    bench_parse()
    bench_index()


if __name__ == "__main__":
    main()
