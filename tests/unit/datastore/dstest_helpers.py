"""Helpers shared by the datastore tests (unique module name: imported via sys.path).

tests/cluster/test_datastore_contract.py imports this directory too, so nothing here may
assume the SQLite backend unless it says so.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from felis.datastore import Datastore, SqliteDatastore, WatchEvent

WORKER = Path(__file__).with_name("_worker.py")
GNP = "GlobalNetworkPolicy"


def gnp(name: str, order: float = 100, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = dict(labels)
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": GNP,
        "metadata": meta,
        "spec": {"order": order, "selector": "all()"},
    }


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def names(objs: list[dict[str, Any]]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def write_revisions(store: Datastore, after: int, count: int) -> list[int]:
    """The resourceVersions one write of `count` objects gets when the store was at `after`.

    SQLite gives every object of a write its own consecutive revision; etcd commits the
    write as one transaction at one revision (felis.datastore.base).
    """
    if isinstance(store, SqliteDatastore):
        return list(range(after + 1, after + count + 1))
    return [after + 1] * count


def drained(store: Datastore, since: int) -> list[WatchEvent]:
    """What is committed after `since`, without waiting for more."""
    stop = threading.Event()
    stop.set()  # pre-set: yield what is committed, then return
    return list(store.watch(since, stop=stop, poll_interval=0.01))


def collect_events(
    store: Datastore,
    since: int,
    count: int,
    timeout: float = 30.0,
    on_start: Callable[[], None] | None = None,
) -> list[WatchEvent]:
    """Watch from `since` until `count` events arrived; the timer only bounds a failing test."""
    stop = threading.Event()
    deadline = threading.Timer(timeout, stop.set)
    deadline.start()
    events: list[WatchEvent] = []
    try:
        iterator = store.watch(since, stop=stop, poll_interval=0.01)
        if on_start is not None:
            on_start()
        for event in iterator:
            events.append(event)
            if len(events) >= count:
                break
    finally:
        deadline.cancel()
    return events


def start_worker(mode: str, url: str, ready: Path, go: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), mode, url, str(ready), str(go), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_files(paths: list[Path], procs: list[subprocess.Popen[str]], timeout: float) -> None:
    """Poll until every path exists; fail early with the worker's stderr if one died."""
    end = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        for proc in procs:
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f"worker exited early ({proc.returncode}): {err}")
        if time.monotonic() > end:
            pytest.fail(f"workers not ready within {timeout}s")
        time.sleep(0.01)


def finish(procs: list[subprocess.Popen[str]], timeout: float = 120.0) -> list[str]:
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err
        outputs.append(out)
    return outputs
