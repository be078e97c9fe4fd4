"""The exact kernel delta between two specs, without a kernel.

The kernel state a node holds after felis programmed spec A is a function of A: every chain of
ours carries the hash list `chain_hashes` gives, every hook sits at the top (inserts) or bottom
(appends) of its kernel chain, every set holds its normalised members. Building that state
directly and handing it to the renderer's own `render_delta` yields the very text the agent
would write when the datastore moves from A to B (foreign rules aside, which felis never
touches). The one approximation: an iptables hook that has to move is deleted by its text as
felis wrote it, where the agent uses the kernel's own spelling from `iptables-save`.
"""

from __future__ import annotations

from dataclasses import dataclass

from felis.dataplane import iptables, nftables, nftables_readback
from felis.dataplane.kernel_state import (
    ChainState,
    KernelRule,
    SetState,
    TableState,
    desired_hooks,
    hook_hashes,
)
from felis.dataplane.memo import RenderCache, cache_or_new
from felis.dataplane.rule_identity import chain_kernel_rules
from felis.dataplane.set_members import normalise_members
from felis.dataplane.spec import DataplaneSpec, Family, Ruleset, Table

FAMILIES = (Family.V4, Family.V6)


def _sets(ruleset: Ruleset, cache: RenderCache) -> dict[str, SetState]:
    family = ruleset.family
    return {
        name: SetState(name, s.kind, family, normalise_members(s.kind, s.members, family, cache))
        for name, s in ruleset.sets.items()
    }


def _tables(ruleset: Ruleset, cache: RenderCache, *, with_text: bool) -> dict[Table, TableState]:
    family = ruleset.family
    out: dict[Table, TableState] = {}
    for table, spec in ruleset.tables.items():
        chains: dict[str, ChainState] = {}
        for name, chain in spec.chains.items():
            kernel = chain_kernel_rules(chain, name, cache)
            chains[name] = ChainState(
                name,
                tuple(
                    KernelRule(h, iptables.render_rule(r, h, family, cache) if with_text else "")
                    for r, h in zip(kernel.rules, kernel.hashes, strict=True)
                ),
            )
        for kernel_chain, (inserts, appends) in desired_hooks(spec, cache).items():
            ins, app = hook_hashes(kernel_chain, inserts, appends, cache)
            pairs = [*zip(inserts, ins, strict=True), *zip(appends, app, strict=True)]
            chains[kernel_chain] = ChainState(
                kernel_chain,
                tuple(
                    KernelRule(h, iptables.render_rule(r, h, family, cache) if with_text else "")
                    for r, h in pairs
                ),
            )
        out[table] = TableState(table=table, chains=chains)
    return out


def iptables_state(
    ruleset: Ruleset | None, cache: RenderCache | None = None
) -> iptables.IptablesState:
    """What iptables-save / ipset save would read back after programming `ruleset`."""
    if ruleset is None:
        return iptables.IptablesState()
    cache = cache_or_new(cache)
    tables = _tables(ruleset, cache, with_text=True)
    return iptables.IptablesState(tables=tables, sets=_sets(ruleset, cache))


def nft_state(
    ruleset: Ruleset | None, cache: RenderCache | None = None
) -> nftables_readback.NftState:
    """What `nft -j list table` would read back after programming `ruleset`."""
    if ruleset is None:
        return nftables_readback.NftState()
    cache = cache_or_new(cache)
    return nftables_readback.NftState(
        exists=True, tables=_tables(ruleset, cache, with_text=False), sets=_sets(ruleset, cache)
    )


@dataclass(frozen=True, slots=True)
class FamilyDelta:
    family: Family
    text: str
    """The commands, as the agent would run them; empty when nothing changes."""


def _empty(family: Family) -> Ruleset:
    return Ruleset(family=family, tables={}, sets={})


def iptables_text(plan: iptables.IptablesPlan) -> str:
    if plan.empty:
        return ""
    tool = iptables.restore_command(plan.family)
    parts = []
    if plan.ipset_prepare:
        parts.append(f"# ipset restore\n{plan.ipset_prepare}")
    if plan.tables:
        parts.append(f"# {tool} --noflush\n{plan.restore}")
    if plan.ipset_cleanup:
        parts.append(f"# ipset restore (after the tables)\n{plan.ipset_cleanup}")
    return "".join(parts)


def kernel_delta(before: DataplaneSpec, after: DataplaneSpec, backend: str) -> list[FamilyDelta]:
    """Per family, what the agent would write to go from `before` to `after`."""
    # One cache for both specs: the chains they share are expanded, hashed and printed once.
    cache = RenderCache()
    out = []
    for family in FAMILIES:
        old = before.rulesets.get(family)
        new = after.rulesets.get(family)
        if backend == "iptables":
            state = iptables_state(old, cache)
            plan = iptables.render_delta(new or _empty(family), state, cache=cache)
            text = iptables_text(plan)
        elif new is None:
            text = nftables.render_cleanup(family) if old is not None else ""
        else:
            text = nftables.render_delta(new, nft_state(old, cache), cache=cache) or ""
        out.append(FamilyDelta(family, text))
    return out
