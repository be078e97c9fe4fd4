"""The chains of each table: static chains, dispatch trees, endpoint chains.

This follows Calico's iptables layout for host endpoints with felis' names and without the
workload, tunnel, RPF, DSCP, IPVS and NAT pieces (felis polices host endpoints only). See
docs/dataplane.md for every difference and why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from felis.calc import names
from felis.calc.config import CalcConfig
from felis.calc.dispatch import dispatch
from felis.calc.failsafe import failsafe_in_rules, failsafe_out_rules
from felis.calc.fastpath import FastPath
from felis.calc.inputs import HepInfo, PolicyInfo
from felis.calc.policies import EndpointPolicies, Groups
from felis.calc.sources import PortsSource
from felis.dataplane.spec import (
    Accept,
    Chain,
    CtState,
    Drop,
    Family,
    Hook,
    HookPosition,
    Jump,
    Match,
    NoTrack,
    Return,
    Rule,
    SetMark,
    Table,
    TableSpec,
    safe_comment,
)

DEFAULT_ALLOW_PROFILE = "projectcalico-default-allow"

ChainLookup = Callable[[str, bool], str]
"""(policy name, ingress) → policy chain name; the caller renders it on demand."""

ProfileLookup = Callable[[str, bool], str | None]
"""(profile name, ingress) → profile chain name, rendered on demand; None for a profile that
does not exist or cannot be programmed."""


def _no_profiles(profile: str, ingress: bool) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class Endpoint:
    iface: str
    """Interface name, or the all-interfaces pseudo name."""
    hep: HepInfo
    policies: EndpointPolicies


_ESTABLISHED = Match(ct_states=frozenset({CtState.RELATED, CtState.ESTABLISHED}))
_INVALID = Match(ct_states=frozenset({CtState.INVALID}))


class _Tables:
    """Builds the three tables of one family."""

    def __init__(
        self,
        family: Family,
        config: CalcConfig,
        endpoints: list[Endpoint],
        star: Endpoint | None,
        policy_chain: ChainLookup,
        policy_chains: Mapping[str, Chain],
        profile_chain: ProfileLookup = _no_profiles,
    ) -> None:
        self.family = family
        self.profile_chain = profile_chain
        self.policy_chains = policy_chains
        self.fast_sets: dict[str, PortsSource] = {}
        self.config = config
        self.marks = config.marks
        self.endpoints = endpoints
        self.star = star
        self.policy_chain = policy_chain
        marks = self.marks
        self._accepted_return = Rule(
            Match(mark_set=marks.accept), Return(), "Return if policy accepted"
        )
        self._notrack = Rule(Match(mark_set=marks.accept), NoTrack())
        self._pass_clear = Match(mark_clear=marks.pass_)
        # The rules jumping to one policy are the same in every endpoint chain: build them once.
        self._blocks: dict[tuple[str, bool, bool], tuple[Rule, ...]] = {}
        self.group_chains: dict[str, Chain] = {}

    # ------------------------------------------------------------------ building blocks

    def clear_all(self) -> Rule:
        return Rule(action=SetMark(0, self.marks.all))

    def accepted(self, action: Accept | Return, comment: str = "") -> Rule:
        return Rule(Match(mark_set=self.marks.accept), action, comment)

    def tiers(self, groups: Groups, ingress: bool, untracked: bool) -> list[Rule]:
        marks = self.marks
        out: list[Rule] = []
        for group in groups:
            tier = group.tier.name
            out.append(Rule(action=SetMark(0, marks.pass_), comment=f"Start of tier {tier}"))
            for run in _same_selector_runs(group.policies):
                if len(run) == 1:
                    out += self._jump_block(run[0].name, ingress, untracked)
                else:
                    out += self._group_block(run, ingress, untracked)
            if group.end_of_tier_drop:
                out.append(
                    Rule(
                        Match(mark_clear=marks.pass_),
                        Drop(),
                        safe_comment(f"End of tier {tier}. Drop if no policies passed packet"),
                    )
                )
        return out

    def _jump_block(self, policy: str, ingress: bool, untracked: bool) -> tuple[Rule, ...]:
        key = (policy, ingress, untracked)
        block = self._blocks.get(key)
        if block is None:
            jump = Rule(
                self._pass_clear,
                Jump(self.policy_chain(policy, ingress)),
                safe_comment(f"gnp/{policy}"),
            )
            if untracked:
                block = (jump, self._notrack, self._accepted_return)
            else:
                block = (jump, self._accepted_return)
            self._blocks[key] = block
        return block

    def _group_block(
        self, run: list[PolicyInfo], ingress: bool, untracked: bool
    ) -> tuple[Rule, ...]:
        """Consecutive policies with one selector always apply together, so (like Calico's
        policy groups: docs/calico-semantics.md#policy-groups) they get one shared chain and
        endpoint chains jump to it once."""
        selector = run[0].selector
        name = names.group_chain(selector.canonical, ingress, (p.name for p in run))
        if name not in self.group_chains:
            marks = self.marks
            verdict = marks.accept | marks.pass_
            rules: list[Rule] = []
            for index, policy in enumerate(run):
                target = Jump(self.policy_chain(policy.name, ingress))
                comment = safe_comment(f"gnp/{policy.name}")
                if index == 0:
                    rules.append(Rule(action=target, comment=comment))
                    continue
                if index % 5 == 0:
                    rules.append(Rule(Match(mark_set=marks.accept), Return(), "Return on verdict"))
                    rules.append(Rule(Match(mark_set=marks.pass_), Return(), "Return on verdict"))
                rules.append(Rule(Match(mark_clear=verdict), target, comment))
            self.group_chains[name] = Chain(name, tuple(rules))
        jump = Rule(self._pass_clear, Jump(name), "policy group")
        if untracked:
            return (jump, self._notrack, self._accepted_return)
        return (jump, self._accepted_return)

    def profiles(self, hep: HepInfo, ingress: bool) -> list[Rule]:
        """Each profile in turn, as Felix runs them after all tiers. The built-in
        default-allow profile needs no chain. A profile that does not exist drops the packet
        (Felix programs a drop-all profile in its place), so later profiles never see it."""
        out: list[Rule] = []
        for profile in hep.profiles:
            if profile == DEFAULT_ALLOW_PROFILE:
                out.append(
                    Rule(
                        action=SetMark(self.marks.accept, self.marks.accept),
                        comment=f"Profile {profile} allows all",
                    )
                )
                out.append(self.accepted(Return(), "Return if profile accepted"))
                continue
            chain = self.profile_chain(profile, ingress)
            if chain is None:
                out.append(
                    Rule(
                        action=Drop(),
                        comment=safe_comment(f"Profile {profile} missing: drop"),
                    )
                )
                continue
            out.append(Rule(action=Jump(chain), comment=safe_comment(f"pro/{profile}")))
            out.append(self.accepted(Return(), "Return if profile accepted"))
        return out

    def clear_verdict(self) -> Rule:
        return Rule(action=SetMark(0, self.marks.accept | self.marks.pass_))

    def conntrack(self, allow_returns: bool) -> list[Rule]:
        if allow_returns:
            accept = self.marks.accept
            first = [
                Rule(_ESTABLISHED, SetMark(accept, accept)),
                Rule(_ESTABLISHED, Return()),
            ]
        else:
            first = [Rule(_ESTABLISHED, Accept())]
        return [*first, Rule(_INVALID, Drop())]

    # ------------------------------------------------------------------ endpoint chains

    def untracked_chain(self, ep: Endpoint, ingress: bool) -> Chain:
        """Policy first, failsafe after: a packet an untracked policy allows stays untracked
        even on a failsafe port (Calico checks failsafe first and so tracks, then drops, a
        connection whose ephemeral port is a failsafe port). A Deny consults failsafe before
        it drops (`untracked_deny`), so failsafe ports still always pass."""
        groups = ep.policies.untracked_in if ingress else ep.policies.untracked_out
        failsafe = names.FAILSAFE_IN if ingress else names.FAILSAFE_OUT
        prefix = names.FROM_HOST_PREFIX if ingress else names.TO_HOST_PREFIX
        rules = [self.clear_verdict()]
        rules += self.tiers(groups, ingress, untracked=True)
        rules.append(Rule(action=Jump(failsafe)))
        return Chain(names.endpoint_chain(prefix, ep.iface), tuple(rules))

    def untracked_deny(self, ingress: bool) -> Chain:
        """Where an untracked Deny goes: failsafe traffic is accepted (tracked, as Calico's raw
        failsafe rules accept it), anything else dropped. The drop bit is cleared first so that
        an accepted packet does not carry it into the tracked tables."""
        failsafe = names.FAILSAFE_IN if ingress else names.FAILSAFE_OUT
        return Chain(
            names.untracked_deny_chain(ingress),
            (
                Rule(action=SetMark(0, self.marks.drop)),
                Rule(action=Jump(failsafe), comment="Failsafe ports pass an untracked Deny"),
                Rule(action=Drop()),
            ),
        )

    def untracked_accept(self) -> Chain:
        """What the walk does for an untracked Allow, in one place for the lifted rules: the
        mark the walk would leave (all our bits clear but accept), NOTRACK, ACCEPT."""
        marks = self.marks
        return Chain(
            names.UNTRACKED_ACCEPT,
            (
                Rule(action=SetMark(marks.accept, marks.all)),
                Rule(action=NoTrack()),
                Rule(action=Accept(), comment="Untracked policy accepted packet"),
            ),
        )

    def lifted(self, chains: list[Chain], eps: list[Endpoint], ingress: bool) -> list[Rule]:
        """The raw hook's fast path (felis.calc.fastpath): each endpoint's leading untracked
        Allow rules, limited to its interface, ahead of the walk."""
        known = {c.name: c for c in chains}
        known.update(self.group_chains)
        known.update(self.policy_chains)
        fast = FastPath(self.family, self.marks, known)
        prefix = names.FROM_HOST_PREFIX if ingress else names.TO_HOST_PREFIX
        out: list[Rule] = []
        for ep in eps:
            out += fast.rules(ep.iface, names.endpoint_chain(prefix, ep.iface), ingress)
        self.fast_sets.update(fast.sets)
        return out

    def pre_dnat_chain(self, ep: Endpoint) -> Chain:
        rules = self.conntrack(allow_returns=False)
        rules += [Rule(action=Jump(names.FAILSAFE_IN)), self.clear_verdict()]
        rules += self.tiers(ep.policies.pre_dnat_in, True, untracked=False)
        return Chain(names.endpoint_chain(names.FROM_HOST_PREFIX, ep.iface), tuple(rules))

    def tracked_chain(self, ep: Endpoint, ingress: bool, allow_returns: bool) -> Chain:
        groups = ep.policies.normal_in if ingress else ep.policies.normal_out
        failsafe = names.FAILSAFE_IN if ingress else names.FAILSAFE_OUT
        prefix = names.FROM_HOST_PREFIX if ingress else names.TO_HOST_PREFIX
        rules = self.conntrack(allow_returns)
        rules += [Rule(action=Jump(failsafe)), self.clear_verdict()]
        rules += self.tiers(groups, ingress, untracked=False)
        rules += self.profiles(ep.hep, ingress)
        rules.append(Rule(action=Drop(), comment="Drop if no profiles matched"))
        return Chain(names.endpoint_chain(prefix, ep.iface), tuple(rules))

    def forward_chain(self, ep: Endpoint, ingress: bool) -> Chain:
        groups = ep.policies.forward_in if ingress else ep.policies.forward_out
        prefix = names.FROM_HOST_FORWARD_PREFIX if ingress else names.TO_HOST_FORWARD_PREFIX
        rules = self.conntrack(allow_returns=False)
        rules.append(self.clear_verdict())
        rules += self.tiers(groups, ingress, untracked=False)
        # As in Calico, the default allow exists only for an endpoint without any forward
        # policy: forward policy in one direction leaves the other direction to the kernel's
        # FORWARD chain and its policy (the packet returns with the accept bit clear).
        if not ep.policies.has_forward:
            accept = self.marks.accept
            rules.append(
                Rule(action=SetMark(accept, accept), comment="Allow forwarded traffic by default")
            )
            rules.append(Rule(action=Return(), comment="Return for accepted forward traffic"))
        return Chain(names.endpoint_chain(prefix, ep.iface), tuple(rules))

    # ------------------------------------------------------------------ tables

    def raw(self) -> tuple[list[Chain], tuple[Hook, ...]]:
        # Every packet crosses raw, so only endpoints with untracked policy are dispatched here
        # (the all-interfaces HEP never is: doNotTrack is not supported on it).
        untracked = [ep for ep in self.endpoints if ep.policies.has_untracked]
        chains = [
            Chain(
                names.RAW_PREROUTING,
                (
                    self.clear_all(),
                    Rule(action=Jump(names.FROM_HOST_ENDPOINT)),
                    self.accepted(Accept()),
                ),
            ),
            Chain(
                names.RAW_OUTPUT,
                (
                    self.clear_all(),
                    Rule(action=Jump(names.TO_HOST_ENDPOINT)),
                    self.accepted(Accept()),
                ),
            ),
        ]
        for root, prefix, incoming in (
            (names.FROM_HOST_ENDPOINT, names.FROM_HOST_PREFIX, True),
            (names.TO_HOST_ENDPOINT, names.TO_HOST_PREFIX, False),
        ):
            entries = [(ep.iface, names.endpoint_chain(prefix, ep.iface)) for ep in untracked]
            chains += dispatch(root, entries, incoming, None)
        for ep in untracked:
            chains += [self.untracked_chain(ep, True), self.untracked_chain(ep, False)]
        chains += [self.untracked_deny(True), self.untracked_deny(False), self.untracked_accept()]
        cfg = self.config
        chains.append(
            Chain(
                names.FAILSAFE_IN,
                failsafe_in_rules(
                    self.family, cfg.failsafe_inbound, cfg.failsafe_outbound, raw=True
                ),
            )
        )
        chains.append(
            Chain(
                names.FAILSAFE_OUT,
                failsafe_out_rules(
                    self.family, cfg.failsafe_inbound, cfg.failsafe_outbound, raw=True
                ),
            )
        )
        hooks = (
            *(
                Hook("PREROUTING", HookPosition.INSERT, r)
                for r in self.lifted(chains, untracked, True)
            ),
            Hook("PREROUTING", HookPosition.INSERT, Rule(action=Jump(names.RAW_PREROUTING))),
            *(
                Hook("OUTPUT", HookPosition.INSERT, r)
                for r in self.lifted(chains, untracked, False)
            ),
            Hook("OUTPUT", HookPosition.INSERT, Rule(action=Jump(names.RAW_OUTPUT))),
        )
        return chains, hooks

    def _failsafe(self) -> list[Chain]:
        cfg = self.config
        return [
            Chain(
                names.FAILSAFE_IN,
                failsafe_in_rules(
                    self.family, cfg.failsafe_inbound, cfg.failsafe_outbound, raw=False
                ),
            ),
            Chain(
                names.FAILSAFE_OUT,
                failsafe_out_rules(
                    self.family, cfg.failsafe_inbound, cfg.failsafe_outbound, raw=False
                ),
            ),
        ]

    def mangle(self) -> tuple[list[Chain], tuple[Hook, ...]]:
        accepted_comment = "Host endpoint policy accepted packet."
        chains = [
            Chain(
                names.MANGLE_PREROUTING,
                (
                    Rule(_ESTABLISHED, Accept()),
                    Rule(action=Jump(names.FROM_HOST_ENDPOINT)),
                    self.accepted(Accept(), accepted_comment),
                ),
            ),
            Chain(
                names.MANGLE_POSTROUTING,
                (
                    self.clear_all(),
                    Rule(Match(ct_dnat=True), Jump(names.TO_HOST_ENDPOINT)),
                    self.accepted(Return(), accepted_comment),
                ),
            ),
        ]
        pre_dnat = [ep for ep in self.endpoints if ep.policies.pre_dnat_in]
        star = self.star
        star_from = (
            names.endpoint_chain(names.FROM_HOST_PREFIX, star.iface)
            if star is not None and star.policies.pre_dnat_in
            else None
        )
        accepted = self.marks.accept
        star_to = (
            names.endpoint_chain(names.TO_HOST_PREFIX, star.iface) if star is not None else None
        )
        chains += dispatch(
            names.FROM_HOST_ENDPOINT,
            [(ep.iface, names.endpoint_chain(names.FROM_HOST_PREFIX, ep.iface)) for ep in pre_dnat],
            True,
            star_from,
        )
        chains += dispatch(
            names.TO_HOST_ENDPOINT,
            [
                (ep.iface, names.endpoint_chain(names.TO_HOST_PREFIX, ep.iface))
                for ep in self.endpoints
            ],
            False,
            star_to,
        )
        for ep in pre_dnat:
            chains.append(self.pre_dnat_chain(ep))
        for ep in self.endpoints:
            chains.append(self.tracked_chain(ep, False, allow_returns=True))
        if star is not None:
            if star_from is not None:
                chains.append(self.pre_dnat_chain(star))
            chains.append(self.tracked_chain(star, False, allow_returns=True))
        chains += self._failsafe()
        # Without preDNAT policy the PREROUTING chain could only accept what the kernel accepts
        # anyway, so it is not hooked at all: one hook fewer on every incoming packet.
        prerouting: tuple[Hook, ...] = ()
        if pre_dnat or star_from is not None:
            prerouting = (
                # Accepted by untracked policy: decided already (Calico's second rule).
                Hook("PREROUTING", HookPosition.INSERT, self.accepted(Accept())),
                Hook("PREROUTING", HookPosition.INSERT, Rule(action=Jump(names.MANGLE_PREROUTING))),
            )
        hooks = (
            *prerouting,
            # Set by untracked policy or by the FORWARD append rule: the packet had its HEP
            # policy. Tested in the hook so that such packets skip the jump.
            Hook(
                "POSTROUTING",
                HookPosition.INSERT,
                Rule(Match(mark_clear=accepted), Jump(names.MANGLE_POSTROUTING)),
            ),
        )
        return chains, hooks

    def filter(self) -> tuple[list[Chain], tuple[Hook, ...]]:
        marks = self.marks
        accepted_comment = "Host endpoint policy accepted packet."
        chains = [
            Chain(
                names.FILTER_INPUT,
                (
                    self.clear_all(),
                    Rule(action=Jump(names.FROM_HOST_ENDPOINT)),
                    self.accepted(Accept(), accepted_comment),
                ),
            ),
            Chain(
                names.FILTER_FORWARD,
                (
                    Rule(action=SetMark(0, marks.all & ~marks.accept)),
                    Rule(Match(mark_clear=marks.accept), Jump(names.FROM_HEP_FORWARD)),
                    Rule(action=Jump(names.TO_HEP_FORWARD)),
                ),
            ),
            Chain(
                names.FILTER_OUTPUT,
                (
                    self.clear_all(),
                    # "Only if not DNAT'd", written so nft and iptables agree on untracked
                    # packets: never a negated ct-status match
                    # (docs/calico-semantics.md#untracked-packets-and-dnat-tests).
                    Rule(Match(ct_dnat=True), Return(), "DNAT: policed in mangle POSTROUTING"),
                    Rule(action=Jump(names.TO_HOST_ENDPOINT)),
                    self.accepted(Accept(), accepted_comment),
                ),
            ),
        ]
        everyone = list(self.endpoints)
        star = self.star
        for root, prefix, incoming in (
            (names.FROM_HOST_ENDPOINT, names.FROM_HOST_PREFIX, True),
            (names.TO_HOST_ENDPOINT, names.TO_HOST_PREFIX, False),
            (names.FROM_HEP_FORWARD, names.FROM_HOST_FORWARD_PREFIX, True),
            (names.TO_HEP_FORWARD, names.TO_HOST_FORWARD_PREFIX, False),
        ):
            default = names.endpoint_chain(prefix, star.iface) if star is not None else None
            entries = [(ep.iface, names.endpoint_chain(prefix, ep.iface)) for ep in everyone]
            chains += dispatch(root, entries, incoming, default)
        if star is not None:
            everyone.append(star)
        for ep in everyone:
            chains += [
                self.tracked_chain(ep, True, allow_returns=False),
                self.tracked_chain(ep, False, allow_returns=False),
                self.forward_chain(ep, True),
                self.forward_chain(ep, False),
            ]
        chains += self._failsafe()
        accept = marks.accept
        hooks = (
            # Accepted by untracked policy (Calico's first rule of its INPUT/OUTPUT chains),
            # tested in the hook so that untracked packets skip the jump.
            Hook("INPUT", HookPosition.INSERT, self.accepted(Accept())),
            Hook("INPUT", HookPosition.INSERT, Rule(action=Jump(names.FILTER_INPUT))),
            Hook("FORWARD", HookPosition.INSERT, Rule(action=Jump(names.FILTER_FORWARD))),
            Hook("OUTPUT", HookPosition.INSERT, self.accepted(Accept())),
            Hook("OUTPUT", HookPosition.INSERT, Rule(action=Jump(names.FILTER_OUTPUT))),
            Hook(
                "FORWARD",
                HookPosition.APPEND,
                Rule(Match(mark_set=accept), Accept(), "Policy explicitly accepted packet."),
            ),
            # Tells mangle POSTROUTING the packet was forwarded, so host egress policy is not
            # applied to it a second time.
            Hook(
                "FORWARD",
                HookPosition.APPEND,
                Rule(action=SetMark(accept, accept), comment="Mark forwarded packet as policed"),
            ),
        )
        return chains, hooks


def _same_selector_runs(policies: Iterable[PolicyInfo]) -> list[list[PolicyInfo]]:
    runs: list[list[PolicyInfo]] = []
    for policy in policies:
        if runs and runs[-1][0].selector == policy.selector:
            runs[-1].append(policy)
        else:
            runs.append([policy])
    return runs


def reachable(chains: Mapping[str, Chain], roots: Iterable[str]) -> dict[str, Chain]:
    """The chains reachable from `roots`, in the order they were given (reference counting)."""
    seen: set[str] = set()
    stack = [r for r in roots if r in chains]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(t for t in chains[name].targets() if t in chains and t not in seen)
    return {name: chain for name, chain in chains.items() if name in seen}


def build_tables(
    family: Family,
    *,
    config: CalcConfig,
    endpoints: list[Endpoint],
    star: Endpoint | None,
    policy_chain: ChainLookup,
    policy_chains: Mapping[str, Chain],
    fast_sets: dict[str, PortsSource],
    profile_chain: ProfileLookup = _no_profiles,
) -> dict[Table, TableSpec]:
    """All tables of one family. `policy_chain` names the chain of a policy direction (and
    renders it into `policy_chains` as a side effect) as the endpoint chains are built;
    `profile_chain` does the same for profiles. The fast path's port sets are added to
    `fast_sets`."""
    builder = _Tables(family, config, endpoints, star, policy_chain, policy_chains, profile_chain)
    tables: dict[Table, TableSpec] = {}
    for table, make in (
        (Table.RAW, builder.raw),
        (Table.MANGLE, builder.mangle),
        (Table.FILTER, builder.filter),
    ):
        chains, hooks = make()
        candidates = {c.name: c for c in chains}
        shared = {**builder.group_chains, **policy_chains}
        pending = list(chains)
        for chain in pending:  # grows while iterating: breadth-first, deterministic order
            for target in chain.targets():
                if target not in candidates and target in shared:
                    candidates[target] = shared[target]
                    pending.append(shared[target])
        roots = [h.rule.action.target for h in hooks if isinstance(h.rule.action, Jump)]
        tables[table] = TableSpec(table, reachable(candidates, roots), hooks)
    fast_sets.update(builder.fast_sets)
    return tables
