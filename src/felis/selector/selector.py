"""The public ``Selector`` object and the cached ``parse`` entry point."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from felis.selector import ast
from felis.selector.compile import compile_node
from felis.selector.parser import parse_ast
from felis.selector.uid import selector_uid

PARSE_CACHE_SIZE = 4096


class Selector:
    """A parsed selector: canonical text, unique id, labels it reads and a fast evaluator.

    Immutable; equality and hashing go by the canonical string, so two spellings of the same
    selector (``a=="b"`` and ``a == 'b'``) are equal and share an IP set.
    """

    __slots__ = ("_canonical", "_hash", "_unique_id", "evaluate", "labels_used", "root")

    root: ast.Node
    labels_used: frozenset[str]
    # An instance attribute, not a method: calling the compiled function directly saves the
    # bound-method step on the hot path.
    evaluate: Callable[[Mapping[str, str]], bool]
    _canonical: str
    _hash: int
    _unique_id: str | None

    def __init__(self, root: ast.Node) -> None:
        self.root = root
        self._canonical = root.canonical()
        self._hash = hash(self._canonical)
        self._unique_id = None
        self.labels_used = root.labels_used()
        self.evaluate = compile_node(root)

    @property
    def canonical(self) -> str:
        return self._canonical

    @property
    def unique_id(self) -> str:
        uid = self._unique_id
        if uid is None:
            uid = self._unique_id = selector_uid(self._canonical)
        return uid

    def __str__(self) -> str:
        return self._canonical

    def __repr__(self) -> str:
        return f"Selector({self._canonical!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Selector):
            return self._canonical == other._canonical
        return NotImplemented

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[Callable[[str], Selector], tuple[str]]:
        # The compiled evaluator cannot be pickled; the canonical text rebuilds everything.
        return (parse, (self._canonical,))


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def parse(text: str) -> Selector:
    """Parse a Calico selector; raises ``SelectorError`` (a ``ValueError``) on bad input.

    Cached: parsing the same text again returns the same object.
    """
    return Selector(parse_ast(text))
