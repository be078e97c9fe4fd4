"""Property tests: random selectors written with odd spacing, redundant parentheses, runs of
``!`` and either quote style must parse, print canonically, re-parse to the same canonical
text and evaluate exactly like an independent reference evaluator written here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from felis.selector import SelectorError, ast, parse
from felis.selector.compile import compile_node
from felis.selector.index import candidate_condition

# Keywords on purpose: they must work as plain label names.
LABELS = ["a", "b", "app", "k8s-app/x.y_z", "has", "all", "in", "not", "contains", "global"]
VALUES = ["", "x", "y", "xy", "a b", "it's", 'say "hi"', "&& ||", "é", "\tt", "{,}", "X"]
LABEL_VALUES = [*VALUES, "xyx", "yx", "say"]

Expr = tuple[Any, ...]

labels_st = st.sampled_from(LABELS)
values_st = st.sampled_from(VALUES)

leaf_st: st.SearchStrategy[Expr] = st.one_of(
    st.tuples(
        st.just("cmp"),
        st.sampled_from(["==", "!=", "contains", "starts with", "ends with"]),
        labels_st,
        values_st,
    ),
    st.tuples(
        st.just("set"),
        st.sampled_from(["in", "not in"]),
        labels_st,
        st.lists(values_st, max_size=4),
    ),
    st.tuples(st.just("has"), labels_st),
    st.tuples(st.just("all")),
    st.tuples(st.just("global")),
)


def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.tuples(st.just("not"), st.integers(1, 4), children),
        st.tuples(st.just("and"), st.lists(children, min_size=2, max_size=4)),
        st.tuples(st.just("or"), st.lists(children, min_size=2, max_size=4)),
    )


expr_st: st.SearchStrategy[Expr] = st.recursive(leaf_st, _extend, max_leaves=12)

label_maps_st = st.lists(
    st.dictionaries(st.sampled_from(LABELS), st.sampled_from(LABEL_VALUES), max_size=5),
    min_size=1,
    max_size=8,
)


def reference(expr: Expr, labels: Mapping[str, str]) -> bool:
    """Semantics table of reference §3.4, written independently of the package."""
    kind = expr[0]
    if kind == "cmp":
        _, op, label, value = expr
        present = label in labels
        actual = labels.get(label, "")
        if op == "==":
            return present and actual == value
        if op == "!=":
            return not present or actual != value
        if op == "contains":
            return present and value in actual
        if op == "starts with":
            return present and actual.startswith(value)
        return present and actual.endswith(value)
    if kind == "set":
        _, op, label, values = expr
        inside = label in labels and labels[label] in values
        return inside if op == "in" else not inside
    if kind == "has":
        return expr[1] in labels
    if kind in ("all", "global"):
        return True
    if kind == "not":
        result = reference(expr[2], labels)
        return result if expr[1] % 2 == 0 else not result
    if kind == "and":
        return all(reference(e, labels) for e in expr[1])
    return any(reference(e, labels) for e in expr[1])


BLANKS = ["", "", " ", "  ", "\t", " \t "]
SOME_BLANKS = [" ", "  ", "\t", " \t"]


@st.composite
def rendered(draw: st.DrawFn, expr: Expr, context: str = "or") -> str:
    """Write ``expr`` as selector text.  ``context`` is where it appears: "or" (anywhere),
    "and" (operand of &&, so || needs parentheses) or "primary" (after !)."""

    def ws() -> str:
        return draw(st.sampled_from(BLANKS))

    def quoted(value: str) -> str:
        if '"' in value:
            return f"'{value}'"
        if "'" in value:
            return f'"{value}"'
        q = draw(st.sampled_from(['"', "'"]))
        return f"{q}{value}{q}"

    def word_op(op: str) -> str:
        # Between the words of a multi-word operator any run of blanks, even none.
        return op.replace(" ", draw(st.sampled_from(BLANKS)))

    kind = expr[0]
    needs_parens = False
    if kind == "cmp":
        _, op, label, value = expr
        gap = ws() if op in ("==", "!=") else draw(st.sampled_from(SOME_BLANKS))
        text = f"{label}{gap}{word_op(op)}{ws()}{quoted(value)}"
    elif kind == "set":
        _, op, label, values = expr
        items = [ws() + quoted(v) + ws() for v in values]
        body = ",".join(items)
        if values and draw(st.booleans()):
            body += "," + ws()  # trailing comma
        text = f"{label}{draw(st.sampled_from(SOME_BLANKS))}{word_op(op)}{ws()}{{{ws()}{body}}}"
    elif kind == "has":
        text = f"has({ws()}{expr[1]}{ws()})"
    elif kind in ("all", "global"):
        text = f"{kind}({ws()})"
    elif kind == "not":
        bangs = "".join("!" + ws() for _ in range(expr[1]))
        text = bangs + draw(rendered(expr[2], "primary"))
    else:
        sep = "&&" if kind == "and" else "||"
        inner = "and" if kind == "and" else "or"
        parts = [draw(rendered(e, inner)) for e in expr[1]]
        text = (ws() + sep + ws()).join(parts)
        needs_parens = context == "primary" or (context == "and" and kind == "or")
    if needs_parens or draw(st.integers(0, 5)) == 0:
        text = f"({ws()}{text}{ws()})"
    return text


@st.composite
def selector_text(draw: st.DrawFn) -> tuple[Expr, str]:
    expr = draw(expr_st)
    text = draw(rendered(expr))
    lead = draw(st.sampled_from(BLANKS))
    trail = draw(st.sampled_from(BLANKS))
    return expr, f"{lead}{text}{trail}"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(selector_text(), label_maps_st)
def test_round_trip_and_semantics(case: tuple[Expr, str], label_maps: list[dict[str, str]]) -> None:
    expr, text = case
    sel = parse(text)
    canonical = str(sel)
    again = parse(canonical)
    assert str(again) == canonical
    assert again == sel
    assert again.unique_id == sel.unique_id
    assert "\n" not in canonical
    for labels in label_maps:
        expected = reference(expr, labels)
        assert sel.evaluate(labels) is expected, (text, labels)
        assert again.evaluate(labels) is expected, (canonical, labels)
        assert sel.root.evaluate(labels) is expected


# Syntax trees built directly (no parser), to test the compiler against the interpreter.
def _node_leaves() -> st.SearchStrategy[ast.Node]:
    return st.one_of(
        st.builds(ast.Equals, labels_st, values_st),
        st.builds(ast.NotEquals, labels_st, values_st),
        st.builds(ast.Contains, labels_st, values_st),
        st.builds(ast.StartsWith, labels_st, values_st),
        st.builds(ast.EndsWith, labels_st, values_st),
        st.builds(ast.InSet, labels_st, st.lists(values_st, max_size=4).map(ast.canonical_set)),
        st.builds(ast.NotInSet, labels_st, st.lists(values_st, max_size=4).map(ast.canonical_set)),
        st.builds(ast.Has, labels_st),
        st.just(ast.All()),
        st.just(ast.Global()),
    )


def _node_extend(children: st.SearchStrategy[ast.Node]) -> st.SearchStrategy[ast.Node]:
    return st.one_of(
        st.builds(ast.Not, children),  # including Not(Not(x)), which parse() never builds
        st.lists(children, min_size=2, max_size=4).map(lambda ops: ast.And(tuple(ops))),
        st.lists(children, min_size=2, max_size=4).map(lambda ops: ast.Or(tuple(ops))),
    )


node_st = st.recursive(_node_leaves(), _node_extend, max_leaves=16)


@settings(max_examples=500, deadline=None)
@given(node_st, label_maps_st)
def test_compiled_matches_interpreter(node: ast.Node, label_maps: list[dict[str, str]]) -> None:
    compiled = compile_node(node)
    for labels in label_maps:
        assert compiled(labels) is node.evaluate(labels)


@settings(max_examples=300, deadline=None)
@given(node_st)
def test_printed_tree_reparses_equivalently(node: ast.Node) -> None:
    text = node.canonical()
    sel = parse(text)
    assert str(parse(str(sel))) == str(sel)
    for labels in ({}, {"a": "x"}, {"has": "", "in": "é", "b": "a b"}, dict.fromkeys(LABELS, "x")):
        assert sel.evaluate(labels) is node.evaluate(labels)


@settings(max_examples=400, deadline=None)
@given(node_st, label_maps_st)
def test_candidate_conditions_are_necessary(
    node: ast.Node, label_maps: list[dict[str, str]]
) -> None:
    """The index's shortcut: a match implies an atom of the positive condition holds, a
    non-match implies an atom of the negative condition holds."""
    positive = candidate_condition(node, False, len)
    negative = candidate_condition(node, True, len)
    for labels in label_maps:
        atoms = {(k, v) for k, v in labels.items()} | {(k, None) for k in labels}
        if node.evaluate(labels):
            assert positive is None or positive & atoms
        else:
            assert negative is None or negative & atoms


FUZZ_ALPHABET = st.sampled_from(
    [*"ab !&|=(){},'\"\t\n%", "has(", "all()", "global()", " in ", " not in ", "contains"]
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(FUZZ_ALPHABET, max_size=20).map("".join))
def test_arbitrary_text_parses_or_raises_selector_error(text: str) -> None:
    try:
        sel = parse(text)
    except SelectorError as err:
        assert 0 <= err.position <= len(text)
        assert "\n" not in str(err)
        return
    assert "\n" not in text and "\r" not in text
    assert str(parse(str(sel))) == str(sel)
