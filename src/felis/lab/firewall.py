"""Programming the lab's firewall: through felis itself, except for the hand-written reference.

For each felis phase the manifests go into a fresh SQLite datastore with `felis apply`, then the
agent, run inside the server namespace, programs them once (`felis agent --once`) and removes
them again (`felis agent --cleanup`). The `handwritten` phase is the one ruleset the lab writes
itself (`felis.lab.handwritten`), as a yardstick for felis' rules. This module is the only place
the lab touches rules; between phases it also checks that nothing was left behind.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from felis.lab import netns as ns
from felis.lab.errors import LabError
from felis.lab.flood import FLOOD_RAW
from felis.lab.handwritten import HANDWRITTEN, Handwritten
from felis.lab.manifests import phase_documents, to_yaml
from felis.lab.topology import LabConfig

BACKENDS = ("iptables", "nftables")
# `ip -j -d link` numbers XDP attach modes.
XDP_MODES = {1: "native", 2: "generic", 3: "offload"}


def felis_command() -> list[str]:
    return [sys.executable, "-m", "felis"]


def ruleset_items(ruleset_json: str) -> list[dict[str, Any]]:
    """The objects of `nft -j list ruleset` output (tables, chains, rules, sets...)."""
    data: Any = json.loads(ruleset_json or '{"nftables": []}')
    return [item for item in data.get("nftables", []) if isinstance(item, dict)]


def count_leftovers(ruleset_json: str) -> int:
    """Rules, plus base chains whose policy is drop, in `nft -j list ruleset` output.

    Empty tables and accept-policy chains change no verdict; anything else would leak one
    phase's firewall into the next.
    """
    n = 0
    for item in ruleset_items(ruleset_json):
        is_drop_chain = "chain" in item and item["chain"].get("policy") == "drop"
        if "rule" in item or is_drop_chain:
            n += 1
    return n


def has_tables(ruleset_json: str) -> bool:
    return any("table" in item for item in ruleset_items(ruleset_json))


class Firewall:
    """felis apply + felis agent (or the hand-written reference) for one lab, one backend."""

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
        self.handwritten = Handwritten(cfg, backend)

    def _agent(self, *flags: str) -> list[str]:
        assert self.datastore is not None
        return [
            *self.felis, "agent", "--node", self.cfg.node_name, *flags,
            "--backend", self.backend, "--datastore", self.datastore,
        ]  # fmt: skip

    def program(self, phase: str) -> Path | None:
        """Store the phase's manifests in a fresh datastore and have the agent program them.

        Returns the manifest file (None for a phase without felis rules).
        """
        if phase == HANDWRITTEN:
            self.datastore = None
            self.handwritten.program()
            return None
        # The same blocklist, with XDP turned off the way a user turns it off: the raw table
        # then drops the flood.
        flags = ("--no-xdp",) if phase == FLOOD_RAW else ()
        return self.program_documents(phase, phase_documents(phase, self.cfg), flags)

    def program_documents(
        self, name: str, docs: list[dict[str, Any]], flags: Sequence[str] = ()
    ) -> Path | None:
        """Store `docs` in a fresh datastore of their own (under `name`) and have the agent
        program them (with extra agent `flags`); None when there are none."""
        if not docs:
            self.datastore = None
            return None
        phase_dir = self.run_dir / name
        phase_dir.mkdir(parents=True, exist_ok=True)
        manifest = phase_dir / "manifests.yaml"
        manifest.write_text(to_yaml(docs))
        db = phase_dir / "lab.db"
        for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            stale.unlink(missing_ok=True)
        self.datastore = f"sqlite://{db.resolve()}"
        ns.run([*self.felis, "apply", "-f", str(manifest), "--datastore", self.datastore])
        ns.run(self._agent("--once", *flags), netns=self.cfg.server_netns, timeout=120.0)
        return manifest

    def cleanup(self) -> None:
        """Remove what the phase programmed (no-op after a phase without rules)."""
        self.handwritten.cleanup()
        if self.datastore is None:
            return
        try:
            ns.run(self._agent("--cleanup"), netns=self.cfg.server_netns, timeout=120.0)
        finally:
            self.datastore = None

    def _ruleset(self) -> str:
        proc = ns.run(["nft", "-j", "list", "ruleset"], netns=self.cfg.server_netns)
        try:
            ruleset_items(proc.stdout)
        except ValueError as exc:
            raise LabError(f"nft -j list ruleset printed unreadable JSON: {exc}") from exc
        return proc.stdout

    def xdp_mode(self) -> str | None:
        """Which XDP program mode the server interface has (`native`, `generic`), or None."""
        cfg = self.cfg
        out = ns.run(["ip", "-n", cfg.server_netns, "-j", "-d", "link", "show", "dev",
                      cfg.interface], timeout=10.0).stdout  # fmt: skip
        try:
            (link,) = json.loads(out)
        except ValueError as exc:
            raise LabError(f"ip -j link printed unreadable JSON: {exc}") from exc
        xdp = link.get("xdp")
        if not isinstance(xdp, dict) or "prog" not in xdp:
            return None
        return XDP_MODES.get(int(xdp.get("mode", 0)), "unknown")

    def flush_xdp(self) -> int:
        """Detach an XDP program a cleanup left on the lab's server interface; 1 if there was
        one. Only the lab's own namespace is touched, so whatever is there is the lab's."""
        if self.xdp_mode() is None:
            return 0
        for mode in ("xdpgeneric", "xdpdrv"):
            ns.run(["ip", "-n", self.cfg.server_netns, "link", "set", "dev", self.cfg.interface,
                    mode, "off"], check=False, timeout=10.0)  # fmt: skip
        if self.xdp_mode() is not None:
            raise LabError(f"could not detach the XDP program left on {self.cfg.interface}")
        return 1

    def leftovers(self) -> int:
        return count_leftovers(self._ruleset())

    def flush_leftovers(self) -> int:
        """Empty the lab's own server namespace's ruleset; returns how many leftovers it held.

        Leftovers are rules a cleanup left behind (reported in the results). Empty tables and
        base chains are removed too, though they are not counted: iptables-nft leaves its
        built-in chains behind, and their hooks would still cost the next phase a little on
        every packet. (nft sees iptables-nft's rules too; iptables-legacy's it cannot.)
        """
        ruleset = self._ruleset()
        if has_tables(ruleset):
            ns.run(["nft", "flush", "ruleset"], netns=self.cfg.server_netns)
        return count_leftovers(ruleset)
