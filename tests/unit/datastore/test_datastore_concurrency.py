"""Several real processes on one SQLite file: two writing at once, one watching another."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dstest_helpers import collect_events, finish, gnp, start_worker, wait_for_files

from felis.datastore import Datastore, SqliteDatastore
from felis.model import load_located
from felis.resources import ResourceService

INCREMENTS = 150
TIER_RACE_ROUNDS = 25


def race_tiers(store: Datastore, rounds: int) -> None:
    """The tiers `race-0` … of the `tier-race` worker mode."""
    documents = "---\n".join(
        f"apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: race-{i}}}\n"
        "spec: {order: 100}\n"
        for i in range(rounds)
    )
    ResourceService(store).apply(load_located(documents.encode(), "tiers.yaml"))


def check_tier_race(outputs: list[str], store: Datastore, rounds: int) -> None:
    """Each round, exactly one of the two writers succeeded, and what is stored says which."""
    deleted, created = (out.strip() for out in outputs)
    assert len(deleted) == len(created) == rounds
    both_or_neither = [i for i in range(rounds) if deleted[i] == created[i]]
    assert both_or_neither == [], f"rounds where not exactly one writer won: {both_or_neither}"
    tiers = {o["metadata"]["name"] for o in store.list("Tier").items}
    policies = {o["metadata"]["name"] for o in store.list("GlobalNetworkPolicy").items}
    for i in range(rounds):
        assert (f"race-{i}" in tiers) == (f"race-{i}.p" in policies) == (created[i] == "1")


def run_pair(db_path: Path, tmp_path: Path, args_a: list[str], args_b: list[str]) -> list[str]:
    go = tmp_path / "go"
    ready = [tmp_path / "ready-a", tmp_path / "ready-b"]
    url = f"sqlite://{db_path}"
    procs = [
        start_worker(args_a[0], url, ready[0], go, *args_a[1:]),
        start_worker(args_b[0], url, ready[1], go, *args_b[1:]),
    ]
    try:
        wait_for_files(ready, procs, 60)
        go.touch()  # both are open and waiting: release them together
        return finish(procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def integrity(db_path: Path) -> str:
    conn = sqlite3.connect(db_path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def test_concurrent_read_modify_write_loses_no_update(db_path: Path, tmp_path: Path) -> None:
    with SqliteDatastore(db_path) as store:
        store.create(
            {
                "kind": "GlobalNetworkSet",
                "metadata": {"name": "counter", "labels": {"count": "0"}},
                "spec": {},
            }
        )
    outputs = run_pair(
        db_path,
        tmp_path,
        ["increment", str(INCREMENTS)],
        ["increment", str(INCREMENTS)],
    )
    conflicts = sum(int(out.strip().removeprefix("conflicts=")) for out in outputs)
    with SqliteDatastore(db_path) as store:
        counter = store.get("GlobalNetworkSet", "counter")
        count = counter["metadata"]["labels"]["count"]
        assert count == str(2 * INCREMENTS), f"lost updates ({conflicts} conflicts retried)"
        # One create plus exactly one successful write per increment; conflicts write nothing.
        assert store.revision() == 1 + 2 * INCREMENTS
        assert counter["metadata"]["resourceVersion"] == str(1 + 2 * INCREMENTS)
    assert integrity(db_path) == "ok"


def test_concurrent_disjoint_applies_all_land(db_path: Path, tmp_path: Path) -> None:
    SqliteDatastore(db_path).close()
    count = 400
    run_pair(
        db_path,
        tmp_path,
        ["fill", "left", str(count), "25"],
        ["fill", "right", str(count), "40"],
    )
    with SqliteDatastore(db_path) as store:
        listing = store.list("GlobalNetworkSet")
        names = [o["metadata"]["name"] for o in listing.items]
        expected = sorted(
            [f"left-{i:05d}" for i in range(count)] + [f"right-{i:05d}" for i in range(count)]
        )
        assert names == expected
        versions = [int(o["metadata"]["resourceVersion"]) for o in listing.items]
        assert sorted(versions) == list(range(1, 2 * count + 1))
        assert listing.revision == 2 * count
    assert integrity(db_path) == "ok"


def test_watch_sees_changes_made_by_another_process(db_path: Path, tmp_path: Path) -> None:
    with SqliteDatastore(db_path) as store:
        store.create(gnp("before"))
        since = store.revision()
        ready, go = tmp_path / "ready", tmp_path / "go"
        proc = start_worker("fill", f"sqlite://{db_path}", ready, go, "remote", "30", "7")
        wait_for_files([ready], [proc], 60)
        events = collect_events(store, since, 30, on_start=go.touch)
        finish([proc])
    assert [e.name for e in events] == [f"remote-{i:05d}" for i in range(30)]
    assert [e.revision for e in events] == list(range(since + 1, since + 31))
    assert {e.type for e in events} == {"ADDED"}


def test_a_policy_and_the_deletion_of_its_tier_never_both_succeed(
    db_path: Path, tmp_path: Path
) -> None:
    """One process deletes tier T while the other creates a policy in T, round after round:
    the checks run inside the write's transaction, so one of them always sees the other."""
    with SqliteDatastore(db_path) as store:
        race_tiers(store, TIER_RACE_ROUNDS)
    rounds = str(TIER_RACE_ROUNDS)
    outputs = run_pair(
        db_path, tmp_path, ["tier-race", "tier", rounds], ["tier-race", "policy", rounds]
    )
    with SqliteDatastore(db_path) as store:
        check_tier_race(outputs, store, TIER_RACE_ROUNDS)
