"""LabelIndex: incremental results equal a from-scratch recomputation, and the callback
reports exactly the membership flips."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from felis.selector import LabelIndex, Selector, parse

# Covers every shortcut the index takes: value / presence conditions, unions through ||,
# negated selectors (checked through their negation), selectors that can never / always
# match, and ones with no shortcut at all.
SELECTOR_POOL = [
    "a == 'x'",
    "a in {'x', 'y'}",
    "a in {}",
    "has(b)",
    "!has(b)",
    "a != 'x'",
    "a not in {'x'}",
    "a not in {}",
    "all()",
    "!all()",
    "global()",
    "a == 'x' && b == 'y'",
    "a == 'x' || b == 'y'",
    "has(a) || !has(b)",
    "!(a == 'x' || has(c))",
    "a contains 'x' && !c starts with 'y'",
    "(a == 'x' && has(b)) || (c == 'y' && a == 'y')",
    "!(a != 'x')",
    "!(a not in {'x', 'y'}) && b != 'x'",
    "c ends with 'x' || c == ''",
    "has(a) && has(b) && has(c)",
    "!(has(a) && b == 'x')",
    "d == 'x' && a != 'y'",
    "b in {'', 'xy'} || d not in {'x'}",
]
KEYS = ["a", "b", "c", "d"]
VALUES = ["x", "y", "", "xy"]
OBJ_IDS = list(range(6))
SEL_IDS = list(range(5))

labels_st = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=4)
op_st = st.one_of(
    st.tuples(st.just("labels"), st.sampled_from(OBJ_IDS), labels_st),
    st.tuples(st.just("remove_labels"), st.sampled_from(OBJ_IDS)),
    st.tuples(st.just("selector"), st.sampled_from(SEL_IDS), st.sampled_from(SELECTOR_POOL)),
    st.tuples(st.just("remove_selector"), st.sampled_from(SEL_IDS)),
)

Flip = tuple[Any, Any, bool]


class Harness:
    """A LabelIndex next to a brute-force model of what it should contain."""

    def __init__(self) -> None:
        self.flips: list[Flip] = []
        self.index: LabelIndex[Any, Any] = LabelIndex(self.on_change)
        self.objects: dict[Any, dict[str, str]] = {}
        self.selectors: dict[Any, Selector] = {}

    def on_change(self, sel_id: Any, obj_id: Any, matched: bool) -> None:
        # The index is already updated when it reports a flip.
        assert (obj_id in self.index.matches(sel_id)) is matched
        assert (sel_id in self.index.selectors_matching(obj_id)) is matched
        self.flips.append((sel_id, obj_id, matched))

    def memberships(self) -> set[tuple[Any, Any]]:
        return {
            (s, o)
            for s, sel in self.selectors.items()
            for o, labels in self.objects.items()
            if sel.evaluate(labels)
        }

    def apply(self, op: tuple[Any, ...]) -> None:
        before = self.memberships()
        self.flips.clear()
        kind = op[0]
        if kind == "labels":
            self.objects[op[1]] = dict(op[2])
            self.index.update_labels(op[1], op[2])
        elif kind == "remove_labels":
            self.objects.pop(op[1], None)
            self.index.remove_labels(op[1])
        elif kind == "selector":
            self.selectors[op[1]] = parse(op[2])
            self.index.update_selector(op[1], parse(op[2]))
        else:
            self.selectors.pop(op[1], None)
            self.index.remove_selector(op[1])
        after = self.memberships()
        expected = {(s, o, True) for s, o in after - before} | {
            (s, o, False) for s, o in before - after
        }
        assert len(self.flips) == len(set(self.flips)), "a flip was reported twice"
        assert set(self.flips) == expected, op
        self.check(after)

    def check(self, memberships: set[tuple[Any, Any]]) -> None:
        for s in self.selectors:
            assert self.index.matches(s) == {o for s2, o in memberships if s2 == s}, s
        for o in self.objects:
            assert self.index.selectors_matching(o) == {s for s, o2 in memberships if o2 == o}


@settings(max_examples=300, deadline=None)
@given(st.lists(op_st, max_size=40))
def test_incremental_equals_recomputation(ops: list[tuple[Any, ...]]) -> None:
    harness = Harness()
    for op in ops:
        harness.apply(op)


def test_larger_random_workload() -> None:
    rng = random.Random(7)
    harness = Harness()
    keys = [*KEYS, "e", "f"]
    for _ in range(1500):
        r = rng.random()
        if r < 0.6:
            labels = {k: rng.choice(VALUES) for k in rng.sample(keys, rng.randint(0, 5))}
            harness.apply(("labels", rng.randrange(40), labels))
        elif r < 0.7:
            harness.apply(("remove_labels", rng.randrange(40)))
        elif r < 0.95:
            harness.apply(("selector", rng.randrange(30), rng.choice(SELECTOR_POOL)))
        else:
            harness.apply(("remove_selector", rng.randrange(30)))
    assert harness.selectors and harness.objects


def test_basic_usage_and_callback_order() -> None:
    events: list[Flip] = []
    index: LabelIndex[str, str] = LabelIndex(lambda s, o, m: events.append((s, o, m)))
    index.update_labels("hep-1", {"memcached": "server", "env": "prod"})
    index.update_labels("hep-2", {"memcached": "client"})
    index.update_selector("servers", parse("memcached == 'server'"))
    index.update_selector("not-prod", parse("env != 'prod'"))
    assert index.matches("servers") == {"hep-1"}
    assert index.matches("not-prod") == {"hep-2"}
    assert sorted(events) == [("not-prod", "hep-2", True), ("servers", "hep-1", True)]

    events.clear()
    index.update_labels("hep-2", {"memcached": "server", "env": "prod"})
    assert sorted(events) == [("not-prod", "hep-2", False), ("servers", "hep-2", True)]
    assert index.selectors_matching("hep-2") == {"servers"}

    events.clear()
    index.update_labels("hep-2", {"env": "prod", "memcached": "server"})  # same labels
    index.update_selector("servers", parse("memcached=='server'"))  # same selector
    assert events == []

    index.update_selector("servers", parse("has(memcached) && env == 'dev'"))
    assert sorted(events) == [("servers", "hep-1", False), ("servers", "hep-2", False)]

    events.clear()
    index.remove_labels("hep-1")
    index.remove_selector("not-prod")
    index.remove_selector("servers")
    assert events == []
    assert index.matches("servers") == frozenset()
    assert index.selectors_matching("hep-2") == frozenset()


def test_unknown_ids_and_no_callback() -> None:
    index: LabelIndex[int, int] = LabelIndex()
    assert index.matches(1) == frozenset()
    assert index.selectors_matching(1) == frozenset()
    index.remove_labels(1)
    index.remove_selector(1)
    index.update_selector(1, parse("!has(x)"))
    index.update_labels(5, {})
    assert index.matches(1) == {5}
    assert index.selector(1) == parse("!has(x)")
    assert index.labels(5) == {}
    assert index.labels(6) is None


def test_matches_is_a_snapshot() -> None:
    index: LabelIndex[int, str] = LabelIndex()
    index.update_selector("s", parse("a == 'x'"))
    index.update_labels(1, {"a": "x"})
    snapshot = index.matches("s")
    assert isinstance(snapshot, frozenset)
    index.update_labels(2, {"a": "x"})
    assert snapshot == {1}
    assert index.matches("s") == {1, 2}


def test_labels_are_copied() -> None:
    index: LabelIndex[int, str] = LabelIndex()
    index.update_selector("s", parse("a == 'x'"))
    labels = {"a": "x"}
    index.update_labels(1, labels)
    labels["a"] = "y"  # mutating the caller's dict must not leak into the index
    index.update_labels(1, labels)
    assert index.matches("s") == frozenset()


def test_selectors_sharing_conditions() -> None:
    index: LabelIndex[int, int] = LabelIndex()
    for i in range(20):
        index.update_selector(i, parse(f"app == 'a{i % 4}' && tier != 't{i % 3}'"))
    for o in range(50):
        index.update_labels(o, {"app": f"a{o % 4}", "tier": f"t{o % 3}"})
    for o in range(0, 50, 3):
        index.update_labels(o, {"app": f"a{(o + 1) % 4}", "tier": "other"})
    for i in range(20):
        sel = index.selector(i)
        assert sel is not None
        expected = {o for o in range(50) if sel.evaluate(index.labels(o) or {})}
        assert index.matches(i) == expected
