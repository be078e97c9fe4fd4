"""Command output: `felis get -o …` shaped like calicoctl's (docs/cli.md), and the rich
console every other human-facing report prints through."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console

from felis.model.constants import API_VERSION


class GetFormat(StrEnum):
    ps = "ps"
    wide = "wide"
    yaml = "yaml"
    yml = "yml"
    json = "json"
    name = "name"


class ReportFormat(StrEnum):
    """`-o` of the commands that print a report (render aside): words or JSON."""

    text = "text"
    json = "json"


def console() -> Console:
    """Rich output that never wraps: piped into `tail -1` or grep, each line must stay the
    line it was (rich would otherwise fold at 80 columns when stdout is not a terminal)."""
    return Console(highlight=False, soft_wrap=True)


Obj = dict[str, Any]


def _spec(obj: Obj) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _name(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def _join(values: object) -> str:
    return ",".join(str(v) for v in values) if isinstance(values, list) else ""


def _labels(values: object) -> str:
    if not isinstance(values, dict):
        return ""
    return ",".join(f"{key}={values[key]}" for key in sorted(values))


def _truncate(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _namespace(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("namespace", ""))


def _go_label_selector(value: object) -> str:
    """A Kubernetes label selector as calicoctl's table prints one: the String() form of Go's
    generated protobuf type, map keys sorted."""
    selector = value if isinstance(value, dict) else {}
    labels = selector.get("matchLabels")
    labels = labels if isinstance(labels, dict) else {}
    expressions = selector.get("matchExpressions")
    expressions = expressions if isinstance(expressions, list) else []
    label_text = "".join(f"{key}: {labels[key]}," for key in sorted(labels))
    expression_text = ""
    for item in expressions:
        item = item if isinstance(item, dict) else {}  # noqa: PLW2901
        values = item.get("values")
        shown = " ".join(map(str, values)) if isinstance(values, list) else ""
        expression_text += (
            f"LabelSelectorRequirement{{Key:{item.get('key', '')},"
            f"Operator:{item.get('operator', '')},Values:[{shown}],}},"
        )
    return (
        f"&LabelSelector{{MatchLabels:map[string]string{{{label_text}}},"
        f"MatchExpressions:[]LabelSelectorRequirement{{{expression_text}}},}}"
    )


def _order(value: object) -> str:
    # calicoctl prints an unset order through Go templates as <nil>.
    return "<nil>" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))


def _felix_scope(obj: Obj) -> str:
    """Which nodes a FelixConfiguration is for (felis honours the first two)."""
    name = _name(obj)
    if name == "default":
        return "all nodes"
    if name.startswith("node."):
        return f"node {name[len('node.') :]}"
    selector = _spec(obj).get("nodeSelector")
    return f"nodeSelector {selector}" if selector is not None else "none"


def _failsafe(value: object) -> str:
    """A failsafe list in Felix's own syntax; `none` for `[]`, empty when unset."""
    if not isinstance(value, list):
        return ""
    if not value:
        return "none"
    parts = []
    for entry in value:
        entry = entry if isinstance(entry, dict) else {}  # noqa: PLW2901
        protocol = str(entry.get("protocol") or "tcp").lower()
        net = str(entry.get("net") or "")
        where = f"[{net}]:" if ":" in net else f"{net}:" if net else ""
        parts.append(f"{protocol}:{where}{entry.get('port', '')}")
    return _truncate(",".join(parts))


Column = tuple[str, Callable[[Obj], str]]

_COLUMNS: dict[str, tuple[list[Column], list[Column]]] = {
    "GlobalNetworkPolicy": (
        [("NAME", _name), ("TIER", lambda o: str(_spec(o).get("tier", "default")))],
        [
            ("NAME", _name),
            ("TIER", lambda o: str(_spec(o).get("tier", "default"))),
            ("ORDER", lambda o: _order(_spec(o).get("order"))),
            ("SELECTOR", lambda o: str(_spec(o).get("selector", ""))),
        ],
    ),
    "HostEndpoint": (
        [("NAME", _name), ("NODE", lambda o: str(_spec(o).get("node", "")))],
        [
            ("NAME", _name),
            ("NODE", lambda o: str(_spec(o).get("node", ""))),
            ("INTERFACE", lambda o: str(_spec(o).get("interfaceName", ""))),
            ("IPS", lambda o: _join(_spec(o).get("expectedIPs"))),
            ("PROFILES", lambda o: _join(_spec(o).get("profiles"))),
        ],
    ),
    "GlobalNetworkSet": (
        [("NAME", _name)],
        [("NAME", _name), ("NETS", lambda o: _truncate(_join(_spec(o).get("nets"))))],
    ),
    "Tier": (
        [("NAME", _name), ("ORDER", lambda o: _order(_spec(o).get("order")))],
        [
            ("NAME", _name),
            ("ORDER", lambda o: _order(_spec(o).get("order"))),
            ("DEFAULTACTION", lambda o: str(_spec(o).get("defaultAction", "Deny"))),
        ],
    ),
    "Profile": (
        [("NAME", _name)],
        [("NAME", _name), ("LABELS", lambda o: _labels(_spec(o).get("labelsToApply")))],
    ),
    "NetworkSet": (
        [("NAME", _name)],
        [("NAME", _name), ("NETS", lambda o: _truncate(_join(_spec(o).get("nets"))))],
    ),
    "StagedKubernetesNetworkPolicy": (
        [("NAME", _name)],
        [
            ("NAME", _name),
            ("PODSELECTOR", lambda o: _go_label_selector(_spec(o).get("podSelector"))),
        ],
    ),
    "FelixConfiguration": (
        [("NAME", _name)],
        [
            ("NAME", _name),
            ("SCOPE", _felix_scope),
            ("FAILSAFEINBOUND", lambda o: _failsafe(_spec(o).get("failsafeInboundHostPorts"))),
            ("FAILSAFEOUTBOUND", lambda o: _failsafe(_spec(o).get("failsafeOutboundHostPorts"))),
        ],
    ),
}
# The other policy kinds print as a GlobalNetworkPolicy does.
for _kind in ("NetworkPolicy", "StagedGlobalNetworkPolicy", "StagedNetworkPolicy"):
    _COLUMNS[_kind] = _COLUMNS["GlobalNetworkPolicy"]


def render_table(kind: str, objects: Sequence[Obj], *, wide: bool, namespaced: bool = False) -> str:
    columns = _COLUMNS[kind][1 if wide else 0]
    if namespaced:
        columns = [("NAMESPACE", _namespace), *columns]
    rows = [[header for header, _ in columns]]
    rows += [[cell(obj) for _, cell in columns] for obj in objects]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = [
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def _as_document(kind: str, objects: Sequence[Obj], revision: int | None, listing: bool) -> Obj:
    if not listing and len(objects) == 1:
        return objects[0]
    return {
        "apiVersion": API_VERSION,
        "items": list(objects),
        "kind": f"{kind}List",
        "metadata": {"resourceVersion": str(revision)} if revision is not None else {},
    }


def render(
    kind: str,
    objects: Sequence[Obj],
    output: GetFormat,
    *,
    revision: int | None,
    listing: bool,
    namespaced: bool = False,
) -> str:
    """`namespaced`: a NAMESPACE column first, as calicoctl adds it under -n or -A."""
    if output in (GetFormat.ps, GetFormat.wide):
        return render_table(kind, objects, wide=output is GetFormat.wide, namespaced=namespaced)
    if output is GetFormat.name:
        return "".join(f"{_name(obj)}\n" for obj in objects)
    document = _as_document(kind, objects, revision, listing)
    if output in (GetFormat.yaml, GetFormat.yml):
        # Kubernetes-style YAML: keys sorted, block style.
        return yaml.safe_dump(document, sort_keys=True, default_flow_style=False)
    return json.dumps(document, indent=2) + "\n"
