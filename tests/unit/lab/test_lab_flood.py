"""The flood phases without a kernel: manifests, phase names, the flooder's bounds and safety,
the agent flags, and how the results are combined and reported."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import felis.lab.firewall as fwmod
from felis.calc import HostInterface, compute
from felis.lab import flood
from felis.lab.errors import LabError
from felis.lab.firewall import Firewall
from felis.lab.manifests import phase_documents, to_yaml
from felis.lab.results import (
    FloodFigures,
    PhaseResult,
    comparison_rows,
    results_document,
    verdict,
)
from felis.lab.run import RunOptions, intro, parse_phases, print_report
from felis.lab.topology import LabConfig
from felis.model import load_documents

CFG = LabConfig()


def test_flood_stands_for_its_three_phases_in_place() -> None:
    assert parse_phases("flood") == ["noflood", "flood-xdp", "flood-raw"]
    assert parse_phases("baseline,flood") == ["baseline", "noflood", "flood-xdp", "flood-raw"]
    assert parse_phases("flood-raw,noflood") == ["flood-raw", "noflood"]
    with pytest.raises(LabError, match="each phase may appear once"):
        parse_phases("flood,noflood")
    with pytest.raises(LabError, match=r"unknown phase 'floods'.*flood"):
        parse_phases("floods")


def test_flood_manifests_put_the_blocklist_in_xdp() -> None:
    """Through felis' own model and calc: the blocklist Deny is XDP-eligible on the lab's
    interface, so the agent drops the flood in XDP unless told --no-xdp."""
    for phase in flood.FLOOD_PHASES:
        docs = phase_documents(phase, CFG)
        assert docs[:3] == phase_documents("donottrack", CFG)
        policy = docs[4]["spec"]
        assert policy["doNotTrack"] and policy["applyOnForward"]
        assert policy["ingress"] == [
            {"action": "Deny", "source": {"selector": "dos-deny-list == 'true'"}}
        ]
        resources = load_documents(to_yaml(docs).encode(), phase)
        result = compute(resources, CFG.node_name, [HostInterface("eth0", ("198.18.0.1/24",))])
        assert result.xdp == {"eth0": frozenset({flood.BLOCKLIST})}


def test_flood_raw_programs_the_same_rules_without_xdp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(fwmod.ns, "run", lambda argv, **kw: calls.append(list(argv)))
    fw = Firewall(LabConfig(run_dir=tmp_path), "nftables", tmp_path, felis=["FELIS"])
    raw = fw.program("flood-raw")
    agent_raw = calls[-1]
    fw.cleanup()
    xdp = fw.program("flood-xdp")
    agent_xdp = calls[-1]
    assert raw is not None and xdp is not None and raw.read_text() == xdp.read_text()
    assert "--no-xdp" in agent_raw and "--once" in agent_raw
    assert "--no-xdp" not in agent_xdp


def test_flood_spec_is_bounded_and_stays_in_the_lab() -> None:
    spec = flood.FloodSpec(iface="eth0", dst_mac="02:00:00:00:00:01", rate=1000, duration=2,
                           via="socket")  # fmt: skip
    args = spec.args()
    assert args[args.index("-n") + 1] == "2100" and args[args.index("-d") + 1] == "2"
    for bad in (
        {"dst": "10.0.0.1"},
        {"dst": "127.0.0.1"},
        {"source_base": "192.0.2.1"},
        {"source_base": "198.19.255.250", "source_count": 10},
        {"rate": 0},
    ):
        with pytest.raises(LabError):
            flood.FloodSpec(iface="eth0", dst_mac="02:00:00:00:00:01", via="socket", **bad)


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_the_c_flooder_refuses_outside_the_lab_and_needs_both_bounds(tmp_path: Path) -> None:
    binary = flood.build(cache=tmp_path)
    base = ["-i", "eth0", "-m", "02:00:00:00:00:01", "-s", "198.19.0.1"]

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(binary), *base, *extra], capture_output=True, text=True,
                              timeout=10, check=False)  # fmt: skip

    refused = run("-a", "10.0.0.1", "-n", "10", "-d", "1")
    assert refused.returncode == 3 and "198.18.0.0/15" in refused.stderr
    assert run("-a", "198.18.0.1", "-s", "8.8.8.8", "-n", "10", "-d", "1").returncode == 3
    # No count, or no duration: refused before any socket is opened.
    assert run("-a", "198.18.0.1", "-d", "1").returncode == 2
    assert run("-a", "198.18.0.1", "-n", "10").returncode == 2


def flood_run(name: str, conn: float, rnd: int, *, mode: str | None, dropped: int) -> PhaseResult:
    r = PhaseResult(name=name, backend="nftables", conntrack_max=262144, round=rnd,
                    duration_s=10.0, connections_ok=int(conn * 10), cpu_busy_s=20.0,
                    memcached_cpu_s=3.0, softirq_s=2.0)  # fmt: skip
    r.flood = FloodFigures(rate_pps=0.0 if name == "noflood" else 100_000.0, xdp_mode=mode)
    if name != "noflood":
        r.flood.sent, r.flood.seconds, r.flood.flooder_cpu_s = 1_000_000, 10.0, 1.5
        r.flood.xdp_dropped = dropped
    return r


def flood_doc(xdp_rates: tuple[float, ...], *, xdp_mode: str | None = "native") -> dict[str, Any]:
    runs = []
    for rnd, xdp_rate in enumerate(xdp_rates, start=1):
        runs += [
            flood_run("noflood", 10_000, rnd, mode=xdp_mode, dropped=0),
            flood_run(
                "flood-xdp", xdp_rate, rnd, mode=xdp_mode, dropped=1_000_000 if xdp_mode else 0
            ),
            flood_run("flood-raw", 6_000, rnd, mode=None, dropped=0),
        ]
    meta = {"flood": flood.describe(100_000.0), "rounds": len(xdp_rates)}
    return results_document(runs, meta)


def test_flood_results_ratios_medians_and_combined_figures() -> None:
    doc = flood_doc((9_500.0, 8_000.0, 9_200.0))
    medians = doc["rounds"]["median"]
    assert medians["ratios"] == {
        "flood-xdp/noflood": 0.92,
        "flood-raw/noflood": 0.6,
        "flood-xdp/flood-raw": 1.533,
    }
    assert medians["server_cpu_us_per_conn"]["noflood"] == 50.0
    combined = doc["flood-xdp"]["flood"]
    assert combined["sent"] == 3_000_000 and combined["xdp_dropped"] == 3_000_000
    assert combined["sent_pps"] == 100_000.0 and combined["xdp_mode"] == "native"
    assert doc["flood-raw"]["server_cpu_s"] == 15.0
    ok, _, marks = verdict(doc)
    assert ok
    assert ("ok", "target flood-xdp ≥ 0.9 × noflood: 0.920 (median of 3 rounds); "
            "flood-raw reached 0.600.") in marks  # fmt: skip
    header, rows = comparison_rows(doc)
    by_label = {r[0]: r[1:] for r in rows}
    assert header == ["", "noflood", "flood-xdp", "flood-raw"]
    assert by_label["XDP mode"] == ["native", "native", "none"]
    assert by_label["XDP drops"] == ["0", "3,000,000", "0"]
    assert by_label["server µs/conn (median)"] == ["50", "54", "83"]


def test_a_missed_target_is_a_note_and_a_missing_xdp_program_fails() -> None:
    ok, _, marks = verdict(flood_doc((8_000.0,)))
    assert ok and ("note", "target flood-xdp ≥ 0.9 × noflood: 0.800 (one round); "
                   "flood-raw reached 0.600.") in marks  # fmt: skip
    ok, _, marks = verdict(flood_doc((9_500.0,), xdp_mode=None))
    assert not ok
    assert any(m == "FAIL" and "NO XDP program was attached" in t for m, t in marks)


def test_flood_report_fits_80_columns() -> None:
    doc = flood_doc((9_500.0, 8_000.0))
    doc["meta"].update(
        lab={"server_netns": "memcached-node-1", "client_netns": "felis-lab-client"},
        restored={"conntrack_max_now": 262144, "namespaces_left": [], "removed": []},
    )
    console = Console(width=80, record=True, color_system=None)
    print_report(doc, console, Path("lab-results"))
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "XDP with them; the flooder stopped" in " ".join(text.split())
    opts = RunOptions(phases=parse_phases("flood"), rounds=5, flood_rate=50_000)
    assert "SYN flood of 50,000 pkt/s" in intro(opts)
    with pytest.raises(LabError, match="--flood-rate"):
        RunOptions(flood_rate=0)


TCP_FIELDS = "RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens InSegs OutSegs RetransSegs InErrs"
SNMP = (
    "Ip: Forwarding DefaultTTL InReceives\nIp: 1 64 1000\n"
    f"Tcp: {TCP_FIELDS}\nTcp: 1 200 120000 -1 50 900 800 17 0\n"
    "Udp: InDatagrams NoPorts\nUdp: 0 0\n"
)


def test_client_retransmits_are_read_from_the_namespace_snmp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from felis.lab import netns

    seen: list[tuple[str, str | None]] = []

    def fake(path: str, ns_name: str | None = None) -> str:
        seen.append((path, ns_name))
        return SNMP

    monkeypatch.setattr(netns, "read_proc", fake)
    assert netns.tcp_retrans_segs("felis-lab-client") == 17
    assert seen == [("/proc/net/snmp", "felis-lab-client")]
    monkeypatch.setattr(netns, "read_proc", lambda path, ns_name=None: "Ip: a\nIp: 1\n")
    assert netns.tcp_retrans_segs("felis-lab-client") == 0


def test_driver_mode_args_runs_and_refusals(tmp_path: Path) -> None:
    gen = tmp_path / "floodgen"
    spec = flood.FloodSpec(iface="eth0", dst_mac="02:00:00:00:00:01", rate=100_000, duration=2,
                           generator=gen)  # fmt: skip
    args = spec.args()
    assert spec.via == "driver"
    assert args[args.index("-x") + 1] == str(gen)
    assert args[args.index("-H") + 1] == flood.HOLD_IFACE
    assert args[args.index("-B") + 1] == str(flood.DRIVER_FLUSH)
    # A run every ~2 ms, within bounds at either end.
    assert args[args.index("-b") + 1] == "200"
    assert flood.FloodSpec(iface="e", dst_mac="m", rate=1_000, generator=gen).batch == 64
    assert flood.FloodSpec(iface="e", dst_mac="m", rate=1e8, generator=gen).batch == 8192
    socket = flood.FloodSpec(iface="eth0", dst_mac="02:00:00:00:00:01", via="socket")
    assert "-x" not in socket.args() and socket.batch == 64
    with pytest.raises(LabError, match="frame generator"):
        flood.FloodSpec(iface="eth0", dst_mac="02:00:00:00:00:01")
    with pytest.raises(LabError, match="--flood-via: driver or socket, not 'nic'"):
        flood.FloodSpec(iface="eth0", dst_mac="02:00:00:00:00:01", via="nic", generator=gen)
    with pytest.raises(LabError, match="--flood-via"):
        RunOptions(flood_via="nic")


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_the_c_flooder_wants_both_driver_options(tmp_path: Path) -> None:
    binary = flood.build(cache=tmp_path)
    base = [str(binary), "-i", "eth0", "-m", "02:00:00:00:00:01", "-a", "198.18.0.1",
            "-s", "198.19.0.1", "-n", "10", "-d", "1"]  # fmt: skip
    for extra in (["-x", "gen.o"], ["-H", "hold0"], ["-x", "gen.o", "-H", "hold0", "-B", "0"]):
        done = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=10,
                              check=False)  # fmt: skip
        assert done.returncode == 2 and "usage" in done.stderr


def test_flooder_summary_lines() -> None:
    line = '{"type":"summary","t":2.0,"sent":150,"errors":3,"generated":160}'
    obj = flood.parse_line(line)
    assert obj is not None
    assert flood.parse_summary(obj) == flood.FloodSummary(2.0, 150, 3, 160)
    # An older flooder's line has no `generated`: everything sent was made.
    obj = flood.parse_line('{"type":"summary","t":1,"sent":5,"errors":0}')
    assert obj is not None and flood.parse_summary(obj).generated == 5
    assert flood.describe(1000.0, "socket")["packets"].startswith("TCP SYN, AF_PACKET")
    assert flood.describe(1000.0)["via"] == "driver"


ETHTOOL_L = """Channel parameters for eth0:
Pre-set maximums:
RX:\t\t2
TX:\t\t2
Other:\t\tn/a
Combined:\tn/a
Current hardware settings:
RX:\t\t1
TX:\t\t1
Other:\t\tn/a
Combined:\tn/a
"""
ETHTOOL_K = "Features for eth0:\nrx-checksumming: on\ngeneric-receive-offload: off\n"


def test_ethtool_output_is_read_by_section() -> None:
    assert flood.channels(ETHTOOL_L, "Pre-set maximums") == (2, 2)
    assert flood.channels(ETHTOOL_L, "Current hardware settings") == (1, 1)
    assert flood.gro_on(ETHTOOL_K) is False
    assert flood.gro_on(ETHTOOL_K.replace(": off", ": on [fixed]")) is True
    with pytest.raises(LabError, match="no RX and TX"):
        flood.channels("Channel parameters for eth0:\n", "Pre-set maximums")
    with pytest.raises(LabError, match="generic-receive-offload"):
        flood.gro_on("Features for eth0:\n")


def test_nic_like_sets_both_ends_and_puts_them_back(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str | None, list[str]]] = []

    def fake(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append((kw.get("netns"), list(argv)))
        out = ETHTOOL_L if argv[1] == "-l" else ETHTOOL_K if argv[1] == "-k" else ""
        return subprocess.CompletedProcess(argv, 0, out, "")

    monkeypatch.setattr(flood.ns, "run", fake)
    monkeypatch.setattr(flood.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(flood.shutil, "which", lambda name: f"/usr/sbin/{name}")
    with pytest.raises(RuntimeError, match="inside"), flood.nic_like("srv", "cli", "eth0"):
        changes = [(ns, argv[1:]) for ns, argv in calls if argv[1] in ("-K", "-L")]
        assert changes == [
            ("srv", ["-K", "eth0", "gro", "on"]),
            ("srv", ["-L", "eth0", "rx", "2", "tx", "2"]),
            ("cli", ["-K", "eth0", "gro", "off"]),
            ("cli", ["-L", "eth0", "rx", "2", "tx", "2"]),
        ]
        calls.clear()
        raise RuntimeError("inside")
    # Put back as read, even though the body failed.
    assert [(ns, argv[1:]) for ns, argv in calls] == [
        ("srv", ["-K", "eth0", "gro", "off"]),
        ("srv", ["-L", "eth0", "rx", "1", "tx", "1"]),
        ("cli", ["-K", "eth0", "gro", "off"]),
        ("cli", ["-L", "eth0", "rx", "1", "tx", "1"]),
    ]
