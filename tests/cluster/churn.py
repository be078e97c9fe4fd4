"""Policy churn under load, shared by the cluster test and bench/bench_churn.py.

While a stream of client connections runs through the seed policy (untracked, port 12211), the
datastore takes a series of changes: most do not concern that flow (labels, network-set
members, other policies, other host endpoints), some change the memcached policy while keeping
its Allow (order, added rules, a tier put in front that passes). Throughout, no connection may
fail and conntrack must hold nothing for port 12211.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from agents import SERVE_PORT, AgentEnv, AgentNode

from felis.datastore import Datastore
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
) -> ChurnResult:
    rng = random.Random(seed)
    changes = list(unrelated_changes(unrelated, rng))
    changes += list(policy_changes(policy, rng))
    rng.shuffle(changes)
    log_start = len(node.log_text())
    samples: list[int] = []
    with env.stream([node]) as finish:
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
    return ChurnResult(
        len(changes), int(counts.get("ok", 0)), int(counts.get("failed", 0)), samples, applied
    )
