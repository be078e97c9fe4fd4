"""Helpers shared by the datastore tests (unique module name: imported via sys.path)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from felis.datastore import SqliteDatastore, WatchEvent

WORKER = Path(__file__).with_name("_worker.py")


def gnp(name: str, order: float = 100, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = dict(labels)
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": meta,
        "spec": {"order": order, "selector": "all()"},
    }


def collect_events(
    store: SqliteDatastore,
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


def start_worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
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
