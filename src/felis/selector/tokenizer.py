"""Selector tokenizer (docs/calico-semantics.md#selector-syntax).

Context matters in Calico's lexer: the word operators (``in``, ``not in``, ``contains``,
``starts with``, ``ends with``) exist only directly after a label, and the functions
(``has(``, ``all(``, ``global(``) only anywhere else.  That is what lets the keywords double
as ordinary label names (``contains contains "contains"`` is valid).
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple

from felis.selector.errors import SelectorError

MAX_LABEL_LENGTH = 512

# ASCII only on purpose: Calico compares bytes, so "é" is not a label character.
_IDENT = re.compile(r"[a-zA-Z0-9_./-]+")
_IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-")
_WHITESPACE = " \t"


class Kind(enum.Enum):
    LABEL = "label"
    STRING = "string literal"
    LBRACE = "'{'"
    RBRACE = "'}'"
    COMMA = "','"
    EQ = "'=='"
    NE = "'!='"
    NOT = "'!'"
    IN = "'in'"
    NOT_IN = "'not in'"
    CONTAINS = "'contains'"
    STARTS_WITH = "'starts with'"
    ENDS_WITH = "'ends with'"
    HAS = "has(…)"
    ALL = "all()"
    GLOBAL = "global()"
    LPAREN = "'('"
    RPAREN = "')'"
    AND = "'&&'"
    OR = "'||'"
    EOF = "end of selector"


class Token(NamedTuple):
    kind: Kind
    value: str
    pos: int

    def describe(self) -> str:
        if self.kind is Kind.LABEL:
            return f'label "{self.value}"'
        if self.kind is Kind.STRING:
            return "a string literal"
        return str(self.kind.value)


_PUNCTUATION = {
    "(": Kind.LPAREN,
    ")": Kind.RPAREN,
    "{": Kind.LBRACE,
    "}": Kind.RBRACE,
    ",": Kind.COMMA,
}

# Operators spelled with a doubled character; the single character means nothing.
_DOUBLED = {
    "=": Kind.EQ,
    "&": Kind.AND,
    "|": Kind.OR,
}

# Tried in this order after a label, like Calico does.
_WORD_OPERATORS: tuple[tuple[Kind, tuple[str, ...]], ...] = (
    (Kind.CONTAINS, ("contains",)),
    (Kind.STARTS_WITH, ("starts", "with")),
    (Kind.ENDS_WITH, ("ends", "with")),
    (Kind.NOT_IN, ("not", "in")),
    (Kind.IN, ("in",)),
)


def _skip_ws(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _WHITESPACE:
        i += 1
    return i


def _at_word_boundary(text: str, i: int) -> bool:
    return i >= len(text) or text[i] not in _IDENT_CHARS


def _word_operator(text: str, i: int) -> tuple[Kind, int] | None:
    for kind, words in _WORD_OPERATORS:
        j = i
        for word in words:
            if not text.startswith(word, j):
                break
            j += len(word)
            if len(words) > 1:
                # Multi-word operators may have any run of blanks between (and after) the words.
                j = _skip_ws(text, j)
        else:
            if _at_word_boundary(text, j):
                return kind, j
    return None


def _identifier(text: str, i: int, what: str) -> tuple[str, int]:
    m = _IDENT.match(text, i)
    if m is None:
        if i >= len(text):
            raise SelectorError(text, i, f"expected {what}, found the end of the selector")
        raise SelectorError(text, i, f"expected {what}, found {_describe_char(text[i])}")
    ident = m.group()
    if len(ident) > MAX_LABEL_LENGTH:
        raise SelectorError(
            text, i, f"label name is {len(ident)} characters long (at most {MAX_LABEL_LENGTH})"
        )
    return ident, m.end()


def _describe_char(ch: str) -> str:
    return f"the character {ch!r}"


def _function(text: str, i: int, name: str) -> int:
    """Consume ``name(`` + blanks + ``)``; returns the index after ``)``."""
    j = _skip_ws(text, i + len(name) + 1)
    if not text.startswith(")", j):
        raise SelectorError(text, j, f"expected ')' to close {name}(")
    return j + 1


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens; the list always ends with an EOF token."""
    for bad in ("\n", "\r"):
        where = text.find(bad)
        if where >= 0:
            # Calico would accept a line break inside a quoted value; felis rejects any
            # selector containing one (docs/cli.md), and no label value can contain it anyway.
            raise SelectorError(text, where, "line breaks are not allowed in a selector")
    tokens: list[Token] = []
    append = tokens.append
    n = len(text)
    i = 0
    while True:
        i = _skip_ws(text, i)
        if i >= n:
            append(Token(Kind.EOF, "", n))
            return tokens
        ch = text[i]
        after_label = bool(tokens) and tokens[-1].kind is Kind.LABEL
        punct = _PUNCTUATION.get(ch)
        if punct is not None:
            append(Token(punct, ch, i))
            i += 1
        elif ch in "\"'":
            end = text.find(ch, i + 1)
            if end < 0:
                raise SelectorError(text, i, "unterminated string literal")
            append(Token(Kind.STRING, text[i + 1 : end], i))
            i = end + 1
        elif ch in _DOUBLED:
            pair = ch * 2
            if not text.startswith(pair, i):
                raise SelectorError(
                    text, i, f"expected '{pair}' (a single '{ch}' is not an operator)"
                )
            append(Token(_DOUBLED[ch], pair, i))
            i += 2
        elif ch == "!":
            if text.startswith("!=", i):
                append(Token(Kind.NE, "!=", i))
                i += 2
            else:
                append(Token(Kind.NOT, "!", i))
                i += 1
        elif after_label:
            found = _word_operator(text, i)
            if found is None:
                raise SelectorError(
                    text,
                    i,
                    f'expected an operator after label "{tokens[-1].value}" '
                    "(==, !=, in, not in, contains, starts with, ends with)",
                )
            kind, end = found
            append(Token(kind, text[i:end].rstrip(_WHITESPACE), i))
            i = end
        elif text.startswith("has(", i):
            j = _skip_ws(text, i + 4)
            label, j = _identifier(text, j, "a label name inside has(…)")
            j = _skip_ws(text, j)
            if not text.startswith(")", j):
                raise SelectorError(text, j, "expected ')' to close has(")
            append(Token(Kind.HAS, label, i))
            i = j + 1
        elif text.startswith("all(", i):
            end = _function(text, i, "all")
            append(Token(Kind.ALL, text[i:end], i))
            i = end
        elif text.startswith("global(", i):
            end = _function(text, i, "global")
            append(Token(Kind.GLOBAL, text[i:end], i))
            i = end
        else:
            label, end = _identifier(text, i, "a label name or expression")
            append(Token(Kind.LABEL, label, i))
            i = end
