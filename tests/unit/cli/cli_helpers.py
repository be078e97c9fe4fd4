"""Helpers of the CLI tests (unique module name: imported via sys.path, like conftest)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SEED = ROOT / "examples" / "memcached-seed.yaml"
NODE = "memcached-node-1"

GNS = """apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: clients
  labels: {memcached: client}
spec:
  nets: [198.18.0.0/24]
"""


class Result:
    """What one `felis …` run did: exit code, stdout, stderr."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    @property
    def out_lines(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.strip()]


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def gns(name: str, net: str = "198.18.0.0/24") -> str:
    return (
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\n"
        f"metadata: {{name: {name}}}\nspec: {{nets: [{net}]}}\n"
    )


def gnp(name: str, tier: str | None = None, order: int = 100) -> str:
    tier_line = f"  tier: {tier}\n" if tier else ""
    return (
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n"
        f"metadata: {{name: {name}}}\nspec:\n{tier_line}  order: {order}\n"
        "  selector: all()\n  types: [Ingress]\n"
    )


Felis = Callable[..., Result]
"""The `felis` fixture (tests/unit/cli/conftest.py): run the command line in-process."""
