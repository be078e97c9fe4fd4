"""Prometheus metrics and /healthz for the agent.

Served on 127.0.0.1 by default: metrics reveal policy names and traffic volumes, so exposing
them beyond the host is the operator's explicit choice (`--metrics-address`).

Conntrack figures, per-rule counters and XDP drop counters are read at scrape time (a custom
collector), so the numbers are as fresh as the scrape and the agent does no work when nobody is
looking.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from felis.dataplane.kernel import ApplyReport, RuleCounter
from felis.errors import FelisError


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
        self.xdp = XdpCounters()

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
        yield from self.xdp.collect(
            getattr(self.agent, "xdp", None), dict(getattr(self.agent, "xdp_programs", {}))
        )


@dataclass
class _Program:
    """What is known of one interface's XDP program between scrapes."""

    nets: frozenset[str]
    """The networks the agent last wrote; when they change, the ids are read again."""
    program: int
    mode: str
    counter_map: int
    ids: dict[str, int]
    seen: dict[int, tuple[str, int]] = field(default_factory=dict)
    """Entry id → (its network, its packets) at the last scrape."""


class XdpCounters:
    """Per-interface XDP drop totals that only ever grow.

    The program's per-entry counters are not a Prometheus counter as they stand: an entry's
    counter goes when it leaves the blocklist, and a reused id starts again from zero. So each
    scrape adds what every entry gained since the last one (all of it for an entry that is new
    or now stands for another network) to a total per interface. Per-network series are left
    out on purpose: a blocklist can hold 100,000 networks and a flood's sources change by the
    minute, so they would be unbounded; `felis status` shows the busiest entries on demand.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._programs: dict[str, _Program] = {}
        self._totals: dict[str, int] = {}

    def collect(self, xdp: Any, programs: dict[str, frozenset[str]]) -> Iterator[Metric]:
        if xdp is None:
            return  # XDP off on this host (--no-xdp, or no clang/bpftool): no XDP series
        attached = GaugeMetricFamily(
            "felis_xdp_attached",
            "1 for each interface felis' XDP program is attached to, by mode",
            labels=["interface", "mode"],
        )
        entries = GaugeMetricFamily(
            "felis_xdp_blocklist_entries",
            "Networks in the XDP program's blocklist",
            labels=["interface"],
        )
        dropped = CounterMetricFamily(
            "felis_xdp_dropped_packets",
            "Packets felis' XDP program dropped (blocklisted sources), all entries summed",
            labels=["interface"],
        )
        with self._lock:
            for iface in sorted(programs):
                program = self._read(xdp, iface, programs[iface])
                if program is None:
                    continue
                attached.add_metric([iface, program.mode], 1)
                entries.add_metric([iface], len(program.ids))
            for iface, total in sorted(self._totals.items()):
                dropped.add_metric([iface], total)
        yield attached
        yield entries
        yield dropped

    def _read(self, xdp: Any, iface: str, nets: frozenset[str]) -> _Program | None:
        known = self._programs.get(iface)
        values = None
        if known is not None and known.nets == nets:
            values = _counter_values(known)
        if values is None:
            # New networks, or a program replaced since the last scrape (its maps are gone).
            known = _load_program(xdp, iface, nets, known)
            values = None if known is None else _counter_values(known)
        if known is None or values is None:
            self._programs.pop(iface, None)
            return None
        self._programs[iface] = known
        gained = 0
        seen: dict[int, tuple[str, int]] = {}
        for cidr, entry in known.ids.items():
            value = values.get(entry, 0)
            before = known.seen.get(entry)
            if before is not None and before[0] == cidr and value >= before[1]:
                gained += value - before[1]
            else:
                gained += value
            seen[entry] = (cidr, value)
        known.seen = seen
        self._totals[iface] = self._totals.get(iface, 0) + gained
        return known


def _load_program(
    xdp: Any, iface: str, nets: frozenset[str], known: _Program | None
) -> _Program | None:
    """The program on `iface` read afresh; its entries keep their last counts if it is the
    same program. None when there is none or it cannot be read."""
    from felis.xdp import maps

    try:
        status = xdp.status(iface)
        if status is None:
            return None
        seen = known.seen if known is not None and known.program == status.program else {}
        ids = dict(xdp.blocked(status))
        return _Program(nets, status.program, status.mode, status.maps[maps.COUNTERS], ids, seen)
    except (FelisError, KeyError):
        return None


def _counter_values(program: _Program) -> dict[int, int] | None:
    from felis.xdp import bpf

    try:
        return bpf.percpu_sums(program.counter_map, program.ids.values())
    except FelisError:
        return None


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
