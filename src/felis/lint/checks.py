"""The doNotTrack pitfalls (docs/lint.md), checked on resources rather than packets.

The checks read rules the way the untracked dataplane runs them. An untracked connection has no
conntrack entry, so each of its packets is judged alone, by the same host endpoint, in both
directions. Seen from the host, a flow's request and reply share the local port and the remote
port; only source and destination swap. So the reply of an untracked flow `(local L, remote R)`
needs an untracked Allow in the other direction with the same protocol, local ports covering L,
remote ports covering R and the same peers. When only a tracked (normal) policy allows the reply,
the flow is half-tracked: conntrack sees the reply as a new or invalid packet.

Findings are sound in one direction: a warning names a rule that is missing (no rule of the
required shape exists at all). Rule order, Deny rules ahead of an Allow and overlapping tiers are
not simulated; `felis trace` answers packet-level questions exactly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from felis.calc import CalcConfig, FailsafePort
from felis.calc.inputs import STAR_INTERFACE, HepInfo, PolicyInfo
from felis.calc.selectors import rule_side_selector
from felis.lint.findings import NOTE, WARNING, Finding, dump_yaml
from felis.lint.rule_shapes import (
    _allows_icmp,
    _entity_yaml,
    _first_peers,
    _flow_words,
    _labels_of,
    _Located,
    _located,
    _proto,
    _rules,
    _types_note,
    counterpart_covers,
    counterpart_yaml,
    port_in,
)
from felis.model.constants import API_VERSION, PORT_PROTOCOL_NUMBERS, PORT_PROTOCOLS
from felis.model.resources import Rule
from felis.model.values import Port
from felis.plan.snapshot import Snapshot
from felis.plan.words import local_side, peers_text, remote_side
from felis.selector import parse

DEFAULT_ALLOW_PROFILE = "projectcalico-default-allow"
NO_HOST_EFFECT = (
    "NetworkPolicy",
    "StagedGlobalNetworkPolicy",
    "StagedNetworkPolicy",
    "StagedKubernetesNetworkPolicy",
)
"""Kinds Calico stores but never programs for a host endpoint (FL011), in report order."""


# ---------------------------------------------------------------------------------------------


class Linter:
    def __init__(self, snapshot: Snapshot, config: CalcConfig, *, complete: bool) -> None:
        self.snap = snapshot
        self.config = config
        self.complete = complete
        """False when the resources are only a manifest: what "selects nothing" in it may
        select objects already stored, so those findings are notes."""
        self.findings: list[Finding] = []

    def add(self, finding: Finding) -> None:
        if finding not in self.findings:
            self.findings.append(finding)

    def run(self) -> list[Finding]:
        for name in sorted(self.snap.policies):
            policy = self.snap.policies[name]
            self.check_selects(policy)
            self.check_rule_selectors(policy)
            self.check_failsafe_overlap(policy)
            if policy.do_not_track:
                self.check_star(policy)
                self.check_return_paths(policy)
                self.check_icmp(policy)
        for hep in sorted(self.snap.heps.values(), key=lambda h: h.name):
            self.check_dns(hep)
            self.check_profiles(hep)
        self.check_no_host_effect()
        order = {"warning": 0, "note": 1}
        return sorted(
            self.findings,
            key=lambda f: (order[f.severity], f.policy or "", f.code, f.rule or ""),
        )

    # -- selection ------------------------------------------------------------------------

    def _heps(self, policy: PolicyInfo) -> list[HepInfo]:
        """Named-interface HEPs the policy selects (doNotTrack is ignored on `*` ones)."""
        return [
            h
            for h in self.snap.selected_heps(policy.selector)
            if not (policy.do_not_track and h.interface_name == STAR_INTERFACE)
        ]

    def _missing_severity(self) -> str:
        return WARNING if self.complete else NOTE

    def check_selects(self, policy: PolicyInfo) -> None:
        if not self.snap.selected_heps(policy.selector):
            scope = "" if self.complete else " in these resources"
            self.add(
                Finding(
                    "FL006",
                    self._missing_severity(),
                    policy.name,
                    None,
                    f"selector {policy.selector.canonical} selects no HostEndpoint{scope}",
                    "label the HostEndpoints it should govern, or correct the selector",
                )
            )

    def check_rule_selectors(self, policy: PolicyInfo) -> None:
        for located in _located(policy):
            for side_name, side in (
                ("source", located.rule.source),
                ("destination", located.rule.destination),
            ):
                if side.services is not None:
                    self.add(
                        Finding(
                            "FL006",
                            WARNING,
                            policy.name,
                            located.where,
                            f"{side_name} matches Kubernetes services only, so the rule never "
                            "matches host traffic (felis skips it)",
                            "use selector/nets on HostEndpoints and GlobalNetworkSets",
                        )
                    )
                    continue
                # With a namespace or service-account selector, what the set holds is the
                # translated selector's members (a negated one still matches host endpoints).
                positive = rule_side_selector(side)
                for field_name, selector in (
                    ("selector", positive.canonical if positive is not None else ""),
                    ("notSelector", side.not_selector),
                ):
                    if selector:
                        self._check_rule_selector(located, side_name, field_name, selector)

    def _check_rule_selector(
        self, located: _Located, side_name: str, field_name: str, text: str
    ) -> None:
        selector = parse(text)
        with_ips, without, sets = self.snap.selector_members(selector)
        if with_ips or sets:
            return
        effect = "the rule never matches" if field_name == "selector" else "it excludes nothing"
        extra = (
            f"; HostEndpoints {', '.join(without)} match but have no expectedIPs" if without else ""
        )
        scope = "" if self.complete else " in these resources"
        labels = _labels_of(selector.canonical)
        fix = (
            "add the peers' addresses, e.g.:\n"
            + dump_yaml(
                {
                    "apiVersion": API_VERSION,
                    "kind": "GlobalNetworkSet",
                    "metadata": {"name": "peers", "labels": labels or {"<label>": "<value>"}},
                    "spec": {"nets": ["<peer CIDR>"]},
                }
            )
            if field_name == "selector"
            else "correct the selector"
        )
        self.add(
            Finding(
                "FL006",
                self._missing_severity(),
                located.policy.name,
                located.where,
                f"{side_name}.{field_name} {selector.canonical} matches no HostEndpoint "
                f"address or GlobalNetworkSet{scope}: {effect}{extra}",
                fix,
            )
        )

    def check_star(self, policy: PolicyInfo) -> None:
        stars = [
            h.name
            for h in self.snap.selected_heps(policy.selector)
            if h.interface_name == STAR_INTERFACE
        ]
        if stars:
            self.add(
                Finding(
                    "FL005",
                    WARNING,
                    policy.name,
                    None,
                    f"doNotTrack is ignored on all-interfaces HostEndpoint(s) "
                    f"{', '.join(sorted(stars))} (Calico does the same): this traffic stays "
                    "tracked there",
                    "create a HostEndpoint per interface (interfaceName: eth0) for the "
                    "untracked traffic, or drop doNotTrack",
                    tuple(sorted(stars)),
                )
            )

    # -- symmetry -------------------------------------------------------------------------

    def _counterparts(
        self, policy: PolicyInfo, ingress: bool
    ) -> list[tuple[str, list[Rule], list[Rule]]]:
        """Per selected HEP: (name, untracked rules, tracked rules) of the other direction.
        A policy selecting nothing is checked against itself."""
        heps = self._heps(policy)
        if not heps:
            return [("", list(policy.rules(not ingress)), [])]
        out = []
        for hep in heps:
            classes = self.snap.endpoint_policies(hep)
            untracked = classes.untracked_out if ingress else classes.untracked_in
            tracked = classes.normal_out if ingress else classes.normal_in
            out.append(
                (hep.name, list(_rules(untracked, not ingress)), list(_rules(tracked, not ingress)))
            )
        return out

    def check_return_paths(self, policy: PolicyInfo) -> None:
        for located in _located(policy):
            rule, ingress = located.rule, located.ingress
            if rule.action != "Allow":
                continue
            missing, half = [], []
            for hep, untracked, tracked in self._counterparts(policy, ingress):
                if any(counterpart_covers(r, rule, ingress) for r in untracked):
                    continue
                if any(counterpart_covers(r, rule, ingress, peers=False) for r in tracked):
                    half.append(hep)
                else:
                    missing.append(hep)
            if not missing and not half:
                continue
            self._symmetry_finding(located, missing, half)

    def _symmetry_finding(self, located: _Located, missing: list[str], half: list[str]) -> None:
        rule, ingress = located.rule, located.ingress
        other = "egress" if ingress else "ingress"
        flow = _flow_words(rule, ingress)
        peers = peers_text(remote_side(rule, ingress))
        fix = counterpart_yaml(rule, ingress, located.policy)
        local = local_side(rule, ingress).ports
        remote = remote_side(rule, ingress).ports
        client_flow = bool(remote) and not local
        if half:
            self.add(
                Finding(
                    "FL008",
                    WARNING,
                    located.policy.name,
                    located.where,
                    f"{flow} is untracked in {located.direction} but its replies are only "
                    f"allowed by tracked (normal) {other} policy: conntrack sees them without "
                    "their request (new or invalid), so the flow is half-tracked",
                    fix,
                    tuple(h for h in half if h),
                )
            )
        if missing:
            if client_flow:
                what = (
                    f"host-originated {flow} to {peers} is untracked but no untracked {other} "
                    "rule lets the replies in (they arrive on the ephemeral port and meet the "
                    "default deny)"
                    if not ingress
                    else f"untracked reply rule for {flow} from {peers} has no untracked "
                    f"{other} rule for the requests, which are therefore tracked"
                )
                code = "FL002"
            else:
                what = (
                    f"untracked {located.direction} {flow} from {peers} has no untracked "
                    f"{other} rule for the replies: without conntrack they are new packets and "
                    "meet the default deny"
                    if ingress
                    else f"untracked {located.direction} {flow} to {peers} has no untracked "
                    f"{other} rule for the other direction, which therefore stays tracked "
                    "(half-tracked)"
                )
                code = "FL001"
            self.add(
                Finding(
                    code,
                    WARNING,
                    located.policy.name,
                    located.where,
                    what,
                    fix,
                    tuple(h for h in missing if h),
                )
            )

    # -- ICMP -----------------------------------------------------------------------------

    def check_icmp(self, policy: PolicyInfo) -> None:
        flows = [r for r in policy.ingress if r.action == "Allow" and _proto(r) in PORT_PROTOCOLS]
        if not flows:
            return
        ingress_rules: list[Rule] = []
        heps = self._heps(policy)
        if heps:
            for hep in heps:
                ingress_rules += list(_rules(self.snap.endpoint_policies(hep).untracked_in, True))
        else:
            ingress_rules = list(policy.ingress)
        missing = []
        for family, proto, icmp_type, code, label in (
            (4, 1, 3, 4, "ICMP type 3 code 4 (fragmentation needed)"),
            (6, 58, 2, None, "ICMPv6 type 2 (packet too big)"),
        ):
            if not any(_allows_icmp(r, family, proto, icmp_type, code) for r in ingress_rules):
                missing.append(label)
        if not missing:
            return
        peers = _first_peers(flows)
        new: list[dict[str, Any]] = []
        for label in missing:
            rule: dict[str, Any] = (
                {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 3, "code": 4}}
                if label.startswith("ICMP type")
                else {"action": "Allow", "protocol": "ICMPv6", "icmp": {"type": 2}}
            )
            if peers:
                rule["source"] = peers
            new.append(rule)
        self.add(
            Finding(
                "FL004",
                NOTE,
                policy.name,
                None,
                "ICMP errors about untracked flows are not RELATED to any conntrack entry, so "
                f"nothing lets in {' and '.join(missing)}: path-MTU discovery fails when the "
                "path MTU is smaller than the interface MTU",
                f"add to gnp/{policy.name} spec.ingress{_types_note(policy, True)}:\n"
                + dump_yaml(new),
            )
        )

    # -- failsafe -------------------------------------------------------------------------

    def check_failsafe_overlap(self, policy: PolicyInfo) -> None:
        inbound = self.config.failsafe_inbound
        outbound = self.config.failsafe_outbound
        for located in _located(policy):
            rule, ingress = located.rule, located.ingress
            proto = _proto(rule)
            if rule.action not in ("Allow", "Deny"):
                continue
            # What the failsafe chains accept: before any tracked policy, and in raw after an
            # untracked Deny.
            checks: list[tuple[Sequence[Port], Sequence[FailsafePort], str]] = [
                (
                    local_side(rule, ingress).ports if ingress else remote_side(rule, False).ports,
                    inbound if ingress else outbound,
                    "local" if ingress else "remote",
                )
            ]
            if policy.do_not_track:
                # raw also accepts the reply direction of the other list.
                checks.append(
                    (
                        remote_side(rule, True).ports if ingress else local_side(rule, False).ports,
                        outbound if ingress else inbound,
                        "remote" if ingress else "local",
                    )
                )
            hits = []
            for ports, entries, where in checks:
                if not ports:
                    continue
                for entry in entries:
                    if entry.net is not None:
                        continue
                    number = PORT_PROTOCOL_NUMBERS[entry.protocol]
                    if proto not in (None, number) or not port_in(ports, entry.port):
                        continue
                    hits.append(f"{where} {entry.protocol}:{entry.port}")
            if not hits:
                continue
            overlap = ", ".join(hits)
            fix = (
                "drop those ports from the rule, or change the failsafe ports "
                "(--failsafe-inbound/--failsafe-outbound) if they must be policed"
            )
            if policy.do_not_track and rule.action == "Allow":
                # felis lets an untracked Allow win over failsafe (docs/dataplane.md).
                message = (
                    f"{overlap} are failsafe ports: this untracked Allow decides that traffic and "
                    "takes it out of conntrack (Calico's failsafe rules would take it first "
                    "and track it)"
                )
                fix = "nothing to do if intended; " + fix
            elif policy.do_not_track:
                message = (
                    f"failsafe rules accept {overlap} even when this untracked Deny matches, so "
                    "it cannot deny that traffic"
                )
            else:
                verb = "deny" if rule.action == "Deny" else "allow"
                message = (
                    f"failsafe rules accept {overlap} before any policy runs, so this rule "
                    f"cannot {verb} that traffic"
                )
            self.add(
                Finding(
                    "FL007",
                    WARNING if rule.action == "Deny" else NOTE,
                    policy.name,
                    located.where,
                    message,
                    fix,
                )
            )

    # -- kinds Calico never applies to a host endpoint -----------------------------------------

    def check_no_host_effect(self) -> None:
        """One note for all of them: felis accepts them so that a Calico bundle applies whole,
        and a note per object would bury the findings that matter."""
        counts = Counter(kind for kind, _ in self.snap.resources if kind in NO_HOST_EFFECT)
        if not counts:
            return
        listed = ", ".join(f"{counts[kind]} {kind}" for kind in NO_HOST_EFFECT if counts[kind])
        self.add(
            Finding(
                "FL011",
                NOTE,
                None,
                None,
                f"{listed}: these kinds do not apply to host endpoints (namespaced policies select "
                "only workload endpoints, staged policies are never programmed); felis stores "
                "them and leaves them out of every node's rules",
                "nothing to do if they are meant for workloads; to govern host endpoints, write "
                "the rules as a GlobalNetworkPolicy",
            )
        )

    # -- DNS ------------------------------------------------------------------------------

    def check_profiles(self, hep: HepInfo) -> None:
        missing = [
            p for p in hep.profiles if p != DEFAULT_ALLOW_PROFILE and p not in self.snap.profiles
        ]
        if not missing:
            return
        names = ", ".join(repr(p) for p in missing)
        self.add(
            Finding(
                "FL010",
                self._missing_severity(),
                None,
                None,
                f"profile {names} does not exist: as in Calico, traffic of this HostEndpoint "
                "that no policy allows is dropped at the first missing profile, and profiles "
                "listed after it are never consulted",
                f"create Profile {names}, or remove it from spec.profiles",
                (hep.name,),
            )
        )

    def check_dns(self, hep: HepInfo) -> None:
        if hep.interface_name == STAR_INTERFACE:
            return
        classes = self.snap.endpoint_policies(hep)
        if not classes.has_untracked:
            return
        for proto_name in ("udp", "tcp"):
            number = PORT_PROTOCOL_NUMBERS[proto_name]
            failsafe = any(
                e.protocol == proto_name and e.port == 53 and e.net is None
                for e in self.config.failsafe_outbound
            )
            if failsafe:
                continue
            queries = [
                r
                for r in _rules(classes.untracked_out, False)
                if r.action == "Allow"
                and _proto(r) in (None, number)
                and not r.source.ports
                and port_in(r.destination.ports, 53)
            ]
            if queries:
                replies = any(
                    r.action == "Allow"
                    and _proto(r) in (None, number)
                    and not r.destination.ports
                    and port_in(r.source.ports, 53)
                    for r in _rules(classes.untracked_in, True)
                )
                if not replies:
                    self._dns_untracked(hep, proto_name, queries[0])
                continue
            allowed = DEFAULT_ALLOW_PROFILE in hep.profiles or any(
                r.action == "Allow"
                and _proto(r) in (None, number)
                and not r.source.ports
                and port_in(r.destination.ports, 53)
                for r in _rules(classes.normal_out, False)
            )
            if not allowed:
                self.add(
                    Finding(
                        "FL003",
                        NOTE,
                        None,
                        None,
                        f"DNS over {proto_name.upper()} from this host is dropped: the "
                        "HostEndpoint denies what no policy allows, and no egress rule allows "
                        f"{proto_name.upper()} to port 53"
                        + (" (UDP passes as a failsafe port)" if proto_name == "tcp" else ""),
                        "if the host resolves names through this interface, add a normal "
                        "(tracked) policy:\n"
                        + dump_yaml(
                            [
                                {
                                    "action": "Allow",
                                    "protocol": proto_name.upper(),
                                    "destination": {"ports": [53]},
                                }
                            ]
                        ),
                        (hep.name,),
                    )
                )

    def _dns_untracked(self, hep: HepInfo, proto_name: str, query: Rule) -> None:
        reply: dict[str, Any] = {
            "action": "Allow",
            "protocol": proto_name.upper(),
            "source": {**_entity_yaml(query.destination, ()), "ports": [53]},
        }
        self.add(
            Finding(
                "FL003",
                WARNING,
                None,
                None,
                f"DNS queries over {proto_name.upper()} are untracked by an egress rule, but no "
                "untracked ingress rule allows replies from port 53: name resolution fails",
                "add to an untracked policy selecting this HostEndpoint, spec.ingress:\n"
                + dump_yaml([reply]),
                (hep.name,),
            )
        )
