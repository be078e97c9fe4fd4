"""FelixConfiguration on a real kernel, both backends: a custom failsafe list passes packets, a
running agent takes a new list without a moment in which the old failsafe port is closed, and
chainInsertMode Append moves the iptables hooks behind other programs' rules (one transaction,
so that move never closes the failsafe port either)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from harness import wait_until
from node import HEP, SERVER_IP, FelisNode, manifest

PROBE_LOOP = str(Path(__file__).with_name("probe_loop.py"))
PROBE_TIMEOUT = 0.9
"""Below TCP's first SYN retransmission (1 s): a SYN dropped once makes the round fail."""


def felix_default(ports: list[int], extra: str = "") -> str:
    entries = "\n".join(f"    - {{protocol: TCP, port: {port}}}" for port in ports)
    return (
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\n"
        f"metadata: {{name: default}}\nspec:\n  failsafeInboundHostPorts:\n{entries}\n{extra}"
    )


class ProbeLoop:
    """probe_loop.py in the client namespace, its progress read as it goes."""

    def __init__(self, node: FelisNode, port: int) -> None:
        self.stopfile = node.workdir / f"stop-probe-{port}"
        self.proc = node.topo.spawn(
            node.client,
            [
                sys.executable,
                PROBE_LOOP,
                SERVER_IP,
                str(port),
                str(self.stopfile),
                "--timeout",
                str(PROBE_TIMEOUT),
            ],
        )
        self.rounds = self.failed = 0
        self.failures: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("rounds="):
                rounds, failed = (int(part.split("=")[1]) for part in line.split())
                self.rounds, self.failed = rounds, failed
            elif line.startswith("failed round"):
                self.failures.append(line.strip())

    def wait_more(self, count: int) -> None:
        target = self.rounds + count
        wait_until(lambda: self.rounds >= target, timeout=60, what=f"{target} probe rounds")

    def stop(self) -> tuple[int, int]:
        self.stopfile.touch()
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        return self.rounds, self.failed


def _add_foreign_input_rule(node: FelisNode) -> None:
    node.topo.exec(node.server, ["iptables", "-N", "FOREIGN"])
    node.topo.exec(
        node.server, ["iptables", "-A", "FOREIGN", "-p", "tcp", "--dport", "7777", "-j", "RETURN"]
    )
    node.topo.exec(node.server, ["iptables", "-A", "INPUT", "-j", "FOREIGN"])


def _input_rules(node: FelisNode) -> list[str]:
    saved = node.topo.exec(node.server, ["iptables-save", "-t", "filter"]).stdout
    return [line for line in saved.splitlines() if line.startswith("-A INPUT")]


def test_custom_failsafe_ports_change_without_a_gap(node: FelisNode) -> None:
    if node.backend == "iptables":
        _add_foreign_input_rule(node)
    node.apply(manifest(HEP, felix_default([22])))
    node.serve(22, 179, 2222)
    node.start_agent("--refresh-interval", "0.5")
    node.wait_reach(node.client, 2222, False)  # programmed: the host endpoint denies by default
    assert node.reach(node.client, 22), "the object's failsafe port passes"
    assert not node.reach(node.client, 179), "the object's list replaces the built-in one"
    if node.backend == "iptables":
        assert "felis" in _input_rules(node)[0], "inserted: our hooks first"

    loop = ProbeLoop(node, 22)
    try:
        loop.wait_more(40)
        node.apply(manifest(felix_default([22, 2222])))
        node.wait_reach(node.client, 2222, True)
        loop.wait_more(40)

        node.apply(manifest(felix_default([22, 2222], "  chainInsertMode: Append\n")))
        if node.backend == "iptables":
            wait_until(
                lambda: _input_rules(node)[0] == "-A INPUT -j FOREIGN",
                timeout=20,
                what="our INPUT hooks to move behind the foreign rule",
            )
            assert all("felis" in rule for rule in _input_rules(node)[1:])
        else:
            # Nothing to move: felis' base chains are its own. The agent says so and stays put.
            wait_until(
                lambda: any("chainInsertMode" in w for w in node.status()["warnings"]),
                timeout=20,
                what="the nftables warning",
            )
        loop.wait_more(40)
    finally:
        rounds, failed = loop.stop()
    assert failed == 0, f"failsafe port 22 was closed during a change: {loop.failures[:5]}"
    assert rounds >= 120
    assert node.reach(node.client, 2222) and node.reach(node.client, 22)
    status = node.status()
    assert status["in_sync"], status["drift"]
    assert "failsafeInboundHostPorts from FelixConfiguration default" in status["settings"]
