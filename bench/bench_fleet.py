"""Fleet benchmark: many simulated felis agents on one real 3-member etcd cluster.

Each simulated agent runs the real datastore watch and calc code for its own node (5
HostEndpoints); only kernel programming is replaced by a recorder of the rendered ruleset
(tests/cluster/fleet_sim.py). Agents are threads (3 each: run loop, watch follower, stream
reader) spread over `--processes` worker processes (bench/fleet_worker.py), because one
interpreter per agent would cost ~40 MiB before any state and a GIL per process is the only way
to use both cores. `--mode watch` keeps only the datastore side (real snapshot read, watch
stream, decode; no calc), to reach fleet sizes whose calc the machine cannot afford.
`--via grpc-proxy` puts `etcd grpc-proxy` between agents and cluster; the proxy has no JSON
gateway, so agents then use etcd's gRPC API (bench/fleet_grpc_worker.py, needs `aetcd` in the
interpreter given by `--grpc-python`); `--client grpc` does the same without the proxy.

Phases: seed, cold start (every agent's first sync at once), rest, one open-loop change stream
per `--rates` entry (half policy changes, half label changes, each reaching every agent),
restart storm (every agent restarts at once while changes keep coming), compaction storm
(agents frozen, members restarted, changes written, history compacted, agents thawed: every
watch resumes into compacted history and resyncs), and in full mode a check that sampled
agents hold exactly what a fresh `felis agent --once` renders.

Run: .venv/bin/python bench/bench_fleet.py --agents 1000 [--mode watch] [--rates 2,5,10,20]
Results go into docs/benchmarks-cluster.md by hand (with the command and date).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "cluster"))
sys.path.insert(0, str(HERE))

import fleet_sim as fs  # noqa: E402
from etcd_harness import EtcdCluster, etcd_store, free_port  # noqa: E402

import fleet_worker  # noqa: E402
from felis.datastore.etcd import EtcdDatastore  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def proc_usage(pid: int) -> tuple[float, float, float]:
    """(CPU seconds, RSS MiB, peak RSS MiB) of a process, children not included."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0, 0.0, 0.0
    mem = {line.split(":")[0]: line.split()[1] for line in status if line.startswith("Vm")}
    return cpu, int(mem.get("VmRSS", 0)) / 1024, int(mem.get("VmHWM", 0)) / 1024


class Worker:
    """One worker process (multiprocessing or the gRPC interpreter), commands answered in order."""

    def __init__(self, args: argparse.Namespace, url: str, nodes: list[int], grpc: str) -> None:
        self.nodes = nodes
        self.grpc = grpc
        if grpc:
            host, port = grpc.rsplit(":", 1)
            self.proc = subprocess.Popen(
                [
                    args.grpc_python,
                    str(HERE / "fleet_grpc_worker.py"),
                    host,
                    port,
                    ",".join(map(str, nodes)),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self.pid = self.proc.pid
        else:
            context = multiprocessing.get_context("spawn")
            self.conn, child = context.Pipe()
            self.process = context.Process(
                target=fleet_worker.main,
                args=(child, args.mode, url, nodes, args.snapshot_gate, args.client_timeout),
                daemon=True,
            )
            self.process.start()
            assert self.process.pid is not None
            self.pid = self.process.pid

    def send(self, command: str) -> None:
        if self.grpc:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        else:
            self.conn.send((command, None))

    def receive(self) -> Any:
        if self.grpc:
            assert self.proc.stdout is not None
            answer = json.loads(self.proc.stdout.readline())
            if isinstance(answer, dict) and answer and "probe" in next(iter(answer.values())):
                return {
                    int(n): fs.Recording(
                        probe=[(float(t), int(seq)) for t, seq in r["probe"]],
                        db=[(float(t), str(a), bool(present)) for t, a, present in r["db"]],
                    )
                    for n, r in answer.items()
                }
            return answer
        return self.conn.recv()

    def ask(self, command: str) -> Any:
        self.send(command)
        return self.receive()

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError, ValueError):
            self.ask("stop")
        if self.grpc:
            self.proc.kill()
            self.proc.wait()
        else:
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()


def ask_all(workers: list[Worker], command: str) -> list[Any]:
    for worker in workers:
        worker.send(command)
    return [worker.receive() for worker in workers]


@dataclass
class Meter:
    """CPU and RSS of the etcd members, the proxy, the workers and this process. A process
    that started during the phase (a restarted member) counts all of its CPU."""

    groups: dict[str, Callable[[], list[int]]]
    start: dict[int, float] = field(default_factory=dict)
    began: float = 0.0

    def begin(self) -> None:
        self.began = time.monotonic()
        self.start = {p: proc_usage(p)[0] for pids in self.groups.values() for p in pids()}

    def end(self) -> dict[str, Any]:
        wall = time.monotonic() - self.began
        out: dict[str, Any] = {"wall_s": round(wall, 2)}
        for group, pids in self.groups.items():
            usages = {p: proc_usage(p) for p in pids()}
            cpu = sum(u[0] - self.start.get(p, 0.0) for p, u in usages.items())
            out[group] = {
                "cpu_s": round(cpu, 2),
                "cores": round(cpu / wall, 3) if wall else 0.0,
                "rss_mib": round(sum(u[1] for u in usages.values()), 1),
                "peak_rss_mib": round(sum(u[2] for u in usages.values()), 1),
            }
        return out


class Writer:
    """The change stream, open loop: change n is due at start + n / rate."""

    def __init__(self, store: EtcdDatastore, nodes: int) -> None:
        self.store = store
        self.make = fs.change_stream(nodes)
        self.seq = 0
        self.written: list[tuple[float, fs.Change]] = []
        self.late = 0.0

    def run(self, rate: float, seconds: float, stop: threading.Event | None = None) -> None:
        begin = time.monotonic()
        count = int(rate * seconds)
        for n in range(count):
            due = begin + n / rate
            if stop is not None and stop.is_set():
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                self.late = max(self.late, -delay)
            self.write_one()

    def write_one(self) -> None:
        change = self.make(self.seq)
        self.seq += 1
        written = time.time()
        self.store.apply([change.obj])
        self.written.append((written, change))


def gather(workers: list[Worker]) -> dict[int, fs.Recording]:
    recordings: dict[int, fs.Recording] = {}
    for answer in ask_all(workers, "recordings"):
        recordings.update(answer)
    return recordings


def settle(
    workers: list[Worker], changes: list[tuple[float, fs.Change]], timeout: float
) -> tuple[list[float], int, dict[int, fs.Recording]]:
    """Wait until every agent has shown every change (or `timeout`); the samples."""
    deadline = time.monotonic() + timeout
    while True:
        recordings = gather(workers)
        samples, missing = fs.propagation(changes, recordings)
        if missing == 0 or time.monotonic() > deadline:
            return samples, missing, recordings
        time.sleep(1.0)


def summary(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def wait_synced(
    workers: list[Worker], agents: int, timeout: float, say: Callable[[str], None]
) -> float:
    began = time.monotonic()
    told = began
    while (synced := sum(ask_all(workers, "synced"))) < agents:
        now = time.monotonic()
        if now - began > timeout:
            raise RuntimeError(f"agents not synced within {timeout:.0f} s")
        if now - told > 15:
            told = now
            failures = sum(ask_all(workers, "failures")) if not workers[0].grpc else "?"
            say(f"  {synced}/{agents} synced after {now - began:.0f} s ({failures} failed reads)")
        time.sleep(0.2)
    return time.monotonic() - began


def start_proxy(cluster: EtcdCluster) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (cluster.root / "proxy.log").open("ab")
    endpoints = ",".join(f"127.0.0.1:{m.client_port}" for m in cluster.members)
    proxy = subprocess.Popen(
        [
            "etcd",
            "grpc-proxy",
            "start",
            "--endpoints",
            endpoints,
            "--listen-addr",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(cluster.root / "proxy"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    return proxy, f"127.0.0.1:{port}"


def run(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    result: dict[str, Any] = {"args": vars(args), "phases": {}}
    phases = result["phases"]
    nodes = max(args.nodes or args.agents, args.agents)
    with EtcdCluster(size=3, extra_args=("--quota-backend-bytes", str(8 << 30))) as cluster:
        store = etcd_store(cluster, timeout=30.0, retry_for=60.0)
        objects = fs.fleet_objects(nodes, args.policies, args.sets, args.members)
        began = time.monotonic()
        for i in range(0, len(objects), 50):
            store.apply(objects[i : i + 50])
        phases["seed"] = {"objects": len(objects), "seconds": round(time.monotonic() - began, 1)}
        say(f"seeded {len(objects)} objects in {phases['seed']['seconds']} s")

        proxy = None
        targets: list[str] = [""] * args.processes
        if args.via == "grpc-proxy":
            proxy, address = start_proxy(cluster)
            targets = [address] * args.processes
        elif args.client == "grpc":
            targets = [f"127.0.0.1:{m.client_port}" for m in cluster.members]
        split = [list(range(args.agents))[i :: args.processes] for i in range(args.processes)]
        workers = [
            Worker(args, cluster.url, part, targets[i % len(targets)])
            for i, part in enumerate(split)
            if part
        ]
        meter = Meter(
            {
                "etcd": lambda: [m.process.pid for m in cluster.members if m.process is not None],
                "proxy": lambda: [proxy.pid] if proxy else [],
                "agents": lambda: [w.pid for w in workers],
                "writer": lambda: [os.getpid()],
            }
        )
        writer = Writer(store, nodes)
        try:
            meter.begin()
            ask_all(workers, "start")
            seconds = wait_synced(workers, args.agents, args.sync_timeout, say)
            phases["cold_start"] = {"all_synced_s": round(seconds, 2), **meter.end()}
            if not workers[0].grpc:
                phases["cold_start"]["failed_reads"] = sum(ask_all(workers, "failures"))
            say(f"cold start: {json.dumps(phases['cold_start'])}")
            if not any(w.grpc for w in workers):
                phases["threads"] = ask_all(workers, "threads")

            meter.begin()
            time.sleep(args.rest)
            phases["rest"] = meter.end()
            say(f"rest: {json.dumps(phases['rest'])}")

            for rate in args.rates:
                first = len(writer.written)
                meter.begin()
                writer.run(rate, args.duration)
                samples, missing, _ = settle(workers, writer.written[first:], 30.0)
                usage = meter.end()
                key = f"rate_{rate:g}"
                phases[key] = {
                    "changes": len(writer.written) - first,
                    "writer_late_s": round(writer.late, 2),
                    "missing": missing,
                    **summary(samples),
                    **usage,
                }
                writer.late = 0.0
                say(f"{key}: {json.dumps(phases[key])}")

            if "restart" in args.storm:
                first = len(writer.written)
                stop = threading.Event()
                stream = threading.Thread(
                    target=writer.run, args=(args.storm_rate, 3600.0, stop), daemon=True
                )
                meter.begin()
                stream.start()
                time.sleep(1.0)
                restart_at = time.monotonic()
                ask_all(workers, "restart")
                seconds = wait_synced(workers, args.agents, args.sync_timeout, say)
                synced_at = time.monotonic() - restart_at
                time.sleep(2.0)
                stop.set()
                stream.join()
                samples, missing, _ = settle(workers, writer.written[first:], 60.0)
                phases["restart_storm"] = {
                    "failed_reads_total": (
                        sum(ask_all(workers, "failures")) if not workers[0].grpc else None
                    ),
                    "restart_to_all_synced_s": round(synced_at, 2),
                    "poll_s": round(seconds, 2),
                    "changes_during": len(writer.written) - first,
                    "missing": missing,
                    **summary(samples),
                    **meter.end(),
                }
                say(f"restart storm: {json.dumps(phases['restart_storm'])}")

            if "compaction" in args.storm:
                first = len(writer.written)
                resyncs_before = sum(ask_all(workers, "resyncs"))
                meter.begin()
                for worker in workers:
                    os.kill(worker.pid, signal.SIGSTOP)
                try:
                    # Members restart first, so no event of the writes below can wait in a
                    # frozen agent's socket: every watch must resume from before them.
                    for member in cluster.members:
                        cluster.stop_member(member)
                    for member in cluster.members:
                        cluster.start_member(member)
                    cluster.wait_healthy()
                    for _ in range(10):
                        writer.write_one()
                    store.compact(store.revision())
                finally:
                    thawed = time.monotonic()
                    for worker in workers:
                        os.kill(worker.pid, signal.SIGCONT)
                samples, missing, _ = settle(workers, writer.written[first:], 120.0)
                phases["compaction_storm"] = {
                    "thaw_to_settled_s": round(time.monotonic() - thawed, 2),
                    "resyncs": sum(ask_all(workers, "resyncs")) - resyncs_before,
                    "changes_during": len(writer.written) - first,
                    "missing": missing,
                    **meter.end(),
                }
                say(f"compaction storm: {json.dumps(phases['compaction_storm'])}")

            if args.mode == "full" and not any(w.grpc for w in workers) and args.check:
                digests: dict[int, str] = {}
                for answer in ask_all(workers, "digests"):
                    digests.update(answer)
                sample = sorted(digests)[:: max(1, len(digests) // args.check)][: args.check]
                fresh = fs.fresh_digests(cluster.url, sample)
                wrong = [n for n in sample if fresh[n] != digests[n]]
                phases["once_check"] = {"checked": len(sample), "different": wrong}
                say(f"--once check: {json.dumps(phases['once_check'])}")
        finally:
            for worker in workers:
                worker.close()
            if proxy is not None:
                proxy.kill()
                proxy.wait()
            store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=0, help="nodes in the workload (≥ agents)")
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--sets", type=int, default=50)
    parser.add_argument("--members", type=int, default=50_000)
    parser.add_argument("--mode", choices=("full", "watch"), default="full")
    parser.add_argument("--client", choices=("gateway", "grpc"), default="gateway")
    parser.add_argument("--via", choices=("direct", "grpc-proxy"), default="direct")
    parser.add_argument("--grpc-python", default="/tmp/fleet-grpc-venv/bin/python")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[10])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per rate")
    parser.add_argument("--rest", type=float, default=10.0)
    parser.add_argument("--storm", default="restart,compaction")
    parser.add_argument("--storm-rate", type=float, default=2.0)
    parser.add_argument("--sync-timeout", type=float, default=1800.0)
    parser.add_argument(
        "--snapshot-gate", type=int, default=8, help="concurrent snapshots per process (0: any)"
    )
    parser.add_argument(
        "--client-timeout", type=float, default=5.0, help="etcd request timeout (felis: 5 s)"
    )
    parser.add_argument("--check", type=int, default=20, help="agents compared with --once")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if args.via == "grpc-proxy":
        args.client = "grpc"
    if args.client == "grpc":
        args.mode = "watch"

    def say(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    result = run(args, say)
    result["load_average"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
