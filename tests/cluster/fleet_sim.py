"""Simulated felis agents for the fleet test and bench/bench_fleet.py (unique module name).

A simulated agent is the real `felis.agent.Agent` (datastore snapshot, etcd watch, incremental
calc, render) for one node, with only the kernel replaced: `RecordingDataplane` renders each
spec it is asked to apply with the real nftables renderer and records what came out (a digest,
the probe port and the database members, with the time). Many agents share one process as
threads; each has its own etcd client, watch stream and calculator, as it would on its own host.

The workload (`fleet_objects`) and its change stream are designed so that every change reaches
every agent's ruleset and can be recognised in it:

* policy change: `fleet-probe` (selects every endpoint) allows one tcp port, PROBE_BASE + seq,
  so the highest probe port in an agent's ruleset says which policy change it has reached;
* label change: one node's `eth0` endpoint moves between `fleet-role: web` and `db`, and
  `fleet-db-clients` (selects every endpoint) allows sources `fleet-role == 'db'`, so that
  endpoint's address enters or leaves an IP set on every node.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from felis.agent.agent import Agent, AgentSettings
from felis.calc import HostInterface
from felis.dataplane import nftables
from felis.dataplane.kernel import ApplyReport, RuleCounter
from felis.dataplane.memo import RenderCache
from felis.dataplane.spec import DataplaneSpec, Family
from felis.datastore import Listing, WatchEvent
from felis.datastore.etcd import EtcdDatastore
from felis.datastore.url import EtcdConfig, parse_url

API = "projectcalico.org/v3"
PROBE_POLICY = "fleet-probe"
PROBE_BASE = 40_000
PROBE_SPAN = 20_000
HEPS_PER_NODE = 5
GROUPS = 50
_PROBE_PORT = re.compile(r"dport \{? ?(\d{5})\b")
_BASE = int(ipaddress.IPv4Address("198.18.0.0"))


def node_name(index: int) -> str:
    return f"node-{index:05d}"


def hep_address(node: int, interface: int) -> str:
    """Node i's interface j, inside 198.18.0.0/15 (8 addresses per node: 16,384 nodes fit)."""
    return str(ipaddress.IPv4Address(_BASE + node * 8 + interface + 1))


def hep(node: int, interface: int, role: str = "web") -> dict[str, Any]:
    labels = {"fleet-group": f"g{node % GROUPS}", "host": node_name(node)}
    if interface == 0:
        labels["fleet-role"] = role
    return {
        "apiVersion": API,
        "kind": "HostEndpoint",
        "metadata": {"name": f"{node_name(node)}-eth{interface}", "labels": labels},
        "spec": {
            "node": node_name(node),
            "interfaceName": f"eth{interface}",
            "expectedIPs": [hep_address(node, interface)],
        },
    }


def probe_policy(seq: int) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": PROBE_POLICY},
        "spec": {
            "order": 1,
            "selector": "all()",
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "destination": {"ports": [PROBE_BASE + seq % PROBE_SPAN]},
                }
            ],
        },
    }


def fleet_objects(
    nodes: int, policies: int, sets: int, members: int, heps: int = HEPS_PER_NODE
) -> list[dict[str, Any]]:
    """`nodes` × `heps` HostEndpoints, `policies` GlobalNetworkPolicies (node group g gets the
    policies k with k % 50 == g, each with a source and a destination set selector), `sets`
    GlobalNetworkSets sharing `members` /32s (100.64.0.0/10), plus the two fleet-wide policies
    of the module docstring."""
    objects: list[dict[str, Any]] = []
    per_set = max(1, members // max(1, sets))
    for k in range(sets):
        nets = [
            str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("100.64.0.0")) + 2 * n))
            for n in range(k * per_set, (k + 1) * per_set)
        ]
        objects.append(
            {
                "apiVersion": API,
                "kind": "GlobalNetworkSet",
                "metadata": {"name": f"fleet-set-{k}", "labels": {"set": f"s{k}"}},
                "spec": {"nets": nets},
            }
        )
    for k in range(policies):
        objects.append(
            {
                "apiVersion": API,
                "kind": "GlobalNetworkPolicy",
                "metadata": {"name": f"fleet-policy-{k}"},
                "spec": {
                    "order": float(10 + k % 40),
                    "selector": f"fleet-group == 'g{k % GROUPS}'",
                    "ingress": [
                        {
                            "action": "Allow",
                            "protocol": "TCP",
                            "source": {"selector": f"set == 's{k % max(1, sets)}'"},
                            "destination": {"ports": [1000 + k % 1000]},
                        },
                        {"action": "Deny", "source": {"nets": ["192.168.0.0/16"]}},
                    ],
                    "egress": [
                        {
                            "action": "Allow",
                            "destination": {"selector": f"set == 's{(k + 1) % max(1, sets)}'"},
                        }
                    ],
                },
            }
        )
    objects.append(probe_policy(0))
    objects.append(
        {
            "apiVersion": API,
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "fleet-db-clients"},
            "spec": {
                "order": 2,
                "selector": "all()",
                "ingress": [
                    {
                        "action": "Allow",
                        "protocol": "TCP",
                        "source": {"selector": "fleet-role == 'db'"},
                        "destination": {"ports": [5432]},
                    }
                ],
            },
        }
    )
    objects.extend(hep(n, j) for n in range(nodes) for j in range(heps))
    return objects


@dataclass(frozen=True)
class Change:
    """One write of the change stream: `seq` orders them; `kind` is 'policy' or 'label'."""

    seq: int
    kind: str
    obj: dict[str, Any]
    address: str = ""
    """For a label change: the endpoint address that enters (db) or leaves (web) the set."""
    present: bool = False


def change_stream(nodes: int) -> Callable[[int], Change]:
    """Change number `seq`: even ones bump the probe port, odd ones flip a node's role (node
    after node, so one node flips again only after every other node has)."""

    def make(seq: int) -> Change:
        if seq % 2 == 0:
            return Change(seq, "policy", probe_policy(seq // 2 + 1))
        flip = seq // 2
        node = flip % nodes
        role = "db" if (flip // nodes) % 2 == 0 else "web"
        return Change(seq, "label", hep(node, 0, role), hep_address(node, 0), role == "db")

    return make


def probe_seq_of(text: str) -> int:
    """The probe port's change number in a rendered ruleset (-1: no probe rule)."""
    ports = [int(p) for p in _PROBE_PORT.findall(text)]
    ports = [p - PROBE_BASE for p in ports if PROBE_BASE <= p < PROBE_BASE + PROBE_SPAN]
    return max(ports, default=-1)


def db_members(spec: DataplaneSpec) -> frozenset[str]:
    ruleset = spec.rulesets.get(Family.V4)
    if ruleset is None:
        return frozenset()
    found: set[str] = set()
    for ipset in ruleset.sets.values():
        if "fleet-role" in ipset.comment:
            found |= {m.split("/")[0] for m in ipset.members}
    return frozenset(found)


def render(spec: DataplaneSpec, cache: RenderCache | None = None) -> str:
    """The whole ruleset as `nft -f` would get it on a fresh host, both families."""
    return "".join(nftables.render_full(r, cache=cache) for _, r in sorted(spec.rulesets.items()))


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Recording:
    """What one agent's dataplane saw: marker changes with the wall-clock time of the apply."""

    probe: list[tuple[float, int]] = field(default_factory=list)
    """(time, probe change number) each time it moved."""
    db: list[tuple[float, str, bool]] = field(default_factory=list)
    """(time, address, now present) for each database member that came or went."""
    applies: int = 0
    digest: str = ""
    last_db: frozenset[str] = frozenset()
    last_probe: int = -2


class RecordingDataplane:
    """A `Dataplane` that renders and records instead of programming a kernel."""

    backend = "nftables"

    def __init__(self, recording: Recording | None = None) -> None:
        self.recording = recording if recording is not None else Recording()
        self._cache = RenderCache()

    def apply(self, spec: DataplaneSpec) -> ApplyReport:
        text = render(spec, self._cache)
        now = time.time()
        rec = self.recording
        rec.applies += 1
        rec.digest = digest(text)
        probe = probe_seq_of(text)
        if probe != rec.last_probe:
            rec.probe.append((now, probe))
            rec.last_probe = probe
        members = db_members(spec)
        if members != rec.last_db:
            rec.db.extend((now, a, True) for a in members - rec.last_db)
            rec.db.extend((now, a, False) for a in rec.last_db - members)
            rec.last_db = members
        return ApplyReport(self.backend, ["recorded"])

    def drift(self, spec: DataplaneSpec) -> list[str]:
        return []

    def cleanup(self) -> ApplyReport:
        return ApplyReport(self.backend)

    def counters(self, spec: DataplaneSpec | None) -> list[RuleCounter]:
        return []


def interfaces_of(node: int, heps: int = HEPS_PER_NODE) -> tuple[HostInterface, ...]:
    return tuple(HostInterface(f"eth{j}", (f"{hep_address(node, j)}/29",)) for j in range(heps))


def etcd_config(url: str) -> EtcdConfig:
    config = parse_url(url, env={})
    assert isinstance(config, EtcdConfig)
    return config


def settings_for(node: int) -> AgentSettings:
    # No kernel: no drift check; interfaces never change in the simulation.
    return AgentSettings(node=node_name(node), refresh_interval=0, interface_interval=3600)


def fresh_digest(url: str, node: int, heps: int = HEPS_PER_NODE) -> str:
    """What `felis agent --once` would program on `node` now (rendered the same way)."""
    with EtcdDatastore(etcd_config(url)) as store:
        return _once(store, node, heps)


def fresh_digests(url: str, nodes: list[int], heps: int = HEPS_PER_NODE) -> dict[int, str]:
    """`fresh_digest` for many nodes from ONE etcd listing (what each `--once` would read, as
    nothing is written meanwhile), to spare the etcd read and decode per node."""
    with EtcdDatastore(etcd_config(url)) as store:
        frozen = _FrozenListing(store.list())
    return {n: _once(frozen, n, heps) for n in nodes}


class _FrozenListing:
    """Just enough of a Datastore for `Agent.converge_once`: one listing, read before."""

    def __init__(self, listing: Listing) -> None:
        self.listing = listing

    def list(self, kind: str | None = None) -> Listing:
        return self.listing


def _once(store: Any, node: int, heps: int) -> str:
    dataplane = RecordingDataplane()
    Agent(settings_for(node), store, dataplane, lambda: interfaces_of(node, heps)).converge_once()
    return dataplane.recording.digest


class GatedEtcdDatastore(EtcdDatastore):
    """EtcdDatastore whose snapshot reads wait for `GATE` when it is set: the simulator bounds
    how many listings are decoded at once in one process (its own memory), so etcd sees at most
    processes × gate concurrent snapshot reads in a storm, not one per agent."""

    GATE: threading.Semaphore | None = None
    TIMEOUT = 5.0
    """The request timeout of every client made after it is set (felis' default: 5 s)."""

    POLL = 0.5
    """How often an idle watch looks at its stop flag (felis: 0.05 s). Events still wake it at
    once; the agent's 20 wake-ups a second are nothing on a host, but hundreds of agents in one
    process would spend their CPU and GIL on them."""

    def __init__(self, config: EtcdConfig) -> None:
        super().__init__(config, timeout=GatedEtcdDatastore.TIMEOUT)

    def watch(
        self,
        since_revision: int,
        *,
        stop: threading.Event | None = None,
        poll_interval: float = 0.05,
    ) -> Iterator[WatchEvent]:
        return super().watch(since_revision, stop=stop, poll_interval=GatedEtcdDatastore.POLL)

    def list(self, kind: str | None = None) -> Listing:
        gate = GatedEtcdDatastore.GATE
        if gate is None:
            return super().list(kind)
        with gate:
            return super().list(kind)


@dataclass
class SimAgent:
    node: int
    url: str
    recording: Recording = field(default_factory=Recording)
    heps: int = HEPS_PER_NODE
    agent: Agent | None = None
    store: EtcdDatastore | None = None
    thread: threading.Thread | None = None

    def start(self, stop: threading.Event) -> None:
        self.store = GatedEtcdDatastore(etcd_config(self.url))
        node, heps = self.node, self.heps
        self.agent = Agent(
            settings_for(node),
            self.store,
            RecordingDataplane(self.recording),
            lambda: interfaces_of(node, heps),
        )
        self.thread = threading.Thread(
            target=self.agent.run, args=(stop,), name=f"agent {node}", daemon=True
        )
        self.thread.start()

    @property
    def in_sync(self) -> bool:
        return self.agent is not None and self.agent.state.in_sync

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
        if self.store is not None:
            self.store.close()


@dataclass
class AgentGroup:
    """Agents for `nodes`, all in this process (see the module docstring)."""

    url: str
    nodes: list[int]
    heps: int = HEPS_PER_NODE
    agents: list[SimAgent] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        """Start every agent, keeping the recordings of a previous run (a restart)."""
        old = {a.node: a.recording for a in self.agents}
        self.stop = threading.Event()
        self.agents = [
            SimAgent(n, self.url, old.get(n, Recording()), self.heps) for n in self.nodes
        ]
        for agent in self.agents:
            agent.start(self.stop)

    def synced(self) -> int:
        return sum(1 for a in self.agents if a.in_sync)

    def halt(self, timeout: float = 30.0) -> None:
        self.stop.set()
        deadline = time.monotonic() + timeout
        for agent in self.agents:
            agent.join(max(0.1, deadline - time.monotonic()))
        for agent in self.agents:
            if agent.agent is not None:
                agent.agent.state.in_sync = False

    def digests(self) -> dict[int, str]:
        return {a.node: a.recording.digest for a in self.agents}


def propagation(
    changes: list[tuple[float, Change]], recordings: dict[int, Recording]
) -> tuple[list[float], int]:
    """Seconds from each change's write to each agent's first apply showing it, and how many
    (change, agent) pairs never showed it."""
    samples: list[float] = []
    missing = 0
    for written, change in changes:
        for rec in recordings.values():
            seen = _first_seen(written, change, rec)
            if seen is None:
                missing += 1
            else:
                samples.append(max(0.0, seen - written))
    return samples, missing


def _first_seen(written: float, change: Change, rec: Recording) -> float | None:
    if change.kind == "policy":
        wanted = change.seq // 2 + 1
        for at, seq in rec.probe:
            if seq >= wanted and at >= written - 0.001:
                return at
        return None
    for at, address, present in rec.db:
        if address == change.address and present == change.present and at >= written - 0.001:
            return at
    return None
