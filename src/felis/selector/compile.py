"""Turn a selector tree into one Python function over the label mapping.

Each tree becomes a single boolean expression (``L.get('a') == 'x' and 'c' not in L``),
compiled once.  That avoids a Python call per tree node, which is what makes evaluation
several times faster than the interpreter in ``ast``.

The generated expressions lean on two facts: label values are strings, so ``None`` (the
``get`` default for an absent label) never equals a value nor belongs to a value set; this
gives ``!=`` and ``not in`` their "absent label matches" rule for free.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import cast

from felis.selector import ast

Evaluator = Callable[[Mapping[str, str]], bool]

# Python's own parser refuses deeply nested source (~200 parentheses); trees deeper than this
# use the interpreter instead, which is slower but has no such limit.
_MAX_COMPILED_DEPTH = 40


class _Emitter:
    def __init__(self) -> None:
        self.constants: list[frozenset[str]] = []

    def const(self, values: tuple[str, ...]) -> str:
        self.constants.append(frozenset(values))
        return f"_c{len(self.constants) - 1}"

    def expr(self, node: ast.Node) -> str:
        if isinstance(node, ast.Equals):
            return f"get({node.name!r}) == {node.value!r}"
        if isinstance(node, ast.NotEquals):
            return f"get({node.name!r}) != {node.value!r}"
        if isinstance(node, ast.InSet | ast.NotInSet):
            negated = isinstance(node, ast.NotInSet)
            if not node.values:
                return str(negated)
            if len(node.values) == 1:
                return f"get({node.name!r}) {'!=' if negated else '=='} {node.values[0]!r}"
            return f"get({node.name!r}) {'not in' if negated else 'in'} {self.const(node.values)}"
        if isinstance(node, ast.Has):
            return f"{node.name!r} in L"
        if isinstance(node, ast.Contains | ast.StartsWith | ast.EndsWith):
            name = repr(node.name)
            if node.value == "":
                return f"{name} in L"
            if isinstance(node, ast.Contains):
                return f"({name} in L and {node.value!r} in L[{name}])"
            method = "startswith" if isinstance(node, ast.StartsWith) else "endswith"
            return f"({name} in L and L[{name}].{method}({node.value!r}))"
        if isinstance(node, ast.All | ast.Global):
            return "True"
        if isinstance(node, ast.Not):
            return f"not ({self.expr(node.operand)})"
        if isinstance(node, ast.And):
            return "(" + " and ".join(self.expr(op) for op in node.operands) + ")"
        if isinstance(node, ast.Or):
            return "(" + " or ".join(self.expr(op) for op in node.operands) + ")"
        raise TypeError(f"unknown selector node {node!r}")


def compile_node(node: ast.Node) -> Evaluator:
    """A function ``labels -> bool`` equivalent to ``node.evaluate``."""
    if node.depth() > _MAX_COMPILED_DEPTH:
        return node.evaluate
    emitter = _Emitter()
    body = emitter.expr(node)
    params = ", ".join(f"_c{i}" for i in range(len(emitter.constants)))
    lines = [f"def _factory({params}):", "    def evaluate(L):"]
    if "get(" in body:
        lines.append("        get = L.get")
    lines += [f"        return {body}", "    return evaluate"]
    source = "\n".join(lines)
    namespace: dict[str, object] = {}
    exec(compile(source, "<selector>", "exec"), namespace)  # generated from the tree only
    factory = cast(Callable[..., Evaluator], namespace["_factory"])
    return factory(*emitter.constants)
