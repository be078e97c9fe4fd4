"""Choosing and opening a datastore from a URL or the environment.

Accepted URLs:
* `sqlite:///abs/path/felis.db` — absolute path (three slashes: empty host, then the path).
* `sqlite://rel/path/felis.db` — anything after `sqlite://` that does not start with `/` is a
  path relative to the current directory.
* either form with `?mode=ro`: open read-only (reads work, writes raise Unavailable); a
  file that does not exist is then Missing instead of being created.
* `etcd://host:port[,host:port…]` — plain-HTTP etcd v3 endpoints; `etcd+https://…` for TLS.
  Credentials and TLS files come from the calicoctl environment variables below.

Precedence: the explicit URL (`--datastore`; an empty one is an error, not "unset"), else
`FELIS_DATASTORE`, else calicoctl's environment (`DATASTORE_TYPE=etcdv3` with `ETCD_ENDPOINTS`;
each variable also read with a `CALICO_` prefix, which wins; endpoints alone imply etcdv3 as in
calicoctl), else `sqlite:///var/lib/felis/felis.db`.

The etcd backend, `felis.datastore.etcd`, is imported only when etcd is chosen: it needs the
`felis[etcd]` extra, and without it choosing etcd fails with one line naming the extra.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

from felis.datastore.base import Datastore
from felis.datastore.errors import Unavailable
from felis.datastore.sqlite import SqliteDatastore

DEFAULT_URL = "sqlite:///var/lib/felis/felis.db"
ENV_URL = "FELIS_DATASTORE"
_EXPECTED = "expected sqlite:///path or etcd://host:port"


@dataclass(frozen=True)
class SqliteConfig:
    path: str
    read_only: bool = False


@dataclass(frozen=True)
class EtcdConfig:
    """Everything calicoctl's environment says about reaching etcd (docs/datastore-etcd.md)."""

    endpoints: tuple[str, ...]
    username: str | None = None
    password: str | None = None
    key_file: str | None = None
    cert_file: str | None = None
    ca_cert_file: str | None = None


DatastoreConfig = SqliteConfig | EtcdConfig


def _calico_env(env: Mapping[str, str], name: str) -> str | None:
    """calicoctl reads every variable with and without the `CALICO_` prefix; prefixed wins."""
    for key in (f"CALICO_{name}", name):
        value = env.get(key, "").strip()
        if value:
            return value
    return None


def _etcd_config(endpoints: list[str], env: Mapping[str, str]) -> EtcdConfig:
    if not endpoints:
        raise Unavailable("no etcd endpoints specified")
    username = _calico_env(env, "ETCD_USERNAME")
    password = _calico_env(env, "ETCD_PASSWORD")
    if not (username and password):  # calicoctl uses them only as a pair
        username = password = None
    return EtcdConfig(
        endpoints=tuple(endpoints),
        username=username,
        password=password,
        key_file=_calico_env(env, "ETCD_KEY_FILE"),
        cert_file=_calico_env(env, "ETCD_CERT_FILE"),
        ca_cert_file=_calico_env(env, "ETCD_CA_CERT_FILE"),
    )


def parse_url(url: str, env: Mapping[str, str] | None = None) -> DatastoreConfig:
    """A datastore URL → its configuration, or a one-line Unavailable naming the URL."""
    env = os.environ if env is None else env
    if not url.strip():
        raise Unavailable(f"empty datastore URL: {_EXPECTED}")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise Unavailable(f"unsupported datastore URL {url!r}: {_EXPECTED}")
    scheme = scheme.lower()
    if scheme == "sqlite":
        path, _, query = rest.partition("?")
        read_only = False
        for param in filter(None, query.split("&")):
            if param == "mode=ro":
                read_only = True
            elif param != "mode=rw":
                raise Unavailable(f"datastore URL {url!r}: unsupported parameter {param!r}")
        if not path:
            raise Unavailable(f"datastore URL {url!r}: no database path ({_EXPECTED})")
        # sqlite:////abs/path is SQLAlchemy's spelling of an absolute path; accept it too.
        while path.startswith("//"):
            path = path[1:]
        return SqliteConfig(path=path, read_only=read_only)
    if scheme in ("etcd", "etcd+http", "etcd+https"):
        transport = "https" if scheme == "etcd+https" else "http"
        hosts = [h.strip() for h in rest.split("/", 1)[0].split(",") if h.strip()]
        return _etcd_config([f"{transport}://{host}" for host in hosts], env)
    raise Unavailable(f"unsupported datastore URL scheme {scheme!r} in {url!r}: {_EXPECTED}")


def resolve_config(url: str | None = None, env: Mapping[str, str] | None = None) -> DatastoreConfig:
    """Apply the precedence in the module docstring."""
    env = os.environ if env is None else env
    if url is not None:
        # `--datastore ''` (an unset shell variable, usually) must not quietly mean the default.
        return parse_url(url, env)
    from_env = env.get(ENV_URL, "").strip()
    if from_env:
        return parse_url(from_env, env)
    endpoints_text = _calico_env(env, "ETCD_ENDPOINTS") or ""
    endpoints = [e.strip() for e in endpoints_text.split(",") if e.strip()]
    datastore_type = (_calico_env(env, "DATASTORE_TYPE") or "").lower()
    if datastore_type == "etcdv3" or (not datastore_type and endpoints):
        return _etcd_config(endpoints, env)
    if datastore_type:
        raise Unavailable(
            f"DATASTORE_TYPE={datastore_type} is not supported by felis "
            f"(use etcdv3, or set {ENV_URL} / --datastore: {_EXPECTED})"
        )
    return parse_url(DEFAULT_URL, env)


def open_config(config: DatastoreConfig) -> Datastore:
    if isinstance(config, SqliteConfig):
        return SqliteDatastore(config.path, read_only=config.read_only)
    from felis.datastore.etcd import open_etcd

    return open_etcd(config)


def open_datastore(url: str | None = None, *, read_only: bool = False) -> Datastore:
    """Open the datastore chosen by `url` / the environment (see the module docstring).

    `read_only` is for callers that only read: a SQLite file is then opened read-only and
    never created (Missing when absent). etcd has nothing to create, so it is unaffected.
    """
    config = resolve_config(url)
    if read_only and isinstance(config, SqliteConfig):
        config = dataclasses.replace(config, read_only=True)
    return open_config(config)
