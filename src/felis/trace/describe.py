"""Short, backend-neutral text for IR matches and actions, as a trace shows them."""

from __future__ import annotations

from felis.dataplane.rule_identity import canonical_action
from felis.dataplane.spec import (
    Action,
    CtState,
    Goto,
    IcmpMatch,
    Jump,
    Log,
    Match,
    PortRange,
    SetMark,
    bare_action_word,
)
from felis.trace.packet import protocol_text

_CT_ORDER = (
    CtState.NEW,
    CtState.ESTABLISHED,
    CtState.RELATED,
    CtState.INVALID,
    CtState.UNTRACKED,
)


def _ports(ranges: tuple[PortRange, ...]) -> str:
    return ",".join(str(r) for r in ranges)


def _icmp(icmp: IcmpMatch) -> str:
    return f"type {icmp.type}" + (f" code {icmp.code}" if icmp.code is not None else "")


def describe_match(match: Match) -> str:
    """e.g. `tcp saddr @felis4-s-… dport 12211`; empty for a rule that matches everything."""
    parts: list[str] = []
    if match.in_iface is not None:
        parts.append(f"iif {match.in_iface}")
    if match.out_iface is not None:
        parts.append(f"oif {match.out_iface}")
    if match.mark_set:
        parts.append(f"mark has {match.mark_set:#x}")
    if match.mark_clear:
        parts.append(f"mark lacks {match.mark_clear:#x}")
    if match.ct_states:
        parts.append("ct state " + ",".join(s.value for s in _CT_ORDER if s in match.ct_states))
    if match.ct_dnat is not None:
        parts.append("ct dnat" if match.ct_dnat else "ct not dnat")
    if match.protocol is not None:
        parts.append(protocol_text(match.protocol))
    if match.not_protocol is not None:
        parts.append(f"not {protocol_text(match.not_protocol)}")
    for side, net, not_net, sets, not_sets in (
        ("saddr", match.src_net, match.not_src_net, match.src_sets, match.not_src_sets),
        ("daddr", match.dst_net, match.not_dst_net, match.dst_sets, match.not_dst_sets),
    ):
        if net is not None:
            parts.append(f"{side} {net}")
        if not_net is not None:
            parts.append(f"{side} != {not_net}")
        parts += [f"{side} @{name}" for name in sets]
        parts += [f"{side} != @{name}" for name in not_sets]
    for side, ports, not_ports, port_set, not_port_sets in (
        (
            "sport",
            match.src_ports,
            match.not_src_ports,
            match.src_port_set,
            match.not_src_port_sets,
        ),
        (
            "dport",
            match.dst_ports,
            match.not_dst_ports,
            match.dst_port_set,
            match.not_dst_port_sets,
        ),
    ):
        if ports:
            parts.append(f"{side} {_ports(ports)}")
        if not_ports:
            parts.append(f"{side} != {_ports(not_ports)}")
        if port_set is not None:
            parts.append(f"addr,{side} @{port_set}")
        parts += [f"addr,{side} != @{name}" for name in not_port_sets]
    if match.src_port_in_set is not None:
        parts.append(f"sport @{match.src_port_in_set}")
    if match.dst_port_in_set is not None:
        parts.append(f"dport @{match.dst_port_in_set}")
    if match.icmp is not None:
        parts.append(f"icmp {_icmp(match.icmp)}")
    if match.not_icmp is not None:
        parts.append(f"icmp not {_icmp(match.not_icmp)}")
    return " ".join(parts)


def describe_action(action: Action | None) -> str:
    if action is None:
        return "(comment only)"
    if word := bare_action_word(action):
        return word.upper()
    match action:
        case Jump() | Goto():
            return canonical_action(action)
        case SetMark(value=value, mask=mask):
            if value == 0:
                return f"clear mark {mask:#x}"
            if value == mask:
                return f"set mark {value:#x}"
            return f"set mark {value:#x}/{mask:#x}"
        case Log(prefix=prefix):
            return f"LOG {prefix!r}"
    raise AssertionError(f"unknown action {action!r}")
