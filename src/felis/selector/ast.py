"""Selector syntax tree, its canonical printing and a plain interpreter.

The interpreter (``Node.evaluate``) is the readable definition of what a selector means
(docs/calico-semantics.md#selector-meaning); ``felis.selector.compile`` turns the same tree
into a much faster function and the tests check the two agree. The canonical printing is
docs/calico-semantics.md#canonical-form-and-ids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass


def quote(value: str) -> str:
    """Quote a value the way Calico prints it: double quotes unless the value contains one."""
    if '"' in value:
        return f"'{value}'"
    return f'"{value}"'


class Node:
    __slots__ = ()

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        raise NotImplementedError

    def write(self, out: list[str]) -> None:
        """Append this node's canonical text fragments to ``out``."""
        raise NotImplementedError

    def children(self) -> tuple[Node, ...]:
        return ()

    def label(self) -> str | None:
        """The label this leaf tests, if any."""
        return None

    def canonical(self) -> str:
        out: list[str] = []
        self.write(out)
        return "".join(out)

    def walk(self) -> Iterator[Node]:
        stack: list[Node] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children()))

    def labels_used(self) -> frozenset[str]:
        return frozenset(name for node in self.walk() if (name := node.label()) is not None)

    def depth(self) -> int:
        kids = self.children()
        return 1 + max((k.depth() for k in kids), default=0)

    def __str__(self) -> str:
        return self.canonical()


@dataclass(frozen=True, slots=True)
class _LabelValue(Node):
    """A ``label <op> "value"`` comparison."""

    name: str
    value: str

    OP = ""

    def label(self) -> str:
        return self.name

    def write(self, out: list[str]) -> None:
        out.extend((self.name, " ", self.OP, " ", quote(self.value)))


@dataclass(frozen=True, slots=True)
class Equals(_LabelValue):
    OP = "=="

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return self.name in labels and labels[self.name] == self.value


@dataclass(frozen=True, slots=True)
class NotEquals(_LabelValue):
    OP = "!="

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        # Absent label: matches (Calico's rule).
        return self.name not in labels or labels[self.name] != self.value


@dataclass(frozen=True, slots=True)
class Contains(_LabelValue):
    OP = "contains"

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return self.name in labels and self.value in labels[self.name]


@dataclass(frozen=True, slots=True)
class StartsWith(_LabelValue):
    OP = "starts with"

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return self.name in labels and labels[self.name].startswith(self.value)


@dataclass(frozen=True, slots=True)
class EndsWith(_LabelValue):
    OP = "ends with"

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return self.name in labels and labels[self.name].endswith(self.value)


def canonical_set(values: Iterable[str]) -> tuple[str, ...]:
    """Sorted (code point order = UTF-8 byte order) and de-duplicated, as Calico prints sets."""
    return tuple(sorted(set(values)))


@dataclass(frozen=True, slots=True)
class _LabelSet(Node):
    """``label in {…}`` / ``label not in {…}``; ``values`` is already canonical_set()."""

    name: str
    values: tuple[str, ...]

    OP = ""

    def label(self) -> str:
        return self.name

    def write(self, out: list[str]) -> None:
        out.extend((self.name, " ", self.OP, " {", ", ".join(map(quote, self.values)), "}"))


@dataclass(frozen=True, slots=True)
class InSet(_LabelSet):
    OP = "in"

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return self.name in labels and labels[self.name] in self.values


@dataclass(frozen=True, slots=True)
class NotInSet(_LabelSet):
    OP = "not in"

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return self.name not in labels or labels[self.name] not in self.values


@dataclass(frozen=True, slots=True)
class Has(Node):
    name: str

    def label(self) -> str:
        return self.name

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return self.name in labels

    def write(self, out: list[str]) -> None:
        out.extend(("has(", self.name, ")"))


@dataclass(frozen=True, slots=True)
class All(Node):
    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return True

    def write(self, out: list[str]) -> None:
        out.append("all()")


@dataclass(frozen=True, slots=True)
class Global(Node):
    """``global()``: true everywhere; only a namespaceSelector gives it a special meaning."""

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return True

    def write(self, out: list[str]) -> None:
        out.append("global()")


@dataclass(frozen=True, slots=True)
class Not(Node):
    operand: Node

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return not self.operand.evaluate(labels)

    def write(self, out: list[str]) -> None:
        out.append("!")
        self.operand.write(out)


@dataclass(frozen=True, slots=True)
class And(Node):
    operands: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.operands

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return all(op.evaluate(labels) for op in self.operands)

    def write(self, out: list[str]) -> None:
        _write_group(out, self.operands, " && ")


@dataclass(frozen=True, slots=True)
class Or(Node):
    operands: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.operands

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return any(op.evaluate(labels) for op in self.operands)

    def write(self, out: list[str]) -> None:
        _write_group(out, self.operands, " || ")


def _write_group(out: list[str], operands: tuple[Node, ...], sep: str) -> None:
    out.append("(")
    for i, op in enumerate(operands):
        if i:
            out.append(sep)
        op.write(out)
    out.append(")")


def negate(node: Node) -> Node:
    """``!node``, cancelling a double negation.

    Calico keeps ``!(!x)`` as two nodes and prints ``!!x``, which re-parses as ``x``; folding
    it here is what makes the canonical form a fixed point of parse-then-print.
    """
    if isinstance(node, Not):
        return node.operand
    return Not(node)


def prefix_labels(node: Node, prefix: str) -> Node:
    """``node`` with ``prefix`` put in front of every label name it tests.

    Calico scopes a namespace or service-account selector this way (``team == "a"`` becomes
    ``pcns.team == "a"``), because pods carry those labels under such prefixes.
    """
    if isinstance(node, Not):
        return Not(prefix_labels(node.operand, prefix))
    if isinstance(node, And):
        return And(tuple(prefix_labels(op, prefix) for op in node.operands))
    if isinstance(node, Or):
        return Or(tuple(prefix_labels(op, prefix) for op in node.operands))
    if isinstance(node, _LabelValue | _LabelSet | Has):
        return dataclasses.replace(node, name=prefix + node.name)
    return node
