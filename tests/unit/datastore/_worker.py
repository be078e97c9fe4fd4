"""Subprocess side of the multi-process datastore tests (run as a script, not collected).

usage: _worker.py MODE DATASTORE_URL READY GO ARGS…
It opens the datastore named by the URL (SQLite file or etcd), does MODE's preparation,
creates READY, polls for GO (so two workers act together), then acts and prints a one-line
result. tests/cluster/_ds_worker.py runs this same script for the etcd tests.

modes:
  increment TIMES          read-modify-write a counter TIMES times, retrying lost CAS
  fill PREFIX COUNT BATCH  apply COUNT new GlobalNetworkSets, BATCH per call
  update WRITER            read the counter before READY, then update it (CAS race)
  apply WRITER             the same through apply
  tier-race ROLE ROUNDS    round i, through the resource service: ROLE `tier` deletes Tier
                           race-<i>, ROLE `policy` creates a policy in it; the two roles meet
                           at a barrier before every round. Prints one 1 (done) or 0 (refused)
                           per round.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from felis.datastore import Conflict, Datastore, open_datastore
from felis.model import load_located
from felis.resources import DeleteTarget, Problems, ResourceService

TIER_RACE_ROLES = ("tier", "policy")


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


def increment(store: Datastore, times: int) -> str:
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


def fill(store: Datastore, prefix: str, count: int, batch: int) -> str:
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


def _barrier(folder: Path, round_: int, role: str) -> None:
    """Wait until the other role has reached round `round_` too."""
    (folder / f"round-{round_}-{role}").touch()
    other = next(r for r in TIER_RACE_ROLES if r != role)
    end = time.monotonic() + 60
    while not (folder / f"round-{round_}-{other}").exists():
        if time.monotonic() > end:
            raise SystemExit(f"{other} never reached round {round_}")
        time.sleep(0.0005)


def tier_race(store: Datastore, role: str, rounds: int, folder: Path) -> str:
    """The two writers of a tier race: one deletes the tier, one creates a policy in it."""
    service = ResourceService(store)
    done = []
    for i in range(rounds):
        name = f"race-{i}"
        document = (
            f"apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n"
            f"metadata: {{name: {name}.p}}\nspec: {{tier: {name}, selector: all()}}\n"
        )
        items = load_located(document.encode(), "race.yaml")
        _barrier(folder, i, role)
        try:
            if role == "tier":
                service.delete([DeleteTarget("Tier", name)])
            else:
                service.create(items)
            done.append("1")
        except Problems:
            done.append("0")
    return "".join(done)


def race(store: Datastore, mode: str, writer: str, ready: Path, go: Path) -> str:
    """Both workers read the same version, then write at the same moment."""
    obj = store.get("GlobalNetworkSet", "counter")
    obj["metadata"].setdefault("labels", {})["writer"] = writer
    _wait_go(ready, go)
    try:
        if mode == "update":
            store.update(obj)
        else:
            store.apply([obj])
    except Conflict as err:
        return f"conflict {err}"
    return "ok"


def main() -> None:
    mode, url, ready_name, go_name, *args = sys.argv[1:]
    ready, go = Path(ready_name), Path(go_name)
    store = open_datastore(url)
    try:
        if mode in ("update", "apply"):
            print(race(store, mode, args[0], ready, go))
            return
        if mode == "tier-race":
            _wait_go(ready, go)
            print(tier_race(store, args[0], int(args[1]), ready.parent))
            return
        if mode == "increment":
            _wait_go(ready, go)
            print(increment(store, int(args[0])))
        elif mode == "fill":
            _wait_go(ready, go)
            print(fill(store, args[0], int(args[1]), int(args[2])))
        else:
            raise SystemExit(f"unknown mode {mode}")
    finally:
        store.close()


if __name__ == "__main__":
    main()
