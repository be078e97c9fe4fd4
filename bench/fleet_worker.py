"""One worker process of bench_fleet.py: a group of simulated agents as threads.

Commands arrive on a multiprocessing pipe as (name, argument) tuples; every command is answered.
Modes:

* `full`: the real `felis.agent.Agent` per node (tests/cluster/fleet_sim.py): snapshot, etcd
  watch, incremental calc, render; only the kernel is replaced by a recorder;
* `watch`: the real felis etcd snapshot read and watch stream per node (EtcdDatastore.list and
  .watch, decode included), no calc: what the datastore sees of a fleet, at a fraction of the
  simulator's CPU; the markers are read from the watch events.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cluster"))

import fleet_sim as fs

from felis.datastore import WatchEvent
from felis.datastore.errors import Compacted, DatastoreError
from felis.datastore.etcd import EtcdDatastore


class _Resyncs(logging.Handler):
    """Counts the agents' "history compacted; resyncing" warnings (and WatchOnly's), and their
    failed snapshot reads ("initial sync failed", usually a request timeout)."""

    count = 0
    failures = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "compacted" in message:
            self.count += 1
        elif message.startswith("initial sync failed"):
            self.failures += 1


RESYNCS = _Resyncs()


class WatchOnly:
    """The datastore half of an agent: list once, then follow the watch (as Agent.run does)."""

    def __init__(self, node: int, url: str, recording: fs.Recording) -> None:
        self.node = node
        self.url = url
        self.recording = recording
        self.in_sync = False
        self.thread: threading.Thread | None = None
        self.store: EtcdDatastore | None = None

    def start(self, stop: threading.Event) -> None:
        self.thread = threading.Thread(target=self._run, args=(stop,), daemon=True)
        self.thread.start()

    def _run(self, stop: threading.Event) -> None:
        self.store = store = fs.GatedEtcdDatastore(fs.etcd_config(self.url))
        while not stop.is_set():
            try:
                revision = self._snapshot(store)
                for event in store.watch(revision, stop=stop):
                    self._event(event)
                return
            except Compacted:
                RESYNCS.count += 1
                continue  # as the agent does: a fresh snapshot, then watch from it
            except DatastoreError:
                RESYNCS.failures += 1
                stop.wait(1.0)

    def _snapshot(self, store: EtcdDatastore) -> int:
        rec = self.recording
        listing = store.list()
        probe = -1
        db: set[str] = set()
        for obj in listing.items:
            self._note(obj, db)
            if obj.get("metadata", {}).get("name") == fs.PROBE_POLICY:
                probe = _probe_of(obj)
        now = time.time()
        rec.probe.append((now, probe))
        rec.db.extend((now, a, True) for a in db - rec.last_db)
        rec.db.extend((now, a, False) for a in rec.last_db - db)
        rec.last_db = frozenset(db)
        self.in_sync = True
        return listing.revision

    def _event(self, event: WatchEvent) -> None:
        rec = self.recording
        now = time.time()
        if event.name == fs.PROBE_POLICY:
            rec.probe.append((now, _probe_of(event.object)))
        elif event.kind == "HostEndpoint":
            labels = event.object.get("metadata", {}).get("labels", {})
            if "fleet-role" in labels:
                present = labels["fleet-role"] == "db"
                address = event.object["spec"]["expectedIPs"][0]
                rec.db.append((now, address, present))
                rec.last_db = rec.last_db | {address} if present else rec.last_db - {address}

    @staticmethod
    def _note(obj: dict[str, Any], db: set[str]) -> None:
        if obj.get("kind") != "HostEndpoint":
            return
        if obj.get("metadata", {}).get("labels", {}).get("fleet-role") == "db":
            db.add(obj["spec"]["expectedIPs"][0])

    def join(self, timeout: float) -> None:
        if self.store is not None:
            self.store.close()
        if self.thread is not None:
            self.thread.join(timeout)


def _probe_of(obj: dict[str, Any]) -> int:
    ports = obj["spec"]["ingress"][0]["destination"]["ports"]
    return int(ports[0]) - fs.PROBE_BASE


class Group:
    def __init__(self, mode: str, url: str, nodes: list[int]) -> None:
        self.mode = mode
        self.url = url
        self.nodes = nodes
        self.recordings = {n: fs.Recording() for n in nodes}
        self.agents: list[Any] = []
        self.stop = threading.Event()

    def start(self) -> None:
        self.stop = threading.Event()
        if self.mode == "full":
            self.agents = [fs.SimAgent(n, self.url, self.recordings[n]) for n in self.nodes]
        else:
            self.agents = [WatchOnly(n, self.url, self.recordings[n]) for n in self.nodes]
        for agent in self.agents:
            agent.start(self.stop)

    def synced(self) -> int:
        return sum(1 for a in self.agents if a.in_sync)

    def halt(self) -> None:
        self.stop.set()
        deadline = time.monotonic() + 60
        for agent in self.agents:
            agent.join(max(0.1, deadline - time.monotonic()))


def main(
    conn: Connection, mode: str, url: str, nodes: list[int], gate: int, timeout: float
) -> None:
    logging.basicConfig(level=logging.ERROR)
    if gate > 0:
        fs.GatedEtcdDatastore.GATE = threading.Semaphore(gate)
    fs.GatedEtcdDatastore.TIMEOUT = timeout
    agent_log = logging.getLogger("felis.agent")
    agent_log.setLevel(logging.WARNING)
    agent_log.addHandler(RESYNCS)
    agent_log.propagate = False  # the simulated fleet's warnings are counted, not printed
    group = Group(mode, url, nodes)
    while True:
        command, argument = conn.recv()
        if command == "start":
            group.start()
            conn.send(len(group.agents))
        elif command == "synced":
            conn.send(group.synced())
        elif command == "restart":
            group.halt()
            group.start()
            conn.send(len(group.agents))
        elif command == "recordings":
            conn.send(group.recordings)
        elif command == "resyncs":
            conn.send(RESYNCS.count)
        elif command == "failures":
            conn.send(RESYNCS.failures)
        elif command == "threads":
            conn.send(threading.active_count())
        elif command == "digests":
            conn.send({n: r.digest for n, r in group.recordings.items()})
        elif command == "stop":
            group.halt()
            conn.send(True)
            return
        else:
            conn.send(f"unknown command {command!r} ({argument!r})")
