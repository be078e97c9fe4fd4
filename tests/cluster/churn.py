"""Policy churn under load, shared by the cluster test and bench/bench_churn.py.

While a stream of client connections runs through the seed policy (untracked, port 12211), the
datastore takes a series of changes: most do not concern that flow (labels, network-set
members, other policies, other host endpoints), some change the memcached policy while keeping
its Allow (order, added rules, a tier put in front that passes). Throughout, no connection may
fail and conntrack must hold nothing for port 12211.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from agents import SERVE_PORT, AgentEnv, AgentNode
from etcd_harness import poll

from felis.datastore import Datastore
from felis.lab import loadgen
from felis.lab.topology import SERVER_SYSCTLS, LabConfig, set_sysctls
from felis.model import from_dict, to_dict

V3 = "projectcalico.org/v3"
APPLY_LINE = re.compile(r"INFO felis\.agent: datastore change: .*\((\d+) ms\)$")


def _obj(kind: str, name: str, spec: dict[str, Any], labels: dict[str, str] | None = None) -> Any:
    doc = {"apiVersion": V3, "kind": kind, "metadata": {"name": name}, "spec": spec}
    if labels:
        doc["metadata"]["labels"] = labels
    return to_dict(from_dict(doc, "churn"))


def unrelated_changes(count: int, rng: random.Random) -> Iterator[list[Any]]:
    """Changes that concern neither the memcached servers nor their clients."""
    for i in range(count):
        kind = i % 4
        n = rng.randrange(50)
        if kind == 0:  # another node's endpoint, relabelled
            yield [_obj("HostEndpoint", f"other-{n}", {
                "node": f"other-node-{n}", "expectedIPs": [f"198.19.200.{n + 1}"]},
                {"role": rng.choice(["web", "db", "cache"])})]  # fmt: skip
        elif kind == 1:  # an unrelated set's members
            nets = [f"198.19.{rng.randrange(100, 200)}.{rng.randrange(256)}/32" for _ in range(3)]
            yield [_obj("GlobalNetworkSet", f"other-set-{n % 5}", {"nets": nets},
                        {"role": "scanner"})]  # fmt: skip
        elif kind == 2:  # another policy, for other endpoints
            yield [_obj("GlobalNetworkPolicy", f"other-policy-{n % 10}", {
                "selector": "role == 'web'", "order": float(rng.randrange(1, 2000)),
                "ingress": [{"action": "Allow", "protocol": "TCP",
                             "source": {"selector": "role == 'scanner'"},
                             "destination": {"ports": [rng.randrange(1024, 2048)]}}]})]  # fmt: skip
        else:  # another endpoint appears on another node
            spec = {"node": f"extra-node-{i % 7}", "expectedIPs": [f"198.19.201.{i % 250 + 1}"]}
            yield [_obj("HostEndpoint", f"extra-{i}", spec)]


def policy_changes(count: int, rng: random.Random) -> Iterator[list[Any]]:
    """Changes to the memcached policy itself that keep its Allow, and a passing tier in front."""
    for i in range(count):
        extra_port = 20000 + i
        spec: dict[str, Any] = {
            "selector": "memcached == 'server'",
            "order": float(rng.choice([1, 10, 100, 500])),
            "doNotTrack": True,
            "applyOnForward": True,
            "ingress": [
                {"action": "Allow", "protocol": "TCP",
                 "source": {"selector": "memcached == 'client'"},
                 "destination": {"ports": [SERVE_PORT]}},
                {"action": "Allow", "protocol": "UDP", "destination": {"ports": [extra_port]}},
            ],
            "egress": [
                {"action": "Allow", "protocol": "TCP", "source": {"ports": [SERVE_PORT]},
                 "destination": {"selector": "memcached == 'client'"}},
            ],
        }  # fmt: skip
        change = [_obj("GlobalNetworkPolicy", "memcached-server", spec)]
        if i % 10 == 5:
            change = [
                _obj("Tier", "front", {"order": 10.0, "defaultAction": "Pass"}),
                _obj(
                    "GlobalNetworkPolicy",
                    "front.pass-all",
                    {
                        "tier": "front",
                        "selector": "all()",
                        "doNotTrack": True,
                        "applyOnForward": True,
                        "ingress": [{"action": "Pass"}],
                        "egress": [{"action": "Pass"}],
                    },
                ),
                *change,
            ]
        yield change


@dataclass
class ChurnResult:
    changes: int
    connections_ok: int
    connections_failed: int
    tracked_samples: list[int]
    """conntrack entries for port 12211, sampled during the churn."""
    apply_ms: list[int]
    """The agent's own apply times, from its log, for the datastore changes of the churn."""


@contextlib.contextmanager
def memcached_on(env: AgentEnv, node: AgentNode) -> Iterator[None]:
    """A real memcached on the node's SERVE_PORT, tuned as the lab tunes its server, and the
    client namespace's ports as wide as the lab's (failsafe collisions included)."""
    lab = LabConfig()
    set_sysctls(node.ns, SERVER_SYSCTLS)
    set_sysctls(env.client, lab.client_sysctls())
    argv = ["memcached", "-u", "nobody", "-l", node.server_ip, "-p", str(SERVE_PORT), "-U", "0",
            "-t", str(lab.memcached_threads), "-c", str(lab.memcached_max_conns),
            "-b", "65535", "-m", "64"]  # fmt: skip
    proc = env.topo.spawn(node.ns, argv)
    try:
        listening = f"{node.server_ip}:{SERVE_PORT}"
        poll(lambda: listening in env.topo.exec(node.ns, ["ss", "-ltnH"]).stdout, 10, "memcached")
        yield
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class LoadCounts:
    seconds: float
    completed: int
    failed: int
    timed_out: int

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


@contextlib.contextmanager
def saturating_load(
    env: AgentEnv, node: AgentNode, cap: float = 600.0
) -> Iterator[Callable[[], LoadCounts]]:
    """The lab's compiled load generator, closed loop, from the client to the node's memcached
    while the block runs (at most `cap` seconds). Yields a function that ends the load and
    returns its summary."""
    binary = loadgen.build()
    spec = loadgen.LoadSpec(
        dst=node.server_ip, port=SERVE_PORT, source_base=None, duration=cap, interval=1.0
    )
    proc = loadgen.LoadProcess(spec, env.client, binary)
    reader = threading.Thread(target=lambda: list(proc.reports()), daemon=True)
    started = time.monotonic()
    reader.start()
    result: list[LoadCounts] = []

    def finish() -> LoadCounts:
        if not result:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)  # the client prints its summary and exits
            reader.join(60)
            summary = proc.summary
            assert summary is not None, "the load generator ended without a summary"
            elapsed = summary.t or time.monotonic() - started
            result.append(LoadCounts(elapsed, summary.completed, summary.failed, summary.timed_out))
        return result[0]

    try:
        yield finish
    finally:
        with contextlib.suppress(AssertionError):
            finish()
        proc.stop()


def run_churn(
    env: AgentEnv,
    node: AgentNode,
    store: Datastore,
    unrelated: int,
    policy: int,
    *,
    sample_every: int = 25,
    seed: int = 7,
    progress: Callable[[int], None] | None = None,
    traffic: Callable[[], contextlib.AbstractContextManager[Callable[[], Any]]] | None = None,
) -> ChurnResult:
    """`traffic`: what runs through the seed policy meanwhile (default: the harness's stream);
    its finish function returns the harness's ok/failed dict or a LoadCounts."""
    rng = random.Random(seed)
    changes = list(unrelated_changes(unrelated, rng))
    changes += list(policy_changes(policy, rng))
    rng.shuffle(changes)
    log_start = len(node.log_text())
    samples: list[int] = []
    with (traffic or (lambda: env.stream([node])))() as finish:
        for index, change in enumerate(changes):
            store.apply(change)
            if index % sample_every == 0:
                samples.append(len(node.kernel.conntrack_for_port(SERVE_PORT)))
                if progress is not None:
                    progress(index)
        node.wait_in_sync()
        samples.append(len(node.kernel.conntrack_for_port(SERVE_PORT)))
        counts = finish()
    applied = [
        int(m.group(1))
        for line in node.log_text()[log_start:].splitlines()
        if (m := APPLY_LINE.search(line))
    ]
    if isinstance(counts, LoadCounts):
        ok, failed = counts.completed, counts.failed + counts.timed_out
    else:
        ok, failed = int(counts.get("ok", 0)), int(counts.get("failed", 0))
    return ChurnResult(len(changes), ok, failed, samples, applied)
