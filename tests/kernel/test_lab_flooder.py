"""The lab's flooder in driver mode on a real veth pair: the frames reach the server's end as
valid TCP SYNs from the blocklisted range, the count it reports is the count that arrived, it
needs NAPI at the receiving end (which `nic_like` provides), and it leaves nothing behind."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Topology, topology

from felis.lab import flood
from felis.lab.flood import Flooder, FloodSpec, link_mac, nic_like

pytestmark = pytest.mark.skipif(
    shutil.which("clang") is None or shutil.which("ethtool") is None,
    reason="driver mode needs clang and ethtool (scripts/bootstrap.sh installs them)",
)

SERVER_IP, CLIENT_IP = "198.18.0.1", "198.18.0.2"
RATE, SECONDS = 50_000, 0.2
COUNT_SYNS = """
table ip floodprobe {
  chain pre {
    type filter hook prerouting priority -300; policy accept;
    ip saddr 198.19.0.0/16 tcp flags syn counter
  }
}
"""


@pytest.fixture
def pair() -> Iterator[tuple[Topology, str, str]]:
    with topology() as topo:
        server, client = topo.add_host("srv"), topo.add_host("cli")
        topo.link(server, "eth0", [f"{SERVER_IP}/24"], client, "eth0", [f"{CLIENT_IP}/24"])
        topo.exec(server, ["nft", "-f", "-"], input_text=COUNT_SYNS)
        yield topo, server, client


def _syn_counter(topo: Topology, server: str) -> int:
    out = topo.exec(server, ["nft", "-j", "list", "chain", "ip", "floodprobe", "pre"]).stdout
    for item in json.loads(out)["nftables"]:
        for expr in item.get("rule", {}).get("expr", []):
            if "counter" in expr:
                return int(expr["counter"]["packets"])
    raise AssertionError("probe counter missing")


def _snmp(topo: Topology, server: str) -> dict[str, int]:
    """The server namespace's Ip/Tcp counters (name -> value)."""
    lines = topo.exec(server, ["cat", "/proc/net/snmp"]).stdout.splitlines()
    out: dict[str, int] = {}
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        proto = names.split(":")[0]
        for name, value in zip(names.split()[1:], values.split()[1:], strict=True):
            out[f"{proto}{name}"] = int(value)
    return out


def _flood(topo: Topology, server: str, client: str, binary: Path, gen: Path) -> flood.FloodSummary:
    spec = FloodSpec(iface="eth0", dst_mac=link_mac(server, "eth0"), dst=SERVER_IP,
                     rate=RATE, duration=SECONDS, generator=gen)  # fmt: skip
    flooder = Flooder(spec, client, binary)
    try:
        summary = flooder.finish(timeout=30.0)
    finally:
        flooder.kill()
    assert summary is not None
    return summary


def test_driver_frames_arrive_as_valid_syns_and_are_counted(
    pair: tuple[Topology, str, str], tmp_path: Path
) -> None:
    topo, server, client = pair
    binary, gen = flood.build(cache=tmp_path), flood.build_generator(cache=tmp_path)
    before = _snmp(topo, server)
    with nic_like(server, client, "eth0"):
        summary = _flood(topo, server, client, binary, gen)
    after = _snmp(topo, server)
    frames = summary.generated
    assert RATE * SECONDS / 2 < frames <= RATE * SECONDS
    assert summary.sent == frames and summary.errors == 0
    # Every frame reached the stack as a TCP SYN from the blocklisted range...
    assert _syn_counter(topo, server) == frames
    # ...with both checksums right: TCP took every one in.
    assert after["TcpInSegs"] - before["TcpInSegs"] == frames
    assert after["TcpInCsumErrors"] == before["TcpInCsumErrors"]
    # The generator's parking place is gone with the flooder; the links are as they were.
    links = topo.exec(client, ["ip", "-j", "link", "show"]).stdout
    assert flood.HOLD_IFACE not in links
    assert not flood.read_link(server, "eth0")[0].gro


def test_without_napi_at_the_receiver_no_frame_is_taken(
    pair: tuple[Topology, str, str], tmp_path: Path
) -> None:
    """Why `nic_like` turns GRO on: a veth without NAPI refuses XDP-transmitted frames, and the
    flooder's summary says so (0 taken) instead of claiming them sent."""
    topo, server, client = pair
    binary, gen = flood.build(cache=tmp_path), flood.build_generator(cache=tmp_path)
    summary = _flood(topo, server, client, binary, gen)
    assert summary.generated > 0 and summary.sent == 0
    assert _syn_counter(topo, server) == 0
