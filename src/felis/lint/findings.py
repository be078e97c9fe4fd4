"""What a lint finding is, and how it prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

WARNING = "warning"
NOTE = "note"

CODES: dict[str, str] = {
    "FL001": "missing-return-path",
    "FL002": "client-flow-without-reply-rule",
    "FL003": "dns",
    "FL004": "icmp-errors-untracked",
    "FL005": "untracked-on-all-interfaces-endpoint",
    "FL006": "selects-nothing",
    "FL007": "failsafe-overlap",
    "FL008": "half-tracked-flow",
    "FL009": "ephemeral-ports-overlap-failsafe",
    "FL010": "unknown-profile",
    "FL011": "kinds-without-host-effect",
    # FL009 is retired: raw failsafe rules no longer take untracked flows (docs/lint.md).
}
"""Stable codes: never renumbered, never reused (the names are for humans and --json)."""


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: str
    """`warning` (something does not work as written) or `note` (advice)."""
    policy: str | None
    """GlobalNetworkPolicy name, or None for a finding about a HostEndpoint."""
    rule: str | None
    """e.g. `ingress rule 0`; None for the whole policy."""
    message: str
    fix: str
    """The suggested change: YAML to add, or a sentence."""
    endpoints: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        if self.policy is None:
            return ", ".join(f"hep/{e}" for e in self.endpoints) or "-"
        return f"gnp/{self.policy}" + (f" {self.rule}" if self.rule else "")

    def text(self) -> str:
        lines = [f"{self.severity} {self.code} {self.where}: {self.message}"]
        if self.fix:
            fix = self.fix.rstrip("\n").splitlines()
            lines.append(f"  fix: {fix[0]}")
            lines.extend(f"    {line}" for line in fix[1:])
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": CODES[self.code],
            "severity": self.severity,
            "policy": self.policy,
            "rule": self.rule,
            "endpoints": list(self.endpoints),
            "message": self.message,
            "fix": self.fix,
        }


class _PlainDumper(yaml.SafeDumper):
    """Suggested YAML is pasted by people: never anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, default_flow_style=False)
