"""A felis node under test: a server namespace with real peers, a datastore and the agent.

Layout (all addresses in 198.18.0.0/15, all namespaces private to the test):

    client   eth0 198.18.0.2 ──── eth0 198.18.0.1   server (felis runs here: HEP on eth0)
    stranger eth0 198.18.1.2 ──── eth1 198.18.1.1   server
    remote   eth0 198.18.2.2 ──── eth2 198.18.2.1   server (routed through the server, for
                                                    applyOnForward: client ⇄ remote)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import Topology, topology, wait_until

from felis.dataplane import iptables, nftables_readback
from felis.dataplane.ipset import parse_ipset_save
from felis.dataplane.spec import Family
from felis.datastore import open_datastore
from felis.model import load_located
from felis.resources.service import ResourceService

NODE = "memcached-node-1"
SERVER_IP = "198.18.0.1"
CLIENT_IP = "198.18.0.2"
STRANGER_IP = "198.18.1.2"
REMOTE_IP = "198.18.2.2"

HEP = f"""
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: {NODE}-eth0
  labels:
    memcached: server
spec:
  interfaceName: eth0
  node: {NODE}
  expectedIPs: [{SERVER_IP}]
"""

CLIENT_HEP = f"""
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: client-1-eth0
  labels:
    memcached: client
spec:
  interfaceName: eth0
  node: client-1
  expectedIPs: [{CLIENT_IP}]
"""

SEED_POLICY = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: memcached-server
spec:
  selector: memcached == 'server'
  applyOnForward: true
  doNotTrack: true
  ingress:
    - action: Allow
      protocol: TCP
      source:
        selector: memcached == 'client'
      destination:
        ports: [12211]
  egress:
    - action: Allow
      protocol: TCP
      source:
        ports: [12211]
      destination:
        selector: memcached == 'client'
"""


def manifest(*documents: str) -> str:
    return "---\n".join(textwrap.dedent(doc).strip() + "\n" for doc in documents)


@dataclass
class FelisNode:
    topo: Topology
    backend: str
    workdir: Path
    server: str
    client: str
    stranger: str
    remote: str

    @property
    def datastore(self) -> str:
        return f"sqlite:///{self.workdir}/felis.db"

    def apply(self, text: str) -> None:
        """`felis apply` in this process: what the CLI calls, without a Python start (about a
        second each, a hundred times a suite); tests/unit/cli covers the command itself."""
        items = load_located(text.encode(), str(self.workdir / "input.yaml"))
        with closing(open_datastore(self.datastore)) as store:
            ResourceService(store).apply(items)

    def delete(self, kind: str, name: str) -> None:
        self.topo.felis(None, ["delete", kind, name, "--datastore", self.datastore])

    def converge(self) -> str:
        """`felis agent --once` in the server namespace; returns its summary line."""
        proc = self.topo.felis(
            self.server,
            [
                "agent",
                "--node",
                NODE,
                "--once",
                "--backend",
                self.backend,
                "--datastore",
                self.datastore,
            ],
        )
        return proc.stdout.strip()

    def cleanup(self) -> str:
        proc = self.topo.felis(
            self.server,
            [
                "agent",
                "--node",
                NODE,
                "--cleanup",
                "--backend",
                self.backend,
                "--datastore",
                self.datastore,
            ],
        )
        return proc.stdout.strip()

    def start_agent(self, *extra: str) -> subprocess.Popen[str]:
        return self.topo.spawn(
            self.server,
            [
                sys.executable,
                "-m",
                "felis",
                "agent",
                "--node",
                NODE,
                "--backend",
                self.backend,
                "--datastore",
                self.datastore,
                "--metrics-port",
                "0",
                *extra,
            ],
        )

    def rule_counters(self) -> list[dict[str, object]]:
        rules: list[dict[str, object]] = self.status()["rules"]
        return rules

    def status(self) -> dict[str, Any]:
        """`felis status -o json` in the server namespace."""
        proc = self.topo.felis(
            self.server,
            [
                "status",
                "--node",
                NODE,
                "--backend",
                self.backend,
                "--datastore",
                self.datastore,
                "-o",
                "json",
            ],
        )
        report: dict[str, Any] = json.loads(proc.stdout)
        return report

    def reach(
        self,
        src: str,
        port: int,
        *,
        proto: str = "tcp",
        dst: str = SERVER_IP,
        source_port: int = 0,
    ) -> bool:
        return self.topo.probe(src, dst, port, proto=proto, source_port=source_port, timeout=1.0)

    def serve(self, *ports: int, proto: str = "tcp", ns: str | None = None) -> None:
        for port in ports:
            self.topo.serve(ns or self.server, "0.0.0.0", port, proto=proto)

    def conntrack_for_port(self, port: int) -> list[str]:
        return [
            line
            for line in self.topo.conntrack(self.server)
            if f"dport={port} " in line or f"sport={port} " in line
        ]

    # -- kernel state, read the same way the agent reads it --------------------------------

    def chain_hashes(self) -> dict[str, tuple[str | None, ...]]:
        """Every felis chain (all tables, IPv4) → its rule hashes."""
        out: dict[str, tuple[str | None, ...]] = {}
        if self.backend == "nftables":
            proc = self.topo.exec(
                self.server, ["nft", "-j", "list", "table", "ip", "felis"], check=False
            )
            if proc.returncode != 0:
                return {}
            state = nftables_readback.parse_nft_json(proc.stdout, Family.V4)
        else:
            text = self.topo.exec(self.server, ["iptables-save"]).stdout
            state = iptables.IptablesState(tables=iptables.parse_iptables_save(text))
        for table, table_state in state.tables.items():
            for name, chain in table_state.chains.items():
                out[f"{table.value}/{name}"] = chain.hashes
        return out

    def set_members(self) -> dict[str, frozenset[str]]:
        if self.backend == "nftables":
            proc = self.topo.exec(
                self.server, ["nft", "-j", "list", "table", "ip", "felis"], check=False
            )
            if proc.returncode != 0:
                return {}
            sets = nftables_readback.parse_nft_json(proc.stdout, Family.V4).sets
        else:
            sets = parse_ipset_save(self.topo.exec(self.server, ["ipset", "save"]).stdout)
        return {name: state.members for name, state in sets.items()}

    def ruleset_text(self) -> str:
        """The whole firewall of the server namespace, counters removed."""
        if self.backend == "nftables":
            data = json.loads(self.topo.exec(self.server, ["nft", "-j", "list", "ruleset"]).stdout)
            for item in data.get("nftables", []):
                rule = item.get("rule")
                if rule:
                    rule["expr"] = [e for e in rule["expr"] if "counter" not in e]
            return json.dumps(data, sort_keys=True)
        saved = self.topo.exec(self.server, ["iptables-save"]).stdout
        sets = self.topo.exec(self.server, ["ipset", "save"]).stdout
        return "\n".join(
            line
            for line in (saved + sets).splitlines()
            if not line.startswith("#") and not line.startswith(":")
        )

    def felis_traces(self) -> list[str]:
        """Anything felis owns left in the kernel (chains, rules, tables, sets)."""
        traces = []
        nft = self.topo.exec(self.server, ["nft", "list", "tables"]).stdout
        traces += [line for line in nft.splitlines() if "felis" in line]
        saved = self.topo.exec(self.server, ["iptables-save"]).stdout
        saved += self.topo.exec(self.server, ["ip6tables-save"]).stdout
        traces += [line for line in saved.splitlines() if "felis" in line]
        sets = self.topo.exec(self.server, ["ipset", "list", "-n"]).stdout
        traces += [line for line in sets.splitlines() if line.startswith("felis")]
        return traces

    def wait_reach(self, src: str, port: int, expected: bool, **kw: object) -> None:
        wait_until(
            lambda: self.reach(src, port, **kw) == expected,
            timeout=20,  # type: ignore[arg-type]
            what=f"reachability of {port} from {src} to become {expected}",
        )


@contextmanager
def felis_node(backend: str, workdir: Path) -> Iterator[FelisNode]:
    with topology() as topo:
        server = topo.add_host("srv", forwarding=True)
        client = topo.add_host("cli")
        stranger = topo.add_host("str")
        remote = topo.add_host("rem")
        topo.link(server, "eth0", [f"{SERVER_IP}/24"], client, "eth0", [f"{CLIENT_IP}/24"])
        topo.link(server, "eth1", ["198.18.1.1/24"], stranger, "eth0", [f"{STRANGER_IP}/24"])
        topo.link(server, "eth2", ["198.18.2.1/24"], remote, "eth0", [f"{REMOTE_IP}/24"])
        topo.route(client, "198.18.2.0/24", SERVER_IP)
        topo.route(remote, "198.18.0.0/24", "198.18.2.1")
        yield FelisNode(topo, backend, workdir, server, client, stranger, remote)
