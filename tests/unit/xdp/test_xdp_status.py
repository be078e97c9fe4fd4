"""`felis status`'s XDP rows, with a fake XDP dataplane; and the bpf(2) reader's pure parts."""

from __future__ import annotations

import struct
from typing import Any, ClassVar

import pytest

from felis.calc import HostInterface, compute
from felis.cli import dataplane as cli
from felis.errors import FelisError
from felis.model import load_documents
from felis.xdp import attach, bpf
from felis.xdp.attach import Attached

DOCS = """
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth0, labels: {role: server}}
spec: {interfaceName: eth0, node: n1}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth1, labels: {role: server}}
spec: {interfaceName: eth1, node: n1}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: blocklist}
spec:
  selector: role == 'server'
  doNotTrack: true
  applyOnForward: true
  ingress: [{action: Deny, source: {nets: [198.18.9.0/24, 198.18.8.0/24]}}]
"""


class FakeXdp:
    programs: ClassVar[dict[str, Any]] = {}

    def __init__(self, *args: object, **kw: object) -> None:
        pass

    def interfaces(self) -> list[str]:
        return sorted(i for i, p in self.programs.items() if isinstance(p, dict))

    def status(self, iface: str) -> Attached | None:
        program = self.programs.get(iface)
        if isinstance(program, Exception):
            raise program
        return None if program is None else Attached(iface, 9, "native", {})

    def counters(self, attached: Attached) -> dict[str, int]:
        return dict(self.programs[attached.iface])


@pytest.fixture
def status_of(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(attach, "XdpDataplane", FakeXdp)
    names = ["eth0", "eth1", "eth2", "lo"]
    result = compute(load_documents(DOCS.encode(), "t"), "n1", [HostInterface(n) for n in names])

    def run(programs: dict[str, Any]) -> dict[str, dict[str, Any]]:
        FakeXdp.programs = programs
        return {row["interface"]: row for row in cli.xdp_status(result, names)}

    return run


def test_each_host_endpoint_interface_has_a_mode(status_of) -> None:  # type: ignore[no-untyped-def]
    rows = status_of({"eth0": {"198.18.9.0/24": 40, "198.18.8.0/24": 2}})
    assert rows.keys() == {"eth0", "eth1"}
    eth0 = rows["eth0"]
    assert (eth0["mode"], eth0["entries"], eth0["dropped_packets"]) == ("native", 2, 42)
    assert eth0["top"] == [
        {"net": "198.18.9.0/24", "packets": 40},
        {"net": "198.18.8.0/24", "packets": 2},
    ]
    assert "42 packets dropped; most: 198.18.9.0/24 40" in cli._xdp_line(eth0)
    # Eligible but not attached: said so, and where the drops happen instead.
    eth1 = rows["eth1"]
    assert (eth1["mode"], eth1["program"], eth1["eligible"]) == ("off", None, 2)
    assert cli._xdp_line(eth1).startswith("eth1 off (2 eligible networks dropped in raw")


def test_an_unreadable_program_is_reported_not_raised(status_of) -> None:  # type: ignore[no-untyped-def]
    rows = status_of({"eth0": FelisError("bpftool: not installed")})
    assert rows["eth0"]["mode"] == "unknown"
    assert cli._xdp_line(rows["eth0"]) == "eth0 unknown (bpftool: not installed)"


def test_possible_cpus_counts_every_listed_cpu() -> None:
    assert bpf.possible_cpus("0\n") == 1
    assert bpf.possible_cpus("0-3\n") == 4
    assert bpf.possible_cpus("0-3,8-11\n") == 8


def test_per_cpu_values_are_summed_per_slot() -> None:
    buffer = struct.pack("=6Q", 1, 2, 0, 0, 5, 7)
    assert bpf.sum_percpu(buffer, 3, 2) == [3, 0, 12]
