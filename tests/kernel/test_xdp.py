"""felis' XDP blocklist on a real veth: drops at XDP before the raw table, failsafe ports pass,
map changes without a reload, protection that outlives the agent, and a cleanup that leaves
other tools' XDP programs alone."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import wait_until
from node import CLIENT_HEP, CLIENT_IP, HEP, SEED_POLICY, FelisNode, felis_node, manifest

from felis.agent.metrics import XdpCounters
from felis.errors import FelisError
from felis.xdp import bpf
from felis.xdp.attach import XdpDataplane, build
from felis.xdp.maps import Blocklist

pytestmark = pytest.mark.skipif(
    shutil.which("clang") is None or shutil.which("bpftool") is None,
    reason="XDP needs clang and bpftool (scripts/bootstrap.sh installs them)",
)

FAILSAFE = frozenset({("tcp", 22)})
PROBE_TABLE = ["nft", "add", "table", "ip", "xdpprobe"]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[FelisNode]:
    with felis_node("nftables", tmp_path) as made:
        yield made


def _raw_counter(node: FelisNode) -> int:
    """Packets from the client that reached the raw table's PREROUTING hook."""
    out = node.topo.exec(
        node.server, ["nft", "-j", "list", "chain", "ip", "xdpprobe", "pre"]
    ).stdout
    for item in json.loads(out)["nftables"]:
        for expr in item.get("rule", {}).get("expr", []):
            if "counter" in expr:
                return int(expr["counter"]["packets"])
    raise AssertionError("probe counter missing")


def test_blocklist_drops_at_xdp_and_keeps_failsafe_ports(
    node: FelisNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A counter in front of everything the raw table does: blocked packets must never reach it.
    node.topo.exec(node.server, PROBE_TABLE)
    node.topo.exec(
        node.server,
        ["nft", "add", "chain", "ip", "xdpprobe", "pre",
         "{ type filter hook prerouting priority -300; }"],
    )  # fmt: skip
    node.topo.exec(
        node.server,
        ["nft", "add", "rule", "ip", "xdpprobe", "pre", "ip", "saddr", CLIENT_IP, "counter"],
    )
    node.serve(8080, 22)
    xdp = XdpDataplane(node.server, obj=build(tmp_path / "cache"))
    attached = xdp.attach("eth0")
    assert attached.mode in ("native", "generic")

    # Another source blocked: the client still passes.
    xdp.sync(attached, Blocklist(frozenset({"198.18.9.0/24"}), FAILSAFE))
    assert node.reach(node.client, 8080)

    # The client's network blocked: dropped at XDP, counted there, never seen by raw.
    xdp.sync(attached, Blocklist(frozenset({"198.18.9.0/24", "198.18.0.0/28"}), FAILSAFE))
    before = _raw_counter(node)
    assert not node.reach(node.client, 8080)
    counts = xdp.counters(attached)
    assert counts["198.18.0.0/28"] > 0 and counts["198.18.9.0/24"] == 0
    assert _raw_counter(node) == before
    # /metrics reads the same counters (bpf(2), summed over CPUs) into one total per interface.
    series = {
        (s.name, tuple(s.labels.values())): s.value
        for family in XdpCounters().collect(xdp, {"eth0": frozenset(counts)})
        for s in family.samples
    }
    assert series[("felis_xdp_dropped_packets_total", ("eth0",))] == sum(counts.values())
    assert series[("felis_xdp_attached", ("eth0", attached.mode))] == 1
    # Read one slot per bpf(2) batch: each batch must go on right after the previous one (the
    # client's entry has id 1, the second slot).
    monkeypatch.setattr(bpf, "_CHUNK", 1)
    chunked = xdp.counters(attached)
    assert chunked["198.18.0.0/28"] > 0 and chunked["198.18.9.0/24"] == 0
    monkeypatch.undo()
    # A failsafe port passes XDP even from a blocked source.
    assert node.reach(node.client, 22)

    # Membership changes in place: same program, the client passes again.
    xdp.sync(attached, Blocklist(frozenset({"198.18.9.0/24"}), FAILSAFE))
    assert xdp.status("eth0") == attached
    assert node.reach(node.client, 8080)

    # A restarted agent (a new object, nothing remembered) finds the program and its maps.
    xdp.sync(attached, Blocklist(frozenset({"198.18.0.2/32"}), FAILSAFE))
    again = XdpDataplane(node.server)
    found = again.status("eth0")
    assert found == attached
    assert again.blocked(found) == {"198.18.0.2/32": 0}
    assert not node.reach(node.client, 8080)

    # Cleanup removes felis' program, and with it its maps.
    assert again.detach("eth0")
    assert again.status("eth0") is None
    wait_until(lambda: node.reach(node.client, 8080), timeout=10, what="traffic after detach")


def test_another_tools_xdp_program_is_never_touched(node: FelisNode, tmp_path: Path) -> None:
    source = tmp_path / "other.c"
    source.write_text(
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n"
        'SEC("xdp") int other_xdp(struct xdp_md *ctx) { return XDP_PASS; }\n'
        'char LICENSE[] SEC("license") = "GPL";\n'
    )
    obj = tmp_path / "other.o"
    subprocess.run(
        ["clang", "-O2", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu",
         "-c", str(source), "-o", str(obj)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    node.topo.exec(node.server, ["ip", "link", "set", "dev", "eth1", "xdpgeneric", "obj", str(obj),
                                 "sec", "xdp"])  # fmt: skip
    xdp = XdpDataplane(node.server, obj=build(tmp_path / "cache"))
    assert xdp.status("eth1") is None
    assert not xdp.detach("eth1")
    with pytest.raises(FelisError, match="another XDP program"):
        xdp.attach("eth1")
    shown = node.topo.exec(node.server, ["ip", "-d", "link", "show", "dev", "eth1"]).stdout
    assert "other_xdp" in shown


BLOCK_POLICY = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: blocklist}
spec:
  selector: memcached == 'server'
  order: 1
  doNotTrack: true
  applyOnForward: true
  ingress:
    - action: Deny
      source: {selector: "list == 'block'"}
"""


def _blocklist(*nets: str) -> str:
    return f"""
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {{name: blocked, labels: {{list: block}}}}
spec: {{nets: [{", ".join(nets)}]}}
"""


def test_the_agent_puts_an_eligible_blocklist_in_xdp(node: FelisNode) -> None:
    node.serve(12211, 22)
    node.apply(manifest(HEP, CLIENT_HEP, SEED_POLICY, BLOCK_POLICY, _blocklist("198.18.9.0/24")))
    node.converge()
    xdp = XdpDataplane(node.server)
    first = xdp.status("eth0")
    assert first is not None and xdp.blocked(first).keys() == {"198.18.9.0/24"}
    assert node.reach(node.client, 12211)

    # The client joins the blocklist: same program, new entry, dropped at XDP.
    node.apply(manifest(_blocklist("198.18.9.0/24", f"{CLIENT_IP}/32")))
    node.converge()
    again = xdp.status("eth0")
    assert again is not None and again.program == first.program
    assert not node.reach(node.client, 12211)
    assert xdp.counters(again)[f"{CLIENT_IP}/32"] > 0
    assert node.reach(node.client, 22), "failsafe ports pass XDP"
    rows = {row["interface"]: row for row in node.status()["xdp"]}
    assert rows["eth0"]["mode"] == again.mode and rows["eth0"]["entries"] == 2
    if again.mode == "native":
        # The test's veth has one receive queue: status says what that means under XDP.
        assert again.kind == "veth" and "one receive queue" in rows["eth0"]["warning"]
    assert rows["eth0"]["top"][0]["net"] == f"{CLIENT_IP}/32"
    assert rows["eth0"]["dropped_packets"] == rows["eth0"]["top"][0]["packets"] > 0
    assert rows.keys() == {"eth0"}, "host-endpoint interfaces only"

    # No eligible Deny any more: the program goes, the raw table is all there is.
    node.delete("gnp", "blocklist")
    node.converge()
    assert xdp.status("eth0") is None
    assert node.reach(node.client, 12211)

    # --cleanup removes an attached program too.
    node.apply(manifest(BLOCK_POLICY))
    node.converge()
    assert xdp.status("eth0") is not None
    assert "XDP removed from eth0" in node.cleanup()
    assert xdp.status("eth0") is None


def test_generic_mode_gives_way_to_native_when_generic_xdp_is_disabled(
    node: FelisNode, tmp_path: Path
) -> None:
    """genericXDPEnabled: false, as Felix: felis' own program found attached in generic mode
    (left by a run that allowed it) is replaced by a native one; veth has native XDP."""
    obj = build(tmp_path / "cache")
    attach_generic = ["ip", "link", "set", "dev", "eth0", "xdpgeneric", "obj", str(obj)]
    node.topo.exec(node.server, [*attach_generic, "sec", "xdp"])
    xdp = XdpDataplane(node.server)
    before = xdp.status("eth0")
    assert before is not None and before.mode == "generic"
    no_generic = """
    apiVersion: projectcalico.org/v3
    kind: FelixConfiguration
    metadata: {name: default}
    spec: {genericXDPEnabled: false}
    """
    node.apply(manifest(HEP, CLIENT_HEP, SEED_POLICY, BLOCK_POLICY,
                        _blocklist(f"{CLIENT_IP}/32"), no_generic))  # fmt: skip
    node.converge()
    after = xdp.status("eth0")
    assert after is not None and after.mode == "native" and after.program != before.program
    assert xdp.blocked(after).keys() == {f"{CLIENT_IP}/32"}
