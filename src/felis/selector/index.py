"""Many selectors × many labelled objects, kept up to date incrementally.

Evaluating every selector against every object is far too slow in Python (10 M calls for
1,000 × 10,000), so each selector gets a *candidate condition* derived from its tree: a set
of atoms, either ``(label, value)`` ("the label has this value") or ``(label, None)`` ("the
label is present"), at least one of which an object must satisfy to possibly match.  For
``app == "web" && !has(canary)`` that is ``{("app", "web")}``; for ``a in {"x", "y"}`` it is
``{("a", "x"), ("a", "y")}``.  Inverted indexes from atoms to objects (and to selectors)
then limit evaluation to candidates.

Selectors without such a condition (``!has(x)``, ``a != "b"``) usually match *most* objects,
so they get the same treatment on their negation: an object that cannot satisfy the
negation's condition matches without being evaluated.  Only selectors with neither (e.g.
``has(a) || !has(b)``) are evaluated against everything.

When an object's labels change, a selector's result can only change if it reads one of the
changed labels; of those, only the ones that match now, or whose candidate condition the new
labels satisfy, are evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Generic, TypeVar

from felis.selector import ast
from felis.selector.selector import Selector

ObjId = TypeVar("ObjId", bound=Hashable)
SelId = TypeVar("SelId", bound=Hashable)

# (label, value) = "label has exactly this value"; (label, None) = "label is present".
Atom = tuple[str, str | None]
# None = nothing known; an empty set = can never hold.
Condition = frozenset[Atom] | None

_NEVER: frozenset[Atom] = frozenset()

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V", bound=Hashable)


def candidate_condition(
    node: ast.Node, negated: bool, cost: Callable[[frozenset[Atom]], int]
) -> Condition:
    """A set of atoms, one of which any labels satisfying ``node`` (or ``!node`` when
    ``negated``) must satisfy; ``cost`` picks the most selective option inside a conjunction.
    """
    if isinstance(node, ast.Not):
        return candidate_condition(node.operand, not negated, cost)
    if isinstance(node, ast.And | ast.Or):
        subs = [candidate_condition(op, negated, cost) for op in node.operands]
        if isinstance(node, ast.And) != negated:
            # Conjunction: every operand's condition is necessary, so take the cheapest one.
            known = [s for s in subs if s is not None]
            return min(known, key=cost) if known else None
        # Disjunction: one of the operands must hold, so the union of theirs is necessary.
        union: set[Atom] = set()
        for s in subs:
            if s is None:
                return None
            union |= s
        return frozenset(union)
    if negated:
        if isinstance(node, ast.NotEquals):
            return frozenset({(node.name, node.value)})
        if isinstance(node, ast.NotInSet):
            return frozenset((node.name, v) for v in node.values)
        if isinstance(node, ast.All | ast.Global):
            return _NEVER
        return None
    if isinstance(node, ast.Equals):
        return frozenset({(node.name, node.value)})
    if isinstance(node, ast.InSet):
        return frozenset((node.name, v) for v in node.values)
    if isinstance(node, ast.Has | ast.Contains | ast.StartsWith | ast.EndsWith):
        return frozenset({(node.name, None)})
    return None


def _atoms_of(labels: Mapping[str, str]) -> list[Atom]:
    atoms: list[Atom] = []
    for key, value in labels.items():
        atoms.append((key, value))
        atoms.append((key, None))
    return atoms


def _add(index: dict[_K, set[_V]], key: _K, value: _V) -> None:
    bucket = index.get(key)
    if bucket is None:
        index[key] = {value}
    else:
        bucket.add(value)


def _discard(index: dict[_K, set[_V]], key: _K, value: _V) -> None:
    bucket = index.get(key)
    if bucket is not None:
        bucket.discard(value)
        if not bucket:
            del index[key]


class _SelectorState(Generic[ObjId]):
    __slots__ = ("evaluate", "frozen", "labels_used", "matches", "negative", "positive", "selector")

    def __init__(self, selector: Selector, positive: Condition, negative: Condition) -> None:
        self.selector = selector
        self.evaluate = selector.evaluate
        self.labels_used = selector.labels_used
        self.positive = positive
        self.negative = negative
        self.matches: set[ObjId] = set()
        self.frozen: frozenset[ObjId] | None = None


class LabelIndex(Generic[ObjId, SelId]):
    """Which objects match which selectors, updated incrementally.

    ``on_change(sel_id, obj_id, matched)`` is called once per membership flip, after the
    index has been updated (so the callback may query it).
    """

    def __init__(self, on_change: Callable[[SelId, ObjId, bool], None] | None = None) -> None:
        self._on_change = on_change
        self._labels: dict[ObjId, dict[str, str]] = {}
        self._objs_by_atom: dict[Atom, set[ObjId]] = {}
        self._obj_sels: dict[ObjId, set[SelId]] = {}

        self._sels: dict[SelId, _SelectorState[ObjId]] = {}
        self._sels_by_use: dict[str, set[SelId]] = {}
        # Selectors with a positive candidate condition, by atom and by (atom, label used).
        self._sel_by_atom: dict[Atom, set[SelId]] = {}
        self._sel_by_atom_use: dict[tuple[Atom, str], set[SelId]] = {}
        # Selectors without one: split into those whose negation has a condition and the rest.
        self._unanchored_by_use: dict[str, set[SelId]] = {}
        self._neg_anchored: set[SelId] = set()
        self._neg_by_atom: dict[Atom, set[SelId]] = {}
        self._scan: set[SelId] = set()

    # ----------------------------------------------------------------- queries

    def matches(self, sel_id: SelId) -> frozenset[ObjId]:
        """Objects the selector matches (empty for an unknown selector id)."""
        state = self._sels.get(sel_id)
        if state is None:
            return frozenset()
        frozen = state.frozen
        if frozen is None:
            frozen = state.frozen = frozenset(state.matches)
        return frozen

    def selectors_matching(self, obj_id: ObjId) -> frozenset[SelId]:
        """Selectors that match the object (empty for an unknown object id)."""
        return frozenset(self._obj_sels.get(obj_id, ()))

    def labels(self, obj_id: ObjId) -> Mapping[str, str] | None:
        return self._labels.get(obj_id)

    def selector(self, sel_id: SelId) -> Selector | None:
        state = self._sels.get(sel_id)
        return None if state is None else state.selector

    # ----------------------------------------------------------------- objects

    def update_labels(self, obj_id: ObjId, labels: Mapping[str, str]) -> None:
        new = dict(labels)
        old = self._labels.get(obj_id)
        if old is None:
            flips = self._add_object(obj_id, new)
        elif old == new:
            return
        else:
            flips = self._change_object(obj_id, old, new)
        self._emit_object_flips(obj_id, flips)

    def remove_labels(self, obj_id: ObjId) -> None:
        old = self._labels.pop(obj_id, None)
        if old is None:
            return
        for atom in _atoms_of(old):
            _discard(self._objs_by_atom, atom, obj_id)
        matched = self._obj_sels.pop(obj_id, set())
        for sel_id in matched:
            state = self._sels[sel_id]
            state.matches.discard(obj_id)
            state.frozen = None
        self._emit_object_flips(obj_id, [(sel_id, False) for sel_id in matched])

    def _add_object(self, obj_id: ObjId, labels: dict[str, str]) -> list[tuple[SelId, bool]]:
        self._labels[obj_id] = labels
        atoms = _atoms_of(labels)
        candidates: set[SelId] = set(self._scan)
        must_check_neg: set[SelId] = set()
        for atom in atoms:
            _add(self._objs_by_atom, atom, obj_id)
            sels = self._sel_by_atom.get(atom)
            if sels:
                candidates |= sels
            neg = self._neg_by_atom.get(atom)
            if neg:
                must_check_neg |= neg
        candidates |= must_check_neg
        sels_state = self._sels
        matched = {s for s in candidates if sels_state[s].evaluate(labels)}
        # Negation cannot hold for these, so the selector itself must.
        matched |= self._neg_anchored - must_check_neg
        for sel_id in matched:
            state = sels_state[sel_id]
            state.matches.add(obj_id)
            state.frozen = None
        if matched:
            self._obj_sels[obj_id] = matched
        return [(sel_id, True) for sel_id in matched]

    def _change_object(
        self, obj_id: ObjId, old: dict[str, str], new: dict[str, str]
    ) -> list[tuple[SelId, bool]]:
        changed = [k for k in old.keys() | new.keys() if old.get(k) != new.get(k)]
        self._labels[obj_id] = new
        by_atom = self._objs_by_atom
        for key in changed:
            if key in old:
                _discard(by_atom, (key, old[key]), obj_id)
                if key not in new:
                    _discard(by_atom, (key, None), obj_id)
            if key in new:
                _add(by_atom, (key, new[key]), obj_id)
                if key not in old:
                    _add(by_atom, (key, None), obj_id)

        current = self._obj_sels.get(obj_id, set())
        check: set[SelId] = set()
        atom_use = self._sel_by_atom_use
        new_items = list(new.items())
        for key in changed:
            users = self._sels_by_use.get(key)
            if users is None:
                continue
            if current:
                check |= users & current
            unanchored = self._unanchored_by_use.get(key)
            if unanchored:
                check |= unanchored
            for label, value in new_items:
                hit = atom_use.get(((label, value), key))
                if hit:
                    check |= hit
                hit = atom_use.get(((label, None), key))
                if hit:
                    check |= hit

        flips: list[tuple[SelId, bool]] = []
        for sel_id in check:
            state = self._sels[sel_id]
            now = state.evaluate(new)
            if now == (sel_id in current):
                continue
            flips.append((sel_id, now))
            state.frozen = None
            if now:
                state.matches.add(obj_id)
                current.add(sel_id)
            else:
                state.matches.discard(obj_id)
                current.discard(sel_id)
        if current:
            self._obj_sels[obj_id] = current
        else:
            self._obj_sels.pop(obj_id, None)
        return flips

    def _emit_object_flips(self, obj_id: ObjId, flips: list[tuple[SelId, bool]]) -> None:
        callback = self._on_change
        if callback is not None:
            for sel_id, matched in flips:
                callback(sel_id, obj_id, matched)

    # ----------------------------------------------------------------- selectors

    def update_selector(self, sel_id: SelId, selector: Selector) -> None:
        old = self._sels.get(sel_id)
        if old is not None:
            if old.selector == selector:
                return
            self._unregister(sel_id, old)
        state = self._register(sel_id, selector)
        state.matches = self._compute_matches(state)

        before: set[ObjId] = old.matches if old is not None else set()
        after = state.matches
        gained = after - before if before else after
        lost = before - after
        obj_sels = self._obj_sels
        for obj_id in gained:
            # Inlined _add: this loop runs once per membership of a new selector.
            sels = obj_sels.get(obj_id)
            if sels is None:
                obj_sels[obj_id] = {sel_id}
            else:
                sels.add(sel_id)
        for obj_id in lost:
            _discard(self._obj_sels, obj_id, sel_id)
        callback = self._on_change
        if callback is not None:
            for obj_id in lost:
                callback(sel_id, obj_id, False)
            for obj_id in gained:
                callback(sel_id, obj_id, True)

    def remove_selector(self, sel_id: SelId) -> None:
        state = self._sels.get(sel_id)
        if state is None:
            return
        self._unregister(sel_id, state)
        for obj_id in state.matches:
            _discard(self._obj_sels, obj_id, sel_id)
        callback = self._on_change
        if callback is not None:
            for obj_id in state.matches:
                callback(sel_id, obj_id, False)

    def _cost(self, atoms: frozenset[Atom]) -> int:
        # Objects that would need evaluating; the small per-atom weight breaks ties while
        # the index is still empty (prefer value atoms, then fewer atoms).
        by_atom = self._objs_by_atom
        total = 0
        for atom in atoms:
            bucket = by_atom.get(atom)
            total += 4 * (len(bucket) if bucket else 0) + (1 if atom[1] is not None else 2)
        return total

    def _union(self, atoms: Iterable[Atom]) -> set[ObjId]:
        out: set[ObjId] = set()
        by_atom = self._objs_by_atom
        for atom in atoms:
            bucket = by_atom.get(atom)
            if bucket:
                out |= bucket
        return out

    def _compute_matches(self, state: _SelectorState[ObjId]) -> set[ObjId]:
        evaluate = state.evaluate
        labels = self._labels
        if state.positive is not None:
            return {o for o in self._union(state.positive) if evaluate(labels[o])}
        if state.negative is not None:
            suspects = self._union(state.negative)
            matched = {o for o in suspects if evaluate(labels[o])}
            matched |= labels.keys() - suspects
            return matched
        return {o for o, objlabels in labels.items() if evaluate(objlabels)}

    def _register(self, sel_id: SelId, selector: Selector) -> _SelectorState[ObjId]:
        positive = candidate_condition(selector.root, False, self._cost)
        negative = (
            None if positive is not None else candidate_condition(selector.root, True, self._cost)
        )
        state: _SelectorState[ObjId] = _SelectorState(selector, positive, negative)
        self._sels[sel_id] = state
        used = state.labels_used
        for key in used:
            _add(self._sels_by_use, key, sel_id)
        if positive is not None:
            for atom in positive:
                _add(self._sel_by_atom, atom, sel_id)
                for key in used:
                    _add(self._sel_by_atom_use, (atom, key), sel_id)
            return state
        for key in used:
            _add(self._unanchored_by_use, key, sel_id)
        if negative is not None:
            self._neg_anchored.add(sel_id)
            for atom in negative:
                _add(self._neg_by_atom, atom, sel_id)
        else:
            self._scan.add(sel_id)
        return state

    def _unregister(self, sel_id: SelId, state: _SelectorState[ObjId]) -> None:
        del self._sels[sel_id]
        used = state.labels_used
        for key in used:
            _discard(self._sels_by_use, key, sel_id)
        if state.positive is not None:
            for atom in state.positive:
                _discard(self._sel_by_atom, atom, sel_id)
                for key in used:
                    _discard(self._sel_by_atom_use, (atom, key), sel_id)
            return
        for key in used:
            _discard(self._unanchored_by_use, key, sel_id)
        if state.negative is not None:
            self._neg_anchored.discard(sel_id)
            for atom in state.negative:
                _discard(self._neg_by_atom, atom, sel_id)
        else:
            self._scan.discard(sel_id)
