"""Two real processes writing the same etcd at once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from etcd_harness import EtcdCluster, etcd_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "datastore"))

from test_datastore_concurrency import check_tier_race, race_tiers

pytestmark = pytest.mark.cluster

WORKER = Path(__file__).with_name("_ds_worker.py")
INCREMENTS = 100


def run_pair(cluster: EtcdCluster, tmp_path: Path, *argsets: list[str]) -> list[str]:
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(len(argsets))]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), args[0], cluster.url, str(r), str(go), *args[1:]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args, r in zip(argsets, ready, strict=True)
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in ready):
            for proc in procs:
                if proc.poll() is not None:
                    pytest.fail(f"worker exited early: {proc.communicate()[1]}")
            if time.monotonic() > deadline:
                pytest.fail("workers not ready within 60s")
            time.sleep(0.01)
        go.touch()  # both hold the same version: release them together
        outputs = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            outputs.append(out.strip())
        return outputs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _counter(cluster: EtcdCluster) -> dict[str, Any]:
    with etcd_store(cluster) as store:
        return store.create(
            {
                "kind": "GlobalNetworkSet",
                "metadata": {"name": "counter", "labels": {"count": "0"}},
                "spec": {},
            }
        )


@pytest.mark.parametrize("mode", ["update", "apply"])
def test_two_writers_of_one_version_exactly_one_wins(
    etcd: EtcdCluster, tmp_path: Path, mode: str
) -> None:
    created = _counter(etcd)
    outputs = run_pair(etcd, tmp_path, [mode, "a"], [mode, "b"])
    assert sorted(o.split()[0] for o in outputs) == ["conflict", "ok"]
    loser = next(o for o in outputs if o.startswith("conflict"))
    assert "update conflict: GlobalNetworkSet(counter): resource version" in loser
    winner = "ab"[outputs.index("ok")]
    with etcd_store(etcd) as store:
        stored = store.get("GlobalNetworkSet", "counter")
        assert stored["metadata"]["labels"]["writer"] == winner
        assert stored["metadata"]["uid"] == created["metadata"]["uid"]
        # exactly one write happened after the create
        assert store.revision() == int(created["metadata"]["resourceVersion"]) + 1


def test_concurrent_read_modify_write_loses_no_update(etcd: EtcdCluster, tmp_path: Path) -> None:
    created = _counter(etcd)
    outputs = run_pair(
        etcd, tmp_path, ["increment", str(INCREMENTS)], ["increment", str(INCREMENTS)]
    )
    conflicts = sum(int(o.removeprefix("conflicts=")) for o in outputs)
    with etcd_store(etcd) as store:
        counter = store.get("GlobalNetworkSet", "counter")
        assert counter["metadata"]["labels"]["count"] == str(2 * INCREMENTS), (
            f"lost updates ({conflicts} conflicts retried)"
        )
        # One successful write per increment; a lost compare-and-swap writes nothing.
        assert store.revision() == int(created["metadata"]["resourceVersion"]) + 2 * INCREMENTS


def test_a_policy_and_the_deletion_of_its_tier_never_both_succeed(
    etcd: EtcdCluster, tmp_path: Path
) -> None:
    rounds = 20
    with etcd_store(etcd) as store:
        race_tiers(store, rounds)
    outputs = run_pair(
        etcd, tmp_path, ["tier-race", "tier", str(rounds)], ["tier-race", "policy", str(rounds)]
    )
    with etcd_store(etcd) as store:
        check_tier_race(outputs, store, rounds)
