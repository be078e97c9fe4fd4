"""etcd with TLS and client-certificate authentication (PKI generated with openssl)."""

from __future__ import annotations

import threading

import pytest
from etcd_harness import EtcdCluster, etcd_store

from felis.datastore import Unavailable
from felis.datastore.url import EtcdConfig, open_config, resolve_config

pytestmark = pytest.mark.cluster


def test_tls_with_client_certificate(tls_etcd: EtcdCluster) -> None:
    with etcd_store(tls_etcd) as store:
        base = store.revision()
        store.ensure_initialized()
        assert len(store.list("Tier").items) == 3
        stop = threading.Event()
        stop.set()
        assert len(list(store.watch(base, stop=stop, poll_interval=0.01))) == 3
    keys = tls_etcd.etcdctl("get", "--prefix", "/calico/", "--keys-only").split()
    assert len(keys) == 3


def test_calicoctl_tls_environment(tls_etcd: EtcdCluster) -> None:
    assert tls_etcd.tls is not None
    env = {
        "DATASTORE_TYPE": "etcdv3",
        "CALICO_ETCD_ENDPOINTS": ",".join(tls_etcd.endpoints),
        "ETCD_CA_CERT_FILE": str(tls_etcd.tls.ca),
        "ETCD_CERT_FILE": str(tls_etcd.tls.client_cert),
        "CALICO_ETCD_KEY_FILE": str(tls_etcd.tls.client_key),
    }
    config = resolve_config(env=env)
    store = open_config(config)
    try:
        store.create({"kind": "GlobalNetworkSet", "metadata": {"name": "tls"}, "spec": {}})
        assert store.get("GlobalNetworkSet", "tls")["metadata"]["name"] == "tls"
    finally:
        store.close()


def _config(cluster: EtcdCluster, **files: str | None) -> EtcdConfig:
    return EtcdConfig(endpoints=tuple(cluster.endpoints), **files)


def test_missing_client_certificate_is_refused(tls_etcd: EtcdCluster) -> None:
    assert tls_etcd.tls is not None
    store = open_config(_config(tls_etcd, ca_cert_file=str(tls_etcd.tls.ca)))
    try:
        with pytest.raises(Unavailable) as err:
            store.revision()
        assert tls_etcd.endpoints[0] in str(err.value)
        assert "\n" not in str(err.value)
    finally:
        store.close()


def test_untrusted_server_certificate_is_refused(tls_etcd: EtcdCluster) -> None:
    assert tls_etcd.tls is not None
    tls = tls_etcd.tls
    store = open_config(
        _config(
            tls_etcd,
            ca_cert_file=str(tls.other_ca),
            cert_file=str(tls.client_cert),
            key_file=str(tls.client_key),
        )
    )
    try:
        with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
            store.revision()
    finally:
        store.close()
