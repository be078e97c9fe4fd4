"""The incremental front of the calculation, and `compute`, its one-shot form.

The agent feeds resource changes one at a time. Two kinds of change are told apart:
- layout changes (this node's HEPs, any policy or tier, the interfaces) rebuild the chains, but
  each policy chain is rendered once and reused while the policy is unchanged;
- membership changes (another node's HEP, a network set) only move IP set members, through the
  label index; the chains of the new spec are the very objects of the previous one.
`compute` runs the same code from an empty state, so both always agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from felis.calc import names
from felis.calc.config import CalcConfig, HostInterface
from felis.calc.endpoints import ActiveEndpoints, resolve
from felis.calc.hooks import place_hooks
from felis.calc.inputs import (
    STAR_INTERFACE,
    GnsInfo,
    HepInfo,
    PolicyInfo,
    ProfileInfo,
    RuleSource,
    TierInfo,
    gns_info,
    hep_info,
    inherited_labels,
    network_set_info,
    policy_info,
    profile_info,
    tier_info,
)
from felis.calc.ipsets import Membership, ObjData
from felis.calc.layout import Endpoint, build_tables
from felis.calc.policies import EndpointPolicies, classify, sort_policies, untracked_ignored
from felis.calc.rules import RenderedChain, render_policy_chain
from felis.calc.sources import NetsSource, PortsSource, SetSource
from felis.calc.xdp import blocklists
from felis.dataplane.identifiers import check_iface
from felis.dataplane.ir_checks import check_chain_alone
from felis.dataplane.set_members import normalise_members
from felis.dataplane.spec import (
    Chain,
    DataplaneSpec,
    Family,
    FrozenDict,
    IpSet,
    Ruleset,
    Table,
    TableSpec,
)
from felis.errors import FelisError
from felis.model.kinds import resolve_kind
from felis.model.namespaced import qualified_name
from felis.model.resources import (
    FelixConfiguration,
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    HostEndpoint,
    NetworkPolicy,
    NetworkSet,
    Profile,
    Resource,
    StagedGlobalNetworkPolicy,
    StagedKubernetesNetworkPolicy,
    StagedNetworkPolicy,
    Tier,
)

_NO_HOST_EFFECT = (
    NetworkPolicy,
    StagedGlobalNetworkPolicy,
    StagedNetworkPolicy,
    StagedKubernetesNetworkPolicy,
)


@dataclass(frozen=True, slots=True, order=True)
class Skipped:
    """An object left out of the spec because it cannot be programmed; the rest still is."""

    kind: str
    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name} skipped: {self.reason}"


@dataclass(frozen=True, slots=True)
class CalcResult:
    spec: DataplaneSpec
    warnings: list[str] = field(default_factory=list)
    """Things the user should know (ignored doNotTrack on a `*` HEP, skipped rules, …)."""
    skipped: list[Skipped] = field(default_factory=list)
    """Objects left out whole: errors, where `warnings` are advice."""
    xdp: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Interface → the source networks XDP may drop there (felis.calc.xdp)."""


@dataclass(frozen=True, slots=True)
class _FamilyLayout:
    tables: FrozenDict[Table, TableSpec]
    """Frozen once here, so every Ruleset built from this layout holds this very mapping."""
    sources: dict[str, SetSource]


@dataclass(frozen=True, slots=True)
class _Rendered:
    policy: RuleSource
    chain: Chain
    rendered: RenderedChain
    problem: str | None = None
    """Why the renderers would refuse the chain (the policy is then left out)."""


class Calculator:
    """Keeps the resources seen so far and answers with the node's `DataplaneSpec`."""

    def __init__(self, node: str, config: CalcConfig | None = None) -> None:
        self.node = node
        self.config = config or CalcConfig()
        self._heps: dict[str, HepInfo] = {}
        self._policies: dict[str, PolicyInfo] = {}
        self._tiers: dict[str, TierInfo] = {}
        self._sets: dict[str, GnsInfo] = {}
        self._profiles: dict[str, ProfileInfo] = {}
        self._interfaces: tuple[HostInterface, ...] | None = None
        self._members = Membership()
        self._rendered: dict[tuple[str, str, bool, Family], _Rendered] = {}
        self._layout: dict[Family, _FamilyLayout] = {}
        self._endpoints: tuple[str, ...] = ()
        self._ifaces: tuple[str, ...] = ()
        self._warnings: list[str] = []
        self._refused: dict[tuple[str, str], str] = {}
        """(kind, name) → why the object could not be read; kept until it changes or goes."""
        self._broken: dict[str, str] = {}
        """Policies whose chains the renderers would refuse, from the last rebuild."""
        self._broken_profiles: dict[str, str] = {}
        self._acquired: dict[tuple[Family, str], SetSource] = {}
        self._ipsets: dict[tuple[Family, str], tuple[int, IpSet]] = {}
        self._dirty = True

    # ------------------------------------------------------------------ input

    def upsert(self, resource: Resource) -> None:
        """Add or replace a resource. One that cannot be programmed replaces any earlier version
        with nothing (as an invalid update does in Calico) and is reported in `skipped`."""
        key = (resource.kind, qualified_name(resource))
        try:
            self._upsert(resource)
        except (FelisError, ValueError) as err:
            self.remove(*key)
            self._refused[key] = str(err)
            self._dirty = True
        else:
            if self._refused.pop(key, None) is not None:
                self._dirty = True

    def _upsert(self, resource: Resource) -> None:
        if isinstance(resource, HostEndpoint):
            hep = hep_info(resource)
            if hep.interface_name not in ("", STAR_INTERFACE):
                # It reaches rules of this node or another; refused here, it is this HEP alone.
                check_iface(hep.interface_name)
            self._upsert_hep(hep)
        elif isinstance(resource, GlobalNetworkPolicy):
            info = policy_info(resource)
            if self._policies.get(info.name) != info:
                self._policies[info.name] = info
                self._dirty = True
        elif isinstance(resource, GlobalNetworkSet):
            self._upsert_set(gns_info(resource))
        elif isinstance(resource, NetworkSet):
            self._upsert_set(network_set_info(resource))
        elif isinstance(resource, _NO_HOST_EFFECT):
            # Calico programs none of these for a host endpoint: namespaced policies select only
            # workload endpoints, and staged policies are never programmed at all.
            pass
        elif isinstance(resource, Tier):
            tier = tier_info(resource)
            if self._tiers.get(tier.name) != tier:
                self._tiers[tier.name] = tier
                self._dirty = True
        elif isinstance(resource, Profile):
            self._set_profile(resource.metadata.name, profile_info(resource))
        elif isinstance(resource, FelixConfiguration):
            # Node settings, not rules: the caller resolves them (felis.calc.felixconfig) and
            # hands the result to set_config.
            pass
        else:  # pragma: no cover - the Resource union is exhaustive
            raise TypeError(f"not a felis resource: {type(resource).__name__}")

    def _upsert_set(self, gns: GnsInfo) -> None:
        if self._sets.get(gns.name) != gns:
            self._sets[gns.name] = gns
            self._index_set(gns)

    def _index_set(self, gns: GnsInfo) -> None:
        labels = inherited_labels(gns.labels, gns.profiles, self._profiles)
        self._members.upsert(("gns", gns.name), labels, ObjData(gns.cidrs))

    def _upsert_hep(self, hep: HepInfo) -> None:
        old = self._heps.get(hep.name)
        if old == hep:
            return
        self._heps[hep.name] = hep
        if hep.node == self.node or (old is not None and old.node == self.node):
            self._dirty = True
        self._index_hep(hep)

    def _index_hep(self, hep: HepInfo) -> None:
        data = ObjData(hep.cidrs, hep.expected_ips, hep.ports)
        self._members.upsert(("hep", hep.name), self._labels_of(hep), data)

    def _labels_of(self, hep: HepInfo) -> Mapping[str, str]:
        return inherited_labels(hep.labels, hep.profiles, self._profiles)

    def _set_profile(self, name: str, profile: ProfileInfo | None) -> None:
        old = self._profiles.get(name)
        if old == profile:
            return
        if profile is None:
            del self._profiles[name]
        else:
            self._profiles[name] = profile
        users = [hep for hep in self._heps.values() if name in hep.profiles]
        if any(hep.node == self.node for hep in users):
            self._dirty = True
        if old is None or profile is None or old.labels != profile.labels:
            for hep in users:
                self._index_hep(hep)
            for gns in self._sets.values():
                if name in gns.profiles:
                    self._index_set(gns)

    def remove(self, kind: str, name: str) -> None:
        """Forget a resource; `kind` is a kind name or any calicoctl alias of it."""
        canonical = resolve_kind(kind).kind
        if self._refused.pop((canonical, name), None) is not None:
            self._dirty = True
        if canonical == "HostEndpoint":
            old = self._heps.pop(name, None)
            if old is not None:
                self._members.remove(("hep", name))
                if old.node == self.node:
                    self._dirty = True
        elif canonical == "GlobalNetworkPolicy":
            if self._policies.pop(name, None) is not None:
                self._dirty = True
        elif canonical in ("GlobalNetworkSet", "NetworkSet"):
            # Both kinds share the set table: a NetworkSet's `<namespace>/<name>` can never be
            # a GlobalNetworkSet's name.
            if self._sets.pop(name, None) is not None:
                self._members.remove(("gns", name))
        elif canonical == "Tier" and self._tiers.pop(name, None) is not None:
            self._dirty = True
        elif canonical == "Profile" and name in self._profiles:
            self._set_profile(name, None)

    def set_config(self, config: CalcConfig) -> None:
        """New node settings (a FelixConfiguration changed): every chain is rendered again."""
        if config == self.config:
            return
        self.config = config
        self._rendered.clear()
        self._dirty = True

    def set_interfaces(self, interfaces: Sequence[HostInterface] | None) -> None:
        """The host's interfaces; None means "assume every named HEP interface exists"."""
        new = None if interfaces is None else tuple(sorted(interfaces, key=lambda i: i.name))
        if new != self._interfaces:
            self._interfaces = new
            self._dirty = True

    # ------------------------------------------------------------------ output

    def result(self) -> CalcResult:
        if self._dirty:
            self._rebuild()
            self._dirty = False
        rulesets = {}
        for family, layout in self._layout.items():
            sets = FrozenDict(
                {name: self._ipset(family, name, src) for name, src in layout.sources.items()}
            )
            rulesets[family] = Ruleset(family, layout.tables, sets)
        spec = DataplaneSpec(self.node, rulesets, self._endpoints)
        skipped = [Skipped(kind, name, why) for (kind, name), why in self._refused.items()]
        skipped += [Skipped("GlobalNetworkPolicy", n, why) for n, why in self._broken.items()]
        skipped += [Skipped("Profile", n, why) for n, why in self._broken_profiles.items()]
        xdp = blocklists(spec, self._ifaces, self.config.marks) if self.config.xdp_enabled else {}
        return CalcResult(spec, list(self._warnings), sorted(skipped), xdp)

    def _ipset(self, family: Family, name: str, source: SetSource) -> IpSet:
        key = (family, name)
        version = self._members.version(source)
        cached = self._ipsets.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        ipset = IpSet(name, source.kind, self._members.members(source, family), source.comment)
        self._ipsets[key] = (version, ipset)
        return ipset

    def _render(self, policy: RuleSource, ingress: bool, family: Family) -> _Rendered:
        key = (policy.kind, policy.name, ingress, family)
        cached = self._rendered.get(key)
        if cached is not None and (cached.policy is policy or cached.policy == policy):
            return cached
        config = self.config
        problem = None
        try:
            rendered = render_policy_chain(policy, ingress, family, config.marks, config.log_prefix)
        except (FelisError, ValueError) as err:
            rendered, problem = RenderedChain((), {}), str(err)
        if isinstance(policy, ProfileInfo):
            chain_name = names.profile_chain(policy.name, ingress)
        else:
            chain_name = names.policy_chain(policy.name, ingress)
        chain = Chain(chain_name, rendered.chain_rules)
        if problem is None:
            problem = _refusal(policy, chain, rendered, family)
        entry = self._rendered[key] = _Rendered(policy, chain, rendered, problem)
        return entry

    def _profile_problem(self, profile: ProfileInfo) -> str | None:
        for family in self.config.families:
            for ingress in (True, False):
                problem = self._render(profile, ingress, family).problem
                if problem is not None:
                    return f"IPv{int(family)} {'ingress' if ingress else 'egress'}: {problem}"
        return None

    def _policy_problem(self, policy: PolicyInfo) -> str | None:
        for family in self.config.families:
            for ingress, applies in ((True, policy.ingress_type), (False, policy.egress_type)):
                problem = self._render(policy, ingress, family).problem if applies else None
                if problem is not None:
                    return f"IPv{int(family)} {'ingress' if ingress else 'egress'}: {problem}"
        return None

    def _endpoints_for(
        self, active: ActiveEndpoints, ordered: list[tuple[TierInfo, PolicyInfo]]
    ) -> tuple[list[Endpoint], Endpoint | None]:
        classified: dict[str, EndpointPolicies] = {}

        def policies_of(hep: HepInfo, star: bool) -> EndpointPolicies:
            found = classified.get(hep.name)
            if found is None:
                found = classified[hep.name] = classify(hep, ordered, allow_untracked=not star)
            return found

        endpoints = [
            Endpoint(iface, hep, policies_of(hep, False)) for iface, hep in active.by_interface
        ]
        star = None
        if active.star is not None:
            star = Endpoint(names.ANY_INTERFACE, active.star, policies_of(active.star, True))
        return endpoints, star

    def _rebuild(self) -> None:
        config = self.config
        # Renders of deleted policies and profiles are never needed again.
        known: dict[str, Mapping[str, object]] = {
            "GlobalNetworkPolicy": self._policies,
            "Profile": self._profiles,
        }
        for key in [k for k in self._rendered if k[1] not in known[k[0]]]:
            del self._rendered[key]
        local = [
            replace(h, labels=self._labels_of(h)) if h.profiles else h
            for h in self._heps.values()
            if h.node == self.node
        ]
        active = resolve(local, self._interfaces, config.interface_exclude)
        ordered = sort_policies(self._policies.values(), self._tiers)
        warnings = list(active.warnings)
        endpoints, star = self._endpoints_for(active, ordered)
        # A policy the renderers would refuse is left out whole, so that it cannot stop the
        # rest of the node from being programmed; only policies in use are rendered at all.
        in_use = {
            name for ep in [*endpoints, *([star] if star else [])] for name in ep.policies.names()
        }
        self._broken = {}
        for name in sorted(in_use):
            problem = self._policy_problem(self._policies[name])
            if problem is not None:
                self._broken[name] = problem
        if self._broken:
            ordered = [(t, p) for t, p in ordered if p.name not in self._broken]
            endpoints, star = self._endpoints_for(active, ordered)
        used_profiles = {p for ep in active.by_interface for p in ep[1].profiles}
        if active.star is not None:
            used_profiles.update(active.star.profiles)
        self._broken_profiles = {}
        for name in sorted(used_profiles & self._profiles.keys()):
            problem = self._profile_problem(self._profiles[name])
            if problem is not None:
                self._broken_profiles[name] = problem
        if active.star is not None:
            for policy in untracked_ignored(active.star, ordered):
                warnings.append(
                    f"GlobalNetworkPolicy {policy}: doNotTrack is not supported on the "
                    f"all-interfaces HostEndpoint {active.star.name}; ignored there"
                )

        layouts: dict[Family, _FamilyLayout] = {}
        wanted: dict[tuple[Family, str], SetSource] = {}
        for family in config.families:
            lookup = _PolicyChains(self, family)
            fast_sets: dict[str, PortsSource] = {}
            tables = build_tables(
                family,
                config=config,
                endpoints=endpoints,
                star=star,
                policy_chain=lookup,
                policy_chains=lookup.chains,
                fast_sets=fast_sets,
                profile_chain=lookup.profile,
            )
            tables = place_hooks(tables, config.chain_insert_mode)
            previous = self._layout.get(family)
            if previous is not None:
                tables = _reuse_unchanged(previous.tables, tables)
            sources: dict[str, SetSource] = {}
            for chain_name in sorted(lookup.renders):
                rendered = lookup.renders[chain_name]
                warnings.extend(rendered.warnings)
                sources.update(rendered.sets)
            sources.update(fast_sets)
            sources = dict(sorted(sources.items()))
            layouts[family] = _FamilyLayout(FrozenDict(tables), sources)
            wanted.update(((family, name), src) for name, src in sources.items())

        # Acquire before releasing so a set kept across the rebuild is never torn down.
        for set_key, source in wanted.items():
            if set_key not in self._acquired:
                self._members.acquire(source)
        for set_key, source in self._acquired.items():
            if set_key not in wanted:
                self._members.release(source)
                self._ipsets.pop(set_key, None)
        self._acquired = wanted
        self._layout = layouts
        self._endpoints = active.names
        self._ifaces = tuple(iface for iface, _ in active.by_interface)
        self._warnings = list(dict.fromkeys(warnings))


def _reuse_unchanged(
    previous: Mapping[Table, TableSpec], tables: Mapping[Table, TableSpec]
) -> dict[Table, TableSpec]:
    """`tables`, with every chain equal to the previous one of its name replaced by that previous
    object (and a table whose chains and hooks are all unchanged by the previous TableSpec).

    Performance only: a dataplane's render cache memoises per chain (and table) object, so a
    chain rebuilt with the same content (endpoint chains are, on every relayout) would otherwise
    be hashed and printed again; comparing it once here is several times cheaper.
    """
    out: dict[Table, TableSpec] = {}
    for table, spec in tables.items():
        old = previous.get(table)
        if old is None:
            out[table] = spec
            continue
        chains = {}
        same = len(spec.chains) == len(old.chains)
        for name, chain in spec.chains.items():
            before = old.chains.get(name)
            if before is not None and (before is chain or before == chain):
                chains[name] = before
            else:
                chains[name] = chain
                same = False
        if same and spec.hooks == old.hooks and list(spec.chains) == list(old.chains):
            out[table] = old
        else:
            out[table] = TableSpec(table=spec.table, chains=chains, hooks=spec.hooks)
    return out


class _PolicyChains:
    """Names policy chains for the layout, rendering (or reusing) them as they are asked for."""

    def __init__(self, calc: Calculator, family: Family) -> None:
        self.calc = calc
        self.family = family
        self.chains: dict[str, Chain] = {}
        self.renders: dict[str, RenderedChain] = {}

    def __call__(self, policy: str, ingress: bool) -> str:
        calc = self.calc
        entry = calc._render(calc._policies[policy], ingress, self.family)
        return self._register(entry)

    def profile(self, name: str, ingress: bool) -> str | None:
        calc = self.calc
        profile = calc._profiles.get(name)
        if profile is None or name in calc._broken_profiles:
            return None
        return self._register(calc._render(profile, ingress, self.family))

    def _register(self, entry: _Rendered) -> str:
        self.chains[entry.chain.name] = entry.chain
        self.renders[entry.chain.name] = entry.rendered
        return entry.chain.name


def compute(
    resources: Iterable[Resource],
    node: str,
    interfaces: Sequence[HostInterface] | None = None,
    config: CalcConfig | None = None,
) -> CalcResult:
    """The node's complete dataplane spec from a set of resources (later duplicates win)."""
    calc = Calculator(node, config)
    calc.set_interfaces(interfaces)
    for resource in resources:
        calc.upsert(resource)
    return calc.result()


def _refusal(
    policy: RuleSource, chain: Chain, rendered: RenderedChain, family: Family
) -> str | None:
    """Why the renderers would refuse a policy chain or the literal CIDR sets it uses."""
    table = Table.FILTER
    if isinstance(policy, PolicyInfo):
        table = Table.RAW if policy.do_not_track else Table.MANGLE if policy.pre_dnat else table
    try:
        check_chain_alone(chain, table, family)
        for source in rendered.sets.values():
            if isinstance(source, NetsSource):
                normalise_members(source.kind, source.cidrs, family)
    except FelisError as err:
        return str(err)
    return None
