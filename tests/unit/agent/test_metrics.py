"""The agent's Prometheus metrics and /healthz, with a fake agent and a fake dataplane."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from felis.agent.agent import AgentState
from felis.agent.metrics import MetricsServer, build_registry, serve_metrics
from felis.calc import Skipped
from felis.dataplane.kernel import ApplyReport, RuleCounter
from felis.dataplane.spec import DataplaneSpec, Family

SPEC = DataplaneSpec(node="n1", rulesets={}, endpoints=("hep-a",))


def counter(
    comment: str, packets: int, *, chain: str = "felis-pi-p", rule_hash: str = "h1"
) -> RuleCounter:
    return RuleCounter(Family.V4, "raw", chain, comment, rule_hash, packets, packets * 60)


@dataclass
class FakeDataplane:
    rules: list[RuleCounter] = field(default_factory=list)
    seen: list[DataplaneSpec | None] = field(default_factory=list)
    fail: bool = False

    def counters(self, spec: DataplaneSpec | None) -> list[RuleCounter]:
        self.seen.append(spec)
        if self.fail:
            raise RuntimeError("nft vanished")
        return list(self.rules)


@dataclass
class FakeAgent:
    dataplane: FakeDataplane
    state: AgentState = field(default_factory=AgentState)
    current_spec: DataplaneSpec | None = SPEC


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(text: bytes, name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels` (KeyError if none, or several)."""
    wanted = set(labels.items())
    found = [
        v
        for (sample, sample_labels), v in samples(text).items()
        if sample == name and wanted <= set(sample_labels)
    ]
    if len(found) != 1:
        raise KeyError((name, labels, len(found)))
    return found[0]


def test_rule_counters_and_state_are_exported() -> None:
    plane = FakeDataplane([counter("gnp/memcached-server ingress rule 0", 7)])
    agent = FakeAgent(plane, AgentState(in_sync=True, datastore_ok=True, revision=42))
    agent.state.endpoints = ("hep-a", "hep-b")
    agent.state.apply_errors = 3
    agent.state.drift_repairs = 2
    registry, _ = build_registry(agent, lambda: {"entries": 5, "max": 100, "drop": 1})
    text = generate_latest(registry)
    rule = {"family": "4", "table": "raw", "chain": "felis-pi-p",
            "rule": "gnp/memcached-server ingress rule 0"}  # fmt: skip
    assert value(text, "felis_rule_packets_total", **rule) == 7
    assert value(text, "felis_rule_bytes_total", **rule) == 420
    assert value(text, "felis_datastore_revision") == 42
    assert value(text, "felis_dataplane_in_sync") == 1
    assert value(text, "felis_datastore_in_sync") == 1
    assert value(text, "felis_host_endpoints_active") == 2
    assert value(text, "felis_dataplane_apply_errors_total") == 3
    assert value(text, "felis_dataplane_drift_repairs_total") == 2
    assert value(text, "felis_conntrack_entries") == 5
    assert value(text, "felis_conntrack_max") == 100
    assert value(text, "felis_conntrack_drop_total") == 1
    # Counters are read at scrape time, against the spec the agent programmed.
    assert plane.seen == [SPEC]


def test_skipped_objects_are_named() -> None:
    agent = FakeAgent(FakeDataplane())
    registry, _ = build_registry(agent)
    assert not any(name == "felis_object_skipped" for name, _ in samples(generate_latest(registry)))
    agent.state.skipped = (Skipped("GlobalNetworkPolicy", "bad", "ICMP type match needs …"),)
    text = generate_latest(registry)
    labels = (("kind", "GlobalNetworkPolicy"), ("name", "bad"))
    assert samples(text)[("felis_object_skipped", labels)] == 1


def test_scrape_reads_fresh_counters() -> None:
    plane = FakeDataplane([counter("gnp/p ingress rule 0", 1)])
    registry, _ = build_registry(FakeAgent(plane))
    assert value(generate_latest(registry), "felis_rule_packets_total", family="4",
                 table="raw", chain="felis-pi-p", rule="gnp/p ingress rule 0") == 1  # fmt: skip
    plane.rules = [counter("gnp/p ingress rule 0", 9)]
    assert value(generate_latest(registry), "felis_rule_packets_total", family="4",
                 table="raw", chain="felis-pi-p", rule="gnp/p ingress rule 0") == 9  # fmt: skip


def test_state_before_first_sync() -> None:
    registry, _ = build_registry(FakeAgent(FakeDataplane(), current_spec=None))
    text = generate_latest(registry)
    assert value(text, "felis_dataplane_in_sync") == 0
    assert value(text, "felis_datastore_in_sync") == 0
    assert not any(name.startswith("felis_conntrack") for name, _ in samples(text))


def test_conntrack_read_failure_leaves_the_rest() -> None:
    def broken() -> dict[str, int]:
        raise OSError("no /proc/sys/net/netfilter")

    plane = FakeDataplane([counter("gnp/p ingress rule 0", 4)])
    registry, _ = build_registry(FakeAgent(plane), broken)
    text = generate_latest(registry)
    assert not any(name.startswith("felis_conntrack") for name, _ in samples(text))
    assert value(text, "felis_rule_packets_total", family="4", table="raw",
                 chain="felis-pi-p", rule="gnp/p ingress rule 0") == 4  # fmt: skip


def test_observe_apply_counts_applies_writes_and_latency() -> None:
    registry, metrics = build_registry(FakeAgent(FakeDataplane()))
    metrics.observe_apply(ApplyReport("nftables", ["IPv4 nft: 1 chain(s) added"]), 0.02)
    metrics.observe_apply(ApplyReport("nftables"), 0.2)
    text = generate_latest(registry)
    assert value(text, "felis_dataplane_applies_total") == 2
    assert value(text, "felis_dataplane_writes_total") == 1
    assert value(text, "felis_dataplane_apply_seconds_count") == 2
    assert value(text, "felis_dataplane_apply_seconds_bucket", le="0.025") == 1
    assert value(text, "felis_dataplane_apply_seconds_bucket", le="0.25") == 2
    assert value(text, "felis_dataplane_apply_seconds_sum") == pytest.approx(0.22)


def test_every_series_is_unique() -> None:
    plane = FakeDataplane(
        [
            counter("", 3, chain="felis-fh-eth0", rule_hash="aaaa"),
            counter("", 5, chain="felis-fh-eth0", rule_hash="bbbb"),
        ]
    )
    registry, _ = build_registry(FakeAgent(plane))
    lines = [
        line.rsplit(" ", 1)[0]
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith("felis_rule_packets_total")
    ]
    assert len(lines) == 2
    assert len(set(lines)) == len(lines)


def test_dataplane_read_failure_keeps_the_scrape_alive() -> None:
    plane = FakeDataplane(fail=True)
    registry, _ = build_registry(FakeAgent(plane, AgentState(in_sync=True)))
    text = generate_latest(registry)
    assert value(text, "felis_dataplane_in_sync") == 1


# ---------------------------------------------------------------------------------------------
# The HTTP server.


@pytest.fixture
def served() -> Iterator[tuple[FakeAgent, MetricsServer]]:
    agent = FakeAgent(
        FakeDataplane([counter("gnp/p egress rule 0", 2)]),
        AgentState(in_sync=True, datastore_ok=True, revision=7),
    )
    registry, _ = build_registry(agent)
    server = serve_metrics(agent, registry, "127.0.0.1", 0)
    try:
        yield agent, server
    finally:
        server.shutdown()


def get(server: MetricsServer, path: str) -> tuple[int, str, bytes]:
    url = f"http://127.0.0.1:{server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def test_http_metrics(served: tuple[FakeAgent, MetricsServer]) -> None:
    _, server = served
    assert server.port > 0
    status, ctype, body = get(server, "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    assert value(body, "felis_rule_packets_total", family="4", table="raw",
                 chain="felis-pi-p", rule="gnp/p egress rule 0") == 2  # fmt: skip


def test_http_healthz_follows_the_state(served: tuple[FakeAgent, MetricsServer]) -> None:
    agent, server = served
    status, ctype, body = get(server, "/healthz")
    assert (status, ctype) == (200, "application/json")
    assert json.loads(body) == {
        "healthy": True,
        "datastore": "ok",
        "dataplane": "in sync",
        "revision": 7,
        "last_error": "",
        "warnings": [],
    }
    agent.state.in_sync = False
    agent.state.datastore_ok = False
    agent.state.last_error = "dataplane: nft failed"
    status, _, body = get(server, "/healthz")
    report = json.loads(body)
    assert status == 503
    assert report["healthy"] is False
    assert report["datastore"] == "unreachable"
    assert report["dataplane"] == "not in sync"
    assert report["last_error"] == "dataplane: nft failed"


def test_http_unknown_path(served: tuple[FakeAgent, MetricsServer]) -> None:
    _, server = served
    status, _, body = get(server, "/nope")
    assert status == 404 and body == b"not found\n"


def test_shutdown_frees_the_port() -> None:
    agent = FakeAgent(FakeDataplane())
    registry, _ = build_registry(agent)
    server = serve_metrics(agent, registry, "127.0.0.1", 0)
    port = server.port
    assert get(server, "/healthz")[0] == 503
    server.shutdown()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
