"""The agent's drift checks at rest: a quick check (rules, chains, hooks, set declarations and
sizes) every refresh interval, every set member compared only on the longer full period, and a
kernel event or a failure asking for a full check at once. The schedule is pure (times passed
in); the agent's part runs against a fake dataplane."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from felis.agent.agent import FULL, QUICK, Agent, AgentSettings, DriftSchedule
from felis.dataplane.kernel import ApplyReport, QuickDriftCheck
from felis.dataplane.spec import DataplaneSpec
from felis.datastore import SqliteDatastore

INF = float("inf")


def timeline(schedule: DriftSchedule, until: float) -> list[tuple[float, str]]:
    """Every check the schedule asks for up to `until`, jumping from one wake-up to the next."""
    out: list[tuple[float, str]] = []
    schedule.start(0.0)
    while (now := schedule.wake) <= until:
        depth = schedule.due(now)
        assert depth is not None, "woken with nothing due"
        out.append((now, depth))
        schedule.done(depth, now)
    return out


def test_quick_checks_between_full_ones() -> None:
    checks = timeline(DriftSchedule(quick=30, full=90), until=360)
    assert checks == [
        (30, QUICK),
        (60, QUICK),
        (90, FULL),
        (120, QUICK),
        (150, QUICK),
        (180, FULL),
        (210, QUICK),
        (240, QUICK),
        (270, FULL),
        (300, QUICK),
        (330, QUICK),
        (360, FULL),
    ]


def test_full_is_never_more_frequent_than_quick() -> None:
    # `--refresh-interval 3600` means no check for an hour, whatever the full period says.
    assert timeline(DriftSchedule(quick=3600, full=90), until=7200) == [(3600, FULL), (7200, FULL)]


def test_full_zero_leaves_the_quick_checks() -> None:
    assert timeline(DriftSchedule(quick=30, full=0), until=120) == [
        (30, QUICK),
        (60, QUICK),
        (90, QUICK),
        (120, QUICK),
    ]


def test_quick_zero_turns_periodic_checks_off_but_events_still_check() -> None:
    schedule = DriftSchedule(quick=0, full=90)
    schedule.start(0.0)
    assert schedule.wake == INF
    schedule.full_by(5.0)  # a kernel event
    assert schedule.due(4.9) is None
    assert schedule.due(5.0) == FULL
    schedule.done(FULL, 5.0)
    assert schedule.wake == INF


def test_an_event_brings_the_full_check_forward_and_restarts_both_periods() -> None:
    schedule = DriftSchedule(quick=30, full=90)
    schedule.start(0.0)
    schedule.full_by(12.0)
    assert schedule.wake == 12.0
    assert schedule.due(12.0) == FULL
    schedule.done(FULL, 12.0)
    assert (schedule.next_quick, schedule.next_full) == (42.0, 102.0)
    # A later request never postpones an earlier one.
    schedule.full_by(500.0)
    assert schedule.next_full == 102.0


def test_a_new_full_period_counts_from_the_change() -> None:
    schedule = DriftSchedule(quick=30, full=90)
    schedule.start(0.0)
    schedule.set_full(90, 10.0)
    assert schedule.next_full == 90.0, "unchanged: nothing moves"
    schedule.set_full(40, 10.0)
    assert schedule.next_full == 50.0
    schedule.set_full(3600, 20.0)
    assert schedule.next_full == 50.0, "the check already due comes first"
    schedule.done(FULL, 50.0)
    assert schedule.next_full == 3650.0
    schedule.set_full(0, 60.0)
    assert schedule.next_full == INF
    assert schedule.due(80.0) == QUICK


# --------------------------------------------------------------------------- the agent's part


class FakeDataplane:
    """Records which checks ran; `quick` and `full` are what they report."""

    backend = "iptables"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.quick: list[str] = []
        self.full: list[str] = []
        self._lock = threading.Lock()

    def _record(self, what: str) -> None:
        with self._lock:
            self.calls.append(what)

    def apply(self, spec: DataplaneSpec) -> ApplyReport:
        self._record("apply")
        return ApplyReport(self.backend)

    def drift(self, spec: DataplaneSpec) -> list[str]:
        self._record("drift")
        return list(self.full)

    def quick_drift(self, spec: DataplaneSpec) -> list[str]:
        self._record("quick")
        return list(self.quick)

    def counters(self, spec: object) -> list[object]:
        return []

    def count(self, what: str) -> int:
        with self._lock:
            return self.calls.count(what)

    def take(self) -> list[str]:
        with self._lock:
            out, self.calls = self.calls, []
        return out


class FullOnly:
    """A dataplane without a quick check (as the fakes of other tests)."""

    backend = "iptables"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def apply(self, spec: DataplaneSpec) -> ApplyReport:
        self.calls.append("apply")
        return ApplyReport(self.backend)

    def drift(self, spec: DataplaneSpec) -> list[str]:
        self.calls.append("drift")
        return []

    def counters(self, spec: object) -> list[object]:
        return []


def synced_agent(tmp_path: Path, dataplane: object, **settings: object) -> Agent:
    store = SqliteDatastore(tmp_path / "felis.db")
    agent = Agent(AgentSettings(node="node-1", **settings), store, dataplane, list)  # type: ignore[arg-type]
    agent.converge_once()
    return agent


def test_quick_check_in_sync_reads_no_member(tmp_path: Path) -> None:
    dataplane = FakeDataplane()
    assert isinstance(dataplane, QuickDriftCheck)
    agent = synced_agent(tmp_path, dataplane)
    dataplane.take()
    agent._repair_drift(full=False)
    assert dataplane.take() == ["quick"]
    assert agent.state.drift_repairs == 0


def test_what_the_quick_check_finds_is_confirmed_by_the_full_one_and_repaired(
    tmp_path: Path,
) -> None:
    dataplane = FakeDataplane()
    agent = synced_agent(tmp_path, dataplane)
    dataplane.take()
    dataplane.quick = ["IPv4 set felis4-x holds 9 members, 10 wanted"]
    dataplane.full = ["IPv4 ip sets differ"]
    agent._repair_drift(full=False)
    # The full check reads what the repair plans from (the quick one remembers nothing).
    assert dataplane.take() == ["quick", "drift", "apply"]
    assert agent.state.drift_repairs == 1
    # Gone again by the time the full check looks (another program's passing change).
    dataplane.full = []
    agent._repair_drift(full=False)
    assert dataplane.take() == ["quick", "drift"]
    assert agent.state.drift_repairs == 1


def test_a_full_check_skips_the_quick_one(tmp_path: Path) -> None:
    dataplane = FakeDataplane()
    agent = synced_agent(tmp_path, dataplane)
    dataplane.take()
    dataplane.full = ["IPv4 filter differs"]
    agent._repair_drift(full=True)
    assert dataplane.take() == ["drift", "apply"]


def test_a_dataplane_without_a_quick_check_gets_the_full_one(tmp_path: Path) -> None:
    dataplane = FullOnly()
    assert not isinstance(dataplane, QuickDriftCheck)
    agent = synced_agent(tmp_path, dataplane)
    dataplane.calls.clear()
    agent._repair_drift(full=False)
    assert dataplane.calls == ["drift"]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def felix_default(ipsets_refresh: str) -> dict[str, object]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "FelixConfiguration",
        "metadata": {"name": "default"},
        "spec": {"ipsetsRefreshInterval": ipsets_refresh},
    }


@pytest.mark.timeout(30)
def test_the_running_agent_checks_quickly_and_in_full_on_an_event_or_its_period(
    tmp_path: Path,
) -> None:
    dataplane = FakeDataplane()
    store = SqliteDatastore(tmp_path / "felis.db")
    # Full checks an hour apart: within this test only an event or a new period brings one.
    store.apply([felix_default("1h")])
    settings = AgentSettings(node="node-1", refresh_interval=0.01, batch_window=0.005)
    agent = Agent(settings, store, dataplane, list)  # type: ignore[arg-type]
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_for(lambda: dataplane.count("quick") >= 3, "three quick checks")
        assert dataplane.count("drift") == 0
        agent.kernel_changed(("delete element ip felis felis4-x { 198.18.0.9 }",))
        wait_for(lambda: dataplane.count("drift") == 1, "the full check an event asks for")
        # FelixConfiguration shortens the full period; the schedule follows it.
        store.apply([felix_default("10ms")])
        wait_for(lambda: dataplane.count("drift") >= 3, "full checks on the new period")
        assert agent.config.full_refresh == 0.01
    finally:
        stop.set()
        runner.join(timeout=10)
        store.close()
    assert not runner.is_alive()
