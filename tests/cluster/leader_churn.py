"""Writes through felis' etcd datastore while the cluster changes leader, and the proof that
none was lost or applied twice; shared by the cluster test and bench/bench_etcd_faults.py.

One writer applies a planned series of creates, updates and deletes of GlobalNetworkSets, one
at a time, through `EtcdDatastore`. Every write stores a content unique to it (the label
`felis-write: <index>`), so etcd's history shows exactly which writes took effect, how often
and in which order. Meanwhile a fault thread waits for the writer to reach given indices and
then forces a leader change: `etcdctl move-leader` (graceful), or SIGKILL of the leader member
(restarted at once, rejoining as a follower).

The verdict compares, write by write, what the writer was told with etcd's history read back
through a fresh felis watch from the first revision:
* lost: a write acknowledged to the writer whose event is not in the history;
* duplicated: any event the plan does not explain (a write applied twice shows as a second
  event with its label);
* a write that raised is "in doubt": it may appear once or not at all, never twice.
A live watcher running during the writes must also have seen exactly that history.

Agents: the real agent loop (`Agent.run`), each on its own etcd client, watching through the
leader changes, with a dataplane that records the spec instead of programming a kernel (the
kernel side of an agent is covered by the kernel tests); at the end each one's rendered
nftables ruleset must equal what `felis agent --once` computes from a fresh snapshot.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from etcd_harness import EtcdCluster, Member, etcd_store, poll

from felis.agent.agent import Agent, AgentSettings
from felis.calc import HostInterface
from felis.dataplane import nftables
from felis.dataplane.kernel import ApplyReport
from felis.dataplane.spec import DataplaneSpec, Family
from felis.datastore import Datastore, WatchEvent
from felis.datastore.errors import DatastoreError

LABEL = "felis-write"
Op = Literal["create", "apply", "delete"]
Fault = Literal["move-leader", "kill-leader"]


@dataclass(frozen=True)
class Write:
    index: int
    op: Op
    name: str


def churn_set(name: str, index: int, slot: int) -> dict[str, Any]:
    """The object a write stores: unique to the write; its net never adjacent to another set's
    (the kernel merges adjacent prefixes of one nftables interval set). Up to 120 slots."""
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkSet",
        "metadata": {"name": name, "labels": {"memcached": "client", LABEL: str(index)}},
        "spec": {"nets": [f"198.{18 + slot // 60}.{200 + index % 50}.{4 * (slot % 60) + 1}/32"]},
    }


def plan_writes(count: int, objects: int, seed: int = 11) -> list[Write]:
    """`count` writes over `objects` names: create when absent, else mostly update, some
    deletes (so creates of a name that existed before happen too)."""
    rng = random.Random(seed)
    present: set[int] = set()
    writes = []
    for index in range(count):
        slot = rng.randrange(objects)
        op: Op
        if slot not in present:
            op = "create"
            present.add(slot)
        elif rng.random() < 0.15:
            op = "delete"
            present.discard(slot)
        else:
            op = "apply"
        writes.append(Write(index, op, f"churn-{slot:03d}"))
    return writes


def slot_of(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def leader(cluster: EtcdCluster) -> tuple[Member, dict[str, int]]:
    """The current leader and every running member's id (as etcd's status reports them)."""
    ids: dict[str, int] = {}
    found: Member | None = None
    for member in cluster.running():
        try:
            status = cluster.etcd_request(member, "/v3/maintenance/status", {})
        except OSError:
            continue
        ids[member.name] = int(status["header"]["member_id"])
        if status.get("leader") == status["header"]["member_id"]:
            found = member
    if found is None:
        raise AssertionError("no leader")
    return found, ids


def current_leader(cluster: EtcdCluster) -> Member:
    """Poll until the running members agree on a leader."""
    result: list[Member] = []

    def settled() -> bool:
        try:
            result[:] = [leader(cluster)[0]]
        except AssertionError:
            return False
        return True

    poll(settled, 30, "an etcd leader")
    return result[0]


def move_leader(cluster: EtcdCluster) -> str:
    old, ids = leader(cluster)
    target = next(m for m in cluster.running() if m is not old)
    cluster.etcdctl("move-leader", format(ids[target.name], "x"), members=[old])
    poll(lambda: current_leader(cluster) is not old, 30, "the leader to move")
    return f"move-leader {old.name}->{target.name}"


def make_leader(cluster: EtcdCluster, member: Member) -> None:
    """Move leadership to `member` (the writer's first endpoint, so that killing the leader
    cuts the writer's own connection with a request in flight)."""
    old, ids = leader(cluster)
    if old is not member:
        cluster.etcdctl("move-leader", format(ids[member.name], "x"), members=[old])
        poll(lambda: current_leader(cluster) is member, 30, f"{member.name} to lead")


def kill_leader(cluster: EtcdCluster) -> str:
    old = current_leader(cluster)
    cluster.stop_member(old, signal.SIGKILL)
    new = current_leader(cluster)  # elected by the two survivors
    cluster.start_member(old)
    cluster.wait_healthy()
    return f"kill-leader {old.name} (new leader {new.name})"


@dataclass
class Outcome:
    writes: list[Write]
    acked: dict[int, str] = field(default_factory=dict)
    """index → the action the datastore reported (created/updated/deleted)."""
    failed: dict[int, str] = field(default_factory=dict)
    """index → the one-line error of a write that raised (in doubt)."""
    latency: list[float] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    fault_errors: list[str] = field(default_factory=list)
    live: list[WatchEvent] = field(default_factory=list)
    history: list[WatchEvent] = field(default_factory=list)
    start_revision: int = 0
    seconds: float = 0.0


class _FaultThread(threading.Thread):
    def __init__(
        self,
        cluster: EtcdCluster,
        faults: list[tuple[int, Fault]],
        progress: Callable[[], int],
        outcome: Outcome,
    ) -> None:
        super().__init__(daemon=True, name="etcd-faults")
        self.cluster, self.faults, self.progress, self.outcome = cluster, faults, progress, outcome
        self.done = threading.Event()

    def run(self) -> None:
        try:
            for at, fault in self.faults:
                while self.progress() < at and not self.done.is_set():
                    time.sleep(0.002)
                if self.done.is_set():
                    return
                act = move_leader if fault == "move-leader" else kill_leader
                self.outcome.faults.append(act(self.cluster))
        except BaseException as exc:  # reported by the verdict
            self.outcome.fault_errors.append(f"{type(exc).__name__}: {exc}")


def _collect(store: Datastore, since: int, stop: threading.Event, into: list[WatchEvent]) -> None:
    for event in store.watch(since, stop=stop, poll_interval=0.01):
        into.append(event)


def run(
    cluster: EtcdCluster,
    writer: Datastore,
    watcher: Datastore,
    writes: list[Write],
    faults: list[tuple[int, Fault]],
) -> Outcome:
    """Apply `writes` with `faults` injected at their indices; read back etcd's history."""
    outcome = Outcome(writes)
    outcome.start_revision = writer.revision()
    stop = threading.Event()
    live = threading.Thread(
        target=_collect, args=(watcher, outcome.start_revision, stop, outcome.live), daemon=True
    )
    live.start()
    done = [0]
    injector = _FaultThread(cluster, faults, lambda: done[0], outcome)
    injector.start()
    started = time.monotonic()
    try:
        for write in writes:
            began = time.monotonic()
            try:
                if write.op == "create":
                    writer.create(churn_set(write.name, write.index, slot_of(write.name)))
                    outcome.acked[write.index] = "created"
                elif write.op == "apply":
                    (result,) = writer.apply(
                        [churn_set(write.name, write.index, slot_of(write.name))]
                    )
                    outcome.acked[write.index] = result.action
                else:
                    writer.delete("GlobalNetworkSet", write.name)
                    outcome.acked[write.index] = "deleted"
            except DatastoreError as err:
                outcome.failed[write.index] = str(err)
            outcome.latency.append(time.monotonic() - began)
            done[0] = write.index + 1
        outcome.seconds = time.monotonic() - started
    finally:
        injector.done.set()
        injector.join(60)
    final = writer.revision()
    _until(outcome.live, final, live)
    stop.set()
    live.join(30)
    outcome.history = history(writer, outcome.start_revision, final)
    return outcome


def history(store: Datastore, since: int, until: int) -> list[WatchEvent]:
    """Every event after `since` up to revision `until`, from a watch opened now. (Not a
    drain, `stop` set at the call: that ends after 0.3 s without a message, which on a busy
    host can come before the first one.)"""
    events: list[WatchEvent] = []
    stop = threading.Event()
    reader = threading.Thread(target=_collect, args=(store, since, stop, events), daemon=True)
    reader.start()
    _until(events, until, reader)
    stop.set()
    reader.join(30)
    return events


def _until(events: list[WatchEvent], revision: int, thread: threading.Thread) -> None:
    def caught_up() -> bool:
        return (bool(events) and events[-1].revision >= revision) or not thread.is_alive()

    poll(caught_up, 60, "a watcher to reach the last write")


def _signature(event: WatchEvent) -> tuple[str, str, str]:
    labels = event.object.get("metadata", {}).get("labels", {})
    return event.type, event.name, str(labels.get(LABEL, ""))


def verdict(outcome: Outcome, final: list[dict[str, Any]]) -> dict[str, Any]:
    """Lost, duplicated and unexplained updates (see the module docstring); `final` is the
    store's GlobalNetworkSets after the run."""
    events = [_signature(e) for e in outcome.history if e.name.startswith("churn-")]
    label_of: dict[str, str] = {}  # name → label of its current version, as replayed
    lost: list[int] = []
    in_doubt_applied: list[int] = []
    position = 0
    for write in outcome.writes:
        if write.op == "delete":
            expected = ("DELETED", write.name, label_of.get(write.name, ""))
        elif write.op == "create":
            expected = ("ADDED", write.name, str(write.index))
        else:
            expected = ("MODIFIED", write.name, str(write.index))
        if position < len(events) and events[position] == expected:
            position += 1
            if write.index in outcome.failed:
                in_doubt_applied.append(write.index)
            if write.op == "delete":
                label_of.pop(write.name, None)
            else:
                label_of[write.name] = str(write.index)
        elif write.index in outcome.acked:
            lost.append(write.index)
    unexplained = events[position:]
    stored = {
        o["metadata"]["name"]: str(o["metadata"].get("labels", {}).get(LABEL, ""))
        for o in final
        if o["metadata"]["name"].startswith("churn-")
    }
    wrong_actions = [
        i
        for i, action in outcome.acked.items()
        if action
        != {"create": "created", "apply": "updated", "delete": "deleted"}[outcome.writes[i].op]
    ]
    return {
        "writes": len(outcome.writes),
        "acknowledged": len(outcome.acked),
        "errors": len(outcome.failed),
        "lost": lost,
        "duplicated_or_unexplained": unexplained,
        "in_doubt_applied": in_doubt_applied,
        "wrong_actions": wrong_actions,
        "final_matches": stored == label_of,
        "live_watch_matches": [_signature(e) for e in outcome.live]
        == [_signature(e) for e in outcome.history],
        "faults": outcome.faults,
        "fault_errors": outcome.fault_errors,
    }


# -- agents: the real agent loop on its own etcd client, with a dataplane that only records -----

SEED = [
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "memcached-server"},
        "spec": {
            "selector": "memcached == 'server'",
            "doNotTrack": True,
            "applyOnForward": True,
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"selector": "memcached == 'client'"},
                    "destination": {"ports": [12211]},
                }
            ],
        },
    }
]


def node_objects(count: int) -> list[dict[str, Any]]:
    """One HostEndpoint per agent node, selected by the seed policy."""
    return [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "HostEndpoint",
            "metadata": {"name": f"node-{i}-eth0", "labels": {"memcached": "server"}},
            "spec": {"node": f"node-{i}", "interfaceName": "eth0", "expectedIPs": [_ip(i)]},
        }
        for i in range(count)
    ]


def _ip(i: int) -> str:
    return f"198.18.{10 + i}.1"


class RecordingDataplane:
    """Stands in for the kernel: keeps the last spec the agent programmed."""

    backend = "nftables"

    def __init__(self) -> None:
        self.last: DataplaneSpec | None = None
        self.applies = 0

    def apply(self, spec: DataplaneSpec) -> ApplyReport:
        self.last = spec
        self.applies += 1
        return ApplyReport(self.backend)

    def drift(self, spec: DataplaneSpec) -> list[str]:
        return []

    def cleanup(self) -> ApplyReport:
        return ApplyReport(self.backend)

    def counters(self, spec: DataplaneSpec | None) -> list[Any]:
        return []


def rendered(spec: DataplaneSpec | None) -> str:
    """The nftables script that programs `spec` from scratch (both families)."""
    if spec is None:
        return ""
    return "\n".join(nftables.render_full(spec.ruleset(f)) for f in (Family.V4, Family.V6))


def _agent(cluster: EtcdCluster, index: int) -> tuple[Agent, RecordingDataplane, Datastore]:
    store = etcd_store(cluster)
    plane = RecordingDataplane()
    interfaces = [HostInterface("eth0", (f"{_ip(index)}/24",))]
    settings = AgentSettings(node=f"node-{index}", refresh_interval=0, interface_interval=3600)
    return Agent(settings, store, plane, lambda: interfaces), plane, store


@dataclass
class RunningAgent:
    agent: Agent
    plane: RecordingDataplane
    store: Datastore
    thread: threading.Thread
    stop: threading.Event
    errors: list[BaseException]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.store.close()


def start_agents(cluster: EtcdCluster, count: int) -> list[RunningAgent]:
    agents = []
    for index in range(count):
        agent, plane, store = _agent(cluster, index)
        stop = threading.Event()
        errors: list[BaseException] = []

        def body(
            a: Agent = agent, s: threading.Event = stop, e: list[BaseException] = errors
        ) -> None:
            try:
                a.run(s)
            except BaseException as exc:  # reported by the caller
                e.append(exc)

        thread = threading.Thread(target=body, daemon=True, name=f"agent-{index}")
        thread.start()
        agents.append(RunningAgent(agent, plane, store, thread, stop, errors))
    for running in agents:
        poll(lambda r=running: r.agent.state.in_sync or bool(r.errors), 30, "agent in sync")
    return agents


def once(cluster: EtcdCluster, index: int) -> str:
    """What `felis agent --once` would program for node `index`, rendered."""
    agent, plane, store = _agent(cluster, index)
    try:
        agent.converge_once()
    finally:
        store.close()
    return rendered(plane.last)


def converged(cluster: EtcdCluster, agents: list[RunningAgent], timeout: float = 60.0) -> list[str]:
    """Wait until every agent's last programmed state equals a fresh `--once`; the names of
    agents that did not get there (with their last error)."""
    behind = []
    for index, running in enumerate(agents):
        expected = once(cluster, index)
        try:
            poll(lambda r=running, e=expected: rendered(r.plane.last) == e, timeout, "convergence")
        except AssertionError:
            behind.append(f"node-{index}: {running.agent.state.last_error or running.errors}")
    return behind
