"""Fixtures that start real etcd members on loopback (see etcd_harness) and always stop them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from etcd_harness import ETCD, EtcdCluster, Tls, etcd_store, make_pki, wipe

from felis.datastore import Datastore, SqliteDatastore


def _need_etcd() -> None:
    if not (os.path.exists(ETCD) and os.access(ETCD, os.X_OK)):
        pytest.skip("etcd is not installed (Debian package etcd-server)")


@pytest.fixture(scope="module")
def shared_etcd() -> Iterator[EtcdCluster]:
    """One single-member etcd for a whole test module; tests wipe it before use."""
    _need_etcd()
    with EtcdCluster() as cluster:
        yield cluster


@pytest.fixture
def etcd(shared_etcd: EtcdCluster) -> EtcdCluster:
    """The module's etcd, emptied."""
    wipe(shared_etcd)
    return shared_etcd


@pytest.fixture
def own_etcd() -> Iterator[EtcdCluster]:
    """A single-member etcd for this test alone (for tests that compact or stop it)."""
    _need_etcd()
    with EtcdCluster() as cluster:
        yield cluster


@pytest.fixture
def etcd3() -> Iterator[EtcdCluster]:
    """A three-member etcd cluster for this test alone."""
    _need_etcd()
    with EtcdCluster(size=3) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_etcd(pki: Tls) -> Iterator[EtcdCluster]:
    """A single member serving HTTPS and requiring client certificates signed by the test CA."""
    _need_etcd()
    with EtcdCluster(tls=pki) as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "etcd"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Datastore]:
    """The same behavioural contract, run once per backend."""
    ds: Datastore
    if request.param == "sqlite":
        ds = SqliteDatastore(tmp_path / "felis.db")
    else:
        ds = etcd_store(request.getfixturevalue("etcd"))
    try:
        yield ds
    finally:
        ds.close()
