"""Rules and rule sides in a line of plain words, from the host endpoint's point of view.

For an ingress rule the source side is the peer and the destination side is this host; for an
egress rule the other way round. Talking about "local port 12211" and "remote port 53" instead
of source and destination is what makes doNotTrack's symmetry visible.
"""

from __future__ import annotations

from collections.abc import Sequence

from felis.model.resources import EntityRule, ICMPFields, Rule
from felis.model.values import Port
from felis.selector import parse


def ports_text(ports: Sequence[Port]) -> str:
    return ",".join(str(p) for p in ports)


def local_side(rule: Rule, ingress: bool) -> EntityRule:
    return rule.destination if ingress else rule.source


def remote_side(rule: Rule, ingress: bool) -> EntityRule:
    return rule.source if ingress else rule.destination


def canonical(selector: str) -> str:
    return parse(selector).canonical if selector else ""


def peers_text(side: EntityRule) -> str:
    """Who the peer side admits, e.g. `memcached == "client"` or `10.0.0.0/8 except 10.0.0.1/32`."""
    parts = []
    if side.selector:
        parts.append(f"selector {canonical(side.selector)}")
    if side.not_selector:
        parts.append(f"not selector {canonical(side.not_selector)}")
    if side.namespace_selector:
        parts.append(f"namespaceSelector {side.namespace_selector}")
    if side.service_accounts is not None:
        parts.append("serviceAccounts")
    if side.services is not None:
        parts.append("services")
    if side.nets:
        parts.append("nets " + ",".join(side.nets))
    if side.not_nets:
        parts.append("not nets " + ",".join(side.not_nets))
    return " and ".join(parts) if parts else "any peer"


def _icmp_text(icmp: ICMPFields | None, negated: bool) -> str:
    if icmp is None or icmp.type is None:
        return ""
    text = f"type {icmp.type}" + (f" code {icmp.code}" if icmp.code is not None else "")
    return f" not {text}" if negated else f" {text}"


def _side_ports(side: EntityRule, where: str) -> list[str]:
    out = []
    if side.ports:
        out.append(f"{where} port {ports_text(side.ports)}")
    if side.not_ports:
        out.append(f"{where} port not {ports_text(side.not_ports)}")
    return out


def describe_rule(rule: Rule, ingress: bool) -> str:
    """`Allow TCP from selector memcached == "client" to local port 12211`."""
    proto = str(rule.protocol) if rule.protocol is not None else "any protocol"
    if rule.not_protocol is not None:
        proto += f" (not {rule.not_protocol})"
    proto += _icmp_text(rule.icmp, False) + _icmp_text(rule.not_icmp, True)
    if rule.ip_version is not None:
        proto += f" IPv{rule.ip_version}"
    peer = peers_text(remote_side(rule, ingress))
    local = local_side(rule, ingress)
    remote = remote_side(rule, ingress)
    ports = _side_ports(local, "local") + _side_ports(remote, "remote")
    local_addr = peers_text(local)
    direction = "from" if ingress else "to"
    text = f"{rule.action} {proto} {direction} {peer}"
    if local_addr != "any peer":
        text += f" (host side: {local_addr})"
    if ports:
        text += ", " + ", ".join(ports)
    return text
