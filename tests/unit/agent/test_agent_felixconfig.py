"""The agent follows FelixConfiguration objects: a change recomputes and reprograms the node, a
stored object that cannot be read is skipped (logged, exported, named) and the next source
decides, and its own environment wins over the objects."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from felis.agent.agent import Agent, AgentSettings
from felis.agent.metrics import build_registry
from felis.calc import HostInterface
from felis.dataplane.kernel import ApplyReport
from felis.dataplane.spec import DataplaneSpec, Family, Table
from felis.datastore import SqliteDatastore

NODE = "node-1"
V3 = "projectcalico.org/v3"


def hep() -> dict[str, Any]:
    return {
        "apiVersion": V3,
        "kind": "HostEndpoint",
        "metadata": {"name": "h1"},
        "spec": {"node": NODE, "interfaceName": "eth0"},
    }


def felix(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": V3,
        "kind": "FelixConfiguration",
        "metadata": {"name": name},
        "spec": spec,
    }


class RecordingDataplane:
    backend = "iptables"

    def __init__(self) -> None:
        self.specs: list[DataplaneSpec] = []

    def apply(self, spec: DataplaneSpec) -> ApplyReport:
        self.specs.append(spec)
        return ApplyReport("iptables")

    def drift(self, spec: object) -> list[str]:
        return []

    def counters(self, spec: object) -> list[object]:
        return []

    def failsafe_in(self) -> list[str]:
        chain = self.specs[-1].ruleset(Family.V4).table(Table.FILTER).chains["felis-failsafe-in"]
        return [rule.comment for rule in chain.rules]


def interfaces() -> list[HostInterface]:
    return [HostInterface("eth0", ("10.0.0.1/24",))]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_once_uses_the_node_object_and_the_environment_wins(tmp_path: Path) -> None:
    with SqliteDatastore(tmp_path / "felis.db") as store:
        store.apply(
            [
                hep(),
                felix("default", failsafeInboundHostPorts=[{"port": 22}], logPrefix="fw"),
                felix(f"node.{NODE}", failsafeInboundHostPorts=[{"port": 2222}]),
            ]
        )
        plane = RecordingDataplane()
        Agent(AgentSettings(node=NODE), store, plane, interfaces).converge_once()
        assert plane.failsafe_in() == ["failsafe in tcp:2222"]
        env = {"FELIX_FAILSAFEINBOUNDHOSTPORTS": "tcp:22,tcp:8022"}
        agent = Agent(AgentSettings(node=NODE, environ=env), store, plane, interfaces)
        agent.converge_once()
        assert plane.failsafe_in() == ["failsafe in tcp:22,8022"]
        assert "failsafeInboundHostPorts from environment" in agent.config.summary()
        assert "logPrefix from FelixConfiguration default" in agent.config.summary()


def test_an_unreadable_stored_object_is_skipped_and_the_next_source_decides(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with SqliteDatastore(tmp_path / "felis.db") as store:
        # Written by another tool without felis' checks: the datastore stores what it is given.
        store.apply(
            [
                hep(),
                felix("default", failsafeInboundHostPorts=[{"port": 22}]),
                felix(f"node.{NODE}", failsafeInboundHostPorts=[{"port": 2222}], bogus=1),
            ]
        )
        plane = RecordingDataplane()
        agent = Agent(AgentSettings(node=NODE), store, plane, interfaces)
        agent.converge_once()
    assert plane.failsafe_in() == ["failsafe in tcp:22"]
    [skipped] = agent.state.skipped
    assert (skipped.kind, skipped.name) == ("FelixConfiguration", f"node.{NODE}")
    assert "spec.bogus: field is not recognized" in skipped.reason
    assert any(f"FelixConfiguration node.{NODE} skipped" in r.getMessage() for r in caplog.records)
    registry, _ = build_registry(agent)
    text = generate_latest(registry).decode()
    assert f'felis_object_skipped{{kind="FelixConfiguration",name="node.{NODE}"}} 1.0' in text


@pytest.mark.timeout(30)
def test_a_running_agent_reprograms_on_a_felix_configuration_change(tmp_path: Path) -> None:
    store = SqliteDatastore(tmp_path / "felis.db")
    store.apply([hep(), felix("default", failsafeInboundHostPorts=[{"port": 22}])])
    plane = RecordingDataplane()
    settings = AgentSettings(node=NODE, batch_window=0.01, refresh_interval=0)
    agent = Agent(settings, store, plane, interfaces)
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_for(lambda: agent.state.in_sync, "the first sync")
        assert plane.failsafe_in() == ["failsafe in tcp:22"]
        store.apply([felix("default", failsafeInboundHostPorts=[{"port": 22}, {"port": 2222}])])
        wait_for(lambda: plane.failsafe_in() == ["failsafe in tcp:22,2222"], "the new list")
        # A bad update takes the object out (built-in defaults), and names it.
        store.apply([felix("default", chainInsertMode="Top")])
        wait_for(lambda: bool(agent.state.skipped), "the bad object to be skipped")
        assert "tcp:22,179,2379,2380,5473,6443,6666,6667" in plane.failsafe_in()[0]
        store.delete("FelixConfiguration", "default")
        wait_for(lambda: not agent.state.skipped, "the skipped object to be forgotten")
    finally:
        stop.set()
        runner.join(timeout=10)
        store.close()
    assert not runner.is_alive()
