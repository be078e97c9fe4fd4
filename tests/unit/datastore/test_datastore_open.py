"""Choosing a datastore (URL / environment), opening and closing a SQLite file, failing to open
one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from dstest_helpers import GNP, gnp

from felis.datastore import (
    DEFAULT_URL,
    EtcdConfig,
    Missing,
    SqliteConfig,
    SqliteDatastore,
    Unavailable,
    open_datastore,
    parse_url,
    resolve_config,
)
from felis.errors import FelisError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///var/lib/felis/felis.db", SqliteConfig("/var/lib/felis/felis.db")),
        ("sqlite://state/felis.db", SqliteConfig("state/felis.db")),
        ("sqlite:///tmp/x.db?mode=ro", SqliteConfig("/tmp/x.db", read_only=True)),
        ("SQLITE:///tmp/x.db?mode=rw", SqliteConfig("/tmp/x.db")),
        ("etcd://10.0.0.1:2379", EtcdConfig(("http://10.0.0.1:2379",))),
        (
            "etcd+https://a:2379,b:2379/",
            EtcdConfig(("https://a:2379", "https://b:2379")),
        ),
    ],
)
def test_parse_url(url: str, expected: object) -> None:
    assert parse_url(url, {}) == expected


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("/var/lib/felis/felis.db", "unsupported datastore URL '/var/lib/felis/felis.db'"),
        ("postgres://db/felis", "unsupported datastore URL scheme 'postgres'"),
        ("sqlite://", "no database path"),
        ("sqlite:///x.db?cache=shared", "unsupported parameter 'cache=shared'"),
        ("etcd://", "no etcd endpoints specified"),
    ],
)
def test_bad_urls_are_one_line_errors(url: str, fragment: str) -> None:
    with pytest.raises(Unavailable) as err:
        parse_url(url, {})
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_precedence_explicit_then_felis_env_then_calicoctl_then_default() -> None:
    env = {
        "FELIS_DATASTORE": "sqlite:///from/env.db",
        "DATASTORE_TYPE": "etcdv3",
        "ETCD_ENDPOINTS": "http://e:2379",
    }
    assert resolve_config("sqlite:///explicit.db", env) == SqliteConfig("/explicit.db")
    assert resolve_config(None, env) == SqliteConfig("/from/env.db")
    del env["FELIS_DATASTORE"]
    assert resolve_config(None, env) == EtcdConfig(("http://e:2379",))
    assert resolve_config(None, {}) == parse_url(DEFAULT_URL, {})
    assert resolve_config(None, {}) == SqliteConfig("/var/lib/felis/felis.db")


def test_calicoctl_environment() -> None:
    env = {
        "ETCD_ENDPOINTS": "http://plain:2379",
        "CALICO_ETCD_ENDPOINTS": "https://a:2379, https://b:2379",
        "CALICO_DATASTORE_TYPE": "etcdv3",
        "DATASTORE_TYPE": "kubernetes",
        "ETCD_USERNAME": "u",
        "ETCD_PASSWORD": "p",
        "CALICO_ETCD_CA_CERT_FILE": "/ca.pem",
        "ETCD_CA_CERT_FILE": "/other.pem",
    }
    assert resolve_config(None, env) == EtcdConfig(
        endpoints=("https://a:2379", "https://b:2379"),
        username="u",
        password="p",
        ca_cert_file="/ca.pem",
    )
    # Endpoints alone imply etcdv3, as in calicoctl; a username without password is dropped.
    assert resolve_config(None, {"ETCD_ENDPOINTS": "http://e:2379", "ETCD_USERNAME": "u"}) == (
        EtcdConfig(("http://e:2379",))
    )


def test_calicoctl_environment_errors() -> None:
    with pytest.raises(Unavailable, match=r"^no etcd endpoints specified$"):
        resolve_config(None, {"DATASTORE_TYPE": "etcdv3"})
    with pytest.raises(Unavailable, match="DATASTORE_TYPE=kubernetes is not supported"):
        resolve_config(None, {"DATASTORE_TYPE": "kubernetes"})


def test_the_calicoctl_environment_opens_the_etcd_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from felis.datastore.etcd import EtcdDatastore

    monkeypatch.delenv("FELIS_DATASTORE", raising=False)
    monkeypatch.setenv("CALICO_DATASTORE_TYPE", "etcdv3")
    monkeypatch.setenv("CALICO_ETCD_ENDPOINTS", "http://198.18.0.1:2379,http://198.18.0.2:2379")
    store = open_datastore()  # nothing is sent before the first read or write
    try:
        assert isinstance(store, EtcdDatastore)
        assert store.config == EtcdConfig(("http://198.18.0.1:2379", "http://198.18.0.2:2379"))
    finally:
        store.close()


def test_open_datastore_from_felis_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "felis.db"
    monkeypatch.setenv("FELIS_DATASTORE", f"sqlite://{path}")
    monkeypatch.setenv("DATASTORE_TYPE", "etcdv3")  # FELIS_DATASTORE wins
    store = open_datastore()
    try:
        assert isinstance(store, SqliteDatastore)
        assert store.path == str(path)
        store.create(gnp("foo"))
    finally:
        store.close()
    assert path.is_file()


def test_relative_sqlite_url_is_relative_to_cwd(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_datastore("sqlite://rel/felis.db")
    store.close()
    assert (tmp_path / "rel" / "felis.db").is_file()


def test_data_survives_reopen(db_path: Path) -> None:
    with SqliteDatastore(db_path) as first:
        created = first.create(gnp("foo"))
    with SqliteDatastore(db_path) as second:
        assert second.get(GNP, "foo") == created
        assert second.revision() == 1


def test_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c" / "felis.db"
    with SqliteDatastore(path) as store:
        store.create(gnp("foo"))
    assert path.is_file()


def test_closed_store_refuses_calls(db_path: Path) -> None:
    store = SqliteDatastore(db_path)
    store.close()
    store.close()  # idempotent
    with pytest.raises(FelisError, match="closed"):
        store.get(GNP, "foo")


def assert_unavailable(path_or_url: str, *fragments: str) -> None:
    with pytest.raises(Unavailable) as err:
        open_datastore(path_or_url)
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_path_is_a_directory(tmp_path: Path) -> None:
    assert_unavailable(f"sqlite://{tmp_path}", str(tmp_path), "is a directory")


def test_parent_is_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_unavailable(f"sqlite://{blocker}/felis.db", f"cannot create directory {blocker}")


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite at all, just some text\n" * 100)
    assert_unavailable(f"sqlite://{path}", str(path), "not a database")


def test_foreign_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    SqliteDatastore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = 99 WHERE key = 'schema'")
    conn.commit()
    conn.close()
    assert_unavailable(f"sqlite://{path}", "unsupported schema version 99")


def test_read_only(tmp_path: Path) -> None:
    path = tmp_path / "felis.db"
    with SqliteDatastore(path) as writer:
        created = writer.create(gnp("foo"))
    reader = open_datastore(f"sqlite://{path}?mode=ro")
    try:
        assert reader.get("GlobalNetworkPolicy", "foo") == created
        with pytest.raises(Unavailable) as err:
            reader.apply([gnp("bar")])
        assert "readonly" in str(err.value) and str(path) in str(err.value)
        assert "\n" not in str(err.value)
        assert reader.revision() == 1
    finally:
        reader.close()


def test_read_only_missing_file(tmp_path: Path) -> None:
    assert_unavailable(f"sqlite://{tmp_path}/missing.db?mode=ro", "missing.db", "does not exist")
    assert not (tmp_path / "missing.db").exists()


def test_reading_callers_never_create_a_datastore(tmp_path: Path) -> None:
    path = tmp_path / "x" / "nope" / "felis.db"
    with pytest.raises(Missing) as err:
        open_datastore(f"sqlite://{path}", read_only=True)
    assert str(err.value) == f"sqlite datastore {path}: does not exist (the first write creates it)"
    assert not (tmp_path / "x").exists(), "not even the directory"
    with SqliteDatastore(path) as writer:
        created = writer.create(gnp("foo"))
    reader = open_datastore(f"sqlite://{path}", read_only=True)
    try:
        assert reader.get(GNP, "foo") == created
        with pytest.raises(Unavailable, match="readonly"):
            reader.create(gnp("bar"))
    finally:
        reader.close()


@pytest.mark.parametrize("url", ["", "  "])
def test_an_empty_url_is_an_error_not_the_default(url: str) -> None:
    with pytest.raises(Unavailable, match=r"^empty datastore URL: expected sqlite:///path"):
        resolve_config(url, {"FELIS_DATASTORE": "sqlite:///from/env.db"})
    with pytest.raises(Unavailable, match="empty datastore URL"):
        open_datastore(url)


def _foreign(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def _tables_and_mode(path: Path) -> tuple[list[str], str]:
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master ORDER BY name")]
        return tables, conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


def test_another_programs_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    _foreign(
        path, "CREATE TABLE users (id INTEGER, name TEXT)", "INSERT INTO users VALUES (1, 'a')"
    )
    before = _tables_and_mode(path)
    assert_unavailable(f"sqlite://{path}", str(path), "not a felis datastore", "users")
    assert_unavailable(f"sqlite://{path}?mode=ro", "not a felis datastore")
    assert _tables_and_mode(path) == before == (["users"], "delete")


def test_felis_table_names_without_the_schema_row_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "lookalike.db"
    _foreign(
        path,
        "CREATE TABLE meta (key TEXT, value INTEGER)",
        "CREATE TABLE resources (x)",
        "CREATE TABLE events (y)",
    )
    assert_unavailable(f"sqlite://{path}", "not a felis datastore (no felis schema version)")


def test_an_empty_sqlite_file_becomes_a_datastore(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with SqliteDatastore(path) as store:
        assert store.revision() == 0
    assert _tables_and_mode(path)[0] == ["events", "meta", "resources"]
