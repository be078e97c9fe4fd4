"""Command output: `felis get -o …` shaped like calicoctl's (reference §9.3), and the rich
console every other human-facing report prints through."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console


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


def _order(value: object) -> str:
    # calicoctl prints an unset order through Go templates as <nil>.
    return "<nil>" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))


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
}


def render_table(kind: str, objects: Sequence[Obj], *, wide: bool) -> str:
    columns = _COLUMNS[kind][1 if wide else 0]
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
        "apiVersion": "projectcalico.org/v3",
        "items": list(objects),
        "kind": f"{kind}List",
        "metadata": {"resourceVersion": str(revision)} if revision is not None else {},
    }


def render(
    kind: str, objects: Sequence[Obj], output: GetFormat, *, revision: int | None, listing: bool
) -> str:
    if output in (GetFormat.ps, GetFormat.wide):
        return render_table(kind, objects, wide=output is GetFormat.wide)
    if output is GetFormat.name:
        return "".join(f"{_name(obj)}\n" for obj in objects)
    document = _as_document(kind, objects, revision, listing)
    if output in (GetFormat.yaml, GetFormat.yml):
        # Kubernetes-style YAML: keys sorted, block style.
        return yaml.safe_dump(document, sort_keys=True, default_flow_style=False)
    return json.dumps(document, indent=2) + "\n"
