"""The IR cannot change once built, and the renderers' memory belongs to whoever renders.

What is checked: the IR's mappings refuse every change and its constructors freeze (a copy of)
the plain dicts, lists and sets callers give them, keeping equality with plain dicts; a mapping
that is already frozen is passed on as the same object; each dataplane owns its own render cache
and fills it as it renders, while a render without a cache leaves nothing behind; and no module
of the dataplane holds a render memo of its own (the identifier checks aside, which hold only
strings).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import pickle
import pkgutil
import subprocess
from collections.abc import Callable, Sequence

import pytest
from ir_fixtures import seed_ruleset

import felis.dataplane
from felis.dataplane import iptables, nftables, rule_identity
from felis.dataplane.kernel import IptablesDataplane, NftablesDataplane
from felis.dataplane.memo import IdentityMemo, RenderCache
from felis.dataplane.spec import (
    Chain,
    DataplaneSpec,
    Drop,
    Family,
    FrozenDict,
    Hook,
    HookPosition,
    IpSet,
    Jump,
    Rule,
    Ruleset,
    SetKind,
    Table,
    TableSpec,
)

CHAIN = Chain("felis-x", [Rule(action=Drop())])  # a list, as a caller may pass one
HOOK = Hook("INPUT", HookPosition.INSERT, Rule(action=Jump("felis-x")))


def _table() -> TableSpec:
    return TableSpec(Table.FILTER, {"felis-x": CHAIN}, [HOOK])


MUTATIONS: list[Callable[[dict[object, object]], object]] = [
    lambda m: m.__setitem__("felis-y", CHAIN),
    lambda m: m.__delitem__("felis-x"),
    lambda m: m.update({"felis-y": CHAIN}),
    lambda m: m.setdefault("felis-y", CHAIN),
    lambda m: m.pop("felis-x"),
    lambda m: m.popitem(),
    lambda m: m.clear(),
    lambda m: m.__ior__({"felis-y": CHAIN}),
]


@pytest.mark.parametrize("mutate", MUTATIONS)
def test_the_mappings_of_the_ir_refuse_every_change(
    mutate: Callable[[dict[object, object]], object],
) -> None:
    chains = _table().chains
    assert isinstance(chains, FrozenDict)
    with pytest.raises(TypeError, match="read-only"):
        mutate(chains)  # type: ignore[arg-type]
    assert dict(chains) == {"felis-x": CHAIN}


def test_constructors_freeze_a_copy_of_what_they_are_given() -> None:
    given = {"felis-x": CHAIN}
    table = TableSpec(Table.FILTER, given, [HOOK])
    given["felis-y"] = CHAIN  # the caller's dict stays the caller's
    assert list(table.chains) == ["felis-x"]
    assert type(CHAIN.rules) is tuple and type(table.hooks) is tuple
    members = {"10.0.0.0/8"}
    ipset = IpSet("felis4-s", SetKind.NET, members)  # type: ignore[arg-type]
    members.add("10.1.0.0/16")
    assert ipset.members == frozenset({"10.0.0.0/8"}) and type(ipset.members) is frozenset
    ruleset = Ruleset(Family.V4, {Table.FILTER: table}, {"felis4-s": ipset})
    spec = DataplaneSpec("node-1", {Family.V4: ruleset}, ["hep-1"])  # type: ignore[arg-type]
    assert type(ruleset.tables) is FrozenDict and type(ruleset.sets) is FrozenDict
    assert type(spec.rulesets) is FrozenDict and spec.endpoints == ("hep-1",)


def test_frozen_mappings_compare_like_dicts_and_survive_copies() -> None:
    ruleset = Ruleset(Family.V4, {Table.FILTER: _table()}, {})
    assert ruleset.tables == {Table.FILTER: _table()}
    assert _table() == _table()  # equal contents, distinct objects: equal, as calc relies on
    assert TableSpec(Table.FILTER, {}) != _table()
    for again in (copy.deepcopy(ruleset), pickle.loads(pickle.dumps(ruleset))):
        assert again == ruleset and type(again.tables) is FrozenDict
    with pytest.raises(TypeError):
        hash(_table())  # as before: a table (a mapping inside) is not hashable


def test_a_frozen_mapping_is_handed_on_as_the_same_object() -> None:
    ruleset = Ruleset(Family.V4, {Table.FILTER: _table()}, {})
    again = Ruleset(Family.V4, ruleset.tables, ruleset.sets)
    assert again.tables is ruleset.tables and again.sets is ruleset.sets
    assert dataclasses.replace(ruleset, family=Family.V6).tables is ruleset.tables


def _fake_kernel(argv: Sequence[str], **_: object) -> subprocess.CompletedProcess[str]:
    if argv[0] == "nft" and "list" in argv:
        return subprocess.CompletedProcess(list(argv), 1, "", "Error: No such file or directory")
    return subprocess.CompletedProcess(list(argv), 0, "", "")


@pytest.mark.parametrize("backend", [IptablesDataplane, NftablesDataplane])
def test_each_dataplane_owns_its_render_cache(backend: type[IptablesDataplane]) -> None:
    ruleset = seed_ruleset(Family.V4)
    spec = DataplaneSpec("node-1", {Family.V4: ruleset})
    one, other = backend(runner=_fake_kernel), backend(runner=_fake_kernel)
    assert one.cache is not other.cache
    one.apply(spec)
    chain_rules = one.cache.objects(rule_identity._CHAIN_RULES)
    # Every chain object expanded and hashed once, here (one object may serve two tables).
    chains = {id(c) for t in ruleset.tables.values() for c in t.chains.values()}
    assert len(chain_rules) == len(chains)
    assert len(other.cache.objects(rule_identity._CHAIN_RULES)) == 0
    other.cache.clear()
    one.cache.clear()
    assert len(one.cache.objects(rule_identity._CHAIN_RULES)) == 0


def test_a_render_without_a_cache_equals_one_with_a_cache() -> None:
    ruleset = seed_ruleset(Family.V6)
    cache = RenderCache()
    assert nftables.render_full(ruleset) == nftables.render_full(ruleset, cache=cache)
    assert iptables.render_full(ruleset) == iptables.render_full(ruleset, cache=cache)
    assert len(cache.objects(rule_identity._CHAIN_RULES)) > 0


def _dataplane_modules() -> list[str]:
    return [
        f"felis.dataplane.{info.name}" for info in pkgutil.iter_modules(felis.dataplane.__path__)
    ]


@pytest.mark.parametrize("module_name", _dataplane_modules())
def test_no_dataplane_module_keeps_render_memos_of_its_own(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name, value in vars(module).items():
        assert not isinstance(value, IdentityMemo | RenderCache), f"{module_name}.{name}"
        if isinstance(value, functools._lru_cache_wrapper):
            # Only the identifier checks, which hold strings (see their module's docstring).
            assert value.__module__ == "felis.dataplane.identifiers", f"{module_name}.{name}"
