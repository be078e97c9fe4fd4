"""Grammar-based fuzz of manifests: real valid documents mutated one field at a time, then sent
through the whole pure pipeline (YAML → model → calc → both renderers).

Whatever the mutation, the outcome is one of two things: a ManifestError whose every line names
the document and stays on one line, or resources that calc and both renderers turn into text
without raising. Anything else (a traceback, a half-built result) fails the test.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from felis.calc import compute
from felis.dataplane import iptables, nftables
from felis.model import ManifestError, load_documents

ROOT = Path(__file__).resolve().parents[3]
SOURCES = [
    ROOT / "examples" / "memcached-seed.yaml",
    ROOT / "tests" / "unit" / "dataplane" / "golden" / "pipeline-everything.yaml",
    ROOT / "tests" / "unit" / "dataplane" / "golden" / "pipeline-profile.yaml",
]
DOCUMENTS: list[dict[str, Any]] = [
    doc for path in SOURCES for doc in yaml.safe_load_all(path.read_text()) if doc
]

# Values of every shape a field can meet, valid somewhere and wrong elsewhere.
JUNK: list[Any] = [
    None,
    "",
    " ",
    "x",
    "Allow",
    "Deny",
    "TCP",
    "tcp",
    "ICMPv6",
    0,
    -1,
    1,
    80,
    65535,
    65536,
    2**64,
    1.5,
    float("inf"),
    True,
    [],
    [80, "http"],
    ["1:2"],
    ["65535:1"],
    {},
    {"x": 1},
    "10.0.0.0/8",
    "10.0.0.0/33",
    "::/0",
    "0.0.0.0/0",
    "fe80::1%eth0",
    "all()",
    "global()",
    "has(",
    "a == 'b",
    "role == 'x' && !has(y)",
    "a in {'x', 'y'}",
    "\x00",
    "é" * 300,
    "-" * 64,
    "a" * 254,
    "eth0",
    "*",
    "a/b",
]

Path_ = tuple[Any, ...]


def _paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every place in a document a mutation can reach: keys of mappings, items of lists."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _leaves(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [leaf for value in node.values() for leaf in _leaves(value)]
    if isinstance(node, list):
        return [node, *(leaf for value in node for leaf in _leaves(value))]
    return [node]


# Values the corpus itself uses, by type: swapping one for another of its type keeps most
# documents valid, so calc and the renderers see odd but legal combinations too.
PLAUSIBLE: dict[type, list[Any]] = {}
for _leaf in (leaf for doc in DOCUMENTS for leaf in _leaves(doc)):
    PLAUSIBLE.setdefault(type(_leaf), []).append(_leaf)


def _container(doc: Any, path: Path_) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A few documents, with one or two fields replaced, removed or added."""
    docs = copy.deepcopy(draw(st.lists(st.sampled_from(DOCUMENTS), min_size=1, max_size=4)))
    for _ in range(draw(st.integers(1, 2))):
        target = draw(st.sampled_from(docs))
        paths = _paths(target)
        path = draw(st.sampled_from(paths))
        holder = _container(target, path)
        action = draw(st.sampled_from(["plausible"] * 4 + ["junk", "remove", "add"]))
        if action == "plausible":
            same_type = PLAUSIBLE.get(type(holder[path[-1]]), JUNK)
            holder[path[-1]] = copy.deepcopy(draw(st.sampled_from(same_type)))
        elif action == "junk":
            holder[path[-1]] = draw(st.sampled_from(JUNK))
        elif action == "remove":
            del holder[path[-1]]
        elif isinstance(holder, dict):
            holder[draw(st.sampled_from(["extra", "Selector", "ports", "action"]))] = draw(
                st.sampled_from(JUNK)
            )
        else:
            holder.append(draw(st.sampled_from(JUNK)))
    return docs


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_manifests_fail_cleanly_or_render(docs: list[dict[str, Any]]) -> None:
    text = yaml.safe_dump_all(docs, allow_unicode=True).encode()
    try:
        resources = load_documents(text, "fuzz.yaml")
    except ManifestError as err:
        event("rejected")
        lines = err.lines()
        assert lines
        for line in lines:
            assert "\n" not in line
            assert line.startswith("fuzz.yaml")
        return
    event("accepted")
    result = compute(resources, "node-1", interfaces=None)
    for ruleset in result.spec.rulesets.values():
        assert nftables.render_full(ruleset)
        assert iptables.render_full(ruleset).tables
