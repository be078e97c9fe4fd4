"""The rule-shape helpers the doNotTrack checks read rules with: port and peer coverage, the
counterpart a reply needs (and its YAML), and where each rule of a policy sits."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from felis.calc.inputs import PolicyInfo
from felis.calc.policies import Groups
from felis.lint.findings import dump_yaml
from felis.model.resources import EntityRule, Rule
from felis.model.values import Port
from felis.plan.words import canonical, local_side, ports_text, remote_side


@dataclass(frozen=True, slots=True)
class _Located:
    policy: PolicyInfo
    ingress: bool
    index: int
    rule: Rule

    @property
    def direction(self) -> str:
        return "ingress" if self.ingress else "egress"

    @property
    def where(self) -> str:
        return f"{self.direction} rule {self.index}"


# ---------------------------------------------------------------------------------------------
# Rule shape helpers.


def _proto(rule: Rule) -> int | None:
    return rule.protocol.number if rule.protocol is not None else None


def _proto_name(rule: Rule) -> str:
    return str(rule.protocol) if rule.protocol is not None else "any protocol"


def _ranges(ports: Sequence[Port]) -> list[tuple[int, int]]:
    return [(p.min_port, p.max_port) for p in ports if not p.is_named]


def ports_cover(have: Sequence[Port], need: Sequence[Port]) -> bool:
    """True when every port in `need` is in `have` (empty means every port)."""
    if not have:
        return True
    if not need:
        return False
    names = {p.name for p in have if p.is_named}
    ranges = sorted(_ranges(have))
    for port in need:
        if port.is_named:
            if port.name not in names:
                return False
            continue
        low = port.min_port
        for first, last in ranges:
            if first <= low <= last:
                low = last + 1
            if low > port.max_port:
                break
        if low <= port.max_port:
            return False
    return True


def port_in(ports: Sequence[Port], number: int) -> bool:
    """True when `number` is one of `ports` (empty means every port)."""
    if not ports:
        return True
    return any(first <= number <= last for first, last in _ranges(ports))


def _addressed(side: EntityRule) -> bool:
    return bool(
        side.selector
        or side.not_selector
        or side.nets
        or side.not_nets
        or side.namespace_selector
        or side.service_accounts is not None
        or side.services is not None
    )


def _same_peers(have: EntityRule, need: EntityRule) -> bool:
    """`have` admits at least the peers `need` admits (exact comparison, or no constraint)."""
    if not _addressed(have):
        return True
    return (
        canonical(have.selector) == canonical(need.selector)
        and canonical(have.not_selector) == canonical(need.not_selector)
        and sorted(have.nets) == sorted(need.nets)
        and sorted(have.not_nets) == sorted(need.not_nets)
        and have.namespace_selector == need.namespace_selector
    )


def _proto_covers(have: Rule, need: Rule) -> bool:
    return _proto(have) is None or _proto(have) == _proto(need)


def counterpart_covers(have: Rule, need: Rule, need_ingress: bool, *, peers: bool = True) -> bool:
    """Does `have` (opposite direction) allow the replies of the flow `need` allows?"""
    have_ingress = not need_ingress
    return (
        have.action == "Allow"
        and _proto_covers(have, need)
        and ports_cover(local_side(have, have_ingress).ports, local_side(need, need_ingress).ports)
        and ports_cover(
            remote_side(have, have_ingress).ports, remote_side(need, need_ingress).ports
        )
        and (
            not peers
            or _same_peers(remote_side(have, have_ingress), remote_side(need, need_ingress))
        )
    )


def _policies(groups: Groups) -> Iterator[PolicyInfo]:
    for group in groups:
        yield from group.policies


def _rules(groups: Groups, ingress: bool) -> Iterator[Rule]:
    for policy in _policies(groups):
        yield from policy.rules(ingress)


def _entity_yaml(side: EntityRule, ports: Sequence[Port]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if side.selector:
        out["selector"] = side.selector
    if side.not_selector:
        out["notSelector"] = side.not_selector
    if side.nets:
        out["nets"] = list(side.nets)
    if side.not_nets:
        out["notNets"] = list(side.not_nets)
    if side.namespace_selector:
        out["namespaceSelector"] = side.namespace_selector
    if ports:
        out["ports"] = [p.to_json() for p in ports]
    return out


def counterpart_yaml(rule: Rule, ingress: bool, policy: PolicyInfo) -> str:
    """YAML of the rule that lets the replies of `rule`'s flow through (other direction)."""
    local = local_side(rule, ingress)
    remote = remote_side(rule, ingress)
    local_part = {"ports": [p.to_json() for p in local.ports]} if local.ports else {}
    remote_part = _entity_yaml(remote, remote.ports)
    new: dict[str, Any] = {"action": "Allow"}
    if rule.protocol is not None:
        new["protocol"] = rule.protocol.to_json()
    if rule.ip_version is not None:
        new["ipVersion"] = rule.ip_version
    if ingress:  # the counterpart is an egress rule: local is its source
        if local_part:
            new["source"] = local_part
        if remote_part:
            new["destination"] = remote_part
    else:
        if remote_part:
            new["source"] = remote_part
        if local_part:
            new["destination"] = local_part
    target = "egress" if ingress else "ingress"
    return f"add to gnp/{policy.name} spec.{target}{_types_note(policy, not ingress)}:\n" + (
        dump_yaml([new])
    )


def _types_note(policy: PolicyInfo, ingress: bool) -> str:
    """A policy stored with only one direction's rules was defaulted to that type alone."""
    listed = policy.ingress_type if ingress else policy.egress_type
    return "" if listed else f" (and {'Ingress' if ingress else 'Egress'} to spec.types)"


def _flow_words(rule: Rule, ingress: bool) -> str:
    local = local_side(rule, ingress).ports
    remote = remote_side(rule, ingress).ports
    parts = []
    if local:
        parts.append(f"local port {ports_text(local)}")
    if remote:
        parts.append(f"remote port {ports_text(remote)}")
    where = " ".join(parts) if parts else "all ports"
    return f"{_proto_name(rule)} {where}"


def _located(policy: PolicyInfo) -> Iterator[_Located]:
    for ingress in (True, False):
        for index, rule in enumerate(policy.rules(ingress)):
            yield _Located(policy, ingress, index, rule)


def _allows_icmp(rule: Rule, family: int, proto: int, icmp_type: int, code: int | None) -> bool:
    if rule.action != "Allow":
        return False
    if rule.ip_version is not None and rule.ip_version != family:
        return False
    if rule.source.ports or rule.destination.ports:
        return False
    number = _proto(rule)
    if number is not None and number != proto:
        return False
    if rule.icmp is None or rule.icmp.type is None:
        return True
    if rule.icmp.type != icmp_type:
        return False
    return rule.icmp.code is None or rule.icmp.code == code


def _first_peers(rules: Iterable[Rule]) -> dict[str, Any]:
    for rule in rules:
        peers = _entity_yaml(rule.source, ())
        if peers:
            return peers
    return {}


def _labels_of(selector: str) -> dict[str, str]:
    """`a == "b"` → {a: b}, for the fix of an empty rule selector; {} for anything else."""
    text = selector.strip()
    if "==" not in text or "&&" in text or "||" in text:
        return {}
    key, _, value = text.partition("==")
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return {key.strip(): value[1:-1]}
    return {}
