"""Kernel state as read back (the same shape for both backends) and the per-chain comparison
both backends' delta renderers share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from felis.dataplane.identifiers import DataplaneRenderError
from felis.dataplane.memo import PerObject, RenderCache, cache_or_new
from felis.dataplane.rule_identity import (
    chain_hashes,
    chain_kernel_rules,
    expand_rules,
    hook_hash_seed,
)
from felis.dataplane.spec import (
    CHAIN_PREFIX,
    Chain,
    Family,
    HookPosition,
    IpSet,
    Rule,
    SetKind,
    Table,
    TableSpec,
)


@dataclass(frozen=True, slots=True)
class KernelRule:
    hash: str | None
    """felis hash from the rule's comment; None for a rule that is not ours."""
    text: str = ""
    """iptables: the rule as `iptables-save` prints it after `-A <chain> ` (for `-D` by value)."""
    handle: int | None = None
    """nft rule handle (for deleting one rule)."""
    packets: int | None = None
    bytes: int | None = None


@dataclass(frozen=True, slots=True)
class ChainState:
    name: str
    rules: tuple[KernelRule, ...] = ()

    @property
    def hashes(self) -> tuple[str | None, ...]:
        return tuple(rule.hash for rule in self.rules)

    def ours(self) -> tuple[tuple[int, KernelRule], ...]:
        """Our rules with their 1-based positions (what `-D <chain> <n>` would use)."""
        return tuple((i, rule) for i, rule in enumerate(self.rules, 1) if rule.hash is not None)


@dataclass(frozen=True, slots=True)
class TableState:
    """One table (iptables) or one layer (nft) as read back.

    `chains` holds felis chains under their IR names and kernel chains (nft: base chains) under
    the kernel chain name, e.g. `PREROUTING`.
    """

    table: Table
    chains: Mapping[str, ChainState] = field(default_factory=dict)

    def felis_chains(self) -> tuple[str, ...]:
        return tuple(name for name in self.chains if name.startswith(CHAIN_PREFIX))


@dataclass(frozen=True, slots=True)
class SetState:
    name: str
    kind: SetKind
    family: Family
    members: frozenset[str]
    """Normalised like `normalise_members`."""


# ---------------------------------------------------------------------------------------------
# Per-chain comparison shared by both backends' delta renderers.


_HOOKS: PerObject[None, dict[str, tuple[tuple[Rule, ...], tuple[Rule, ...]]]] = PerObject()


def desired_hooks(
    spec: TableSpec, cache: RenderCache | None = None
) -> dict[str, tuple[tuple[Rule, ...], tuple[Rule, ...]]]:
    """kernel chain → (expanded inserts, expanded appends)."""
    memo = cache_or_new(cache).objects(_HOOKS)
    return dict(memo.get(spec, None, lambda: _desired_hooks(spec)))


def _desired_hooks(spec: TableSpec) -> dict[str, tuple[tuple[Rule, ...], tuple[Rule, ...]]]:
    return {
        chain: (
            expand_rules(spec.hooks_for(chain, HookPosition.INSERT)),
            expand_rules(spec.hooks_for(chain, HookPosition.APPEND)),
        )
        for chain in spec.kernel_chains
    }


def hook_hashes(
    kernel_chain: str,
    inserts: Sequence[Rule],
    appends: Sequence[Rule],
    cache: RenderCache | None = None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (
        chain_hashes(hook_hash_seed(kernel_chain, HookPosition.INSERT), inserts, cache),
        chain_hashes(hook_hash_seed(kernel_chain, HookPosition.APPEND), appends, cache),
    )


def hooks_in_place(
    current: Sequence[str | None], inserts: Sequence[str], appends: Sequence[str]
) -> bool:
    """True when our rules are exactly: the inserts at the top, the appends at the bottom."""
    n_in, n_app = len(inserts), len(appends)
    if len(current) < n_in + n_app:
        return False
    if tuple(current[:n_in]) != tuple(inserts):
        return False
    if n_app and tuple(current[len(current) - n_app :]) != tuple(appends):
        return False
    middle = current[n_in : len(current) - n_app]
    return all(item is None for item in middle)


def dirty_chains(
    spec: TableSpec, current: TableState | None, cache: RenderCache | None = None
) -> tuple[list[str], list[str], list[str]]:
    """(new chains, changed chains, obsolete felis chains) of one table, in a stable order."""
    cache = cache_or_new(cache)
    states = cache.objects(_CHAIN_STATE)
    have = current.chains if current is not None else {}
    new, changed = [], []
    for name, chain in spec.chains.items():
        state = have.get(name)
        if state is None:
            new.append(name)
        elif state is not states.get(chain, name, _chain_state, chain, name, cache) and (
            state.hashes != chain_kernel_rules(chain, name, cache).hashes
        ):
            changed.append(name)
    obsolete = sorted(
        name
        for name in (current.felis_chains() if current is not None else ())
        if name not in spec.chains
    )
    return new, changed, obsolete


_CHAIN_STATE: PerObject[str, ChainState] = PerObject()


def chain_state(
    chain: Chain, name: str | None = None, cache: RenderCache | None = None
) -> ChainState:
    """The state a felis chain has once written (rules with hashes, no text), memoised per chain
    object: the kernel layer's remembered state reuses these objects, so comparing an unchanged
    chain with it is an identity check (when both come from the same cache)."""
    name = chain.name if name is None else name
    cache = cache_or_new(cache)
    return cache.objects(_CHAIN_STATE).get(chain, name, _chain_state, chain, name, cache)


def _chain_state(chain: Chain, name: str, cache: RenderCache) -> ChainState:
    hashes = chain_kernel_rules(chain, name, cache).hashes
    return ChainState(name, tuple(KernelRule(hash=h) for h in hashes))


def set_kind_conflicts(desired: Mapping[str, IpSet], current: Mapping[str, SetState]) -> None:
    for name, ipset in desired.items():
        have = current.get(name)
        if have is not None and have.kind is not ipset.kind:
            raise DataplaneRenderError(
                f"IP set {name!r} exists in the kernel as {have.kind.value} but is wanted as "
                f"{ipset.kind.value}; remove felis' dataplane state (felis cleanup) and retry"
            )
