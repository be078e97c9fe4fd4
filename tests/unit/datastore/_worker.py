"""Subprocess side of the multi-process datastore tests (run as a script, not collected).

usage: _worker.py MODE DB READY GO ARGS…
It opens the datastore, creates READY, polls for GO (so two workers start writing together),
then runs MODE and prints a one-line result.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from felis.datastore import Conflict, SqliteDatastore


def _wait_go(ready: Path, go: Path) -> None:
    ready.touch()
    end = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > end:
            raise SystemExit("go file never appeared")
        time.sleep(0.001)


def _think(seconds: float) -> None:
    """Busy CPU work between read and write, like a client computing its change: it widens
    the window in which the other process can write first, so the CAS is really exercised."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def increment(store: SqliteDatastore, times: int) -> str:
    """Read-modify-write a counter label `times` times, retrying lost compare-and-swaps."""
    conflicts = 0
    for _ in range(times):
        while True:
            obj = store.get("GlobalNetworkSet", "counter")
            labels = obj["metadata"].setdefault("labels", {})
            labels["count"] = str(int(labels.get("count", "0")) + 1)
            _think(0.0003)
            try:
                store.update(obj)
                break
            except Conflict:
                conflicts += 1
    return f"conflicts={conflicts}"


def apply_set(store: SqliteDatastore, prefix: str, count: int, batch: int) -> str:
    objs: list[dict[str, Any]] = [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "GlobalNetworkSet",
            "metadata": {"name": f"{prefix}-{i:05d}", "labels": {"owner": prefix}},
            "spec": {"nets": [f"198.18.{i // 256}.{i % 256}/32"]},
        }
        for i in range(count)
    ]
    for start in range(0, count, batch):
        store.apply(objs[start : start + batch])
    return f"applied={count}"


def main() -> None:
    mode, db, ready, go, *args = sys.argv[1:]
    with SqliteDatastore(db) as store:
        _wait_go(Path(ready), Path(go))
        if mode == "increment":
            print(increment(store, int(args[0])))
        elif mode == "apply":
            print(apply_set(store, args[0], int(args[1]), int(args[2])))
        else:
            raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
