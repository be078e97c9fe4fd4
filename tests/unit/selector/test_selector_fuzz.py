"""Fuzz of selector strings: token soup from the grammar's own pieces, plus raw text.

Whatever the input, parsing either raises SelectorError (one line, never another exception) or
gives a selector whose canonical text re-parses to itself and which evaluates on any labels
without raising.
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from felis.selector import SelectorError, parse

TOKENS = [
    "a",
    "app",
    "k8s-app/x.y_z",
    "has",
    "all",
    "global",
    "in",
    "not",
    "contains",
    "starts",
    "ends",
    "with",
    "(",
    ")",
    "{",
    "}",
    ",",
    "!",
    "==",
    "!=",
    "&&",
    "||",
    "'x'",
    '"y"',
    "''",
    "'it\\'s'",
    "'unterminated",
    " ",
    "  ",
    "\t",
    "\n",
    "=",
    "&",
    "|",
    "é",
    "\x00",
]
LABELS = st.dictionaries(
    st.sampled_from(["a", "app", "k8s-app/x.y_z", "has", "in"]),
    st.sampled_from(["", "x", "y", "it's", "xy"]),
    max_size=4,
)


def _check(text: str, labels: dict[str, str]) -> None:
    try:
        selector = parse(text)
    except SelectorError as err:
        event("rejected")
        assert "\n" not in str(err)
        return
    event("accepted")
    canonical = str(selector)
    assert str(parse(canonical)) == canonical
    assert selector.evaluate(labels) == parse(canonical).evaluate(labels)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=14).map("".join), LABELS)
def test_token_soup_parses_or_fails_cleanly(text: str, labels: dict[str, str]) -> None:
    _check(text, labels)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), LABELS)
def test_raw_text_parses_or_fails_cleanly(text: str, labels: dict[str, str]) -> None:
    _check(text, labels)
