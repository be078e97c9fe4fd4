"""Which etcd member a client starts with: spread over the members, not always the first."""

from __future__ import annotations

from collections import Counter

import pytest

pytest.importorskip("etcd3gw")

from felis.datastore.etcd_client import EtcdClient

MEMBERS = ("http://198.18.0.1:2379", "http://198.18.0.2:2379", "http://198.18.0.3:2379")
CLIENTS = 300


def test_the_same_endpoint_list_spreads_clients_over_members() -> None:
    first: Counter[str] = Counter()
    for seed in range(CLIENTS):  # fixed seeds: the same counts on every run
        client = EtcdClient(MEMBERS, seed=seed)
        try:
            # Failover still reaches every member, each once.
            assert sorted(e.url for e in client.endpoints) == sorted(MEMBERS)
            # Messages name the members as configured, whatever the order tried.
            assert client.names == ",".join(MEMBERS)
            first[client.preferred] += 1
        finally:
            client.close()
    assert set(first) == set(MEMBERS)
    assert all(count > CLIENTS // 5 for count in first.values()), first  # 100 each expected


def test_a_seed_fixes_the_order() -> None:
    orders = set()
    for _ in range(3):
        client = EtcdClient(MEMBERS, seed=7)
        orders.add(tuple(e.url for e in client.endpoints))
        client.close()
    assert len(orders) == 1
