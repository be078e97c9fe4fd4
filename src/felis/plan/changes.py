"""What applying a set of documents would change on one node, in words and as a kernel delta.

Everything here is derived from the two resource sets and the two specs `felis.calc.compute`
gives for them, with the assumptions of `felis render` (interfaces unknown). Statements are
limited to facts that follow from those: which objects differ, which policies select which
active host endpoint in which class, which allow rules are untracked, which addresses join or
leave which IP set and which rules use that set. No claim about reachability is made that would
need the packet-by-packet evaluation `felis trace` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from felis.calc import CalcConfig, compute
from felis.calc.policies import EndpointPolicies
from felis.dataplane.spec import DataplaneSpec, Family, IpSet, Match, Ruleset
from felis.model import Resource, to_dict
from felis.model.resources import Rule
from felis.plan.delta import FamilyDelta, kernel_delta
from felis.plan.snapshot import ActiveEndpoint, Snapshot
from felis.plan.words import (
    describe_rule,
    local_side,
    peers_text,
    ports_text,
    remote_side,
)

CLASSES: tuple[tuple[str, str], ...] = (
    ("untracked_in", "untracked ingress"),
    ("untracked_out", "untracked egress"),
    ("pre_dnat_in", "preDNAT ingress"),
    ("normal_in", "normal ingress"),
    ("normal_out", "normal egress"),
    ("forward_in", "forward ingress"),
    ("forward_out", "forward egress"),
)
_SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "generation", "selfLink")


@dataclass(frozen=True, slots=True)
class ResourceChange:
    kind: str
    name: str
    action: str
    """`added`, `removed` or `changed`."""
    fields: tuple[str, ...] = ()
    """For `changed`: the top-level fields that differ, e.g. `spec.ingress`."""

    def text(self) -> str:
        detail = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{self.kind} {self.name}: {self.action}{detail}"


@dataclass(frozen=True, slots=True)
class EndpointChange:
    endpoint: str
    interface: str
    policy: str | None
    before: tuple[str, ...]
    """Classes the policy had on this endpoint before (or `active` for the endpoint itself)."""
    after: tuple[str, ...]

    def text(self) -> str:
        where = f"HostEndpoint {self.endpoint} ({self.interface})"
        if self.policy is None:
            return f"{where}: {'becomes active' if self.after else 'no longer active'}"
        if not self.before:
            return f"{where}: now selected by gnp/{self.policy} ({', '.join(self.after)})"
        if not self.after:
            return f"{where}: no longer selected by gnp/{self.policy} ({', '.join(self.before)})"
        return (
            f"{where}: gnp/{self.policy} moves from {', '.join(self.before)} "
            f"to {', '.join(self.after)}"
        )


@dataclass(frozen=True, slots=True)
class UntrackedFlow:
    endpoint: str
    direction: str
    protocol: str
    local_ports: str
    remote_ports: str
    peers: str

    def text(self) -> str:
        ports = []
        if self.local_ports:
            ports.append(f"local port {self.local_ports}")
        if self.remote_ports:
            ports.append(f"remote port {self.remote_ports}")
        where = ", ".join(ports) if ports else "all ports"
        way = "from" if self.direction == "ingress" else "to"
        return f"{self.endpoint} {self.direction} {self.protocol} {where} {way} {self.peers}"


@dataclass(frozen=True, slots=True)
class UntrackedChange:
    flow: UntrackedFlow
    untracked: bool
    """True: becomes untracked; False: no longer untracked."""
    origins: tuple[str, ...]

    def text(self) -> str:
        state = "becomes untracked" if self.untracked else "no longer untracked"
        return f"{self.flow.text()}: {state} ({'; '.join(self.origins)})"


@dataclass(frozen=True, slots=True)
class SetChange:
    family: int
    set_name: str
    stands_for: str
    member: str
    joined: bool
    used_by: tuple[str, ...]
    """Rule comments, `excluded by …` for a negated use."""

    def text(self) -> str:
        verb = "joins" if self.joined else "leaves"
        used = f" (used by {'; '.join(self.used_by)})" if self.used_by else ""
        return f"{self.member} {verb} set for {self.stands_for}{used}"


@dataclass(frozen=True, slots=True)
class RuleChange:
    policy: str
    direction: str
    index: int
    before: str | None
    after: str | None

    def text(self) -> str:
        where = f"gnp/{self.policy} {self.direction} rule {self.index}"
        if self.before is None:
            return f"{where} added: {self.after}"
        if self.after is None:
            return f"{where} removed: {self.before}"
        return f"{where} changed: {self.before} -> {self.after}"


@dataclass(frozen=True, slots=True)
class Plan:
    node: str
    backend: str
    resources: tuple[ResourceChange, ...]
    endpoints: tuple[EndpointChange, ...]
    untracked: tuple[UntrackedChange, ...]
    sets: tuple[SetChange, ...]
    rules: tuple[RuleChange, ...]
    new_warnings: tuple[str, ...]
    gone_warnings: tuple[str, ...]
    delta: tuple[FamilyDelta, ...] = field(default=())

    @property
    def changes_node(self) -> bool:
        """True when the node's kernel state would change (the exit-code question)."""
        return any(d.text for d in self.delta)

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "backend": self.backend,
            "changes": self.changes_node,
            "resources": [
                {"kind": c.kind, "name": c.name, "action": c.action, "fields": list(c.fields)}
                for c in self.resources
            ],
            "endpoints": [
                {
                    "endpoint": c.endpoint,
                    "interface": c.interface,
                    "policy": c.policy,
                    "before": list(c.before),
                    "after": list(c.after),
                    "text": c.text(),
                }
                for c in self.endpoints
            ],
            "untracked": [
                {
                    "endpoint": c.flow.endpoint,
                    "direction": c.flow.direction,
                    "protocol": c.flow.protocol,
                    "local_ports": c.flow.local_ports,
                    "remote_ports": c.flow.remote_ports,
                    "peers": c.flow.peers,
                    "untracked": c.untracked,
                    "rules": list(c.origins),
                    "text": c.text(),
                }
                for c in self.untracked
            ],
            "sets": [
                {
                    "family": c.family,
                    "set": c.set_name,
                    "selector": c.stands_for,
                    "member": c.member,
                    "joined": c.joined,
                    "used_by": list(c.used_by),
                    "text": c.text(),
                }
                for c in self.sets
            ],
            "rules": [
                {
                    "policy": c.policy,
                    "direction": c.direction,
                    "index": c.index,
                    "before": c.before,
                    "after": c.after,
                    "text": c.text(),
                }
                for c in self.rules
            ],
            "warnings": {"new": list(self.new_warnings), "gone": list(self.gone_warnings)},
            "delta": {f"ipv{int(d.family)}": d.text for d in self.delta},
        }


# ---------------------------------------------------------------------------------------------


def _comparable(resource: Resource) -> dict[str, Any]:
    obj = to_dict(resource)
    meta = dict(obj.get("metadata", {}))
    for name in _SERVER_FIELDS:
        meta.pop(name, None)
    obj["metadata"] = meta
    return obj


def resource_changes(before: Snapshot, after: Snapshot) -> list[ResourceChange]:
    out = []
    for key in sorted(set(before.resources) | set(after.resources)):
        kind, name = key
        old, new = before.resources.get(key), after.resources.get(key)
        if old is None:
            out.append(ResourceChange(kind, name, "added"))
        elif new is None:
            out.append(ResourceChange(kind, name, "removed"))
        else:
            a, b = _comparable(old), _comparable(new)
            if a != b:
                fields = []
                for top in ("metadata", "spec", "status"):
                    sub_a, sub_b = a.get(top) or {}, b.get(top) or {}
                    for sub in sorted(set(sub_a) | set(sub_b)):
                        if sub_a.get(sub) != sub_b.get(sub):
                            fields.append(f"{top}.{sub}")
                out.append(ResourceChange(kind, name, "changed", tuple(fields)))
    return out


def _classes(policies: EndpointPolicies) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for attr, label in CLASSES:
        for group in getattr(policies, attr):
            for policy in group.policies:
                out.setdefault(policy.name, []).append(label)
    return {name: tuple(labels) for name, labels in out.items()}


def endpoint_changes(
    before: Sequence[ActiveEndpoint], after: Sequence[ActiveEndpoint]
) -> list[EndpointChange]:
    old = {e.name: e for e in before}
    new = {e.name: e for e in after}
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None or b is None or a.interface != b.interface:
            if a is not None:
                out.append(EndpointChange(name, a.interface, None, ("active",), ()))
            if b is not None:
                out.append(EndpointChange(name, b.interface, None, (), ("active",)))
        iface = b.interface if b is not None else a.interface if a is not None else "?"
        ca = _classes(a.policies) if a is not None else {}
        cb = _classes(b.policies) if b is not None else {}
        for policy in sorted(set(ca) | set(cb)):
            if ca.get(policy, ()) != cb.get(policy, ()):
                out.append(
                    EndpointChange(name, iface, policy, ca.get(policy, ()), cb.get(policy, ()))
                )
    return out


def untracked_flows(endpoints: Iterable[ActiveEndpoint]) -> dict[UntrackedFlow, list[str]]:
    """Every untracked Allow rule of every active endpoint, as a flow with the rules making it."""
    out: dict[UntrackedFlow, list[str]] = {}
    for endpoint in endpoints:
        for attr, ingress in (("untracked_in", True), ("untracked_out", False)):
            direction = "ingress" if ingress else "egress"
            for group in getattr(endpoint.policies, attr):
                for policy in group.policies:
                    for index, rule in enumerate(policy.rules(ingress)):
                        if rule.action != "Allow":
                            continue
                        flow = UntrackedFlow(
                            endpoint=endpoint.name,
                            direction=direction,
                            protocol=str(rule.protocol) if rule.protocol else "any protocol",
                            local_ports=ports_text(local_side(rule, ingress).ports),
                            remote_ports=ports_text(remote_side(rule, ingress).ports),
                            peers=peers_text(remote_side(rule, ingress)),
                        )
                        origin = f"gnp/{policy.name} {direction} rule {index}"
                        out.setdefault(flow, []).append(origin)
    return out


def untracked_changes(
    before: Sequence[ActiveEndpoint], after: Sequence[ActiveEndpoint]
) -> list[UntrackedChange]:
    old, new = untracked_flows(before), untracked_flows(after)
    out = [UntrackedChange(f, True, tuple(new[f])) for f in new if f not in old]
    out += [UntrackedChange(f, False, tuple(old[f])) for f in old if f not in new]
    return sorted(out, key=lambda c: (c.flow.endpoint, c.flow.direction, not c.untracked))


def _set_refs(match: Match) -> Iterable[tuple[str, bool]]:
    for name in (*match.src_sets, *match.dst_sets):
        yield name, False
    for port_set in (
        match.src_port_set,
        match.dst_port_set,
        match.src_port_in_set,
        match.dst_port_in_set,
    ):
        if port_set is not None:
            yield port_set, False
    for name in (
        *match.not_src_sets,
        *match.not_dst_sets,
        *match.not_src_port_sets,
        *match.not_dst_port_sets,
    ):
        yield name, True


def set_users(ruleset: Ruleset) -> dict[str, list[str]]:
    """Set name → the rules (by comment) that test it."""
    users: dict[str, list[str]] = {}
    for table in ruleset.tables.values():
        for chain in table.chains.values():
            for rule in chain.rules:
                for name, negated in _set_refs(rule.match):
                    label = f"excluded by {rule.comment}" if negated else rule.comment
                    found = users.setdefault(name, [])
                    if rule.comment and label not in found:
                        found.append(label)
    return users


def set_changes(before: DataplaneSpec, after: DataplaneSpec) -> list[SetChange]:
    out: list[SetChange] = []
    for family in (Family.V4, Family.V6):
        old = before.rulesets.get(family)
        new = after.rulesets.get(family)
        old_sets: Mapping[str, IpSet] = old.sets if old is not None else {}
        new_sets: Mapping[str, IpSet] = new.sets if new is not None else {}
        users = {**(set_users(old) if old else {}), **(set_users(new) if new else {})}
        for name in sorted(set(old_sets) | set(new_sets)):
            a = old_sets.get(name)
            b = new_sets.get(name)
            either = b if b is not None else a
            stands_for = (either.comment if either is not None else "") or name
            had = a.members if a is not None else frozenset[str]()
            has = b.members if b is not None else frozenset[str]()
            used = tuple(users.get(name, ()))
            for member in sorted(has - had):
                out.append(SetChange(int(family), name, stands_for, member, True, used))
            for member in sorted(had - has):
                out.append(SetChange(int(family), name, stands_for, member, False, used))
    return out


def _selects_node(policy: str, endpoints: Iterable[ActiveEndpoint]) -> bool:
    return any(policy in _classes(e.policies) for e in endpoints)


def _rule_dump(rule: Rule) -> Any:
    return rule.model_dump(by_alias=True, exclude_defaults=True)


def rule_changes(
    before: Snapshot,
    after: Snapshot,
    old_eps: Sequence[ActiveEndpoint],
    new_eps: Sequence[ActiveEndpoint],
) -> list[RuleChange]:
    """Rule-by-rule differences of the policies that select an endpoint of the node."""
    out = []
    for name in sorted(set(before.policies) | set(after.policies)):
        if not (_selects_node(name, old_eps) or _selects_node(name, new_eps)):
            continue
        a, b = before.policies.get(name), after.policies.get(name)
        for ingress in (True, False):
            old_rules = a.rules(ingress) if a is not None else ()
            new_rules = b.rules(ingress) if b is not None else ()
            direction = "ingress" if ingress else "egress"
            for index in range(max(len(old_rules), len(new_rules))):
                old = old_rules[index] if index < len(old_rules) else None
                new = new_rules[index] if index < len(new_rules) else None
                if old is not None and new is not None and _rule_dump(old) == _rule_dump(new):
                    continue
                out.append(
                    RuleChange(
                        name,
                        direction,
                        index,
                        describe_rule(old, ingress) if old is not None else None,
                        describe_rule(new, ingress) if new is not None else None,
                    )
                )
    return out


def make_plan(
    current: Sequence[Resource],
    proposed: Sequence[Resource],
    node: str,
    *,
    backend: str = "nftables",
    config: CalcConfig | None = None,
    config_after: CalcConfig | None = None,
) -> Plan:
    """Compare the node under `current` with the node under `proposed` (both full sets).

    `config_after` is the node's settings under `proposed` when they differ (a FelixConfiguration
    among the documents); by default both sides use `config`."""
    config = config or CalcConfig()
    config_b = config_after or config
    before, after = Snapshot(current), Snapshot(proposed)
    spec_a = compute(before.resources.values(), node, None, config)
    spec_b = compute(after.resources.values(), node, None, config_b)
    eps_a, eps_b = before.active(node, config), after.active(node, config_b)
    return Plan(
        node=node,
        backend=backend,
        resources=tuple(resource_changes(before, after)),
        endpoints=tuple(endpoint_changes(eps_a, eps_b)),
        untracked=tuple(untracked_changes(eps_a, eps_b)),
        sets=tuple(set_changes(spec_a.spec, spec_b.spec)),
        rules=tuple(rule_changes(before, after, eps_a, eps_b)),
        new_warnings=tuple(w for w in spec_b.warnings if w not in spec_a.warnings),
        gone_warnings=tuple(w for w in spec_a.warnings if w not in spec_b.warnings),
        delta=tuple(kernel_delta(spec_a.spec, spec_b.spec, backend)),
    )
