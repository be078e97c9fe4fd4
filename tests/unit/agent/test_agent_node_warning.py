"""The agent on a node without HostEndpoints keeps running, as Felix does, but says so: in its
log at every refresh, in its state (for `felis agent --once`) and in /healthz."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from felis.agent.agent import Agent, AgentSettings
from felis.agent.metrics import build_registry, serve_metrics
from felis.dataplane.kernel import ApplyReport
from felis.datastore import SqliteDatastore

WARNING = "no HostEndpoint has spec.node 'node-b'"


def hep(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "HostEndpoint",
        "metadata": {"name": name},
        "spec": {"node": node, "interfaceName": "eth0"},
    }


class FakeDataplane:
    backend = "fake"

    def apply(self, spec: object) -> ApplyReport:
        return ApplyReport("fake")

    def drift(self, spec: object) -> list[str]:
        return []

    def counters(self, spec: object) -> list[object]:
        return []


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        return response.status, json.loads(response.read())


def test_once_reports_the_missing_node(tmp_path: Path) -> None:
    with SqliteDatastore(tmp_path / "felis.db") as store:
        store.apply([hep("a-eth0", "node-a")])
        agent = Agent(AgentSettings(node="node-b"), store, FakeDataplane(), list)
        agent.converge_once()
    warning = agent.state.all_warnings[0]
    assert warning.startswith(WARNING)
    assert "nodes with HostEndpoints: node-a" in warning


@pytest.mark.timeout(30)
def test_daemon_warns_every_refresh_and_in_healthz(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="felis.agent")
    store = SqliteDatastore(tmp_path / "felis.db")
    store.apply([hep("a-eth0", "node-a")])
    settings = AgentSettings(node="node-b", refresh_interval=0.05, batch_window=0.01)
    agent = Agent(settings, store, FakeDataplane(), list)
    registry, _ = build_registry(agent)
    server = serve_metrics(agent, registry, "127.0.0.1", 0)
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_for(lambda: agent.state.in_sync, "the first sync")
        status, body = healthz(server.port)
        assert status == 200, "a node without endpoints is not unhealthy, only suspicious"
        assert body["warnings"][0].startswith(WARNING)

        def warned() -> int:
            return sum(WARNING in r.getMessage() for r in caplog.records)

        wait_for(lambda: warned() >= 3, "a warning at each refresh")
        store.apply([hep("b-eth0", "node-b")])
        wait_for(lambda: not agent.state.node_warning, "the warning to clear")
        assert healthz(server.port)[1]["warnings"] == []
    finally:
        stop.set()
        runner.join(timeout=10)
        server.shutdown()
        store.close()
    assert not runner.is_alive()
