"""`apply --confirm` (felis.resources.confirm): record, confirm, roll back all-or-nothing,
refuse to clobber, exactly one actor. The clock is replaced: no test waits for a window.

Written against the `store` fixture, so tests/cluster/test_confirm_etcd.py runs them on etcd.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from resources_helpers import items, policy, tier

from felis.datastore import Datastore
from felis.resources import ResourceService
from felis.resources import confirm as confirming

WINDOW = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeWatchdog:
    description = "pid 0 on test"

    def __init__(self) -> None:
        self.stopped = False
        self.started: list[tuple[str, float]] = []

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(confirming, "clock", fake)
    return fake


@pytest.fixture
def watchdog() -> FakeWatchdog:
    return FakeWatchdog()


def gns(name: str, net: str) -> str:
    return (
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\n"
        f"metadata: {{name: {name}}}\nspec: {{nets: [{net}]}}\n"
    )


def nets(store: Datastore) -> dict[str, list[str]]:
    return {o["metadata"]["name"]: o["spec"]["nets"] for o in store.list("GlobalNetworkSet").items}


def apply_confirmed(store: Datastore, watchdog: FakeWatchdog, *docs: str) -> confirming.Applied:
    def start(record_id: str, deadline: float) -> FakeWatchdog:
        watchdog.started.append((record_id, deadline))
        return watchdog

    return confirming.apply_confirmed(
        store, items(*docs), WINDOW, source="change.yaml", start_watchdog=start
    )


@pytest.fixture
def seeded(store: Datastore) -> Datastore:
    ResourceService(store).apply(items(gns("a", "198.18.0.0/24"), gns("same", "198.18.9.0/24")))
    return store


# -- the window -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("60s", 60.0), ("5m", 300.0), ("1h", 3600.0), ("90", 90.0), ("2.5s", 2.5)]
)
def test_window_parses(text: str, seconds: float) -> None:
    assert confirming.parse_window(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "-5s", "10x", "25h", "1 minute"])
def test_bad_window_is_one_line(text: str) -> None:
    with pytest.raises(ValueError, match="invalid --confirm window") as err:
        confirming.parse_window(text)
    assert "\n" not in str(err.value)


# -- apply, confirm --------------------------------------------------------------------------


def test_records_what_each_changed_object_was(
    seeded: Datastore, clock: Clock, watchdog: FakeWatchdog
) -> None:
    before = seeded.get("GlobalNetworkSet", "a")
    applied = apply_confirmed(
        seeded,
        watchdog,
        gns("a", "198.18.5.0/24"),
        gns("b", "198.18.6.0/24"),
        gns("same", "198.18.9.0/24"),
    )
    assert [r.action for r in applied.results] == ["updated", "created", "unchanged"]
    record = applied.record
    assert record is not None
    assert record.deadline == clock.now + WINDOW
    assert [(t.name, t.before) for t in record.touched] == [("a", before), ("b", None)]
    assert nets(seeded)["a"] == ["198.18.5.0/24"]
    assert not watchdog.stopped
    assert confirming.read(seeded) is not None


def test_nothing_changed_records_nothing(
    seeded: Datastore, clock: Clock, watchdog: FakeWatchdog
) -> None:
    applied = apply_confirmed(seeded, watchdog, gns("a", "198.18.0.0/24"))
    assert applied.record is None
    assert watchdog.stopped
    assert confirming.read(seeded) is None


def test_second_confirmed_apply_is_refused_while_one_is_pending(
    seeded: Datastore, clock: Clock, watchdog: FakeWatchdog
) -> None:
    apply_confirmed(seeded, watchdog, gns("a", "198.18.5.0/24"))
    second = FakeWatchdog()
    with pytest.raises(confirming.ConfirmError, match="is pending until"):
        apply_confirmed(seeded, second, gns("c", "198.18.7.0/24"))
    assert second.stopped
    assert "c" not in nets(seeded)


def test_refused_write_stops_its_watchdog(
    seeded: Datastore, clock: Clock, watchdog: FakeWatchdog
) -> None:
    with pytest.raises(Exception, match="Tier"):
        apply_confirmed(seeded, watchdog, policy("p", "missing"))
    assert watchdog.stopped
    assert confirming.read(seeded) is None


def test_confirm_keeps_the_change(seeded: Datastore, clock: Clock, watchdog: FakeWatchdog) -> None:
    apply_confirmed(seeded, watchdog, gns("a", "198.18.5.0/24"))
    clock.now += WINDOW - 1
    record = confirming.confirm(seeded, actor="test")
    assert [t.name for t in record.touched] == ["a"]
    current = confirming.read(seeded)
    assert current is not None and current.record.state == "confirmed"
    clock.now += 10
    assert confirming.settle(seeded, actor="test") is None
    assert nets(seeded)["a"] == ["198.18.5.0/24"]
    with pytest.raises(confirming.ConfirmError, match=r"nothing to confirm: .* was confirmed at"):
        confirming.confirm(seeded, actor="test")
    # A settled record does not stand in the way of the next confirmed apply.
    assert apply_confirmed(seeded, FakeWatchdog(), gns("a", "198.18.0.0/24")).record


# -- rollback ----------------------------------------------------------------------------------


def test_unconfirmed_change_is_restored_at_once(
    seeded: Datastore, clock: Clock, watchdog: FakeWatchdog
) -> None:
    original = nets(seeded)
    apply_confirmed(
        seeded, watchdog, gns("a", "198.18.5.0/24"), tier("t"), policy("p", "t"), policy("q")
    )
    clock.now += WINDOW - 1
    assert confirming.settle(seeded, actor="test") is None  # not yet
    clock.now += 1
    since = seeded.revision()
    done = confirming.settle(seeded, actor="watchdog on test")
    assert done is not None and done.state == "rolled-back"
    assert nets(seeded) == original
    assert [o["metadata"]["name"] for o in seeded.list("Tier").items] == [
        "default",
        "kube-admin",
        "kube-baseline",
    ]
    assert seeded.list("GlobalNetworkPolicy").items == []
    # One transaction: every restore shares the one commit on etcd, consecutive on SQLite.
    events = _drained(seeded, since)
    assert sorted((e.type, e.name) for e in events) == [
        ("DELETED", "q"),
        ("DELETED", "t"),
        ("DELETED", "t.p"),
        ("MODIFIED", "a"),
    ]
    with pytest.raises(confirming.ConfirmError, match=r"too late.*rolled back.*watchdog on test"):
        confirming.confirm(seeded, actor="test")


def test_confirm_after_the_window_rolls_back_and_fails(
    seeded: Datastore, clock: Clock, watchdog: FakeWatchdog
) -> None:
    apply_confirmed(seeded, watchdog, gns("a", "198.18.5.0/24"))
    clock.now += WINDOW + 1
    with pytest.raises(confirming.ConfirmError, match="too late"):
        confirming.confirm(seeded, actor="felis confirm")
    assert nets(seeded)["a"] == ["198.18.0.0/24"]


def test_rollback_refuses_to_clobber_a_later_change(
    seeded: Datastore, clock: Clock, watchdog: FakeWatchdog
) -> None:
    apply_confirmed(seeded, watchdog, gns("a", "198.18.5.0/24"), gns("b", "198.18.6.0/24"))
    ResourceService(seeded).apply(items(gns("b", "198.18.66.0/24")))
    clock.now += WINDOW
    done = confirming.settle(seeded, actor="test")
    assert done is not None and done.state == "refused"
    assert done.reasons == (
        "GlobalNetworkSet(b) was changed after the apply (resourceVersion "
        f"{seeded.get('GlobalNetworkSet', 'b')['metadata']['resourceVersion']})",
    )
    # All or nothing: `a` is not restored either.
    assert nets(seeded) == {
        "a": ["198.18.5.0/24"],
        "b": ["198.18.66.0/24"],
        "same": ["198.18.9.0/24"],
    }
    with pytest.raises(confirming.ConfirmError, match="rollback refused"):
        confirming.confirm(seeded, actor="test")


def test_rollback_refuses_when_a_created_object_was_deleted(
    seeded: Datastore, clock: Clock, watchdog: FakeWatchdog
) -> None:
    apply_confirmed(seeded, watchdog, gns("a", "198.18.5.0/24"), gns("b", "198.18.6.0/24"))
    seeded.delete("GlobalNetworkSet", "b")
    clock.now += WINDOW
    done = confirming.settle(seeded, actor="test")
    assert done is not None and done.reasons == ("GlobalNetworkSet(b) was deleted after the apply",)
    assert nets(seeded)["a"] == ["198.18.5.0/24"]


def test_rollback_refuses_to_delete_a_tier_someone_else_now_uses(
    seeded: Datastore, clock: Clock, watchdog: FakeWatchdog
) -> None:
    apply_confirmed(seeded, watchdog, tier("t"))
    ResourceService(seeded).apply(items(policy("theirs", "t")))
    clock.now += WINDOW
    done = confirming.settle(seeded, actor="test")
    assert done is not None and done.state == "refused"
    assert "non-empty tier" in done.reasons[0]
    assert seeded.get("Tier", "t")


def test_exactly_one_actor_rolls_back(
    seeded: Datastore, clock: Clock, watchdog: FakeWatchdog
) -> None:
    apply_confirmed(seeded, watchdog, gns("a", "198.18.5.0/24"), gns("b", "198.18.6.0/24"))
    clock.now += WINDOW
    current = confirming.read(seeded)
    assert current is not None
    since = seeded.revision()
    outcomes: list[Any] = []
    barrier = threading.Barrier(4)

    def actor(n: int) -> None:
        barrier.wait()
        outcomes.append(confirming.rollback(seeded, current, actor=f"actor {n}"))

    threads = [threading.Thread(target=actor, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([o for o in outcomes if o is not None]) == 1
    assert sorted((e.type, e.name) for e in _drained(seeded, since)) == [
        ("DELETED", "b"),
        ("MODIFIED", "a"),
    ]


# -- the watchdog -------------------------------------------------------------------------------


@contextmanager
def _same(store: Datastore) -> Iterator[Datastore]:
    yield store


def test_watchdog_rolls_back_at_the_deadline(
    seeded: Datastore, clock: Clock, watchdog: FakeWatchdog
) -> None:
    applied = apply_confirmed(seeded, watchdog, gns("a", "198.18.5.0/24"))
    assert applied.record is not None
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        clock.now += seconds

    done = confirming.watch(
        lambda read_only: _same(seeded),
        applied.record.id,
        applied.record.deadline,
        actor="watchdog",
        sleep=sleep,
    )
    assert done is not None and done.state == "rolled-back"
    assert clock.now >= applied.record.deadline
    assert max(naps) <= 1.0  # it notices a confirmation within a second
    assert nets(seeded)["a"] == ["198.18.0.0/24"]


def test_watchdog_ends_once_confirmed(
    seeded: Datastore, clock: Clock, watchdog: FakeWatchdog
) -> None:
    applied = apply_confirmed(seeded, watchdog, gns("a", "198.18.5.0/24"))
    assert applied.record is not None

    def sleep(seconds: float) -> None:
        clock.now += seconds
        current = confirming.read(seeded)
        if current is not None and current.record.state == "pending":
            confirming.confirm(seeded, actor="test")

    done = confirming.watch(
        lambda read_only: _same(seeded),
        applied.record.id,
        applied.record.deadline,
        actor="watchdog",
        sleep=sleep,
    )
    assert done is None
    assert clock.now < applied.record.deadline
    assert nets(seeded)["a"] == ["198.18.5.0/24"]


def test_status_lines(seeded: Datastore, clock: Clock, watchdog: FakeWatchdog) -> None:
    assert confirming.describe(confirming.read(seeded))[0].startswith("nothing pending")
    apply_confirmed(seeded, watchdog, gns("a", "198.18.5.0/24"), gns("b", "198.18.6.0/24"))
    clock.now += 15
    lines = confirming.describe(confirming.read(seeded))
    assert lines[0].startswith("pending: change applied at ")
    assert "(in 45s) unless `felis confirm`" in lines[1]
    assert lines[-2:] == [
        "  GlobalNetworkSet(a): updated by the apply; restored on rollback",
        "  GlobalNetworkSet(b): created by the apply; deleted on rollback",
    ]


def _drained(store: Datastore, since: int) -> list[Any]:
    stop = threading.Event()
    stop.set()
    return list(store.watch(since, stop=stop, poll_interval=0.01))
