"""`felis get -o …` output, shaped like calicoctl's (reference §9.3)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from felis.errors import FelisError

OUTPUT_FORMATS = ("ps", "wide", "yaml", "yml", "json", "name")

Obj = dict[str, Any]


def _spec(obj: Obj) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _name(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def _join(values: object) -> str:
    return ",".join(str(v) for v in values) if isinstance(values, list) else ""


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
    kind: str, objects: Sequence[Obj], output: str, *, revision: int | None, listing: bool
) -> str:
    if output in ("ps", "wide"):
        return render_table(kind, objects, wide=output == "wide")
    if output == "name":
        return "".join(f"{_name(obj)}\n" for obj in objects)
    document = _as_document(kind, objects, revision, listing)
    if output in ("yaml", "yml"):
        # Kubernetes-style YAML: keys sorted, block style.
        return yaml.safe_dump(document, sort_keys=True, default_flow_style=False)
    if output == "json":
        return json.dumps(document, indent=2) + "\n"
    raise FelisError(f"unrecognized output format '{output}'")
