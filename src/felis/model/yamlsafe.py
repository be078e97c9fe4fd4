"""Bounded, safe decoding of YAML/JSON manifest streams into plain Python values.

Only plain data comes out (dict, list, str, int, float, bool, None): no Python tags, no
custom constructors. Scalars are typed the way Kubernetes' YAML decoder (go-yaml v2, YAML
1.1) types them, minus the surprises Go does not have: timestamps stay strings and
`1:20` is a string (a port range), not the base-60 number 80.

Hostile input is refused early and cheaply: the byte size is checked before parsing,
nesting is capped (libyaml itself also stops at 1000 levels), and alias expansion is
measured on the composed node graph with memoisation, so a billion-laughs document is
rejected after visiting each distinct node once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.scanner import Scanner

try:
    from yaml._yaml import CParser

    HAVE_LIBYAML = True
except ImportError:  # pragma: no cover - libyaml is present in the project's environment
    HAVE_LIBYAML = False

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_ALIAS_NODES = 100_000
DEFAULT_MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_alias_nodes: int = DEFAULT_MAX_ALIAS_NODES
    max_depth: int = DEFAULT_MAX_DEPTH


class DecodeProblem(Exception):
    """A document cannot be decoded; `index` is the 1-based document number, if known."""

    def __init__(self, reason: str, index: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.index = index


STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"
MERGE = "tag:yaml.org,2002:merge"
SEQ = "tag:yaml.org,2002:seq"
MAP = "tag:yaml.org,2002:map"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"

_NULL_WORDS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE_WORDS = frozenset({"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})
_FALSE_WORDS = frozenset(
    {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"}
)
_INT_RE = re.compile(
    r"[-+]?(?:0b[01_]+|0x[0-9a-fA-F_]+|0o?[0-7_]+|0|[1-9][0-9_]*)",
)
_FLOAT_RE = re.compile(
    r"[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
# A plain scalar that may be special starts with one of these; anything else is a string.
_SPECIAL_START = frozenset("0123456789+-.~nNtTfFyYoO<")

_RESOLVE_CACHE: dict[str, str] = {}
_RESOLVE_CACHE_MAX = 20_000


def _resolve_plain(value: str) -> str:
    if value in _NULL_WORDS:
        return NULL
    if value[0] not in _SPECIAL_START:
        return STR
    if value in _TRUE_WORDS or value in _FALSE_WORDS:
        return BOOL
    if _INT_RE.fullmatch(value):
        return INT
    if value != "." and _FLOAT_RE.fullmatch(value):
        return FLOAT
    if value == "<<":
        return MERGE
    return STR


class _Resolver:
    """Implicit typing of plain scalars, memoised: manifests repeat the same words a lot."""

    def descend_resolver(self, current_node: object, current_index: object) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            if not implicit[0]:
                return STR
            tag = _RESOLVE_CACHE.get(value)
            if tag is None:
                tag = _resolve_plain(value)
                if len(_RESOLVE_CACHE) < _RESOLVE_CACHE_MAX and len(value) <= 64:
                    _RESOLVE_CACHE[value] = tag
            return tag
        if kind is SequenceNode:
            return SEQ
        return MAP


class _PyLoader(Reader, Scanner, Parser, Composer, _Resolver):
    """The pure-Python fallback, used only when PyYAML was built without libyaml."""

    def __init__(self, stream: bytes) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)


def _make_loader(stream: bytes) -> Any:
    if not HAVE_LIBYAML:  # pragma: no cover
        return _PyLoader(stream)
    return _CLoader(stream)


if HAVE_LIBYAML:

    class _CLoader(CParser, _Resolver):
        pass


# --------------------------------------------------------------------------- scalars


def _to_int(text: str) -> int:
    digits = text.replace("_", "")
    sign = 1
    if digits[0] in "+-":
        sign = -1 if digits[0] == "-" else 1
        digits = digits[1:]
    if digits.startswith("0b"):
        return sign * int(digits[2:], 2)
    if digits.startswith("0x"):
        return sign * int(digits[2:], 16)
    if digits.startswith("0o"):
        return sign * int(digits[2:], 8)
    if len(digits) > 1 and digits[0] == "0":
        return sign * int(digits, 8)
    return sign * int(digits)


def _to_float(text: str) -> float:
    lowered = text.replace("_", "").lower()
    if lowered.endswith(".inf"):
        return float("-inf") if lowered.startswith("-") else float("inf")
    if lowered == ".nan":
        return float("nan")
    return float(lowered)


def _scalar(node: ScalarNode) -> Any:
    tag = node.tag
    value: str = node.value
    if tag == STR:
        return value
    try:
        if tag == INT:
            return _to_int(value)
        if tag == FLOAT:
            return _to_float(value)
    except ValueError:
        raise DecodeProblem(f"invalid number {value[:40]!r} {_where(node)}") from None
    if tag == BOOL:
        if value in _TRUE_WORDS or value.lower() == "true":
            return True
        if value in _FALSE_WORDS or value.lower() == "false":
            return False
        raise DecodeProblem(f"invalid boolean {value[:40]!r} {_where(node)}")
    if tag == NULL:
        return None
    if tag in (_TIMESTAMP, MERGE):
        return value
    raise DecodeProblem(f"unsupported YAML tag {tag[:60]!r} {_where(node)}")


def _where(node: Node) -> str:
    mark = node.start_mark
    return f"at line {mark.line + 1}, column {mark.column + 1}"


def _key(value: Any, node: Node) -> str:
    # Kubernetes' YAML-to-JSON step turns scalar keys into their string forms.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    raise DecodeProblem(f"mapping key must be a scalar {_where(node)}")


# --------------------------------------------------------------------------- node graph


class _Builder:
    """Turns one composed document into Python values, bounding depth and alias expansion.

    Shared nodes (aliases) are built once and reused; the expanded size of every node is
    memoised, so the cost is proportional to the number of distinct nodes.
    """

    def __init__(self, limits: Limits, *, shared: bool) -> None:
        self.limits = limits
        self.shared = shared
        self.memo: dict[int, tuple[Any, int]] = {}
        self.in_progress: set[int] = set()
        self.distinct = 0

    def build(self, root: Node) -> Any:
        value, expanded = self._node(root, 1)
        if expanded - self.distinct > self.limits.max_alias_nodes:
            raise self._too_many()
        return value

    def _too_many(self) -> DecodeProblem:
        return DecodeProblem(
            "YAML aliases expand to more than "
            f"{self.limits.max_alias_nodes} extra nodes (alias bomb?)"
        )

    def _node(self, node: Node, depth: int) -> tuple[Any, int]:
        if type(node) is ScalarNode:
            self.distinct += 1
            return _scalar(node), 1
        if self.shared:
            key = id(node)
            seen = self.memo.get(key)
            if seen is not None:
                return seen
            if key in self.in_progress:
                raise DecodeProblem(f"recursive YAML alias {_where(node)}")
            self.in_progress.add(key)
        if depth > self.limits.max_depth:
            raise DecodeProblem(
                f"nesting deeper than {self.limits.max_depth} levels {_where(node)}"
            )
        self.distinct += 1
        result: Any
        if type(node) is SequenceNode:
            result, size = self._sequence(node, depth)
        elif type(node) is MappingNode:
            result, size = self._mapping(node, depth)
        else:  # pragma: no cover - the composer only makes these three
            raise DecodeProblem(f"unexpected YAML node {_where(node)}")
        if node.tag not in (SEQ, MAP):
            raise DecodeProblem(f"unsupported YAML tag {node.tag[:60]!r} {_where(node)}")
        if self.shared:
            self.in_progress.discard(key)
            if size - self.distinct > self.limits.max_alias_nodes:
                raise self._too_many()
            self.memo[key] = (result, size)
        return result, size

    # The two loops below inline the plain-string case: it is most of any manifest.

    def _sequence(self, node: SequenceNode, depth: int) -> tuple[list[Any], int]:
        items = []
        size = 1
        for child in node.value:
            if type(child) is ScalarNode:
                self.distinct += 1
                size += 1
                items.append(child.value if child.tag == STR else _scalar(child))
                continue
            value, child_size = self._node(child, depth + 1)
            items.append(value)
            size += child_size
        return items, size

    def _mapping(self, node: MappingNode, depth: int) -> tuple[dict[str, Any], int]:
        result: dict[str, Any] = {}
        merged: list[dict[str, Any]] = []
        nulls: set[str] = set()
        size = 1
        for key_node, value_node in node.value:
            if type(key_node) is ScalarNode and key_node.tag == STR:
                key_value: Any = key_node.value
                size += 1
                self.distinct += 1
            else:
                key_value, key_size = self._node(key_node, depth + 1)
                size += key_size
            if type(value_node) is ScalarNode:
                value = value_node.value if value_node.tag == STR else _scalar(value_node)
                size += 1
                self.distinct += 1
            else:
                value, value_size = self._node(value_node, depth + 1)
                size += value_size
            if key_node.tag == MERGE:
                merged.extend(self._merge_sources(value, value_node))
                continue
            key = key_value if type(key_value) is str else _key(key_value, key_node)
            if key in result or key in nulls:
                raise DecodeProblem(f"duplicate mapping key {key[:60]!r} {_where(key_node)}")
            if value is None:
                # Go's decoder treats `field: null` as "not set"; leaving the key out does too.
                nulls.add(key)
            else:
                result[key] = value
        for source in merged:
            for key, value in source.items():
                result.setdefault(key, value)
        return result, size

    @staticmethod
    def _merge_sources(value: Any, node: Node) -> list[dict[str, Any]]:
        if isinstance(value, dict):
            return [value]
        if isinstance(value, list) and all(isinstance(item, dict) for item in value):
            return list(value)
        raise DecodeProblem(f"merge key '<<' needs a mapping or list of mappings {_where(node)}")


# --------------------------------------------------------------------------- streams


def _check_text(data: bytes) -> None:
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise DecodeProblem(f"input contains a NUL byte at offset {offset} (binary data?)")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeProblem(
            f"input is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def _json_depth_ok(value: Any, max_depth: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = {key: value for key, value in pairs if value is not None}
    if len({key for key, _ in pairs}) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DecodeProblem(f"duplicate mapping key {key[:60]!r}", 1)
            seen.add(key)
    return result


def _reject_constant(name: str) -> Any:
    raise DecodeProblem(f"invalid JSON number {name}", 1)


def _try_json(data: bytes, limits: Limits) -> list[Any] | None:
    """A whole-input JSON document, or None to let the YAML parser have a go."""
    try:
        value = json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    if not _json_depth_ok(value, limits.max_depth):
        raise DecodeProblem(f"nesting deeper than {limits.max_depth} levels", 1)
    return [value]


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context", None)
    text = f"invalid YAML: {problem}"
    if context:
        text += f" ({context})"
    if mark is not None:
        text += f" at line {mark.line + 1}, column {mark.column + 1}"
    return text


_ALIAS_RE = re.compile(rb"\*[^\s,\[\]{}]")


def parse_stream(data: bytes, limits: Limits | None = None) -> list[tuple[int, Any]]:
    """Decode every document: `(1-based index, value)`, empty documents left out.

    Raises DecodeProblem for the first document that cannot be decoded (a YAML stream
    cannot be resynchronised after a syntax error).
    """
    limits = limits or Limits()
    if len(data) > limits.max_bytes:
        raise DecodeProblem(
            f"input is {len(data)} bytes, more than the limit of {limits.max_bytes} bytes"
        )
    _check_text(data)
    stripped = data.lstrip(b" \t\r\n\xef\xbb\xbf")
    if stripped[:1] in (b"{", b"["):
        documents = _try_json(stripped, limits)
        if documents is not None:
            return [(1, documents[0])] if documents[0] is not None else []
    return _parse_yaml(data, limits)


def _parse_yaml(data: bytes, limits: Limits) -> list[tuple[int, Any]]:
    loader = _make_loader(data)
    results: list[tuple[int, Any]] = []
    index = 0
    has_aliases = _ALIAS_RE.search(data) is not None
    try:
        while True:
            current = index + 1
            try:
                if not loader.check_node():
                    break
                index = current
                node = loader.get_node()
            except yaml.YAMLError as exc:
                raise DecodeProblem(_yaml_problem(exc), current) from None
            except RecursionError:
                raise DecodeProblem(
                    f"nesting deeper than {limits.max_depth} levels", current
                ) from None
            if node is None:
                continue
            try:
                value = _Builder(limits, shared=has_aliases).build(node)
            except DecodeProblem as problem:
                problem.index = index
                raise
            if value is not None:
                results.append((index, value))
    finally:
        dispose = getattr(loader, "dispose", None)
        if dispose is not None:
            dispose()
    return results
