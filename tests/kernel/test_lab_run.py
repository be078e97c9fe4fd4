"""`felis lab run` end to end (root, own namespaces; the one global sysctl is always restored)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from felis.lab import flood
from felis.lab.errors import LabError
from felis.lab.firewall import Firewall
from felis.lab.results import verdict
from felis.lab.run import RunOptions, run_lab
from felis.lab.sysctl import RECORD_NAME, read_conntrack_max
from felis.lab.topology import LabConfig
from felis.xdp.attach import build as xdp_build

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]


def agent_available() -> bool:
    """`felis agent --help` works and the agent's modules import (it is built by others)."""
    probes = (["-m", "felis", "agent", "--help"], ["-c", "import felis.agent.agent"])
    return all(
        subprocess.run([sys.executable, *p], capture_output=True, check=False).returncode == 0
        for p in probes
    )


def config(tmp_path: Path, server: str | None = None) -> LabConfig:
    tag = secrets.token_hex(3)
    return LabConfig(
        server_netns=server or f"flr-{tag}-s", client_netns=f"flr-{tag}-c", run_dir=tmp_path / "run"
    )


def netns_names() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


# Programs nft directly, standing in for `felis apply` + `felis agent`, so the orchestration
# (phases, sampling, results, restore) is tested even where the agent does not exist yet.
STAND_IN = r"""
import shutil, subprocess, sys
args = sys.argv[1:]
def opt(name):
    return args[args.index(name) + 1]
if args[0] == "apply":
    shutil.copy(opt("-f"), opt("--datastore").removeprefix("sqlite://"))
elif "--cleanup" in args:
    subprocess.run(["nft", "delete", "table", "inet", "standin"], check=False)
else:
    text = open(opt("--datastore").removeprefix("sqlite://")).read()
    notrack = ("chain pre { type filter hook prerouting priority raw; tcp dport 12211 notrack; }\n"
               "chain out { type filter hook output priority raw; tcp sport 12211 notrack; }\n")
    rules = ("table inet standin {\n" + (notrack if "doNotTrack: true" in text else "") +
             "chain input { type filter hook input priority 0; policy drop;\n"
             "ct state established accept; tcp dport 12211 accept; }\n}\n")
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
"""


def test_conntrack_max_restored_when_the_run_raises(tmp_path: Path) -> None:
    original = read_conntrack_max()
    cfg = config(tmp_path)
    failing = [sys.executable, "-c", "import sys; sys.exit('felis is broken')"]
    opts = RunOptions(phase_seconds=2, conntrack_max=original // 2 + 1, results=tmp_path / "res",
                      phases=["stateful"], config=cfg, felis=failing)  # fmt: skip
    with pytest.raises(LabError, match="felis is broken"):
        run_lab(opts)
    assert read_conntrack_max() == original
    assert not (cfg.run_dir / RECORD_NAME).exists()
    assert not ({cfg.server_netns, cfg.client_netns} & netns_names())


def test_orchestration_with_stand_in_firewall(tmp_path: Path) -> None:
    original = read_conntrack_max()
    stand_in = tmp_path / "standin.py"
    stand_in.write_text(STAND_IN)
    cfg = config(tmp_path)
    opts = RunOptions(phase_seconds=5, conntrack_max=4096, results=tmp_path / "res", config=cfg,
                      felis=[sys.executable, str(stand_in)])  # fmt: skip
    run_lab(opts)
    assert read_conntrack_max() == original
    assert not ({cfg.server_netns, cfg.client_netns} & netns_names())
    doc = json.loads((tmp_path / "res" / "results.json").read_text())
    st, dnt, base = doc["stateful"], doc["donottrack"], doc["baseline"]
    assert st["conntrack_max"] == 4096 and st["conntrack_peak"] == 4096
    assert st["connections_failed"] > 0 and st["kernel_drops"] > 0
    assert dnt["connections_failed"] == 0 and dnt["entries_12211_end"] == 0
    assert dnt["conntrack_peak"] == 0 and base["conntrack_peak"] == 0
    assert dnt["conn_per_s"] > st["conn_per_s"]
    assert len(st["series"]) >= 5
    assert (tmp_path / "res" / "chart.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_short_lab_run_with_felis(tmp_path: Path, backend: str) -> None:
    if not agent_available():
        pytest.skip(
            "felis agent not available yet (`python -m felis agent --help` or its import fails)"
        )
    original = read_conntrack_max()
    # Server namespace named like the node, as in the demo (unique client and run dir).
    cfg = config(tmp_path)
    cfg = LabConfig(server_netns=cfg.server_netns, client_netns=cfg.client_netns,
                    node_name="memcached-node-1", run_dir=cfg.run_dir)  # fmt: skip
    # No chart: test_orchestration_with_stand_in_firewall draws one (matplotlib costs seconds).
    opts = RunOptions(phase_seconds=5, conntrack_max=4096, results=tmp_path / "res",
                      backend=backend, config=cfg, chart=False)  # fmt: skip
    run_lab(opts)
    assert read_conntrack_max() == original
    assert not ({cfg.server_netns, cfg.client_netns} & netns_names())
    doc = json.loads((tmp_path / "res" / "results.json").read_text())
    st, dnt = doc["stateful"], doc["donottrack"]
    assert st["connections_failed"] > 0
    assert st["conntrack_peak"] == st["conntrack_max"] == 4096
    assert st["kernel_drops"] > 0
    assert dnt["connections_failed"] == 0
    assert dnt["entries_12211_end"] == 0
    assert dnt["conn_per_s"] >= st["conn_per_s"]
    assert dnt["leftover_rules"] == 0 and doc["baseline"]["leftover_rules"] == 0
    restored = doc["meta"]["restored"]
    assert doc["meta"]["conntrack_max_original"] == restored["conntrack_max_now"] == original
    assert restored["namespaces_left"] == []
    ok, _, marks = verdict(doc)
    assert ok, marks


REFERENCE_PHASES = ["handwritten", "donottrack", "baseline"]
RATIOS = {"donottrack/handwritten", "donottrack/baseline", "handwritten/baseline"}


def root_ruleset() -> str:
    """The root namespace's ruleset, read only: the lab must never have written to it."""
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True,
                          check=False).stdout  # fmt: skip


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_rounds_against_the_handwritten_reference(tmp_path: Path, backend: str) -> None:
    if not agent_available():
        pytest.skip(
            "felis agent not available yet (`python -m felis agent --help` or its import fails)"
        )
    original = read_conntrack_max()
    cfg = config(tmp_path)
    # A small table: anything the hand-written rules failed to keep untracked would fill it.
    # No chart: the unit tests draw it, and matplotlib would add seconds to each run.
    opts = RunOptions(phase_seconds=2, rounds=2, conntrack_max=4096, results=tmp_path / "res",
                      backend=backend, phases=REFERENCE_PHASES, config=cfg,
                      chart=False)  # fmt: skip
    run_lab(opts)
    assert read_conntrack_max() == original
    assert not ({cfg.server_netns, cfg.client_netns} & netns_names())
    assert not cfg.state_file.exists()
    assert "felis-handwritten" not in root_ruleset() and "hand-INPUT" not in root_ruleset()
    doc = json.loads((tmp_path / "res" / "results.json").read_text())
    assert doc["meta"]["client_ports"] == "1024-65535" and doc["meta"]["rounds"] == 2
    assert doc["meta"]["restored"]["namespaces_left"] == []
    rounds = doc["rounds"]
    assert rounds["count"] == 2
    assert [r["order"] for r in rounds["per_round"]] == [
        REFERENCE_PHASES,
        ["donottrack", "baseline", "handwritten"],
    ]
    for r in rounds["per_round"]:
        hand = r["phases"]["handwritten"]
        assert hand["backend"] == backend
        assert hand["connections_ok"] > 0
        assert hand["connections_failed"] == 0
        assert hand["entries_12211_end"] == 0 and hand["conntrack_peak"] == 0
        # Each phase starts from an empty ruleset: every removal, hand-written too, was complete.
        assert all(p["leftover_rules"] == 0 for p in r["phases"].values())
        assert all(p["cpu_us_per_conn"] > 0 for p in r["phases"].values())
        assert set(r["ratios"]) == RATIOS
        conn = {name: p["conn_per_s"] for name, p in r["phases"].items()}
        assert r["ratios"]["donottrack/handwritten"] == round(
            conn["donottrack"] / conn["handwritten"], 3
        )
    medians = rounds["median"]["ratios"]
    assert set(medians) == RATIOS
    for key in RATIOS:
        values = [r["ratios"][key] for r in rounds["per_round"]]
        assert medians[key] == pytest.approx(sum(values) / 2, abs=1e-3)
    assert doc["handwritten"]["connections_failed"] == 0


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_handwritten_leftovers_are_caught(tmp_path: Path, backend: str) -> None:
    """A hand-written ruleset whose removal never ran is counted and flushed before the next
    phase (and `felis lab down` deletes the namespace with whatever is in it)."""
    cfg = config(tmp_path)
    subprocess.run(["ip", "netns", "add", cfg.server_netns], check=True)
    try:
        fw = Firewall(cfg, backend, cfg.run_dir)
        fw.program("handwritten")
        assert fw.leftovers() == (9 if backend == "nftables" else 13)
        fw.handwritten.programmed = False  # as after a crash: nothing will remove it
        fw.cleanup()
        assert fw.flush_leftovers() > 0
        listed = subprocess.run(
            ["ip", "netns", "exec", cfg.server_netns, "nft", "list", "ruleset"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert listed.strip() == ""
        assert fw.flush_leftovers() == 0
    finally:
        subprocess.run(["ip", "netns", "delete", cfg.server_netns], check=False)
    assert cfg.server_netns not in netns_names()


# Stands in for `felis apply` + `felis agent` in the flood phase: attaches felis' XDP program
# with the blocklist the real agent derives from the flood manifests (the unit tests check that
# derivation; tests/kernel/test_xdp.py the agent's attach), without the seconds two felis starts
# would add to the suite.
FLOOD_STAND_IN = r"""
import shutil, sys
from pathlib import Path
from felis.xdp.attach import XdpDataplane
from felis.xdp.maps import Blocklist
args = sys.argv[1:]
def opt(name):
    return args[args.index(name) + 1]
xdp = XdpDataplane(obj=Path(sys.argv[0]).with_name("blocklist.o"))
if args[0] == "apply":
    shutil.copy(opt("-f"), opt("--datastore").removeprefix("sqlite://"))
elif "--cleanup" in args:
    for iface in xdp.interfaces():
        xdp.detach(iface)
else:
    assert "dos-deny-list" in open(opt("--datastore").removeprefix("sqlite://")).read()
    nets = frozenset({"198.19.0.0/16"})
    xdp.sync(xdp.attach("eth0"), Blocklist(nets, frozenset({("tcp", 22)})))
"""


def flooders_running(binary: Path) -> list[int]:
    """PIDs of processes running the flooder binary."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "exe") == str(binary):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_flood_phase_drops_the_flood_in_xdp(tmp_path: Path) -> None:
    """The flood phase, shortened: every frame of the SYN flood from blocklisted sources that
    reached the server is counted as dropped by felis' XDP program, while the clients'
    connections complete, and nothing is left behind."""
    if any(shutil.which(tool) is None for tool in ("clang", "bpftool", "ethtool")):
        pytest.skip("needs clang, bpftool and ethtool (scripts/bootstrap.sh installs them)")
    stand_in = tmp_path / "standin.py"
    stand_in.write_text(FLOOD_STAND_IN)
    shutil.copy(xdp_build(), tmp_path / "blocklist.o")
    cfg = config(tmp_path)
    opts = RunOptions(phase_seconds=1, results=tmp_path / "res", phases=["flood-xdp"],
                      config=cfg, chart=False, flood_rate=20_000,
                      felis=[sys.executable, str(stand_in)])  # fmt: skip
    doc = run_lab(opts)
    phase = doc["flood-xdp"]
    fl = phase["flood"]
    assert fl["xdp_mode"] in ("native", "generic") and fl["via"] == "driver"
    # Driver frames reach the server end's XDP program and nothing else: each one taken is
    # counted there as dropped, and nothing else is.
    assert 0 < fl["xdp_dropped"] == fl["sent"] <= fl["generated"]
    assert phase["connections_ok"] > 0 and phase["connections_failed"] == 0
    assert phase["leftover_rules"] == 0
    assert doc["meta"]["restored"]["namespaces_left"] == []
    assert not ({cfg.server_netns, cfg.client_netns} & netns_names())
    assert flooders_running(flood.binary_path()) == []
