"""Recursive-descent parser for the selector grammar (docs/calico-semantics.md#selector-syntax)."""

from __future__ import annotations

from collections.abc import Callable

from felis.selector import ast
from felis.selector.errors import SelectorError
from felis.selector.tokenizer import Kind, Token, tokenize

# Calico has no nesting limit, but each level costs Python stack frames here; nobody writes
# selectors this deep, and a clear error beats a RecursionError.
MAX_NESTING = 64

_COMPARISONS: dict[Kind, Callable[[str, str], ast.Node]] = {
    Kind.EQ: ast.Equals,
    Kind.NE: ast.NotEquals,
    Kind.CONTAINS: ast.Contains,
    Kind.STARTS_WITH: ast.StartsWith,
    Kind.ENDS_WITH: ast.EndsWith,
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind is not Kind.EOF:
            self.i += 1
        return tok

    def fail(self, tok: Token, reason: str) -> SelectorError:
        return SelectorError(self.text, tok.pos, reason)

    def parse(self) -> ast.Node:
        if self.peek().kind is Kind.EOF:
            return ast.All()
        node = self.or_expr()
        tok = self.peek()
        if tok.kind is not Kind.EOF:
            raise self.fail(tok, f"unexpected {tok.describe()} after a complete expression")
        return node

    def or_expr(self) -> ast.Node:
        operands = [self.and_expr()]
        while self.peek().kind is Kind.OR:
            self.take()
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else ast.Or(tuple(operands))

    def and_expr(self) -> ast.Node:
        operands = [self.unary()]
        while self.peek().kind is Kind.AND:
            self.take()
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else ast.And(tuple(operands))

    def unary(self) -> ast.Node:
        negated = False
        while self.peek().kind is Kind.NOT:
            self.take()
            negated = not negated
        node = self.primary()
        return ast.negate(node) if negated else node

    def primary(self) -> ast.Node:
        tok = self.take()
        kind = tok.kind
        if kind is Kind.HAS:
            return ast.Has(tok.value)
        if kind is Kind.ALL:
            return ast.All()
        if kind is Kind.GLOBAL:
            return ast.Global()
        if kind is Kind.LABEL:
            return self.comparison(tok)
        if kind is Kind.LPAREN:
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise self.fail(tok, f"parentheses nested more than {MAX_NESTING} deep")
            node = self.or_expr()
            close = self.take()
            if close.kind is not Kind.RPAREN:
                raise self.fail(close, f"expected ')' to close the '(' at position {tok.pos}")
            self.depth -= 1
            return node
        if kind is Kind.EOF:
            raise self.fail(tok, "unexpected end of selector, expected an expression")
        raise self.fail(tok, f"expected an expression, found {tok.describe()}")

    def comparison(self, label: Token) -> ast.Node:
        op = self.take()
        make = _COMPARISONS.get(op.kind)
        if make is not None:
            value = self.take()
            if value.kind is not Kind.STRING:
                raise self.fail(value, f"expected a string literal, found {value.describe()}")
            return make(label.value, value.value)
        if op.kind is Kind.IN or op.kind is Kind.NOT_IN:
            values = self.set_literal()
            if op.kind is Kind.IN:
                return ast.InSet(label.value, values)
            return ast.NotInSet(label.value, values)
        if op.kind is Kind.EOF:
            raise self.fail(op, f'expected an operator after label "{label.value}"')
        raise self.fail(
            op, f'expected an operator after label "{label.value}", found {op.describe()}'
        )

    def set_literal(self) -> tuple[str, ...]:
        brace = self.take()
        if brace.kind is not Kind.LBRACE:
            raise self.fail(brace, f"expected a set literal {{…}}, found {brace.describe()}")
        values: list[str] = []
        # Calico: strings separated by commas, one optional trailing comma, may be empty.
        while self.peek().kind is Kind.STRING:
            values.append(self.take().value)
            if self.peek().kind is not Kind.COMMA:
                break
            self.take()
        close = self.take()
        if close.kind is not Kind.RBRACE:
            raise self.fail(
                close, f"expected '}}' to close the set literal, found {close.describe()}"
            )
        return ast.canonical_set(values)


def parse_ast(text: str) -> ast.Node:
    """Parse ``text`` into a syntax tree; raises ``SelectorError``."""
    if not isinstance(text, str):
        raise TypeError(f"a selector must be a str, not {type(text).__name__}")
    return _Parser(text).parse()
