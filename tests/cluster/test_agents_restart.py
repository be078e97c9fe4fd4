"""An agent restarted under traffic: no allowed connection fails, and the kernel is not flushed."""

from __future__ import annotations

import re
import signal
from typing import Any

import pytest
from agents import AgentNode, agent_env, client_set, require_root_and_etcd, seed_policy
from etcd_harness import poll

pytestmark = pytest.mark.cluster

LATE_NET = "198.18.99.0/24"


def _nft_rules(node: AgentNode) -> dict[tuple[str, str], tuple[int, int]]:
    """(chain, rule comment) → (handle, packets) for every rule of felis' IPv4 table."""
    rules: dict[tuple[str, str], tuple[int, int]] = {}
    for item in node.nft_json()["nftables"]:
        rule = item.get("rule")
        if not rule or rule["family"] != "ip" or rule["table"] != "felis":
            continue
        packets = next((e["counter"]["packets"] for e in rule["expr"] if "counter" in e), 0)
        rules[(rule["chain"], rule.get("comment", ""))] = (rule["handle"], packets)
    return rules


COUNTED = re.compile(r"^\[(\d+):(\d+)\] -A (\S+) (.*)$")


def _iptables_rules(node: AgentNode) -> dict[tuple[str, str], tuple[int, int]]:
    """(table/chain, rule) → (0, packets) for felis' IPv4 rules (iptables has no handles)."""
    saved = node.env.topo.exec(node.ns, ["iptables-save", "-c"]).stdout
    rules: dict[tuple[str, str], tuple[int, int]] = {}
    table = ""
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif (match := COUNTED.match(line)) and (
            match.group(3).startswith("felis-") or '"felis:' in match.group(4)
        ):
            # felis' chains, and its rules in the kernel's chains (hooks, the fast path).
            rules[(f"{table}/{match.group(3)}", match.group(4))] = (0, int(match.group(1)))
    return rules


def _rules(node: AgentNode) -> dict[tuple[str, str], tuple[int, int]]:
    return _nft_rules(node) if node.env.backend == "nftables" else _iptables_rules(node)


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_restart_under_traffic_drops_nothing_and_keeps_the_rules(backend: str) -> None:
    require_root_and_etcd()
    with agent_env(1, backend=backend) as env:
        (node,) = env.nodes
        env.seed()
        env.apply(seed_policy())
        node.start()
        node.wait_in_sync()
        poll(node.reach, 30, "the seed policy to allow the client")

        with env.stream([node]) as finish:
            poll(lambda: _policy_packets(_rules(node)) > 0, 30, "traffic through the policy rule")
            before = _rules(node)
            sets_before = node.kernel.set_members()
            assert node.stop(signal.SIGTERM) == 0
            # Rules stay while no agent runs; a change made meanwhile must be picked up on start.
            assert _rules(node).keys() == before.keys()
            env.apply(client_set("late-clients", [LATE_NET]))
            node.start()
            node.wait_in_sync()
            poll(
                lambda: any(LATE_NET in m for m in node.kernel.set_members().values()),
                30,
                "the restarted agent to program the change made while it was down",
            )
            counts: dict[str, Any] = finish()

        print(
            f"\n{backend}: {counts['ok']} connections across the restart, {counts['failed']} failed"
        )
        assert counts["failed"] == 0, counts
        assert counts["ok"] > 0, counts
        after = _rules(node)
        # Reconciled without flushing: same rules, same handles, counters kept counting.
        assert after.keys() == before.keys()
        for key, (handle, packets) in before.items():
            assert after[key][0] == handle, f"rule rewritten on restart: {key}"
            assert after[key][1] >= packets, f"counter reset on restart: {key}"
        assert _policy_packets(after) > _policy_packets(before)
        sets_after = node.kernel.set_members()
        assert sets_after.keys() == sets_before.keys()
        assert sets_after != sets_before


def _policy_packets(rules: dict[tuple[str, str], tuple[int, int]]) -> int:
    """Packets counted by the seed policy's ingress allow rule, in its policy chain and in its
    fast-path copy in the raw hook (docs/dataplane.md, "The untracked fast path")."""
    return sum(
        packets
        for (_, rule), (_, packets) in rules.items()
        if "gnp/memcached-server ingress rule 0" in rule
    )
