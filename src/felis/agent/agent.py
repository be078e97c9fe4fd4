"""The per-node agent: datastore snapshot + watch → incremental calc → kernel, kept converged.

Shape (as Felix): take a consistent snapshot, program the kernel once in sync, then follow the
watch. Bursts of changes are coalesced into one apply. The kernel is re-read periodically and
repaired when someone else changed our rules (drift). When the datastore is unreachable the
agent keeps the last programmed state enforced and retries; it never removes rules on exit, so
policy stays in force while it restarts.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from felis.agent.nodes import no_endpoints_warning
from felis.calc import CalcConfig, Calculator, HostInterface, Skipped
from felis.calc.felixconfig import ConfigOverrides, EffectiveConfig, effective_config
from felis.dataplane.kernel import ApplyReport, Dataplane, QuickDriftCheck
from felis.dataplane.spec import DataplaneSpec
from felis.datastore import Datastore, WatchEvent
from felis.datastore.errors import Compacted, DatastoreError
from felis.errors import FelisError
from felis.model import HostEndpoint, Resource, from_dict
from felis.model.felixconfig import FelixConfiguration
from felis.resources.confirm import backstop as confirm_backstop
from felis.xdp.attach import XdpDataplane
from felis.xdp.maps import Blocklist

log = logging.getLogger("felis.agent")

FELIX_KIND = "FelixConfiguration"

InterfaceReader = Callable[[], Sequence[HostInterface]]


@dataclass
class AgentSettings:
    node: str
    calc: CalcConfig = field(default_factory=CalcConfig)
    """The built-in settings, under what FelixConfigurations and `environ` set."""
    environ: Mapping[str, str] = field(default_factory=dict)
    """Where `FELIX_…` variables are read (the command line passes the process environment)."""
    overrides: ConfigOverrides = field(default_factory=ConfigOverrides)
    """felis' own options, which win over every other source of a setting."""
    batch_window: float = 0.05
    """How long to keep collecting changes after the first one before applying them together."""
    refresh_interval: float = 30.0
    """How often the kernel's rules and sets are checked for drift, set members by count only
    where the kernel gives it cheaply (0 disables every periodic check). Every set member is
    compared on the longer period of `EffectiveConfig.full_refresh` (DriftSchedule)."""
    interface_interval: float = 5.0
    """How often interfaces and their addresses are re-read (HEP resolution depends on them)."""
    retry_interval: float = 2.0
    """Back-off after a datastore or kernel failure."""


@dataclass
class AgentState:
    """What health checks and metrics report."""

    in_sync: bool = False
    datastore_ok: bool = False
    revision: int = 0
    applies: int = 0
    apply_errors: int = 0
    drift_repairs: int = 0
    drift_backoff_seconds: float = 0.0
    """Set while repairs wait because another program keeps rewriting felis' rules."""
    last_apply_seconds: float = 0.0
    last_error: str = ""
    endpoints: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    """Objects left out because they cannot be programmed (the rest of the node still is)."""
    node_warning: str = ""
    """Set while no HostEndpoint is on this node (a typo in --node, usually)."""

    @property
    def all_warnings(self) -> tuple[str, ...]:
        return ((self.node_warning,) if self.node_warning else ()) + self.warnings


class _Stop(Exception):
    pass


@dataclass(frozen=True, slots=True)
class KernelChanged:
    """Another program changed what felis owns in the kernel (felis.dataplane.monitor)."""

    changes: tuple[str, ...]


Event = WatchEvent | KernelChanged | BaseException


@dataclass
class FightGuard:
    """Keeps the agent from fighting another program that keeps rewriting felis' rules: after
    `limit` repairs within `window` seconds, repairs wait, twice as long each time (up to
    `longest`), until a quiet window resets it. The periodic check still runs."""

    window: float = 10.0
    limit: int = 3
    longest: float = 30.0
    repairs: deque[float] = field(default_factory=deque)
    backoff: float = 0.0
    not_before: float = 0.0

    def repaired(self, now: float) -> float:
        """Record a repair; the back-off now in force (0: none)."""
        self.repairs.append(now)
        while self.repairs and self.repairs[0] < now - self.window:
            self.repairs.popleft()
        if len(self.repairs) < self.limit:
            self.backoff = 0.0
            return 0.0
        self.backoff = min(self.longest, max(1.0, self.backoff * 2))
        self.not_before = now + self.backoff
        return self.backoff


QUICK, FULL = "quick", "full"


@dataclass
class DriftSchedule:
    """When the kernel is next compared with the desired state, and how deeply.

    A quick check every `quick` seconds reads every rule, chain and hook, and each set's
    declaration and, where the kernel tells it cheaply (ipset), its size; a full check every
    `full` seconds also reads and compares every set member, which is what costs CPU at scale
    (docs/benchmarks.md). A full check counts as a quick one too. The full period is never
    shorter than the quick one; `full` 0 leaves the quick checks alone, `quick` 0 turns every
    periodic check off. A kernel event or a failure asks for a full check (`full_by`) whether
    periodic checks run or not.
    """

    quick: float
    full: float
    next_quick: float = float("inf")
    next_full: float = float("inf")

    def start(self, now: float) -> None:
        self.next_quick = self._after(now, self.quick)
        self.next_full = self._after(now, self._full_period())

    def _full_period(self) -> float:
        if self.quick <= 0 or self.full <= 0:
            return 0.0
        return max(self.full, self.quick)

    @staticmethod
    def _after(now: float, period: float) -> float:
        return now + period if period > 0 else float("inf")

    @property
    def wake(self) -> float:
        return min(self.next_quick, self.next_full)

    def due(self, now: float) -> str | None:
        """FULL, QUICK or None (nothing due yet)."""
        if now >= self.next_full:
            return FULL
        if now >= self.next_quick:
            return QUICK
        return None

    def done(self, depth: str, now: float) -> None:
        self.next_quick = self._after(now, self.quick)
        if depth == FULL:
            self.next_full = self._after(now, self._full_period())

    def full_by(self, when: float) -> None:
        self.next_full = min(self.next_full, when)

    def set_full(self, full: float, now: float) -> None:
        """A new full period (FelixConfiguration changed it), counted from `now`."""
        if full == self.full:
            return
        self.full = full
        period = self._full_period()
        self.next_full = min(self.next_full, now + period) if period > 0 else float("inf")


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        store: Datastore,
        dataplane: Dataplane,
        read_interfaces: InterfaceReader,
        *,
        on_apply: Callable[[ApplyReport, float], None] | None = None,
        xdp: XdpDataplane | None = None,
    ) -> None:
        self.settings = settings
        self.xdp = xdp
        """Where eligible blocklists are dropped in the driver (None: not on this host)."""
        self.xdp_programs: dict[str, frozenset[str]] = {}
        """Interface → the networks its XDP program holds, as last written."""
        self._xdp_generic_written: bool | None = None
        """`genericXDPEnabled` when the programs were last written (None: not yet)."""
        self.store = store
        self.dataplane = dataplane
        self.read_interfaces = read_interfaces
        self.on_apply = on_apply
        self.state = AgentState()
        self._felix: dict[str, FelixConfiguration] = {}
        """The stored FelixConfigurations, by name: this node's settings come from them."""
        self._felix_refused: dict[str, str] = {}
        """FelixConfigurations that could not be read (name → why), reported as skipped."""
        self.config = self._resolve_config()
        self._calculator = Calculator(settings.node, self.config.calc)
        self._interfaces: tuple[HostInterface, ...] = ()
        self._hep_nodes: dict[str, str] = {}
        """spec.node of every HostEndpoint, for the warning when none is on our node."""
        self._events: queue.Queue[Event] = queue.Queue()
        self._kernel_changes: tuple[str, ...] = ()
        """Foreign kernel changes reported since the last drift check."""
        self.fight = FightGuard()
        self.current_spec: DataplaneSpec | None = None

    # -- one-shot -----------------------------------------------------------------------------

    def converge_once(self) -> ApplyReport:
        """Snapshot, compute and program once (`felis agent --once`)."""
        self._snapshot()
        self._refresh_interfaces()
        self._adopt_xdp()
        return self._apply(reason="sync")

    # -- daemon -------------------------------------------------------------------------------

    def kernel_changed(self, changes: tuple[str, ...]) -> None:
        """Called (from the monitor's thread) when another program changed felis' rules."""
        self._events.put(KernelChanged(changes))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.converge_once()
                break
            except FelisError as err:
                self._note_error("initial sync", err)
                stop.wait(_jittered(self.settings.retry_interval))
        if stop.is_set():
            return
        watcher = self._start_watch(stop)
        checks = DriftSchedule(self.settings.refresh_interval, self.config.full_refresh)
        checks.start(time.monotonic())
        next_interfaces = self._next(self.settings.interface_interval)
        while not stop.is_set():
            timeout = max(0.0, min(checks.wake, next_interfaces) - time.monotonic())
            try:
                first = self._events.get(timeout=min(timeout, 1.0))
            except queue.Empty:
                first = None
            try:
                if first is not None:
                    changed = self._consume(first, stop)
                    if changed:
                        self._apply(reason="datastore change")
                now = time.monotonic()
                checks.set_full(self.config.full_refresh, now)
                if self._kernel_changes:
                    # Checked at once, in full (an event may be about set members), unless
                    # another program keeps rewriting our rules.
                    checks.full_by(max(now, self.fight.not_before))
                if now >= next_interfaces:
                    next_interfaces = self._next(self.settings.interface_interval)
                    # The backstop of `apply --confirm`, should its watchdog be gone.
                    confirm_backstop(self.store, actor=f"agent {self.settings.node}")
                    if self._refresh_interfaces():
                        self._apply(reason="interface change")
                depth = checks.due(now)
                if depth is not None:
                    checks.done(depth, now)
                    if self.state.node_warning:
                        # Every refresh, as Felix keeps running too: a log line once at
                        # start-up is easily missed, and the agent would look healthy.
                        log.warning("%s", self.state.node_warning)
                    self._repair_drift(full=depth == FULL)
                if not watcher.is_alive() and not stop.is_set():
                    watcher = self._start_watch(stop)
            except _Stop:
                break
            except FelisError as err:
                self._note_error("dataplane", err)
                self.state.in_sync = False
                stop.wait(self.settings.retry_interval)
                checks.full_by(time.monotonic())  # re-check the kernel as soon as possible

    @staticmethod
    def _next(interval: float) -> float:
        return time.monotonic() + interval if interval > 0 else float("inf")

    def _consume(self, first: Event, stop: threading.Event) -> bool:
        """Apply `first` and every event arriving within the batch window to the calculator."""
        batch: list[Event] = [first]
        deadline = time.monotonic() + self.settings.batch_window
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                batch.append(self._events.get(timeout=remaining))
            except queue.Empty:
                break
        changed = False
        for item in batch:
            if isinstance(item, Compacted):
                log.warning("watch history compacted; resyncing from a fresh snapshot")
                self._snapshot()
                changed = True
            elif isinstance(item, BaseException):
                raise item
            elif isinstance(item, KernelChanged):
                self._kernel_changes += item.changes
            else:
                changed |= self._handle(item)
        if stop.is_set():
            raise _Stop
        return changed

    def _handle(self, event: WatchEvent) -> bool:
        self.state.revision = max(self.state.revision, event.revision)
        if event.kind == FELIX_KIND:
            return self._felix_event(event)
        if event.type == "DELETED":
            self._calculator.remove(event.kind, event.name)
            if event.kind == "HostEndpoint":
                self._hep_nodes.pop(event.name, None)
            return True
        try:
            resource = from_dict(event.object, source="datastore")
        except FelisError as err:
            # Another writer stored something we cannot read; ignore it rather than stop
            # enforcing everything else.
            log.error("ignoring %s %s: %s", event.kind, event.name, err)
            return False
        self._calculator.upsert(resource)
        self._note_node(resource, self._hep_nodes)
        return True

    def _start_watch(self, stop: threading.Event) -> threading.Thread:
        since = self.state.revision

        def follow() -> None:
            revision = since
            while not stop.is_set():
                try:
                    events = self.store.watch(revision, stop=stop)
                    # The watch is open (etcd opens it eagerly): report the datastore back
                    # now, not only when the next change happens to arrive.
                    if not self.state.datastore_ok:
                        log.info("datastore reachable again; following from revision %d", revision)
                    self.state.datastore_ok = True
                    for event in events:
                        # etcd gives every object of one transaction the same revision; on a
                        # reconnect, resume one revision earlier so none of them is lost
                        # (replaying an upsert or a delete is harmless).
                        revision = event.revision - 1
                        self._events.put(event)
                    return
                except Compacted as err:
                    self._events.put(err)
                    return
                except DatastoreError as err:
                    self.state.datastore_ok = False
                    log.warning("datastore unavailable, keeping current rules: %s", err)
                    stop.wait(_jittered(self.settings.retry_interval))

        thread = threading.Thread(target=follow, name="felis-watch", daemon=True)
        thread.start()
        return thread

    # -- steps --------------------------------------------------------------------------------

    def _snapshot(self) -> None:
        listing = self.store.list()
        self.state.datastore_ok = True
        calculator = Calculator(self.settings.node, self.settings.calc)
        hep_nodes: dict[str, str] = {}
        self._felix, self._felix_refused = {}, {}
        for obj in listing.items:
            try:
                resource = from_dict(obj, source="datastore")
            except FelisError as err:
                if obj.get("kind") == FELIX_KIND:
                    self._felix_refused[_name_of(obj)] = str(err)
                else:
                    log.error("ignoring stored %s: %s", _describe(obj), err)
                continue
            if isinstance(resource, FelixConfiguration):
                self._felix[resource.metadata.name] = resource
                continue
            calculator.upsert(resource)
            self._note_node(resource, hep_nodes)
        if self._interfaces:
            calculator.set_interfaces(self._interfaces)
        self._calculator = calculator
        self._reconfigure(first=True)
        self._hep_nodes = hep_nodes
        self.state.revision = listing.revision

    def _felix_event(self, event: WatchEvent) -> bool:
        """A FelixConfiguration changed: the node's settings are resolved again. One that
        cannot be read counts as absent (the next source decides) and is reported skipped."""
        self._felix.pop(event.name, None)
        self._felix_refused.pop(event.name, None)
        if event.type != "DELETED":
            try:
                resource = from_dict(event.object, source="datastore")
            except FelisError as err:
                self._felix_refused[event.name] = str(err)
            else:
                if isinstance(resource, FelixConfiguration):
                    self._felix[event.name] = resource
        return self._reconfigure()

    def _resolve_config(self) -> EffectiveConfig:
        settings = self.settings
        return effective_config(
            settings.environ,
            settings.node,
            self._felix.values(),
            backend=self.dataplane.backend,
            overrides=settings.overrides,
            base=settings.calc,
            refused=self._felix_refused,
        )

    def _reconfigure(self, *, first: bool = False) -> bool:
        """Resolve the settings again; True when anything about them changed."""
        config = self._resolve_config()
        changed = config != self.config
        if first or config.calc != self.config.calc:
            log.info("settings: %s", config.summary())
        self.config = config
        # The whole new spec is computed before the one apply that programs it, so a new
        # failsafe list replaces the old one inside each table's transaction, never after it.
        self._calculator.set_config(config.calc)
        return changed

    @staticmethod
    def _note_node(resource: Resource, hep_nodes: dict[str, str]) -> None:
        if isinstance(resource, HostEndpoint):
            hep_nodes[resource.metadata.name] = resource.spec.node

    def _refresh_interfaces(self) -> bool:
        current = tuple(self.read_interfaces())
        if current == self._interfaces:
            return False
        self._interfaces = current
        self._calculator.set_interfaces(current)
        return True

    def _apply(self, *, reason: str) -> ApplyReport:
        result = self._calculator.result()
        warnings = (*self.config.warnings, *result.warnings)
        for warning in warnings:
            if warning not in self.state.warnings:
                log.warning("%s", warning)
        self.state.warnings = warnings
        skipped = tuple(sorted((*self.config.skipped, *result.skipped)))
        for item in skipped:
            if item not in self.state.skipped:
                log.error("%s", item)
        self.state.skipped = skipped
        node_warning = no_endpoints_warning(self.settings.node, self._hep_nodes.values()) or ""
        if node_warning and node_warning != self.state.node_warning:
            log.warning("%s", node_warning)
        self.state.node_warning = node_warning
        started = time.monotonic()
        # A block leaves XDP before the raw table and joins it after, so XDP never drops
        # what the chains behind it would let through.
        self._sync_xdp(
            {i: nets & result.xdp.get(i, frozenset()) for i, nets in self.xdp_programs.items()}
        )
        try:
            report = self.dataplane.apply(result.spec)
        except FelisError:
            self.state.apply_errors += 1
            raise
        self._sync_xdp(dict(result.xdp))
        elapsed = time.monotonic() - started
        self.state.applies += 1
        self.state.last_apply_seconds = elapsed
        self.state.in_sync = True
        self.state.endpoints = result.spec.endpoints
        self.current_spec = result.spec
        if report.wrote:
            log.info("%s: %s (%.0f ms)", reason, report.summary(), elapsed * 1000)
        if self.on_apply is not None:
            self.on_apply(report, elapsed)
        return report

    def _adopt_xdp(self) -> None:
        """Take over the XDP programs a previous run left attached (they kept protecting the
        host meanwhile), so that the first apply updates or removes them."""
        if self.xdp is None:
            return
        try:
            for iface in self.xdp.interfaces():
                attached = self.xdp.status(iface)
                if attached is not None:
                    self.xdp_programs[iface] = frozenset(self.xdp.blocked(attached))
        except FelisError as err:
            log.error("reading XDP programs: %s", err)

    def _sync_xdp(self, wanted: Mapping[str, frozenset[str]]) -> None:
        """Make each interface's XDP program hold `wanted` (attaching or detaching it). A
        failure is logged and leaves that interface to the raw table, which drops the same
        sources: XDP only makes the drop cheaper."""
        if self.xdp is None:
            return
        failsafe = frozenset(
            (p.protocol, p.port) for p in self.config.calc.failsafe_inbound if p.protocol
        )
        allow_generic = self.config.calc.xdp_generic
        # Under a changed setting every program is checked again: one in generic mode may go.
        recheck = allow_generic != self._xdp_generic_written
        self._xdp_generic_written = allow_generic
        for iface in sorted(set(self.xdp_programs) | set(wanted)):
            nets = wanted.get(iface, frozenset())
            if self.xdp_programs.get(iface) == nets and not recheck:
                continue
            try:
                if nets:
                    attached = self.xdp.attach(iface, allow_generic=allow_generic)
                    self.xdp.sync(attached, Blocklist(nets, failsafe))
                    self.xdp_programs[iface] = nets
                else:
                    self.xdp.detach(iface)
                    self.xdp_programs.pop(iface, None)
            except FelisError as err:
                log.error("XDP on %s: %s; the raw table drops those sources instead", iface, err)
                self.xdp_programs.pop(iface, None)

    def _repair_drift(self, *, full: bool = True) -> None:
        """Check the kernel (`full`: every set member too) and repair what differs."""
        seen, self._kernel_changes = self._kernel_changes, ()
        spec = self._calculator.result().spec
        quick = self.dataplane if isinstance(self.dataplane, QuickDriftCheck) else None
        if not full and quick is not None and not quick.quick_drift(spec):
            return
        # Anything the quick check found is confirmed by the full one, which also reads the
        # kernel state the repair plans from.
        differences = self.dataplane.drift(spec)
        if not differences:
            return
        log.warning("kernel drifted from the desired state: %s", "; ".join(differences[:5]))
        self.state.drift_repairs += 1
        self._apply(reason="drift repair")
        backoff = self.fight.repaired(time.monotonic())
        if backoff:
            self.state.drift_backoff_seconds = backoff
            log.warning(
                "another program keeps changing felis' rules (%d repairs in %.0f s; last: %s); "
                "waiting %.0f s before the next repair",
                len(self.fight.repairs),
                self.fight.window,
                "; ".join(seen[:3]) or "found by the periodic check",
                backoff,
            )
        else:
            self.state.drift_backoff_seconds = 0.0

    def _note_error(self, what: str, err: Exception) -> None:
        self.state.last_error = f"{what}: {err}"
        log.error("%s failed: %s", what, err)


def _jittered(interval: float) -> float:
    """`interval` ± 50 %: agents restarted together, or cut off by the same outage, must not
    all come back to the datastore in the same instant again and again."""
    return interval * random.uniform(0.5, 1.5)


def _name_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("name", "?")) if isinstance(meta, dict) else "?"


def _describe(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind', '?')}({obj.get('metadata', {}).get('name', '?')})"
