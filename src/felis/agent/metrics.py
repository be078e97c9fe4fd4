"""Prometheus metrics and /healthz for the agent.

Served on 127.0.0.1 by default: metrics reveal policy names and traffic volumes, so exposing
them beyond the host is the operator's explicit choice (`--metrics-address`).

Conntrack figures and per-rule counters are read at scrape time (a custom collector), so the
numbers are as fresh as the scrape and the agent does no work when nobody is looking.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from felis.dataplane.kernel import ApplyReport, RuleCounter


class _AgentLike(Protocol):
    state: Any
    current_spec: Any

    @property
    def dataplane(self) -> Any: ...


class AgentMetrics:
    """The agent's own instruments; `observe_apply` is the Agent's on_apply hook."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.applies = Counter(
            "felis_dataplane_applies", "Dataplane applies that completed", registry=registry
        )
        self.writes = Counter(
            "felis_dataplane_writes", "Applies that had to change the kernel", registry=registry
        )
        self.apply_seconds = Histogram(
            "felis_dataplane_apply_seconds",
            "Time to read, diff and program the kernel",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )

    def observe_apply(self, report: ApplyReport, seconds: float) -> None:
        self.applies.inc()
        if report.wrote:
            self.writes.inc()
        self.apply_seconds.observe(seconds)


class _StateCollector(Collector):
    def __init__(
        self,
        agent: _AgentLike,
        read_conntrack: Callable[[], dict[str, int]] | None,
    ) -> None:
        self.agent = agent
        self.read_conntrack = read_conntrack

    def collect(self) -> Iterator[Metric]:
        state = self.agent.state
        yield _gauge(
            "felis_datastore_in_sync",
            "1 when the agent follows the datastore",
            1 if state.datastore_ok else 0,
        )
        yield _gauge(
            "felis_dataplane_in_sync",
            "1 when the kernel matches the policy",
            1 if state.in_sync else 0,
        )
        yield _gauge("felis_datastore_revision", "Last datastore revision seen", state.revision)
        yield _counter(
            "felis_dataplane_apply_errors", "Failed dataplane applies", state.apply_errors
        )
        yield _counter(
            "felis_dataplane_drift_repairs",
            "Repairs of rules changed by others",
            state.drift_repairs,
        )
        yield _gauge(
            "felis_host_endpoints_active",
            "Host endpoints active on this node",
            len(state.endpoints),
        )
        skipped = GaugeMetricFamily(
            "felis_object_skipped",
            "1 for each object left out because it cannot be programmed",
            labels=["kind", "name"],
        )
        for item in state.skipped:
            skipped.add_metric([item.kind, item.name], 1)
        yield skipped
        if self.read_conntrack is not None:
            try:
                figures = self.read_conntrack()
            except Exception:
                figures = {}
            for name, value in figures.items():
                kind = (
                    _counter
                    if name in {"drop", "early_drop", "insert_failed", "invalid"}
                    else _gauge
                )
                yield kind(f"felis_conntrack_{name}", f"conntrack {name}", value)
        try:
            counters = self.agent.dataplane.counters(self.agent.current_spec)
        except Exception:
            counters = []
        yield from _rule_counters(counters)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _rule_counters(counters: Iterable[RuleCounter]) -> Iterator[Metric]:
    # The rule hash keeps series unique: rules without a comment, and one policy rule split into
    # several kernel rules (long port lists), would otherwise share their labels.
    labels = ["family", "table", "chain", "rule", "hash"]
    packets = CounterMetricFamily(
        "felis_rule_packets",
        "Packets that matched a felis rule (untracked included)",
        labels=labels,
    )
    octets = CounterMetricFamily(
        "felis_rule_bytes", "Bytes that matched a felis rule (untracked included)", labels=labels
    )
    for counter in counters:
        values = [
            str(int(counter.family)),
            counter.table,
            counter.chain,
            counter.comment,
            counter.rule_hash,
        ]
        packets.add_metric(values, counter.packets)
        octets.add_metric(values, counter.bytes)
    yield packets
    yield octets


def build_registry(
    agent: _AgentLike, read_conntrack: Callable[[], dict[str, int]] | None = None
) -> tuple[CollectorRegistry, AgentMetrics]:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    registry.register(_StateCollector(agent, read_conntrack))
    return registry, metrics


class MetricsServer:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="felis-metrics", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_metrics(
    agent: _AgentLike,
    registry: CollectorRegistry,
    address: str,
    port: int,
) -> MetricsServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                self._send(200, generate_latest(registry), "text/plain; version=0.0.4")
            elif self.path.startswith("/healthz"):
                state = agent.state
                healthy = bool(state.in_sync)
                body = {
                    "healthy": healthy,
                    "datastore": "ok" if state.datastore_ok else "unreachable",
                    "dataplane": "in sync" if state.in_sync else "not in sync",
                    "revision": state.revision,
                    "last_error": state.last_error,
                    # Shown, not failed on: a node without HostEndpoints is a valid (if
                    # suspicious) state, and a failing probe would only restart the agent.
                    "warnings": list(state.all_warnings),
                }
                self._send(200 if healthy else 503, json.dumps(body).encode(), "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    return MetricsServer(ThreadingHTTPServer((address, port), Handler))
