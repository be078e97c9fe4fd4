"""Subprocess side of the multi-process cluster tests (run as a script, not collected).

usage: _ds_worker.py MODE DATASTORE_URL READY GO ARGS…
Opens the datastore named by the URL, does MODE's preparation, creates READY, polls for GO (so
two workers act together), then acts and prints a one-line result.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from felis.datastore import Conflict, Datastore, open_datastore


def _wait_go(ready: Path, go: Path) -> None:
    ready.touch()
    end = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > end:
            raise SystemExit("go file never appeared")
        time.sleep(0.001)


def increment(store: Datastore, times: int) -> str:
    """Read-modify-write a counter label `times` times, retrying lost compare-and-swaps."""
    conflicts = 0
    for _ in range(times):
        while True:
            obj = store.get("GlobalNetworkSet", "counter")
            labels = obj["metadata"].setdefault("labels", {})
            labels["count"] = str(int(labels.get("count", "0")) + 1)
            try:
                store.update(obj)
                break
            except Conflict:
                conflicts += 1
    return f"conflicts={conflicts}"


def main() -> None:
    mode, url, ready, go, *args = sys.argv[1:]
    store = open_datastore(url)
    try:
        if mode == "increment":
            _wait_go(Path(ready), Path(go))
            print(increment(store, int(args[0])))
        elif mode in ("update", "apply"):
            # Both workers read the same version, then write at the same moment.
            obj = store.get("GlobalNetworkSet", "counter")
            obj["metadata"].setdefault("labels", {})["writer"] = args[0]
            _wait_go(Path(ready), Path(go))
            try:
                if mode == "update":
                    store.update(obj)
                else:
                    store.apply([obj])
                print("ok")
            except Conflict as err:
                print(f"conflict {err}")
        else:
            raise SystemExit(f"unknown mode {mode}")
    finally:
        store.close()


if __name__ == "__main__":
    main()
