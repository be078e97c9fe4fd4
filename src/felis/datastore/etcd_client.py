"""Talking to etcd v3's JSON gateway through etcd3gw, with endpoint failover.

etcd3gw gives one client per endpoint over a shared `requests` session (TLS files and the auth
token live on the session). This module adds what felis needs on top:

* spreading: each client tries the endpoints in its own random order, so a fleet configured
  with one identical endpoint list still spreads its watches and reads over the members;
* failover: a request goes to the endpoint that last answered, then to the others in turn;
  transient server errors (no leader, leader changed, request timed out) are retried until a
  deadline, while a round in which no endpoint could even be connected to fails at once;
* `maybe_sent`: whether an earlier attempt of a write may have reached the server (connection
  lost after sending), so the caller can tell "my own retried write" from a real conflict;
* the gateway's error codes turned into felis errors, each one line naming the endpoints;
* prefix reads in pages pinned to one revision, so a large snapshot is several small
  requests, each well within the request timeout, instead of one that may not be;
* watch streams opened on the same session (etcd3gw's own watcher drops compaction notices and
  cannot resume, so felis reads the stream itself; see felis.datastore.etcd_watch).
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from felis.datastore.errors import DatastoreError, Unavailable

try:
    import requests
    from etcd3gw import exceptions as gw_errors
    from etcd3gw.client import Etcd3Client
except ImportError as missing:  # the optional extra; SQLite needs none of it
    raise DatastoreError(
        f"the etcd datastore needs felis' etcd extra (pip install 'felis[etcd]'): {missing}"
    ) from None

# etcd ≥ 3.4 serves the gateway under /v3/ (3.3 used /v3beta/); pinned so that no
# /version probe is needed before the first request.
API_PATH = "/v3/"
DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRY_FOR = 10.0
# Keys per request of a paged prefix read: with Calico objects of well under 4 KiB a page
# stays below about 2 MiB, a request a busy member can serve within DEFAULT_TIMEOUT, while a
# 1,000-node datastore (about 6,000 objects) is still only a dozen requests.
PAGE_KEYS = 500
# A paged read restarts when etcd compacted its revision between two pages; compaction that
# outruns this many complete snapshots means something is misconfigured, so stop and say so.
MAX_PAGED_RESTARTS = 5

# gRPC status codes the gateway reports in its JSON errors.
GRPC_OUT_OF_RANGE = 11
GRPC_UNAVAILABLE = 14
GRPC_DEADLINE = 4
GRPC_UNAUTHENTICATED = 16
GRPC_INVALID_ARGUMENT = 3
GRPC_ABORTED = 10
GRPC_INTERNAL = 13
# Appended to the Unavailable of a write whose request may have reached etcd before every
# retry failed: felis' writes are compare-and-swap transactions, so a repeat can never apply
# twice, but whether the first copy committed is unknown until someone reads the keys again.
IN_DOUBT = (
    "; the write is in doubt: it may have been applied before the connection was lost "
    "(read it back, or repeat it: a repeated apply is harmless)"
)
# Worth another try, possibly on another member: no leader, leader changed, request timed out.
_TRANSIENT = {GRPC_UNAVAILABLE, GRPC_DEADLINE, GRPC_ABORTED, GRPC_INTERNAL}


def b64(text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: str) -> str:
    """The range_end that makes [prefix, end) cover every key starting with `prefix`."""
    data = bytearray(prefix.encode("utf-8"))
    data[-1] += 1
    return b64(bytes(data))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True)
class ServerError(Exception):
    """etcd answered with an error (the gateway's JSON `code` and `error`)."""

    code: int
    message: str


@dataclass(frozen=True)
class Endpoint:
    url: str
    client: Etcd3Client


def parse_endpoint(text: str) -> tuple[str, str, int]:
    """`http://host:port` (scheme optional, default http) → (protocol, host, port)."""
    raw = text.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Unavailable(f"invalid etcd endpoint {text!r}: expected http(s)://host:port")
    try:
        port = parts.port or 2379
    except ValueError:
        raise Unavailable(f"invalid etcd endpoint {text!r}: bad port") from None
    return parts.scheme, parts.hostname, port


class EtcdClient:
    """Requests to an etcd cluster given by several endpoints (see the module docstring)."""

    def __init__(
        self,
        endpoints: tuple[str, ...] | list[str],
        *,
        ca_cert_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry_for: float = DEFAULT_RETRY_FOR,
        seed: int | None = None,
    ) -> None:
        """`seed` fixes the endpoint order (tests); by default each client draws its own."""
        if not endpoints:
            raise Unavailable("no etcd endpoints specified")
        if bool(cert_file) != bool(key_file):
            raise Unavailable("etcd client certificate needs both ETCD_CERT_FILE and ETCD_KEY_FILE")
        self.timeout = timeout
        self.retry_for = retry_for
        self.session = requests.Session()
        # The environment must not redirect etcd traffic: REQUESTS_CA_BUNDLE would silently
        # replace ETCD_CA_CERT_FILE, and HTTP(S)_PROXY would route cluster traffic elsewhere.
        self.session.trust_env = False
        if ca_cert_file:
            self.session.verify = ca_cert_file
        if cert_file and key_file:
            self.session.cert = (cert_file, key_file)
        self._username = username
        self._password = password
        self._auth_lock = threading.Lock()
        self.endpoints: list[Endpoint] = []
        for text in endpoints:
            protocol, host, port = parse_endpoint(text)
            client = Etcd3Client(
                host=host,
                port=port,
                protocol=protocol,
                timeout=timeout,
                api_path=API_PATH,
                session=self.session,
            )
            self.endpoints.append(Endpoint(client.base_url, client))
        self.names = ",".join(e.url for e in self.endpoints)  # as configured, for messages
        # Every host usually has the same ETCD_ENDPOINTS; starting each client at a random
        # member (and failing over in a random order) keeps a fleet from all landing on the
        # first one, and a lost member's clients from all moving to the same next one.
        (random.Random(seed) if seed is not None else random.SystemRandom()).shuffle(self.endpoints)
        self._preferred = 0

    @property
    def preferred(self) -> str:
        """The endpoint the next request or watch tries first."""
        return self.endpoints[self._preferred].url

    def close(self) -> None:
        self.session.close()

    # -- plain requests ------------------------------------------------------------------

    def call(
        self, path: str, payload: dict[str, Any], *, write: bool = False
    ) -> tuple[dict[str, Any], bool]:
        """POST `payload` to gateway `path` with failover; (response, maybe_sent).

        `maybe_sent` is True when an earlier attempt failed after the request may have reached
        a server, so a write could have been applied although no answer came back. A `write`
        that gives up in that state says so in its Unavailable: the caller cannot know.
        """
        deadline = time.monotonic() + self.retry_for
        maybe_sent = False
        reauthenticated = False
        delay = 0.05
        while True:
            problems: list[str] = []
            connected_any = False
            start = self._preferred
            count = len(self.endpoints)
            for step in range(count):
                index = (start + step) % count
                endpoint = self.endpoints[index]
                try:
                    if self._username and "Authorization" not in self.session.headers:
                        self._authenticate(endpoint)
                    result = self._post(endpoint, path, payload)
                except ServerError as err:
                    connected_any = True
                    if err.code == GRPC_UNAUTHENTICATED and self._username and not reauthenticated:
                        reauthenticated = True  # token expired: log in again, same endpoint
                        self.session.headers.pop("Authorization", None)
                        problems.append(f"{endpoint.url}: {err.message}")
                        continue
                    if err.code not in _TRANSIENT:
                        raise
                    maybe_sent = True
                    problems.append(f"{endpoint.url}: {err.message}")
                    continue
                except _NotConnected as exc:
                    problems.append(f"{endpoint.url}: {exc}")
                    continue
                except _LostAfterSending as exc:
                    connected_any = True
                    maybe_sent = True
                    problems.append(f"{endpoint.url}: {exc}")
                    continue
                self._preferred = index
                return result, maybe_sent
            if not connected_any or time.monotonic() + delay > deadline:
                raise Unavailable(
                    f"etcd datastore unreachable (endpoints {self.names}): "
                    + "; ".join(problems[-count:])
                    + (IN_DOUBT if write and maybe_sent else "")
                )
            time.sleep(delay)  # an election or restart in progress: give it a moment
            delay = min(delay * 2, 0.5)

    def _post(self, endpoint: Endpoint, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        client = endpoint.client
        try:
            result: dict[str, Any] = client.post(client.get_url(path), json=payload)
        except gw_errors.ConnectionFailedError as exc:
            text = _one_line(exc.detail_text or "")
            if _is_gateway_json(text):
                raise _server_error(text) from None
            if "NewConnectionError" in text or "refused" in text.lower():
                raise _NotConnected("connection refused") from None
            if "SSLError" in text or "CERTIFICATE" in text:
                raise Unavailable(
                    f"etcd datastore {endpoint.url}: TLS handshake failed: {_tls_reason(text)}"
                ) from None
            raise _LostAfterSending(_short(text)) from None
        except gw_errors.ConnectionTimeoutError as exc:
            text = _one_line(exc.detail_text or "")
            if _is_gateway_json(text):
                raise _server_error(text) from None
            if "ConnectTimeout" in text or "connect timeout" in text:
                raise _NotConnected(f"no answer within {self.timeout:g}s") from None
            raise _LostAfterSending(f"no answer within {self.timeout:g}s") from None
        except gw_errors.Etcd3Exception as exc:
            text = _one_line(exc.detail_text or "")
            if _is_gateway_json(text):
                raise _server_error(text) from None
            raise ServerError(0, _short(text) or type(exc).__name__) from None
        except requests.RequestException as exc:  # anything etcd3gw did not wrap
            raise _LostAfterSending(_short(_one_line(str(exc)))) from None
        return result

    def _authenticate(self, endpoint: Endpoint) -> None:
        with self._auth_lock:
            if "Authorization" in self.session.headers:
                return
            self.session.headers.pop("Authorization", None)
            try:
                result = self._post(
                    endpoint,
                    "/auth/authenticate",
                    {"name": self._username, "password": self._password},
                )
            except ServerError as err:
                if err.code in _TRANSIENT:
                    raise
                raise Unavailable(
                    f"etcd datastore {endpoint.url}: authentication as {self._username!r} "
                    f"failed: {err.message}"
                ) from None
            self.session.headers["Authorization"] = str(result.get("token", ""))

    # -- typed helpers -------------------------------------------------------------------

    def revision(self) -> int:
        """The cluster's current revision (a one-key read returns it in its header)."""
        result, _ = self.call("/kv/range", {"key": b64("\0"), "count_only": True})
        return int(result["header"]["revision"])

    def range(
        self, key: str, *, prefix: bool = False, revision: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """(kvs, header revision); a prefix read is one consistent snapshot."""
        payload: dict[str, Any] = {"key": b64(key)}
        if prefix:
            payload["range_end"] = prefix_end(key)
        if revision is not None:
            payload["revision"] = revision
        result, _ = self.call("/kv/range", payload)
        return list(result.get("kvs", [])), int(result["header"]["revision"])

    def range_paged(
        self, prefix: str, *, page: int = PAGE_KEYS
    ) -> tuple[list[dict[str, Any]], int]:
        """(kvs, revision) of every key under `prefix`, read `page` keys per request.

        The first page fixes the revision and every later page is read at it, so the result is
        one consistent snapshot. If etcd compacts that revision before the last page, the read
        starts over at the current revision (up to MAX_PAGED_RESTARTS times).
        """
        end = prefix_end(prefix)
        for _ in range(MAX_PAGED_RESTARTS):
            kvs: list[dict[str, Any]] = []
            start = prefix.encode("utf-8")
            revision: int | None = None
            try:
                while True:
                    payload: dict[str, Any] = {"key": b64(start), "range_end": end, "limit": page}
                    if revision is not None:
                        payload["revision"] = revision
                    result, _ = self.call("/kv/range", payload)
                    got = list(result.get("kvs", []))
                    kvs.extend(got)
                    if revision is None:
                        revision = int(result["header"]["revision"])
                    if not result.get("more") or not got:
                        return kvs, revision
                    start = unb64(got[-1]["key"]) + b"\0"  # the smallest key after the last
            except ServerError as err:
                if revision is None or not is_compacted(err):
                    raise
        raise ServerError(
            GRPC_OUT_OF_RANGE,
            f"reading {prefix!r} in pages of {page}: etcd compacted the snapshot's revision "
            f"before its last page {MAX_PAGED_RESTARTS} times in a row (compaction too frequent?)",
        )

    def txn(self, payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        ops = [*payload.get("success", []), *payload.get("failure", [])]
        write = any("request_range" not in op for op in ops)
        return self.call("/kv/txn", payload, write=write)

    def compact(self, revision: int) -> None:
        self.call("/kv/compaction", {"revision": revision, "physical": False})

    # -- watch streams -------------------------------------------------------------------

    def open_watch(self, create_request: dict[str, Any]) -> tuple[requests.Response, str]:
        """Open a watch stream on the first endpoint that accepts it: (response, endpoint)."""
        problems: list[str] = []
        count = len(self.endpoints)
        start = self._preferred
        for step in range(count):
            index = (start + step) % count
            endpoint = self.endpoints[index]
            client = endpoint.client
            try:
                if self._username and "Authorization" not in self.session.headers:
                    self._authenticate(endpoint)
                response = self.session.post(
                    client.get_url("/watch"),
                    data=json.dumps({"create_request": create_request}),
                    stream=True,
                    # Read timeout None: an idle watch legitimately gets nothing for minutes;
                    # a dead member is noticed by the watcher's own health probe.
                    timeout=(self.timeout, None),
                    # etcd's "require leader" metadata: a member cut off from the quorum
                    # ends the stream instead of silently delivering nothing.
                    headers={"Grpc-Metadata-hasleader": "true"},
                )
            except requests.RequestException as exc:
                problems.append(f"{endpoint.url}: {_short(_one_line(str(exc)))}")
                continue
            except (ServerError, _NotConnected, _LostAfterSending) as exc:
                problems.append(f"{endpoint.url}: {exc}")
                continue
            if response.status_code != 200:
                text = _one_line(response.text)
                response.close()
                problems.append(f"{endpoint.url}: HTTP {response.status_code} {_short(text)}")
                continue
            self._preferred = index
            return response, endpoint.url
        raise Unavailable(
            f"etcd datastore unreachable (endpoints {self.names}): cannot watch: "
            + "; ".join(problems)
        )

    def probe(self, url: str) -> bool:
        """Whether the member at `url` answers a status request within the timeout."""
        for endpoint in self.endpoints:
            if endpoint.url == url:
                try:
                    self._post(endpoint, "/maintenance/status", {})
                except (ServerError, _NotConnected, _LostAfterSending, Unavailable):
                    return False
                return True
        return False


class _NotConnected(Exception):
    """The request never reached a server (nothing can have been applied)."""


class _LostAfterSending(Exception):
    """The connection failed after the request may have been delivered."""


def _is_gateway_json(text: str) -> bool:
    return text.startswith("{") and '"code"' in text


def _server_error(text: str) -> ServerError:
    try:
        body = json.loads(text)
        return ServerError(int(body.get("code", 0)), _one_line(body.get("error") or text))
    except (ValueError, AttributeError):
        return ServerError(0, _short(text))


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tls_reason(text: str) -> str:
    for marker in (
        "CERTIFICATE_VERIFY_FAILED",
        "certificate required",
        "unknown ca",
        "bad certificate",
    ):
        if marker.lower() in text.lower():
            return marker
    return _short(text, 120)


def is_compacted(err: ServerError) -> bool:
    """etcd's answer to a read at a revision it no longer keeps."""
    return err.code == GRPC_OUT_OF_RANGE and "compacted" in err.message


def as_datastore_error(err: ServerError, names: str) -> DatastoreError:
    return DatastoreError(f"etcd datastore {names}: {err.message}")
