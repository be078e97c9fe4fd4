"""felis.trace on computed specs (the seed and variations) and on hand-built IR."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# The hand-built IR builders live with the renderer tests (ir_fixtures, imported by module name).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataplane"))

from ir_fixtures import hook, ruleset, table

from felis.calc import HostInterface, compute
from felis.dataplane.spec import (
    Accept,
    CtState,
    DataplaneSpec,
    Drop,
    Goto,
    HookPosition,
    IcmpMatch,
    IpSet,
    Jump,
    Match,
    NoTrack,
    PortRange,
    Return,
    Rule,
    SetKind,
    SetMark,
    Table,
)
from felis.model import load_documents
from felis.trace import Direction, Packet, TraceError, Tracking, Verdict, trace

ROOT = Path(__file__).resolve().parents[3]
SEED = (ROOT / "examples" / "memcached-seed.yaml").read_text()
NODE = "memcached-node-1"
SERVER, CLIENT, OTHER = "10.128.0.162", "10.128.0.50", "10.128.0.99"
CLIENT_HEP = f"""
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {{name: client-1-eth0, labels: {{memcached: client}}}}
spec: {{interfaceName: eth0, node: client-1, expectedIPs: [{CLIENT}]}}
"""


def spec_of(*docs: str) -> DataplaneSpec:
    text = "---\n".join(docs)
    resources = load_documents(text.encode(), "test")
    interfaces = [HostInterface("eth0", (f"{SERVER}/24",)), HostInterface("eth1", ())]
    return compute(resources, NODE, interfaces).spec


def tcp(src: str, dst: str, dport: int, **kw: Any) -> Packet:
    kw.setdefault("in_iface", "eth0")
    return Packet(src, dst, 6, sport=40000, dport=dport, **kw)


def egress(packet: Packet, state: CtState = CtState.NEW) -> Packet:
    return packet.reply(state)


@pytest.fixture(scope="module")
def seed() -> DataplaneSpec:
    return spec_of(SEED, CLIENT_HEP)


def test_memcached_request_is_accepted_untracked_by_the_ingress_rule(seed: DataplaneSpec) -> None:
    result = trace(seed, tcp(CLIENT, SERVER, 12211))
    assert result.summary() == "ACCEPT untracked by gnp/memcached-server ingress rule 0"
    assert result.tracking is Tracking.UNTRACKED
    # The fast path in the raw hook decides; the accept bit it sets is what filter accepts on
    # (mangle PREROUTING is not hooked without preDNAT policy).
    tables = [s.table for s in result.steps if s.action == "ACCEPT"]
    assert tables == ["raw", "filter"]
    assert result.deciding_step is not None
    assert result.deciding_step.chain == "PREROUTING"
    assert not any(s.chain == "felis-pi-memcached-server" for s in result.steps)
    assert any(s.action.startswith("skipped (NOTRACK)") for s in result.steps)


def test_memcached_reply_is_accepted_untracked_by_the_egress_rule(seed: DataplaneSpec) -> None:
    reply = egress(tcp(CLIENT, SERVER, 12211), CtState.INVALID)
    assert reply.direction is Direction.EGRESS and reply.out_iface == "eth0"
    assert reply.sport == 12211
    result = trace(seed, reply)
    assert result.summary() == "ACCEPT untracked by gnp/memcached-server egress rule 0"


def test_other_port_hits_the_default_drop(seed: DataplaneSpec) -> None:
    result = trace(seed, tcp(CLIENT, SERVER, 8080))
    assert result.summary() == "DROP tracked by Drop if no profiles matched"
    assert result.deciding_step is not None and result.deciding_step.table == "filter"


def test_non_client_cannot_reach_memcached(seed: DataplaneSpec) -> None:
    result = trace(seed, tcp(OTHER, SERVER, 12211))
    assert result.verdict is Verdict.DROP and result.tracked


def test_failsafe_ssh_is_accepted_tracked(seed: DataplaneSpec) -> None:
    result = trace(seed, tcp(CLIENT, SERVER, 22))
    assert result.summary() == (
        "ACCEPT tracked by failsafe in tcp:22,179,2379,2380,5473,6443,6666,6667"
    )


def test_without_the_egress_rule_the_reply_is_dropped() -> None:
    spec = spec_of(SEED.split("  egress:")[0], CLIENT_HEP)
    request = tcp(CLIENT, SERVER, 12211)
    assert trace(spec, request).summary().startswith("ACCEPT untracked")
    # The SYN-ACK of an untracked SYN is invalid to conntrack; a later packet would be new.
    invalid = trace(spec, egress(request, CtState.INVALID))
    assert invalid.verdict is Verdict.DROP and invalid.tracked
    new = trace(spec, egress(request, CtState.NEW))
    assert new.summary() == "DROP tracked by Drop if no profiles matched"


def test_established_reply_of_a_tracked_flow_is_accepted_by_conntrack(seed: DataplaneSpec) -> None:
    result = trace(seed, egress(tcp(CLIENT, SERVER, 22), CtState.ESTABLISHED))
    assert result.verdict is Verdict.ACCEPT and result.tracked
    assert "ct state established,related" in result.decided_by


def gnp(name: str, body: str) -> str:
    return (
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n"
        f"metadata: {{name: {name}}}\nspec:\n  selector: memcached == 'server'\n{body}"
    )


HEP = SEED.split("---")[0]


def test_untracked_deny_drops_before_conntrack() -> None:
    spec = spec_of(
        HEP,
        gnp(
            "deny",
            "  doNotTrack: true\n  applyOnForward: true\n  ingress:\n"
            "    - action: Deny\n      protocol: TCP\n      destination: {ports: [8080]}\n",
        ),
    )
    result = trace(spec, tcp(CLIENT, SERVER, 8080))
    assert result.summary() == "DROP before conntrack by gnp/deny ingress rule 0"
    assert result.to_dict()["tracked"] is None


def test_pass_hands_over_to_the_next_tier_and_log_continues() -> None:
    tier = (
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: sec}\nspec: {order: 10}\n"
    )
    spec = spec_of(
        tier,
        HEP,
        gnp(
            "sec.pass",
            "  tier: sec\n  ingress:\n    - action: Log\n      protocol: TCP\n"
            "    - action: Pass\n      protocol: TCP\n      destination: {ports: [8080]}\n",
        ),
        gnp("allow", "  ingress:\n    - action: Allow\n      protocol: TCP\n"),
    )
    passed = trace(spec, tcp(CLIENT, SERVER, 8080))
    assert passed.summary() == "ACCEPT tracked by gnp/allow ingress rule 0"
    assert passed.logs == ("felis-packet",)
    # 8081 is not passed: the sec tier ends with its default deny.
    ended = trace(spec, tcp(CLIENT, SERVER, 8081))
    assert ended.verdict is Verdict.DROP
    assert ended.logs == ("felis-packet",)


def test_prednat_policy_accepts_in_mangle_tracked() -> None:
    spec = spec_of(
        HEP,
        gnp(
            "early",
            "  preDNAT: true\n  applyOnForward: true\n  ingress:\n"
            "    - action: Allow\n      protocol: TCP\n      destination: {ports: [8080]}\n",
        ),
    )
    result = trace(spec, tcp(CLIENT, SERVER, 8080))
    assert result.summary() == "ACCEPT tracked by gnp/early ingress rule 0"
    assert result.deciding_step is not None and result.deciding_step.table == "mangle"


def test_forward_default_allow_and_forward_policy() -> None:
    hep = HEP
    packet = Packet(
        CLIENT,
        "10.0.9.9",
        17,
        Direction.FORWARD,
        sport=5000,
        dport=53,
        in_iface="eth0",
        out_iface="eth1",
    )
    allowed = trace(spec_of(hep), packet)
    assert allowed.summary() == "ACCEPT tracked by Allow forwarded traffic by default"
    spec = spec_of(
        hep,
        gnp(
            "fwd",
            "  applyOnForward: true\n  ingress:\n"
            "    - action: Allow\n      protocol: TCP\n      destination: {ports: [8080]}\n",
        ),
    )
    assert trace(spec, packet).verdict is Verdict.DROP
    assert (
        trace(
            spec, tcp(CLIENT, "10.0.9.9", 8080, direction=Direction.FORWARD, out_iface="eth1")
        ).verdict
        is Verdict.ACCEPT
    )


def test_network_set_and_named_port_sets() -> None:
    gns = (
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\n"
        "metadata: {name: c, labels: {memcached: client}}\nspec: {nets: [10.1.0.0/16]}\n"
    )
    named_hep = HEP.replace(
        "  expectedIPs:", "  ports: [{name: cache, port: 11211, protocol: TCP}]\n  expectedIPs:"
    )
    spec = spec_of(
        named_hep,
        gns,
        gnp(
            "named",
            "  ingress:\n    - action: Allow\n      protocol: TCP\n"
            "      source: {selector: memcached == 'client'}\n"
            "      destination: {ports: [cache]}\n",
        ),
    )
    assert trace(spec, tcp("10.1.2.3", SERVER, 11211)).verdict is Verdict.ACCEPT
    assert trace(spec, tcp("10.2.2.3", SERVER, 11211)).verdict is Verdict.DROP
    assert trace(spec, tcp("10.1.2.3", SERVER, 11212)).verdict is Verdict.DROP


# ------------------------------------------------------------------------- hand-built IR


def test_goto_returns_to_the_caller_of_the_caller_and_marks_cross_tables() -> None:
    rs = ruleset(
        {
            Table.RAW: table(
                Table.RAW,
                [hook("PREROUTING", Rule(action=Jump("top")))],
                top=[Rule(action=Jump("a")), Rule(Match(mark_set=0x10), NoTrack())],
                a=[Rule(action=Goto("b")), Rule(action=SetMark(0x20, 0x20))],
                b=[Rule(action=SetMark(0x10, 0x10), comment="set by b")],
            ),
            Table.FILTER: table(
                Table.FILTER,
                [
                    hook(
                        "INPUT",
                        Rule(
                            Match(ct_states=frozenset({CtState.UNTRACKED}), mark_set=0x10),
                            Accept(),
                            "untracked ok",
                        ),
                    )
                ],
            ),
        }
    )
    result = trace(rs, tcp(CLIENT, SERVER, 1))
    assert result.mark == 0x10, "goto skipped the rest of chain a"
    assert result.tracking is Tracking.UNTRACKED
    assert result.summary() == "ACCEPT untracked by set by b"


def test_return_in_a_kernel_chain_skips_the_appends_and_ct_dnat_needs_tracking() -> None:
    rs = ruleset(
        {
            Table.FILTER: table(
                Table.FILTER,
                [
                    hook("INPUT", Rule(Match(ct_dnat=True), Drop(), "dnat")),
                    hook("INPUT", Rule(Match(protocol=17), Return())),
                    hook("INPUT", Rule(action=Drop(), comment="appended"), HookPosition.APPEND),
                ],
            )
        }
    )
    assert trace(rs, tcp(CLIENT, SERVER, 1)).summary() == "DROP tracked by appended"
    assert trace(rs, tcp(CLIENT, SERVER, 1, dnat=True)).summary() == "DROP tracked by dnat"
    udp = Packet(CLIENT, SERVER, 17, sport=1, dport=2, in_iface="eth0")
    assert trace(rs, udp).summary() == "ACCEPT tracked by default"


def test_matches_ports_sets_interfaces_icmp() -> None:
    sets = {
        "n": IpSet("n", SetKind.NET, frozenset({"10.128.0.0/25"})),
        "p": IpSet("p", SetKind.IP_PORT, frozenset({f"{SERVER},tcp:80"})),
    }
    rules = [
        Rule(Match(in_iface="eth+", src_sets=("n",), dst_port_set="p"), Accept(), "set"),
        Rule(Match(protocol=1, icmp=None, not_icmp=None), SetMark(1, 1)),
        Rule(Match(protocol=6, not_dst_ports=(PortRange(1, 100),)), Accept(), "high"),
        Rule(
            Match(icmp=IcmpMatch(8)),
            Accept(),
            "ping",
        ),
    ]
    rs = ruleset(
        {
            Table.FILTER: table(
                Table.FILTER,
                [hook("INPUT", Rule(action=Jump("c")))],
                c=[*rules, Rule(action=Drop(), comment="end")],
            )
        },
        sets,
    )
    assert trace(rs, tcp(CLIENT, SERVER, 80)).decided_by == "set"
    assert trace(rs, tcp(CLIENT, SERVER, 80, in_iface="lo")).decided_by == "end"
    assert trace(rs, tcp(CLIENT, SERVER, 81)).decided_by == "end"
    assert trace(rs, tcp(CLIENT, SERVER, 8080)).decided_by == "high"
    ping = Packet(CLIENT, SERVER, 1, icmp_type=8, in_iface="eth0")
    assert trace(rs, ping).decided_by == "ping"
    assert trace(rs, Packet(CLIENT, SERVER, 1, icmp_type=0, in_iface="eth0")).decided_by == "end"


def test_broken_specs_and_packets_are_one_line_errors() -> None:
    rs = ruleset({Table.FILTER: table(Table.FILTER, [hook("INPUT", Rule(action=Jump("nope")))])})
    with pytest.raises(TraceError, match="jumps to nope"):
        trace(rs, tcp(CLIENT, SERVER, 1))
    loop = ruleset(
        {
            Table.FILTER: table(
                Table.FILTER, [hook("INPUT", Rule(action=Jump("l")))], l=[Rule(action=Jump("l"))]
            )
        }
    )
    with pytest.raises(TraceError, match="loop"):
        trace(loop, tcp(CLIENT, SERVER, 1))
    for bad in (
        lambda: Packet("10.0.0.1", "::1", 6, sport=1, dport=2),
        lambda: Packet("10.0.0.1", "10.0.0.2", 6),
        lambda: Packet("10.0.0.1", "10.0.0.2", 6, sport=1, dport=2, ct_state=CtState.UNTRACKED),
        lambda: Packet("x", "10.0.0.2", 17, sport=1, dport=2),
    ):
        with pytest.raises(TraceError) as err:
            bad()
        assert "\n" not in str(err.value)
