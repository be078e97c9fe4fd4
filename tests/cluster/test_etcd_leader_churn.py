"""The etcd leader killed while 200 writes run: none lost, none applied twice, and every agent
ends where a fresh `felis agent --once` would. The 1,000-write version with several leader
changes is bench/bench_etcd_faults.py. Then the two halves of "in doubt", made deterministic: a
reply lost after etcd committed is recognised as felis' own write, and a write whose every
retry failed says that it may have been applied."""

from __future__ import annotations

from typing import Any

import pytest
from etcd_harness import EtcdCluster, etcd_store
from leader_churn import (
    SEED,
    churn_set,
    converged,
    history,
    make_leader,
    node_objects,
    once,
    plan_writes,
    run,
    start_agents,
    verdict,
)

from felis.datastore import Unavailable
from felis.datastore import etcd_client as client_module
from felis.datastore.etcd import EtcdDatastore
from felis.datastore.url import EtcdConfig

pytestmark = pytest.mark.cluster

AGENTS = 2
# A request stranded on the dead leader is abandoned after the client timeout and retried; the
# default 5 s would only make the test slower (the bench runs with the defaults).
WRITER_TIMEOUT = 1.5


def test_leader_killed_mid_writes_loses_and_duplicates_nothing(etcd3: EtcdCluster) -> None:
    with etcd_store(etcd3, timeout=WRITER_TIMEOUT) as writer, etcd_store(etcd3) as watcher:
        writer.apply([*node_objects(AGENTS), *SEED])
        make_leader(etcd3, etcd3.members[0])
        agents = start_agents(etcd3, AGENTS)
        try:
            before = once(etcd3, 0)
            writes = plan_writes(200, objects=40)
            outcome = run(etcd3, writer, watcher, writes, [(70, "kill-leader")])
            final = writer.list("GlobalNetworkSet").items
            result = verdict(outcome, final)
            assert result["fault_errors"] == [] and len(result["faults"]) == 1, result
            assert result["errors"] == 0, outcome.failed
            assert result["lost"] == [], result
            assert result["duplicated_or_unexplained"] == [], result
            assert result["wrong_actions"] == [], result
            assert result["final_matches"], result
            assert result["live_watch_matches"], result

            assert converged(etcd3, agents) == []
            after = once(etcd3, 0)
            assert after != before, "the writes should have changed what agents program"
            for obj in final:
                assert obj["spec"]["nets"][0].removesuffix("/32") in after
            assert all(not a.errors for a in agents)
        finally:
            for agent in agents:
                agent.close()


def test_a_write_in_doubt_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every retry of a write lost after sending: the one-line error says the write may have
    been applied; a read failing the same way does not."""

    def lost(self: Any, endpoint: Any, path: str, payload: Any) -> Any:
        raise client_module._LostAfterSending("connection reset")

    monkeypatch.setattr(client_module.EtcdClient, "_post", lost)
    store = EtcdDatastore(EtcdConfig(("127.0.0.1:1", "127.0.0.1:2")), retry_for=0.05)
    with store:
        with pytest.raises(Unavailable) as write_err:
            store.create(churn_set("churn-000", 0, 0))
        with pytest.raises(Unavailable) as read_err:
            store.list()
    # The create's own read (a range-only transaction) fails first: not in doubt either.
    assert "in doubt" not in str(read_err.value) and "in doubt" not in str(write_err.value)

    reads: list[str] = []

    def lost_writes(self: Any, endpoint: Any, path: str, payload: Any) -> Any:
        ops = payload.get("success", [])
        if path == "/kv/txn" and any("request_range" not in op for op in ops):
            raise client_module._LostAfterSending("connection reset")
        reads.append(path)
        return {"header": {"revision": "5"}, "responses": [], "succeeded": True}

    monkeypatch.setattr(client_module.EtcdClient, "_post", lost_writes)
    with (
        EtcdDatastore(EtcdConfig(("127.0.0.1:1",)), retry_for=0.05) as store,
        pytest.raises(Unavailable) as err,
    ):
        store.create(churn_set("churn-000", 0, 0))
    message = str(err.value)
    assert reads and "\n" not in message
    assert message.startswith("etcd datastore unreachable (endpoints http://127.0.0.1:1)")
    assert message.endswith(client_module.IN_DOUBT)


def test_a_reply_lost_after_the_commit_is_one_write(
    etcd: EtcdCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """etcd commits each write, then the reply is lost: felis' retry must report the write
    done (not AlreadyExists / NotFound / a conflict) and leave exactly one event for it."""
    original = client_module.EtcdClient._post
    armed = [False]

    def drop_reply(self: Any, endpoint: Any, path: str, payload: Any) -> Any:
        result = original(self, endpoint, path, payload)
        writes = any("request_range" not in op for op in payload.get("success", []))
        if armed[0] and path == "/kv/txn" and writes:
            armed[0] = False
            raise client_module._LostAfterSending("reply lost")
        return result

    monkeypatch.setattr(client_module.EtcdClient, "_post", drop_reply)
    with etcd_store(etcd) as store:
        since = store.revision()
        armed[0] = True
        created = store.create(churn_set("churn-001", 1, 1))
        armed[0] = True
        (updated,) = store.apply([churn_set("churn-001", 2, 1)])
        armed[0] = True
        deleted = store.delete("GlobalNetworkSet", "churn-001")
        assert not armed[0], "every write had its reply dropped"
        assert updated.action == "updated"
        assert deleted["metadata"]["labels"]["felis-write"] == "2"
        assert int(created["metadata"]["resourceVersion"]) == since + 1
        events = [(e.type, e.revision) for e in history(store, since, since + 3)]
    assert events == [("ADDED", since + 1), ("MODIFIED", since + 2), ("DELETED", since + 3)]
