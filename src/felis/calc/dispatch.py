"""Dispatch by interface: the prefix tree of chains that sends a packet to its endpoint chain."""

from __future__ import annotations

from collections.abc import Iterable

from felis.calc import names
from felis.dataplane.spec import Chain, Goto, Match, Rule


def dispatch(
    root: str,
    entries: Iterable[tuple[str, str]],
    incoming: bool,
    default: str | None,
) -> list[Chain]:
    """Calico's two-level prefix tree (docs/calico-semantics.md#dispatch-by-interface):
    interfaces sharing the next character after the common prefix are sent on to a child
    chain, so a packet meets a few rules per level instead of one per interface."""
    targets = dict(sorted(entries))
    default_rules = [Rule(action=Goto(default))] if default else []

    def goto(iface: str, target: str) -> Rule:
        match = Match(in_iface=iface) if incoming else Match(out_iface=iface)
        return Rule(match, Goto(target))

    if not targets:
        return [Chain(root, tuple(default_rules))]
    common = _common_prefix(list(targets))
    groups: dict[str, list[str]] = {}
    for iface in targets:
        groups.setdefault(iface[: len(common) + 1], []).append(iface)
    root_rules: list[Rule] = []
    chains: list[Chain] = []
    for key, members in groups.items():
        if len(members) == 1:
            root_rules.append(goto(members[0], targets[members[0]]))
            continue
        child = names.dispatch_child(root, key[-1])
        root_rules.append(goto(key + "+", child))
        child_rules = [goto(m, targets[m]) for m in members] + default_rules
        chains.append(Chain(child, tuple(child_rules)))
    chains.insert(0, Chain(root, tuple(root_rules + default_rules)))
    return chains


def _common_prefix(words: list[str]) -> str:
    first, last = min(words), max(words)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    return first[:size]
