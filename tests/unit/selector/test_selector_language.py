"""Table tests for the selector language: reference §3 (lexing, grammar, semantics, canonical
form, UIDs) and §2.10.  Each row is one case."""

from __future__ import annotations

import pickle

import pytest

from felis.errors import FelisError
from felis.selector import Selector, SelectorError, parse, selector_uid
from felis.selector.parser import parse_ast

L512 = "l" * 512
L513 = "l" * 513

# (selector, labels, expected) -- §3.6 rows, in order, plus Calico's parser_test cases.
MATCHES: list[tuple[str, dict[str, str], bool]] = [
    # 1-3
    ('a == "b"', {"a": "b"}, True),
    ('a == "b"', {"a": "b", "c": "d"}, True),
    ('a == "b"', {}, False),
    ('a == "b"', {"a": "c"}, False),
    ('a == "b"', {"c": "d"}, False),
    # 4-5
    ('a == "b" && c == "d"', {"a": "b", "c": "d"}, True),
    ('a == "b" && c == "d"', {"a": "b", "c": "e"}, False),
    ('a == "b" && c == "d"', {"a": "c", "c": "d"}, False),
    ('a == "b" && c == "d"', {"c": "d"}, False),
    ('a == "b" && c == "d"', {"a": "b"}, False),
    ('a == "b" && c == "d"', {}, False),
    # 6-7
    ('a == "b" || c == "d"', {"a": "b"}, True),
    ('a == "b" || c == "d"', {"c": "d"}, True),
    ('a == "b" || c == "d"', {"a": "b", "c": "d"}, True),
    ('a == "b" || c == "d"', {"a": "e", "c": "e"}, False),
    ('a == "b" || c == "d"', {"c": "e"}, False),
    ('a == "b" || c == "d"', {"a": "e"}, False),
    ('a == "b" || c == "d"', {}, False),
    # 8-11
    ('a in {"\'", \'"\', "c"}', {"a": "c"}, True),
    ('a in {"\'", \'"\', "c"}', {"a": '"'}, True),
    ('a in {"\'", \'"\', "c"}', {"a": "'"}, True),
    ('a in {"\'", \'"\', "c"}', {}, False),
    ('a in {"\'", \'"\', "c"}', {"a": "e"}, False),
    ('a not in {"\'", \'"\', "c"}', {}, True),
    ('a not in {"\'", \'"\', "c"}', {"a": "e"}, True),
    ('a not in {"\'", \'"\', "c"}', {"a": "c"}, False),
    ('a not in {"\'", \'"\', "c"}', {"a": '"'}, False),
    ('a not in {"\'", \'"\', "c"}', {"a": "'"}, False),
    # 12-15
    ("a == 'a'", {"a": "a"}, True),
    ("a == 'a'", {"a": "b"}, False),
    ("a == 'a'", {}, False),
    ('a == "a"', {"a": "a"}, True),
    ('a != "b"', {"a": "a"}, True),
    ('a != "a"', {}, True),
    ("a != 'a'", {"a": "a"}, False),
    ('a != "a"', {"a": "a"}, False),
    # 16-18
    ('a contains "a"', {"a": "a"}, True),
    ('a contains "a"', {"a": "bab"}, True),
    ('a contains "a"', {"a": "aaa", "b": "c"}, True),
    ('a contains "a"', {}, False),
    ('a contains "a"', {"a": "b"}, False),
    ('a contains "a"', {"b": "aaa"}, False),
    ('a starts with "a"', {"a": "a"}, True),
    ('a starts with "a"', {"a": "abb"}, True),
    ('a starts with "a"', {"a": "aaa", "b": "c"}, True),
    ('a starts with "a"', {}, False),
    ('a starts with "a"', {"a": "b"}, False),
    ('a starts with "a"', {"a": "baa"}, False),
    ('a starts with "a"', {"b": "aaa"}, False),
    ('a ends with "a"', {"a": "a"}, True),
    ('a ends with "a"', {"a": "bba"}, True),
    ('a ends with "a"', {"a": "aaa", "b": "c"}, True),
    ('a ends with "a"', {}, False),
    ('a ends with "a"', {"a": "b"}, False),
    ('a ends with "a"', {"a": "aab"}, False),
    ('a ends with "a"', {"b": "aaa"}, False),
    # 19-23
    ('a in {"a"}', {"a": "a"}, True),
    ('a in {"a"}', {"a": "b"}, False),
    ('!a in {"a"}', {"a": "b"}, True),
    ('!a in {"a"}', {"a": "a"}, False),
    ('!a in {"a"}', {}, True),
    ('a in {"a", "b"}', {"a": "a"}, True),
    ('a in {"a", "b"}', {"a": "b"}, True),
    ('a in {"a", "b"}', {"a": "c"}, False),
    ('a not in {"d", "e"}', {"a": "a"}, True),
    ('a not in {"a"}', {"a": "a"}, False),
    # 24-28
    ("has(a)", {"a": "b"}, True),
    ("has(a)", {"a": ""}, True),
    ("has(b)", {"a": "b"}, False),
    ("!has(a)", {"b": "b"}, True),
    ("!has(a)", {"a": "b"}, False),
    ("! has(a)", {"a": "b"}, False),
    ("!!has(b)", {"a": "b"}, False),
    ("!!has(b)", {"b": "x"}, True),
    ("!!! has(a)", {"a": "b"}, False),
    ("!!!has(a)", {"a": "b"}, False),
    ("!! ! has(a)", {"a": "b"}, False),
    ("! !!has(a)", {"a": "b"}, False),
    ("!!!!has(a)", {"a": "b"}, True),
    ("! ! ! ! ! has(a)", {}, True),
    # 29-30
    ("", {}, True),
    ("", {"a": "b"}, True),
    (" ", {}, True),
    ("\t", {"a": "b"}, True),
    (" \t  \t", {}, True),
    ("all()", {}, True),
    (" all()", {}, True),
    (" all()", {"a": "b"}, True),
    ("all( )", {"a": "b"}, True),
    ("global()", {}, True),
    (" global()", {}, True),
    (" global()", {"a": "b"}, True),
    ("global(\t)", {"a": "b"}, True),
    ("!all()", {}, False),
    ("!global()", {"a": "b"}, False),
    # 31-40
    ("a == 'a1' && b == 'b1'", {"a": "a1", "b": "b1"}, True),
    ("a == 'a1' && b != 'b1'", {"a": "a1", "b": "b1"}, False),
    ("a != 'a1' && b == 'b1'", {"a": "a1", "b": "b1"}, False),
    ("a != 'a1' && b != 'b1'", {"a": "a1", "b": "b1"}, False),
    ("a != 'a1' && !b == 'b1'", {"a": "a1", "b": "b1"}, False),
    ("!a == 'a1' && b == 'b1'", {"a": "a1", "b": "b1"}, False),
    ("has(a) && !has(b)", {"a": "a"}, True),
    ("!has(b) && has(a)", {"a": "a"}, True),
    ("!(!has(a) || has(b))", {"a": "a"}, True),
    ("!(has(b) || !has(a))", {"a": "a"}, True),
    ("!(has(b) || !has(a))", {"a": "a", "b": "b"}, False),
    ("a == 'a1' || b == 'b1'", {"a": "a1", "b": "b1"}, True),
    ("a == 'a1' || b != 'b1'", {"a": "a1", "b": "b1"}, True),
    ("a != 'a1' || b == 'b1'", {"a": "a1", "b": "b1"}, True),
    ("a != 'a1' || b != 'b1'", {"a": "a1", "b": "b1"}, False),
    ("! a == 'a1' || ! b == 'b1'", {"a": "a1", "b": "b1"}, False),
    # 41-42
    (
        'calico/k8s_ns == "kube-system" && k8s-app == "kube-dns"',
        {"calico/k8s_ns": "kube-system", "k8s-app": "kube-dns"},
        True,
    ),
    ('calico/k8s_ns == "kube-system" && k8s-app == "kube-dns"', {"k8s-app": "kube-dns"}, False),
    ("has(calico/k8s_NS-.1/role)", {"calico/k8s_NS-.1/role": "x"}, True),
    ("has(calico/k8s_NS-.1/role)", {"calico/k8s_ns-.1/role": "x"}, False),
    # 44: empty sets
    ("a in {}", {}, False),
    ("a in {}", {"a": ""}, False),
    ("a in {}", {"a": "x"}, False),
    ("a not in {}", {}, True),
    ("a not in {}", {"a": ""}, True),
    ("a not in {}", {"a": "x"}, True),
    # 45: longest label
    (f'{L512} == "value"', {L512: "value"}, True),
    (f"has({L512})", {L512: ""}, True),
    # Precedence (§3.3): ! binds to one primary, && above ||.
    ('!a == "b" && c == "d"', {"c": "d"}, True),
    ('!a == "b" && c == "d"', {"a": "b", "c": "d"}, False),
    ('!(a == "b" && c == "d")', {"a": "b"}, True),
    ("a == 'b' || c == 'd' && e == 'f'", {"a": "b"}, True),
    ("a == 'b' || c == 'd' && e == 'f'", {"c": "d"}, False),
    ("a == 'b' || c == 'd' && e == 'f'", {"c": "d", "e": "f"}, True),
    ("(a == 'b' || c == 'd') && e == 'f'", {"a": "b"}, False),
    ("(a == 'b' || c == 'd') && e == 'f'", {"a": "b", "e": "f"}, True),
    # Empty values are present values.
    ('k == ""', {"k": ""}, True),
    ('k == ""', {}, False),
    ('k != ""', {}, True),
    ('k != ""', {"k": ""}, False),
    ('k contains ""', {"k": "x"}, True),
    ('k contains ""', {}, False),
    ('k starts with ""', {"k": ""}, True),
    ('k ends with ""', {}, False),
    ('k in {""}', {"k": ""}, True),
    ('k not in {""}', {"k": ""}, False),
    # Case-sensitive, exact comparison.
    ('a == "B"', {"a": "b"}, False),
    ('A == "b"', {"a": "b"}, False),
    ('a == "b "', {"a": "b"}, False),
    ('a contains "B"', {"a": "abc"}, False),
    # Keywords are ordinary label names outside their positions.
    ('contains contains "contains"', {"contains": "xcontainsx"}, True),
    ("contains contains 'contains'", {"contains": "x"}, False),
    ('has == "x"', {"has": "x"}, True),
    ("has(has)", {"has": ""}, True),
    ('all == "x"', {"all": "x"}, True),
    ('global == "x"', {"global": "x"}, True),
    ('in in {"in"}', {"in": "in"}, True),
    ('not not in {"in"}', {"not": "x"}, True),
    ('not not in {"in"}', {"not": "in"}, False),
    ('startswith starts with "value"', {"startswith": "values"}, True),
    ('endswith ends with "value"', {"endswith": "a value"}, True),
    ('starts == "with"', {"starts": "with"}, True),
    ('ends != "with"', {}, True),
    ("with in {'a'}", {"with": "a"}, True),
    ('hasx == "1"', {"hasx": "1"}, True),
    ('allx == "1"', {"allx": "1"}, True),
    ("!has(contains) && in == 'x'", {"in": "x"}, True),
    # Multi-word operators with zero or more blanks between the words.
    ('a startswith "v"', {"a": "val"}, True),
    ('a starts  with "v"', {"a": "val"}, True),
    ('a starts\twith "v"', {"a": "val"}, True),
    ('a endswith "l"', {"a": "val"}, True),
    ('a ends \t with "l"', {"a": "val"}, True),
    ("a notin {'x'}", {"a": "y"}, True),
    ("a not   in {'x'}", {"a": "x"}, False),
    ("a not\tin{'x'}", {}, True),
    ('a contains"x"', {"a": "axb"}, True),
    ("a in{'x'}", {"a": "x"}, True),
    # Whitespace: none needed around punctuation, tabs allowed anywhere.
    ('a=="b"', {"a": "b"}, True),
    ("a!='b'", {"a": "c"}, True),
    ("(a=='b')&&(c=='d')", {"a": "b", "c": "d"}, True),
    ("a=='b'||c=='d'", {"c": "d"}, True),
    ("\ta\t==\t'b'\t", {"a": "b"}, True),
    ("has(\ta\t)", {"a": ""}, True),
    ("has(  a )", {"a": ""}, True),
    ("((((a == 'b'))))", {"a": "b"}, True),
    # Sets: trailing comma, duplicates, quotes of either kind.
    ("a in {'x',}", {"a": "x"}, True),
    ("a in {\"x\", 'y',}", {"a": "y"}, True),
    ("a in {'x','x','x'}", {"a": "x"}, True),
    ('a in {"x y"}', {"a": "x y"}, True),
    ('a in {"x,y"}', {"a": "x"}, False),
    ('a in {"x,y"}', {"a": "x,y"}, True),
    # String literal contents are taken verbatim: no escapes.
    ('a == "x\\y"', {"a": "x\\y"}, True),
    ("a == 'x\\'", {"a": "x\\"}, True),
    ('a == "it\'s"', {"a": "it's"}, True),
    ("a == 'say \"hi\"'", {"a": 'say "hi"'}, True),
    ('a == "&& || ! ( ) { } ,"', {"a": "&& || ! ( ) { } ,"}, True),
    ('a == "tab\there"', {"a": "tab\there"}, True),
    ('a == "é∑"', {"a": "é∑"}, True),
    ('a == "é∑"', {"a": "e"}, False),
]


@pytest.mark.parametrize(("text", "labels", "expected"), MATCHES)
def test_evaluate(text: str, labels: dict[str, str], expected: bool) -> None:
    sel = parse(text)
    assert sel.evaluate(labels) is expected
    # Interpreter and canonical re-parse agree.
    assert sel.root.evaluate(labels) is expected
    assert parse(str(sel)).evaluate(labels) is expected


# Reference §3.6 "badSelectors", tokenizer rejects, and more.
BAD: list[str] = [
    "b == b",
    "b contains b",
    "b starts with b",
    "b ends with b",
    "'b1' == b",
    "b",
    "a b",
    "!",
    'foo == "bar" &',
    'foo == "bar" |',
    "foo != ||",
    'foo in {"", ||',
    'foo in ""',
    '"FOO',
    "\"FOO'",
    "'FOO",
    "(",
    '(a == "foo"',
    ")",
    "()",
    "%",
    'a == "b" && %',
    'a == "b" || %',
    "a ",
    "has(foo) &&",
    'label = "value"',
    "all(",
    "global(",
    "has()",
    "has(foo",
    "has( foo ",
    'a == "b" & has(foo)',
    'a == "b" | has(foo)',
    'label starts foo "value"',
    'label ends foo "value"',
    'label inf "value"',
    'label ends withs "value"',
    'label squiggles "value"',
    # §3.6 row 43: tokenises but the right-hand sides are not sets.
    'a notin"bar"&&!has(foo)||b in"c"',
    'a not in "bar" && !has(foo) || b in c',
    # Line breaks are never whitespace.
    "a == 'b'\n",
    "\na == 'b'",
    "a ==\n'b'",
    "a == 'b' &&\r\nc == 'd'",
    "a == 'b'\r",
    "\n",
    "a == 'x\ny'",
    # Labels: 513 chars, foreign characters.
    f'{L513} == "value"',
    f"has({L513})",
    "a:b == 'c'",
    "a@b == 'c'",
    "a+b == 'c'",
    "é == 'c'",
    "has(a:b)",
    # Word operators need a word boundary.
    "a containsx 'y'",
    "a inx {'y'}",
    "a in_ {'y'}",
    "a notinx {'y'}",
    "a startswithx 'y'",
    "a ends with. 'y'",
    "a nott in {'y'}",
    "a starts 'y'",
    "a not 'y'",
    # Functions must be followed directly by '('.
    "has (a)",
    "all ()",
    "global ()",
    "has(a b)",
    "has('a')",
    "all(a)",
    "global(x)",
    "has(a)(",
    # Grammar.
    "a ==",
    "a == 'b' c",
    "a == 'b' has(c)",
    "a == 'b' 'c'",
    "a == 'b' && ",
    "|| a == 'b'",
    "&& a == 'b'",
    "a == 'b' || || c == 'd'",
    "a == 'b' && && c == 'd'",
    "a == 'b' !",
    "!a",
    "! ",
    "!!",
    "a !has(b)",
    "a ! = 'b'",
    "a = = 'b'",
    "a === 'b'",
    "a !== 'b'",
    "a == {'b'}",
    "a in 'b'",
    "a in {'b'",
    "a in {'b' 'c'}",
    "a in {,}",
    "a in {'b',,}",
    "a in {'b',,'c'}",
    "a in {b}",
    "a in {'b'}}",
    "a in ('b')",
    "a not in",
    "a contains",
    "a starts with",
    "a ends with",
    "a < 'b'",
    "a == 'b')",
    "(a == 'b'))",
    "((a == 'b')",
    "(a == 'b' && )",
    "(a == 'b') (c == 'd')",
    "{}",
    "'x'",
    "all() all()",
    "all() && ",
    "has(a) == 'b'",
    "global() == 'x'",
    ",",
    "a == 'b',",
    "a == 'b';",
    "a == `b`",
    "a == 'b' # comment",
    "\x00",
    "a\x0b== 'b'",
    "a\u00a0== 'b'",
]


@pytest.mark.parametrize("text", BAD)
def test_rejects(text: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse(text)
    err = info.value
    assert err.text == text
    assert 0 <= err.position <= len(text)
    assert err.reason
    message = str(err)
    assert "\n" not in message and "\r" not in message
    assert message.startswith("invalid selector ")
    assert f"at position {err.position}: {err.reason}" in message


def test_error_types_and_message() -> None:
    with pytest.raises(SelectorError) as info:
        parse("a == b")
    err = info.value
    assert isinstance(err, ValueError)
    assert isinstance(err, FelisError)
    assert err.position == 5
    assert str(err).startswith('invalid selector "a == b" at position 5: expected a string literal')
    again = pickle.loads(pickle.dumps(err))
    assert (again.text, again.position, again.reason) == (err.text, err.position, err.reason)
    assert str(again) == str(err)


# (text, position of the failure) -- positions are 0-based character offsets.
POSITIONS: list[tuple[str, int]] = [
    ("a == b", 5),
    ("b", 1),
    ("a ", 2),
    ("%", 0),
    ('a == "b" && %', 12),
    ("label = 'v'", 6),
    ("'FOO", 0),
    ("x == 'ok' && y == \"oops", 18),
    ("(a == 'b'", 9),
    (")", 0),
    ("a == 'b'\n", 8),
    ("a containsx 'y'", 2),
    (f"x == 'y' && {L513} == 'v'", 12),
    ("has()", 4),
    ("a in {'x' 'y'}", 10),
    ("a == 'b' c", 9),
    ("a == 'b' &", 9),
]


@pytest.mark.parametrize(("text", "position"), POSITIONS)
def test_error_position(text: str, position: int) -> None:
    with pytest.raises(SelectorError) as info:
        parse(text)
    assert info.value.position == position


def test_error_message_escapes_and_truncates() -> None:
    with pytest.raises(SelectorError) as info:
        parse("a == 'b'\n && c")
    assert "\"a == 'b'\\n && c\"" in str(info.value)
    long_text = "a == 'b' && " * 40 + "%"
    with pytest.raises(SelectorError) as info:
        parse(long_text)
    message = str(info.value)
    assert len(message) < 300
    assert f"at position {len(long_text) - 1}" in message


def test_label_length_limits() -> None:
    assert parse(f"{L512} == 'x'").labels_used == {L512}
    with pytest.raises(SelectorError, match="513 characters"):
        parse(f"{L513} == 'x'")
    with pytest.raises(SelectorError, match="513 characters"):
        parse(f"has({L513})")
    assert parse("a == 'x'").labels_used == {"a"}


# (input, canonical form) -- §3.5 and the canonicalisation examples of §3.6.
CANONICAL: list[tuple[str, str]] = [
    ("", "all()"),
    (" ", "all()"),
    ("\t \t", "all()"),
    (" all() ", "all()"),
    (" (all() )", "all()"),
    ("all( )", "all()"),
    ("global( )", "global()"),
    ("! (has( b)||! has(a ))", "!(has(b) || !has(a))"),
    ('! (a == "b"&&! c != "d")', '!(a == "b" && !c != "d")'),
    ('a == "\'"', 'a == "\'"'),
    ("a == '\"'", "a == '\"'"),
    ("a contains '\"'", "a contains '\"'"),
    ('a contains "\'"', 'a contains "\'"'),
    ("a startswith '\"'", "a starts with '\"'"),
    ('a endswith "\'"', 'a ends with "\'"'),
    ("a!='\"'", "a != '\"'"),
    ('a=="b"', 'a == "b"'),
    ("a == 'b'", 'a == "b"'),
    ("memcached == 'client'", 'memcached == "client"'),
    ('memcached=="client"', 'memcached == "client"'),
    ('a in {"d"}', 'a in {"d"}'),
    ('a in {"a", "b"}', 'a in {"a", "b"}'),
    ('a in {"d", "a", "b"}', 'a in {"a", "b", "d"}'),
    ('a in {"z", "x", "y", "a"}', 'a in {"a", "x", "y", "z"}'),
    ('a in {"z", "z", "x", "y", "x", "a"}', 'a in {"a", "x", "y", "z"}'),
    ("a in {'x',}", 'a in {"x"}'),
    ("a in {}", "a in {}"),
    ("a not in {}", "a not in {}"),
    ("a  not  in  {'x'}", 'a not in {"x"}'),
    ("a notin{'b','a'}", 'a not in {"a", "b"}'),
    ("a in {'B', 'a', 'b', 'A'}", 'a in {"A", "B", "a", "b"}'),
    ("a in {'\"', \"'\", 'c'}", 'a in {\'"\', "\'", "c"}'),
    ("a in {'é', 'z', 'Z'}", 'a in {"Z", "z", "é"}'),
    ("has( foo )", "has(foo)"),
    ("has(\tfoo\t)", "has(foo)"),
    ("all()&&has(a)", "(all() && has(a))"),
    (
        "type == 'webserver' && deployment == 'prod'",
        '(type == "webserver" && deployment == "prod")',
    ),
    ("a == 'b' || c == 'd' && e == 'f'", '(a == "b" || (c == "d" && e == "f"))'),
    ("(a == 'b' || c == 'd') && e == 'f'", '((a == "b" || c == "d") && e == "f")'),
    ("a == 'b' && (c == 'd' && e == 'f')", '(a == "b" && (c == "d" && e == "f"))'),
    ("a == 'b' && c == 'd' && e == 'f'", '(a == "b" && c == "d" && e == "f")'),
    ("a == 'b' || c == 'd' || e == 'f'", '(a == "b" || c == "d" || e == "f")'),
    ("!(k == 'v')", '!k == "v"'),
    ("!k == 'v'", '!k == "v"'),
    ("!!has(b)", "has(b)"),
    ("!!!has(b)", "!has(b)"),
    ("! ! has(b)", "has(b)"),
    ("!(!has(b))", "has(b)"),
    ("!(!(!has(b)))", "!has(b)"),
    ("!(a == 'b' && c == 'd')", '!(a == "b" && c == "d")'),
    ("!(a == 'b' || c == 'd')", '!(a == "b" || c == "d")'),
    ("((a == 'b'))", 'a == "b"'),
    ("(((has(a)) && ((has(b)))))", "(has(a) && has(b))"),
    ("global()", "global()"),
    ("!global()", "!global()"),
    ("a starts  with 'x'", 'a starts with "x"'),
    ("a ends\twith 'x'", 'a ends with "x"'),
    ("a contains'x'", 'a contains "x"'),
    ("a != ''", 'a != ""'),
    ("a == 'x\\y'", 'a == "x\\y"'),
    ("contains contains 'contains'", 'contains contains "contains"'),
    ("calico/k8s_ns == 'kube-system'", 'calico/k8s_ns == "kube-system"'),
    (
        "!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))",
        '!(!((k == "v" && has(t)) || all()) && a in {"b", "c"})',
    ),
]


@pytest.mark.parametrize(("text", "canonical"), CANONICAL)
def test_canonical(text: str, canonical: str) -> None:
    sel = parse(text)
    assert str(sel) == canonical
    assert sel.canonical == canonical
    again = parse(canonical)
    assert str(again) == canonical
    assert again == sel
    assert hash(again) == hash(sel)
    assert again.unique_id == sel.unique_id


# §3.5 test vectors.
UIDS: list[tuple[str, str]] = [
    ("", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
    (" all() ", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
    (" (all() )", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
    ("all()", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
    ("! (has( b)||! has(a ))", "s:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q"),
    ('! (a == "b"&&! c != "d")', "s:lh3haoY1ikTRkd4UZu0nWSaIBknYLPJLX16d-w"),
    ("memcached == 'client'", "s:j0651QXPU3OWTryyoQJxg8dIuO9UA7TUC25ZIA"),
    ('memcached=="client"', "s:j0651QXPU3OWTryyoQJxg8dIuO9UA7TUC25ZIA"),
]


@pytest.mark.parametrize(("text", "uid"), UIDS)
def test_unique_id(text: str, uid: str) -> None:
    sel = parse(text)
    assert sel.unique_id == uid
    assert selector_uid(str(sel)) == uid
    assert len(uid) == 40  # "s:" + 38 chars of unpadded base64url SHA-224


def test_selector_uid_function() -> None:
    assert selector_uid("all()") == "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"
    assert selector_uid("!(has(b) || !has(a))") == "s:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q"
    assert selector_uid('a == "b"') != selector_uid("a == 'b'")


def test_parse_is_cached() -> None:
    assert parse("cache-test == 'x'") is parse("cache-test == 'x'")
    assert parse("cache-test == 'x'") is not parse("cache-test=='x'")
    assert parse("cache-test == 'x'") == parse("cache-test=='x'")


def test_selector_object() -> None:
    sel = parse("a == 'b' && (has(c) || d not in {'x'}) && !e contains 'y'")
    assert sel.labels_used == frozenset({"a", "c", "d", "e"})
    assert isinstance(sel.labels_used, frozenset)
    assert parse("all()").labels_used == frozenset()
    assert repr(sel) == f"Selector({str(sel)!r})"
    assert sel.root == parse_ast(str(sel))
    assert pickle.loads(pickle.dumps(sel)) == sel
    assert sel != str(sel)
    assert len({parse("a=='b'"), parse('a == "b"'), parse("a != 'b'")}) == 2
    assert Selector(parse_ast("x == 'y'")) == parse("x=='y'")


def test_evaluate_accepts_any_mapping() -> None:
    from types import MappingProxyType

    sel = parse("a == 'b' && c in {'d', 'e'} && f != 'g' && has(h) && i contains 'j'")
    labels = MappingProxyType({"a": "b", "c": "e", "h": "", "i": "xjx"})
    assert sel.evaluate(labels) is True
    assert sel.evaluate({}) is False


def test_deep_nesting_has_a_clear_limit() -> None:
    ok = "(" * 60 + "a == 'b'" + ")" * 60
    assert str(parse(ok)) == 'a == "b"'
    deep_mixed = "a == 'x'"
    for i in range(30):
        deep_mixed = f"!(l{i} == 'v' && ({deep_mixed} || has(h{i})))"
    sel = parse(deep_mixed)  # too deep to compile into one expression: interpreter fallback
    assert sel.evaluate({"a": "x"}) == sel.root.evaluate({"a": "x"})
    assert str(parse(str(sel))) == str(sel)
    with pytest.raises(SelectorError, match="nested"):
        parse("(" * 100 + "a == 'b'" + ")" * 100)


def test_non_string_input_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse(None)  # type: ignore[arg-type]
