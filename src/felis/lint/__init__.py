"""`felis lint`: the doNotTrack pitfalls, found in manifests before they reach a node.

findings = lint(resources, complete=True)   # list[Finding], warnings first
"""

from collections.abc import Iterable

from felis.calc import CalcConfig
from felis.lint.checks import Linter
from felis.lint.findings import CODES, NOTE, WARNING, Finding
from felis.model import Resource
from felis.plan.snapshot import Snapshot


def lint(
    resources: Iterable[Resource], config: CalcConfig | None = None, *, complete: bool = True
) -> list[Finding]:
    """Findings for a set of resources. `complete` False: only a manifest is known, so what
    selects nothing in it is a note, not a warning."""
    return Linter(Snapshot(resources), config or CalcConfig(), complete=complete).run()


__all__ = ["CODES", "NOTE", "WARNING", "Finding", "lint"]
