"""Workloads shared by the benchmarks."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYNC_DEADLINE = 120.0


def big_cluster(local_node: str, local_ip: str, spread: int) -> list[dict[str, Any]]:
    """5,000 HostEndpoints (one local, on `eth0`; the rest on 1,250 other nodes) and 1,000
    policies (2 ingress rules + 1 egress rule each, rule selectors over 500 `app` labels, a
    quarter doNotTrack); one policy in `spread` selects the local endpoint."""
    objects: list[dict[str, Any]] = []
    for i in range(5_000):
        local = i == 0
        objects.append(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "HostEndpoint",
                "metadata": {
                    "name": f"{local_node}-eth0" if local else f"hep-{i}",
                    "labels": {"app": f"app{i % 500}", "role": "server" if local else "client"},
                },
                "spec": {
                    "node": local_node if local else f"remote-{i // 4}",
                    "interfaceName": "eth0",
                    "expectedIPs": [local_ip if local else f"10.0.{i // 256}.{i % 256}"],
                },
            }
        )  # fmt: skip
    for i in range(1_000):
        objects.append(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "GlobalNetworkPolicy",
                "metadata": {"name": f"policy-{i}"},
                "spec": {
                    "order": float(i % 50),
                    "selector": "role == 'server'" if i % spread == 0 else f"role == 'r{i % 10}'",
                    "doNotTrack": i % 4 == 0,
                    "applyOnForward": i % 4 == 0,
                    "ingress": [
                        {
                            "action": "Allow",
                            "protocol": "TCP",
                            "source": {"selector": f"app == 'app{(i * 7) % 500}'"},
                            "destination": {"ports": [80, 443]},
                        },
                        {"action": "Deny", "source": {"nets": ["192.168.0.0/16"]}},
                    ],
                    "egress": [
                        {
                            "action": "Allow",
                            "destination": {"selector": f"app == 'app{(i * 7 + 2) % 500}'"},
                        }
                    ],
                },
            }
        )
    return objects


def network_sets(count: int, members: int, spread: int) -> list[dict[str, Any]]:
    """`count` GlobalNetworkSets of `members` distinct /32s each, all of them in IP sets on the
    node of `big_cluster(..., spread)`: each carries the `app` label of a rule selector of one
    of the policies selecting that node (ingress sources and egress destinations in turn)."""
    local = [i for i in range(1_000) if i % spread == 0]
    objects: list[dict[str, Any]] = []
    for k in range(count):
        i = local[(k // 2) % len(local)]
        app = (i * 7) % 500 if k % 2 == 0 else (i * 7 + 2) % 500
        # Every other address of 100.64.0.0/10: no two members adjacent, so nft cannot merge
        # them into ranges and the kernel holds every one.
        nets = [
            f"100.{64 + (n >> 16) % 64}.{(n >> 8) % 256}.{n % 256}"
            for n in range(2 * k * members, 2 * (k + 1) * members, 2)
        ]
        objects.append(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "GlobalNetworkSet",
                "metadata": {"name": f"netset-{k}", "labels": {"app": f"app{app}"}},
                "spec": {"nets": nets},
            }
        )
    return objects


def scale_cluster(local_node: str, local_ip: str, spread: int = 10) -> list[dict[str, Any]]:
    """`big_cluster` plus 100 GlobalNetworkSets of 1,000 members (100,000 in all), every one of
    them programmed on the local node."""
    return big_cluster(local_node, local_ip, spread) + network_sets(100, 1_000, spread)


@dataclass
class RunningAgent:
    ns: str
    process: subprocess.Popen[str]
    synced_after: float
    """Seconds from spawning the agent to its `sync:` log line (kernel programmed)."""


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=60)


@contextmanager
def agent_in_namespace(
    node: str, address: str, url: str, backend: str, *extra: str, log: Path | None = None
) -> Iterator[RunningAgent]:
    """`felis agent` in a fresh network namespace whose `eth0` (a veth with its peer in the
    same namespace) has `address`; yields once the agent reports its first sync. The agent's
    log is not read afterwards; it goes to `log` (appended) or is discarded. The namespace and
    agent go on exit."""
    ns = f"felis-bench-{secrets.token_hex(3)}"
    _ip("netns", "add", ns)
    process: subprocess.Popen[str] | None = None
    try:
        _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        for link in ("lo", "eth0", "peer0"):
            _ip("-n", ns, "link", "set", link, "up")
        argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "felis", "agent"]
        argv += ["--node", node, "--backend", backend, "--datastore", url, *extra]
        began = time.perf_counter()
        process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        seen = []
        for line in process.stderr:  # the agent logs to stderr, one line per event
            if " sync: " in line:
                break
            seen.append(line)
            if time.perf_counter() > began + SYNC_DEADLINE:
                raise RuntimeError(f"agent never reported its sync: {''.join(seen[-5:])}")
        else:
            raise RuntimeError(f"agent ended before its sync: {''.join(seen[-5:])}")
        synced = time.perf_counter() - began
        # Nobody reads the log from here on: a full pipe would stall the agent.
        with open(log if log is not None else os.devnull, "a") as sink:
            sink.writelines(seen)
            sink.flush()
            drain = subprocess.Popen(["cat"], stdin=process.stderr, stdout=sink)
            try:
                yield RunningAgent(ns, process, synced)
            finally:
                drain.kill()
                drain.wait()
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
