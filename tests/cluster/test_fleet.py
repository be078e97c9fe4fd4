"""A fleet of 100 simulated agents on a 3-member etcd (bench/bench_fleet.py at small scale).

Each simulated agent is the real agent (snapshot, watch, calc, render) for its own node with the
kernel replaced by a recorder (fleet_sim). After a stream of policy and label changes, every
agent must hold exactly the ruleset a fresh `felis agent --once` renders for its node, and must
have shown every change on the way (none skipped by a missed event).
"""

from __future__ import annotations

from collections.abc import Iterator

import fleet_sim as fs
import pytest
from etcd_harness import EtcdCluster, etcd_store, poll

pytestmark = pytest.mark.cluster

NODES = 100
# One endpoint per node and few set members: the suite-time budget is ~15 s, and every agent
# validates and calculates the whole datastore once at start and once more for the check.
HEPS = 1


@pytest.fixture
def fleet(etcd3: EtcdCluster) -> Iterator[fs.AgentGroup]:
    group = fs.AgentGroup(etcd3.url, list(range(NODES)), heps=HEPS)
    try:
        yield group
    finally:
        group.halt()


def test_hundred_agents_converge_to_what_once_renders(
    etcd3: EtcdCluster, fleet: fs.AgentGroup
) -> None:
    with etcd_store(etcd3) as store:
        objects = fs.fleet_objects(NODES, policies=10, sets=2, members=40, heps=HEPS)
        for i in range(0, len(objects), 50):
            store.apply(objects[i : i + 50])
        fleet.start()
        poll(lambda: fleet.synced() == NODES, 60, "every agent's first sync")
        poll(lambda: all(a.recording.applies for a in fleet.agents), 10, "first applies")
        before = fleet.digests()

        make = fs.change_stream(NODES)
        written = []
        for seq in range(4):
            change = make(seq)
            store.apply([change.obj])
            written.append((0.0, change))

        recordings = {a.node: a.recording for a in fleet.agents}
        poll(lambda: fs.propagation(written, recordings)[1] == 0, 60, "every change everywhere")

    expected = fs.fresh_digests(etcd3.url, list(range(NODES)), HEPS)
    # The changes changed every node's ruleset: an agent that missed them cannot match.
    assert all(expected[n] != before[n] for n in range(NODES))
    poll(lambda: fleet.digests() == expected, 30, "every agent on the --once ruleset")
