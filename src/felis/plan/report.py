"""`felis plan` output: the words first, then the exact kernel delta."""

from __future__ import annotations

from felis.plan.changes import Plan


def _section(title: str, lines: list[str]) -> list[str]:
    if not lines:
        return []
    return [f"{title}:", *(f"  {line}" for line in lines), ""]


def render_text(plan: Plan) -> str:
    out = [f"node {plan.node} ({plan.backend}):", ""]
    out += _section("datastore objects", [c.text() for c in plan.resources])
    out += _section("host endpoints", [c.text() for c in plan.endpoints])
    out += _section("untracked flows", [c.text() for c in plan.untracked])
    out += _section("peers (IP set members)", [c.text() for c in plan.sets])
    out += _section("rules of policies on this node", [c.text() for c in plan.rules])
    out += _section("new warnings", list(plan.new_warnings))
    out += _section("warnings gone", list(plan.gone_warnings))
    if not plan.changes_node:
        out.append(f"no change on node {plan.node}")
        return "\n".join(out) + "\n"
    out.append("kernel delta:")
    for delta in plan.delta:
        if delta.text:
            out.append(f"# IPv{int(delta.family)}")
            out.append(delta.text.rstrip("\n"))
    return "\n".join(out) + "\n"
