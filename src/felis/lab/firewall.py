"""Programming the lab's firewall: only ever through felis itself.

For each phase the manifests go into a fresh SQLite datastore with `felis apply`, then the agent,
run inside the server namespace, programs them once (`felis agent --once`) and removes them again
(`felis agent --cleanup`). This module is the only place the lab touches rules; the one thing it
does by hand is to check, between phases, that nothing was left behind.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from felis.lab import netns as ns
from felis.lab.errors import LabError
from felis.lab.manifests import phase_documents, to_yaml
from felis.lab.topology import LabConfig

BACKENDS = ("iptables", "nftables")


def felis_command() -> list[str]:
    return [sys.executable, "-m", "felis"]


def count_leftovers(ruleset_json: str) -> int:
    """Rules, plus base chains whose policy is drop, in `nft -j list ruleset` output.

    Empty tables and accept-policy chains change nothing for traffic; anything else would leak
    one phase's firewall into the next.
    """
    data: Any = json.loads(ruleset_json or '{"nftables": []}')
    n = 0
    for item in data.get("nftables", []):
        if not isinstance(item, dict):
            continue
        is_drop_chain = "chain" in item and item["chain"].get("policy") == "drop"
        if "rule" in item or is_drop_chain:
            n += 1
    return n


class Firewall:
    """felis apply + felis agent for one lab, one backend."""

    def __init__(
        self,
        cfg: LabConfig,
        backend: str,
        run_dir: Path,
        felis: Sequence[str] | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise LabError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        self.cfg = cfg
        self.backend = backend
        self.run_dir = run_dir
        self.felis = list(felis or felis_command())
        self.datastore: str | None = None

    def _agent(self, *flags: str) -> list[str]:
        assert self.datastore is not None
        return [
            *self.felis, "agent", "--node", self.cfg.node_name, *flags,
            "--backend", self.backend, "--datastore", self.datastore,
        ]  # fmt: skip

    def program(self, phase: str) -> Path | None:
        """Store the phase's manifests in a fresh datastore and have the agent program them.

        Returns the manifest file (None for a phase without rules).
        """
        docs = phase_documents(phase, self.cfg)
        if not docs:
            self.datastore = None
            return None
        phase_dir = self.run_dir / phase
        phase_dir.mkdir(parents=True, exist_ok=True)
        manifest = phase_dir / "manifests.yaml"
        manifest.write_text(to_yaml(docs))
        db = phase_dir / "lab.db"
        for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            stale.unlink(missing_ok=True)
        self.datastore = f"sqlite://{db.resolve()}"
        ns.run([*self.felis, "apply", "-f", str(manifest), "--datastore", self.datastore])
        ns.run(self._agent("--once"), netns=self.cfg.server_netns, timeout=120.0)
        return manifest

    def cleanup(self) -> None:
        """Have the agent remove what it programmed (no-op after a phase without rules)."""
        if self.datastore is None:
            return
        try:
            ns.run(self._agent("--cleanup"), netns=self.cfg.server_netns, timeout=120.0)
        finally:
            self.datastore = None

    def leftovers(self) -> int:
        proc = ns.run(["nft", "-j", "list", "ruleset"], netns=self.cfg.server_netns)
        try:
            return count_leftovers(proc.stdout)
        except ValueError as exc:
            raise LabError(f"nft -j list ruleset printed unreadable JSON: {exc}") from exc

    def flush_leftovers(self) -> int:
        """Remove anything left in the lab's own server namespace; returns how much there was.

        Only used when felis' cleanup left rules behind (reported in the results), so the next
        phase still starts from an empty firewall.
        """
        n = self.leftovers()
        if n:
            ns.run(["nft", "flush", "ruleset"], netns=self.cfg.server_netns)
        return n
