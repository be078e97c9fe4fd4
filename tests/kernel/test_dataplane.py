"""The dataplane on a real kernel: real packets, real conntrack entries, both backends.

Every test builds its own namespaces (node.py), programs the server namespace with
`felis agent`, and checks what real TCP connections do and what conntrack holds.
"""

from __future__ import annotations

import json
import time

from harness import wait_until
from node import (
    CLIENT_HEP,
    CLIENT_IP,
    HEP,
    NODE,
    REMOTE_IP,
    SEED_POLICY,
    SERVER_IP,
    FelisNode,
    manifest,
)

MEMCACHED = 12211


def test_seed_policy_untracks_memcached_and_default_denies_the_rest(node: FelisNode) -> None:
    node.apply(manifest(HEP, CLIENT_HEP, SEED_POLICY))
    node.converge()
    node.serve(MEMCACHED, 22, 8080)

    assert node.reach(node.client, MEMCACHED)
    assert node.conntrack_for_port(MEMCACHED) == [], "memcached flows must not be tracked"

    # An unlabelled host (not in the client set) cannot reach 12211.
    node.apply(
        manifest("""
        apiVersion: projectcalico.org/v3
        kind: HostEndpoint
        metadata: {name: stranger-eth1}
        spec: {interfaceName: eth1, node: memcached-node-1}
    """)
    )
    node.converge()
    assert not node.reach(node.stranger, MEMCACHED, dst="198.18.1.1")
    # No host reaches other ports: host endpoint default deny.
    assert not node.reach(node.client, 8080)
    # The failsafe port stays reachable, and it is tracked.
    assert node.reach(node.client, 22)
    assert node.conntrack_for_port(22), "failsafe traffic goes through conntrack"


def test_without_the_egress_rule_the_reply_is_dropped(node: FelisNode) -> None:
    ingress_only = SEED_POLICY.split("  egress:")[0]
    node.apply(manifest(HEP, CLIENT_HEP, ingress_only))
    node.converge()
    node.serve(MEMCACHED)
    assert not node.reach(node.client, MEMCACHED), "an untracked request needs an untracked reply"
    node.apply(manifest(SEED_POLICY))
    node.converge()
    assert node.reach(node.client, MEMCACHED)


def test_tracked_policy_allows_replies_through_conntrack(node: FelisNode) -> None:
    node.apply(
        manifest(
            HEP,
            CLIENT_HEP,
            """
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata: {name: memcached-tracked}
        spec:
          selector: memcached == 'server'
          ingress:
            - action: Allow
              protocol: TCP
              source: {selector: memcached == 'client'}
              destination: {ports: [12211]}
    """,
        )
    )
    node.converge()
    node.serve(MEMCACHED)
    assert node.reach(node.client, MEMCACHED)
    entries = node.conntrack_for_port(MEMCACHED)
    assert entries and all("ASSURED" in line or "ESTABLISHED" in line for line in entries)


def _allow(
    name: str,
    port: int,
    *,
    order: int | None = None,
    action: str = "Allow",
    tier: str | None = None,
    extra: str = "",
) -> str:
    lines = [
        "apiVersion: projectcalico.org/v3",
        "kind: GlobalNetworkPolicy",
        f"metadata: {{name: {name}}}",
        "spec:",
        "  selector: memcached == 'server'",
    ]
    if order is not None:
        lines.append(f"  order: {order}")
    if tier:
        lines.append(f"  tier: {tier}")
    lines += [
        "  ingress:",
        f"    - action: {action}",
        "      protocol: TCP",
        f"      destination: {{ports: [{port}]}}",
    ]
    return "\n".join(lines) + "\n" + extra


def test_deny_at_lower_order_beats_allow(node: FelisNode) -> None:
    node.apply(
        manifest(
            HEP,
            _allow("allow-8080", 8080, order=20),
            _allow("deny-8080", 8080, order=10, action="Deny"),
            _allow("allow-8081", 8081, order=30),
        )
    )
    node.converge()
    node.serve(8080, 8081)
    assert not node.reach(node.client, 8080)
    assert node.reach(node.client, 8081)


def test_pass_skips_to_the_next_tier(node: FelisNode) -> None:
    tier = """
        apiVersion: projectcalico.org/v3
        kind: Tier
        metadata: {name: security}
        spec: {order: 100}
    """
    node.apply(
        manifest(
            tier,
            HEP,
            _allow("pass-8080", 8080, action="Pass", tier="security"),
            _allow("allow-8080", 8080),
            _allow("allow-8081", 8081),
        )
    )
    node.converge()
    node.serve(8080, 8081)
    assert node.reach(node.client, 8080), "Pass hands 8080 to the default tier, which allows it"
    assert not node.reach(node.client, 8081), "the security tier ends with a default deny"


def test_log_rule_counts_and_continues(node: FelisNode) -> None:
    log_then_allow = """
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata: {name: logged}
        spec:
          selector: memcached == 'server'
          ingress:
            - action: Log
              protocol: TCP
              destination: {ports: [8080]}
            - action: Allow
              protocol: TCP
              destination: {ports: [8080]}
    """
    node.apply(manifest(HEP, log_then_allow))
    node.converge()
    node.serve(8080)
    assert node.reach(node.client, 8080), "Log is not a verdict: the next rule allows"
    counters = node.rule_counters()
    logged = [c for c in counters if c["comment"] == "gnp/logged ingress rule 0"]
    assert logged and logged[0]["packets"] >= 1


def test_prednat_policy_runs_in_mangle_and_accepts_tracked(node: FelisNode) -> None:
    prednat = """
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata: {name: early}
        spec:
          selector: memcached == 'server'
          preDNAT: true
          applyOnForward: true
          ingress:
            - action: Allow
              protocol: TCP
              destination: {ports: [8080]}
    """
    node.apply(manifest(HEP, prednat))
    node.converge()
    node.serve(8080, 8081)
    assert node.reach(node.client, 8080)
    assert node.conntrack_for_port(8080), "preDNAT policy is tracked"
    assert not node.reach(node.client, 8081), "normal default deny still applies"


def test_apply_on_forward_polices_routed_traffic(node: FelisNode) -> None:
    forward = """
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata: {name: forward-8080}
        spec:
          selector: memcached == 'server'
          applyOnForward: true
          ingress:
            - action: Allow
              protocol: TCP
              destination: {ports: [8080]}
    """
    node.apply(manifest(HEP, forward))
    node.converge()
    node.serve(8080, 9090, ns=node.remote)
    assert node.reach(node.client, 8080, dst=REMOTE_IP)
    assert not node.reach(node.client, 9090, dst=REMOTE_IP), "forward list ends with a drop"
    # Without any applyOnForward policy, forwarded traffic is allowed by default.
    node.delete("gnp", "forward-8080")
    node.converge()
    assert node.reach(node.client, 9090, dst=REMOTE_IP)


def _forward_accepts(node: FelisNode) -> int:
    """Packets felis itself accepted in FORWARD (its `Policy explicitly accepted packet.` rule)."""
    comment = "Policy explicitly accepted packet."
    if node.backend == "iptables":
        saved = node.topo.exec(node.server, ["iptables-save", "-c", "-t", "filter"]).stdout
        lines = [line for line in saved.splitlines() if "-A FORWARD" in line and comment in line]
        return sum(int(line[1:].split(":", 1)[0]) for line in lines)
    listed = node.topo.exec(node.server, ["nft", "-j", "list", "table", "ip", "felis"]).stdout
    total = 0
    for item in json.loads(listed)["nftables"]:
        rule = item.get("rule")
        if rule and rule["chain"] == "filter-FORWARD" and comment in rule.get("comment", ""):
            total += sum(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
    return total


def test_forward_policy_in_one_direction_leaves_the_other_to_the_forward_policy(
    node: FelisNode,
) -> None:
    """Calico's forward default: the default allow exists only for an endpoint without any
    forward policy, so forward policy on ingress leaves forwarded egress to FORWARD's policy."""
    forward_in = """
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata: {name: forward-in-8080}
        spec:
          selector: memcached == 'server'
          applyOnForward: true
          types: [Ingress]
          ingress:
            - action: Allow
              protocol: TCP
              destination: {ports: [8080]}
    """
    node.apply(manifest(HEP, forward_in))
    node.converge()
    node.serve(8080, ns=node.remote)
    node.serve(7070, ns=node.client)
    before = _forward_accepts(node)
    # In through eth0 (the covered direction): the forward policy accepts the connection.
    assert node.reach(node.client, 8080, dst=REMOTE_IP)
    accepted = _forward_accepts(node)
    assert accepted > before
    # Out through eth0 (uncovered): felis no longer accepts it; FORWARD's policy (ACCEPT) does.
    assert node.reach(node.remote, 7070, dst=CLIENT_IP)
    assert _forward_accepts(node) == accepted, "no default allow for the uncovered direction"
    if node.backend == "iptables":
        # On a host whose FORWARD policy is DROP (Docker, Kubernetes), that decides it. With
        # nftables a DROP policy lives in another table, which felis' accept never overrides.
        node.topo.exec(node.server, ["iptables", "-P", "FORWARD", "DROP"])
        assert node.reach(node.client, 8080, dst=REMOTE_IP)
        assert not node.reach(node.remote, 7070, dst=CLIENT_IP)


def test_negated_namespace_selector_matches_host_endpoints(node: FelisNode) -> None:
    """Calico ANDs namespace selectors in on pcns.-prefixed labels, which host endpoints and
    network sets never have: a negated one matches them, in the policy and in its rules."""
    node.apply(
        manifest(
            HEP,
            CLIENT_HEP,
            """
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata: {name: not-namespaced}
        spec:
          namespaceSelector: "!has(team)"
          order: 10
          ingress:
            - action: Deny
              protocol: TCP
              source: {namespaceSelector: "!has(team)"}
              destination: {ports: [8080]}
            - action: Deny
              protocol: TCP
              source: {namespaceSelector: "team == 'x'"}
              destination: {ports: [9090]}
        """,
            _allow("allow-8080", 8080, order=20),
            _allow("allow-9090", 9090, order=20),
        )
    )
    node.converge()
    node.serve(8080, 9090)
    assert not node.reach(node.client, 8080), "the Deny Calico enforces is enforced"
    assert node.reach(node.client, 9090), "a positive namespace selector matches no host"


def test_network_set_member_is_allowed_by_a_namespace_selector_rule(node: FelisNode) -> None:
    """A NetworkSet's nets are matched by a GlobalNetworkPolicy rule with a namespaceSelector
    (they carry their namespace as a label, as in Calico); a GlobalNetworkSet's are not, and a
    NetworkPolicy in the same bundle does nothing to the host."""
    node.apply(
        manifest(
            HEP,
            f"""
        apiVersion: projectcalico.org/v3
        kind: NetworkSet
        metadata: {{name: partners, namespace: team-a, labels: {{role: partner}}}}
        spec: {{nets: [{CLIENT_IP}/32]}}
        """,
            f"""
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkSet
        metadata: {{name: global-partners, labels: {{role: global-partner}}}}
        spec: {{nets: [{CLIENT_IP}/32]}}
        """,
            """
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata: {name: namespaced-partners}
        spec:
          selector: memcached == 'server'
          ingress:
            - action: Allow
              protocol: TCP
              source: {namespaceSelector: all(), selector: role == 'partner'}
              destination: {ports: [8080]}
            - action: Allow
              protocol: TCP
              source: {namespaceSelector: all(), selector: role == 'global-partner'}
              destination: {ports: [9090]}
        """,
            """
        apiVersion: projectcalico.org/v3
        kind: NetworkPolicy
        metadata: {name: deny-everything, namespace: team-a}
        spec: {selector: all(), types: [Ingress, Egress], ingress: [{action: Deny}]}
        """,
        )
    )
    node.converge()
    node.serve(8080, 9090)
    assert node.reach(node.client, 8080), "the NetworkSet member is allowed"
    assert not node.reach(node.client, 9090), "a GlobalNetworkSet has no namespace"


def test_catch_all_network_set_is_programmed(node: FelisNode) -> None:
    """0.0.0.0/0 as a set member: ipset refuses a zero prefix length, so it is written as two
    halves (which read back equal: a second run writes nothing)."""
    node.apply(
        manifest(
            HEP,
            CLIENT_HEP,
            """
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkSet
        metadata: {name: everywhere, labels: {zone: internet}}
        spec: {nets: [0.0.0.0/0, "::/0"]}
        """,
            """
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata: {name: deny-internet}
        spec:
          selector: memcached == 'server'
          order: 10
          ingress:
            - action: Deny
              protocol: TCP
              source: {selector: zone == 'internet'}
              destination: {ports: [8080]}
            - action: Deny
              protocol: TCP
              source: {nets: [0.0.0.0/0, 203.0.113.0/24]}
              destination: {ports: [9091]}
        """,
            _allow("allow-rest", 9090, order=20).replace(
                "ports: [9090]", "ports: [8080, 9090, 9091]"
            ),
        )
    )
    node.converge()
    node.serve(8080, 9090, 9091)
    assert not node.reach(node.client, 8080)
    assert not node.reach(node.client, 9091)
    assert node.reach(node.client, 9090)
    halves = frozenset({"0.0.0.0/1", "128.0.0.0/1"})
    members = node.set_members()
    assert sum(1 for m in members.values() if m == halves) == 2, members
    assert node.converge().endswith("in sync, nothing written")


BAD_ICMP = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: icmp-bad}
spec:
  selector: memcached == 'server'
  order: 10
  ingress:
    - action: Deny
      notICMP: {type: 8}
"""


def test_one_unprogrammable_policy_never_stops_the_node(node: FelisNode) -> None:
    """A valid policy no renderer can write (an ICMP type match needs the ICMP protocol) is left
    out with an error naming it; everything else is programmed."""
    node.apply(manifest(HEP, CLIENT_HEP, BAD_ICMP, _allow("allow-8080", 8080, order=20)))
    once = node.topo.felis(
        node.server,
        ["agent", "--node", NODE, "--once", "--backend", node.backend,
         "--datastore", node.datastore],
    )  # fmt: skip
    assert "GlobalNetworkPolicy icmp-bad skipped: IPv4 ingress: rule 'gnp/icmp-bad" in once.stderr
    node.serve(8080, 9090)
    assert node.reach(node.client, 8080)
    assert not node.reach(node.client, 9090), "the rest of the node is programmed"
    (skipped,) = node.status()["skipped"]
    assert skipped.startswith("GlobalNetworkPolicy icmp-bad skipped: ")
    # Corrected, it is programmed again.
    node.apply(BAD_ICMP.replace("notICMP", "protocol: ICMP\n      notICMP"))
    node.converge()
    assert node.status()["skipped"] == []
    assert node.reach(node.client, 8080)


def test_label_and_network_set_changes_only_touch_set_members(node: FelisNode) -> None:
    node.apply(manifest(HEP, CLIENT_HEP, SEED_POLICY))
    node.converge()
    node.serve(MEMCACHED)
    assert node.reach(node.client, MEMCACHED)
    chains_before = node.chain_hashes()
    members_before = node.set_members()

    # The client loses its label: its address leaves the selector's set.
    node.apply(CLIENT_HEP.replace("memcached: client", "memcached: retired"))
    node.converge()
    assert node.chain_hashes() == chains_before, "policy chains must not be rewritten"
    assert node.set_members() != members_before
    assert not node.reach(node.client, MEMCACHED)

    # A GlobalNetworkSet brings the address back.
    node.apply(
        manifest(f"""
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkSet
        metadata: {{name: clients, labels: {{memcached: client}}}}
        spec: {{nets: ["{CLIENT_IP}/32"]}}
    """)
    )
    node.converge()
    assert node.chain_hashes() == chains_before
    assert node.reach(node.client, MEMCACHED)


FOREIGN_NFT = """
table ip foreign {
    chain input {
        type filter hook input priority 10; policy accept;
        tcp dport 7777 counter accept comment "not felis"
    }
}
"""


def _foreign_state(node: FelisNode) -> tuple[str, list[str]]:
    nft = node.topo.exec(node.server, ["nft", "list", "table", "ip", "foreign"]).stdout
    saved = node.topo.exec(node.server, ["iptables-save"]).stdout
    foreign_rules = [line for line in saved.splitlines() if "FOREIGN" in line]
    return nft, foreign_rules


def test_foreign_rules_and_tables_are_untouched(node: FelisNode) -> None:
    _add_foreign_rules(node)
    before = _foreign_state(node)

    node.apply(manifest(HEP, CLIENT_HEP, SEED_POLICY))
    node.converge()
    assert _foreign_state(node) == before
    # Our hook goes first in INPUT, the foreign jump stays where it was (after ours).
    if node.backend == "iptables":
        saved = node.topo.exec(node.server, ["iptables-save", "-t", "filter"]).stdout
        input_rules = [line for line in saved.splitlines() if line.startswith("-A INPUT")]
        assert "felis" in input_rules[0] and input_rules[-1] == "-A INPUT -j FOREIGN"

    node.delete("gnp", "memcached-server")
    node.converge()  # a change: chains deleted and rewritten next to foreign rules
    assert _foreign_state(node) == before
    node.cleanup()
    assert _foreign_state(node) == before
    assert node.felis_traces() == []


def _add_foreign_rules(node: FelisNode) -> None:
    node.topo.exec(node.server, ["nft", "-f", "-"], input_text=FOREIGN_NFT)
    node.topo.exec(node.server, ["iptables", "-N", "FOREIGN"])
    node.topo.exec(
        node.server, ["iptables", "-A", "FOREIGN", "-p", "tcp", "--dport", "7777", "-j", "RETURN"]
    )
    node.topo.exec(node.server, ["iptables", "-A", "INPUT", "-j", "FOREIGN"])


def test_running_agent_repairs_drift(node: FelisNode) -> None:
    _add_foreign_rules(node)
    foreign = _foreign_state(node)
    node.apply(manifest(HEP, CLIENT_HEP, SEED_POLICY))
    node.serve(MEMCACHED)
    node.start_agent("--refresh-interval", "0.3")
    wait_until(
        lambda: "raw/felis-pi-memcached-server" in node.chain_hashes(),
        timeout=20,
        what="the agent's first sync",
    )
    desired = node.chain_hashes()
    assert node.reach(node.client, MEMCACHED)

    # Someone deletes our policy rule and a whole chain of ours.
    if node.backend == "nftables":
        node.topo.exec(
            node.server, ["nft", "flush", "chain", "ip", "felis", "raw-felis-pi-memcached-server"]
        )
        node.topo.exec(
            node.server, ["nft", "flush", "chain", "ip", "felis", "filter-felis-failsafe-in"]
        )
    else:
        node.topo.exec(node.server, ["iptables", "-t", "raw", "-F", "felis-pi-memcached-server"])
        node.topo.exec(node.server, ["iptables", "-t", "raw", "-D", "PREROUTING", "1"])
    assert node.chain_hashes() != desired
    wait_until(lambda: node.chain_hashes() == desired, timeout=20, what="drift repair")
    assert node.reach(node.client, MEMCACHED)
    assert _foreign_state(node) == foreign, "drift repair leaves foreign rules alone"
    # The agent reacts to datastore changes too.
    node.delete("gnp", "memcached-server")
    node.wait_reach(node.client, MEMCACHED, False)


def test_second_once_changes_nothing_and_cleanup_leaves_no_trace(node: FelisNode) -> None:
    node.apply(manifest(HEP, CLIENT_HEP, SEED_POLICY))
    first = node.converge()
    assert "nothing written" not in first
    before = node.ruleset_text()
    second = node.converge()
    assert second.endswith("in sync, nothing written")
    assert node.ruleset_text() == before
    node.cleanup()
    assert node.felis_traces() == []
    assert node.converge() != second  # programming again works after a cleanup
    node.cleanup()
    assert node.felis_traces() == []


def test_server_address_constants_are_lab_addresses() -> None:
    assert SERVER_IP.startswith("198.18.") and CLIENT_IP.startswith("198.18.")


def test_adjacent_set_members_added_one_by_one(node: FelisNode) -> None:
    """nft lists adjacent interval-set members merged (198.18.200.0/31 for .0 and .1): the next
    delta must still apply, and converge to nothing to do."""
    node.apply(manifest(HEP, CLIENT_HEP, SEED_POLICY))
    node.converge()
    for last_octet in range(3):
        node.apply(
            manifest(f"""
            apiVersion: projectcalico.org/v3
            kind: GlobalNetworkSet
            metadata: {{name: adjacent-{last_octet}, labels: {{memcached: client}}}}
            spec: {{nets: ["198.18.200.{last_octet}/32"]}}
        """)
        )
        node.converge()
        assert node.converge().endswith("in sync, nothing written")
    node.delete("gns", "adjacent-1")
    node.converge()
    assert node.converge().endswith("in sync, nothing written")


TCP_FAILSAFE_PORTS = (22, 179, 2379, 2380, 5473, 6443, 6666, 6667)
"""Calico's default inbound and outbound TCP failsafe ports."""
UDP_FAILSAFE_PORTS = (53, 67, 68)

UNTRACKED_UDP = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: udp-untracked}
spec:
  selector: memcached == 'server'
  doNotTrack: true
  applyOnForward: true
  ingress:
    - action: Allow
      protocol: UDP
      source: {selector: memcached == 'client'}
      destination: {ports: [5300]}
  egress:
    - action: Allow
      protocol: UDP
      source: {ports: [5300]}
      destination: {selector: memcached == 'client'}
"""


def test_source_port_on_a_failsafe_port_stays_untracked(node: FelisNode) -> None:
    """A client whose ephemeral port is a failsafe port: its packets match the raw failsafe
    rules (the request looks like the reply of an outbound failsafe flow, the reply like an
    outbound failsafe flow). The untracked Allow must still decide them."""
    node.apply(manifest(HEP, CLIENT_HEP, SEED_POLICY, UNTRACKED_UDP))
    node.converge()
    node.serve(MEMCACHED)
    node.serve(5300, proto="udp")
    for port in TCP_FAILSAFE_PORTS:
        assert node.reach(node.client, MEMCACHED, source_port=port), f"tcp from port {port}"
    for port in UDP_FAILSAFE_PORTS:
        assert node.reach(node.client, 5300, proto="udp", source_port=port), f"udp from {port}"
    assert node.conntrack_for_port(MEMCACHED) == [], "memcached flows must not be tracked"
    assert node.conntrack_for_port(5300) == [], "the udp flows must not be tracked"


UNTRACKED_DENY_ALL = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-everything-untracked}
spec:
  selector: memcached == 'server'
  doNotTrack: true
  applyOnForward: true
  ingress:
    - action: Deny
      protocol: TCP
      destination: {ports: [22, 8080]}
    - action: Deny
  egress:
    - action: Deny
"""


def test_untracked_deny_never_blocks_a_failsafe_port(node: FelisNode) -> None:
    node.apply(manifest(HEP, CLIENT_HEP, UNTRACKED_DENY_ALL))
    node.converge()
    node.serve(22, 8080)
    assert not node.reach(node.client, 8080), "the untracked Deny drops other ports"
    assert node.reach(node.client, 22), "failsafe port 22 passes the untracked Deny"
    assert node.conntrack_for_port(22), "failsafe traffic goes through conntrack"


def _service(index: int) -> str:
    port = 20000 + index
    return f"""
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: service-{index}}}
spec:
  selector: memcached == 'server'
  order: {index + 1}
  doNotTrack: true
  applyOnForward: true
  ingress:
    - action: Allow
      protocol: TCP
      source: {{selector: memcached == 'client'}}
      destination: {{ports: [{port}]}}
  egress:
    - action: Allow
      protocol: TCP
      source: {{ports: [{port}]}}
      destination: {{selector: memcached == 'client'}}
"""


def test_untracked_services_in_front_share_one_port_set(node: FelisNode) -> None:
    """Services allowed to the same clients ahead of memcached become one fast-path rule with a
    port set; adding one more rewrites that set, and every flow stays untracked."""
    node.apply(manifest(HEP, CLIENT_HEP, SEED_POLICY, *(_service(i) for i in range(6))))
    node.converge()
    node.serve(MEMCACHED, 20003, 20006)

    def port_sets() -> dict[str, frozenset[str]]:
        return {k: v for k, v in node.set_members().items() if k.startswith("felis4-p-")}

    (before,) = port_sets().values()
    assert before == {str(20000 + i) for i in range(6)} | {str(MEMCACHED)}
    assert node.reach(node.client, MEMCACHED) and node.reach(node.client, 20003)
    assert not node.reach(node.client, 20006), "no policy allows it yet"

    node.apply(manifest(_service(6)))
    node.converge()
    (after,) = port_sets().values()
    assert after == before | {"20006"}
    for port in (MEMCACHED, 20003, 20006):
        assert node.reach(node.client, port), port
        assert node.conntrack_for_port(port) == [], f"port {port} must not be tracked"


def test_profiles_allow_after_policies_and_lend_their_labels(node: FelisNode) -> None:
    """Profile rules run after every policy; its labelsToApply select endpoints (the client is
    in the rule's set through its profile, the server selected by a policy through its own);
    a profile that does not exist drops, as Felix's stand-in profile does."""
    profiles = """
    apiVersion: projectcalico.org/v3
    kind: Profile
    metadata: {name: web}
    spec:
      labelsToApply: {role: web}
      ingress:
        - action: Allow
          protocol: TCP
          source: {selector: "role == 'web-client'"}
          destination: {ports: [8080]}
      egress:
        - action: Allow
    ---
    apiVersion: projectcalico.org/v3
    kind: Profile
    metadata: {name: web-client}
    spec:
      labelsToApply: {role: web-client}
    """
    client = CLIENT_HEP.replace("  expectedIPs:", "  profiles: [web-client]\n  expectedIPs:")
    server = HEP.replace("  expectedIPs:", "  profiles: [web]\n  expectedIPs:")
    # Its tier would drop what it does not allow before any profile; Pass hands on to them.
    by_label = """
    apiVersion: projectcalico.org/v3
    kind: GlobalNetworkPolicy
    metadata: {name: web-9090}
    spec:
      selector: role == 'web'
      ingress:
        - {action: Allow, protocol: TCP, destination: {ports: [9090]}}
        - {action: Pass}
    """
    node.apply(manifest(server, client, profiles, by_label))
    node.converge()
    node.serve(8080, 9090, 9191)
    assert node.reach(node.client, 8080), "the profile's Allow"
    assert node.reach(node.client, 9090), "a policy selecting the label the profile lends"
    assert not node.reach(node.client, 9191), "nothing allows it: dropped after the profiles"

    node.apply(manifest(server.replace("profiles: [web]", "profiles: [ghost, web]")))
    node.converge()
    assert not node.reach(node.client, 8080), "the missing profile drops before web is reached"
    assert node.reach(node.client, 9090), "policies run first, and web still lends role=web"


def test_kernel_events_repair_a_flushed_ruleset_without_waiting_for_a_check(
    node: FelisNode,
) -> None:
    """`nft flush ruleset` (what an nftables.service restart does) removes felis' rules on
    both backends; the agent hears of it through the kernel's change events and restores them.
    The periodic check is set to an hour, so only the events can explain the repair."""
    node.apply(manifest(HEP, CLIENT_HEP, SEED_POLICY))
    node.serve(MEMCACHED)
    node.start_agent("--refresh-interval", "3600")
    wait_until(
        lambda: "raw/felis-pi-memcached-server" in node.chain_hashes(),
        timeout=20,
        what="the agent's first sync",
    )
    desired = node.chain_hashes()
    flushed = time.monotonic()
    node.topo.exec(node.server, ["nft", "flush", "ruleset"])
    wait_until(lambda: node.chain_hashes() == desired, timeout=20, what="repair after a flush")
    print(f"{node.backend}: unprotected for {(time.monotonic() - flushed) * 1000:.0f} ms")
    assert node.reach(node.client, MEMCACHED)
    assert node.conntrack_for_port(MEMCACHED) == []
