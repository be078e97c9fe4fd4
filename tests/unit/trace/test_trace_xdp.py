"""The XDP step of felis.trace: drops before raw for blocklisted sources, failsafe ports and
other sources pass on to the chains, and the verdict never differs from the raw table's."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from felis.calc import CalcConfig, CalcResult, HostInterface, compute
from felis.cli.trace import register
from felis.datastore import open_datastore
from felis.model import load_documents, to_dict
from felis.trace import Direction, Packet, Tracking, Verdict, trace
from felis.trace.xdp import XdpPrograms, decide, longest_match

NODE = "n1"
SERVER, BLOCKED, OTHER = "198.18.0.1", "198.18.0.2", "198.18.0.3"
DOCS = f"""
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {{name: n1-eth0, labels: {{role: server}}}}
spec: {{interfaceName: eth0, node: {NODE}, expectedIPs: [{SERVER}, "2001:db8::1"]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {{name: blocked, labels: {{list: block}}}}
spec: {{nets: [{BLOCKED}/32, 198.18.9.0/24, "2001:db8:bad::/48"]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: blocklist}}
spec:
  selector: role == 'server'
  order: 1
  doNotTrack: true
  applyOnForward: true
  ingress:
    - action: Deny
      source: {{selector: "list == 'block'"}}
    - action: Deny
      source: {{nets: [198.18.0.0/16]}}
      destination: {{ports: [9999]}}
      protocol: TCP
    - action: Deny
      source: {{nets: [198.18.128.0/17]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: allow-all}}
spec:
  selector: role == 'server'
  order: 10
  ingress: [{{action: Allow}}]
  egress: [{{action: Allow}}]
"""


def calc(config: CalcConfig | None = None) -> CalcResult:
    resources = load_documents(DOCS.encode(), "test")
    interfaces = [HostInterface("eth0", (f"{SERVER}/24", "2001:db8::1/64")), HostInterface("eth1")]
    return compute(resources, NODE, interfaces, config or CalcConfig())


@pytest.fixture(scope="module")
def result() -> CalcResult:
    return calc()


@pytest.fixture(scope="module")
def programs(result: CalcResult) -> XdpPrograms:
    return XdpPrograms.of(result.xdp, CalcConfig().failsafe_inbound)


def packet(src: str, dport: int = 8080, proto: int = 6, **kw: Any) -> Packet:
    kw.setdefault("in_iface", "eth0")
    dst = "2001:db8::1" if ":" in src else SERVER
    if proto in (6, 17, 132):
        return Packet(src, dst, proto, sport=40000, dport=dport, **kw)
    return Packet(src, dst, proto, icmp_type=8 if proto == 1 else 128, **kw)


def test_the_calc_puts_the_source_only_denies_in_xdp(result: CalcResult) -> None:
    # Rule 1 (a port) is stepped over; rule 2 follows only Denies, so it joins.
    assert result.xdp == {
        "eth0": frozenset(
            {f"{BLOCKED}/32", "198.18.9.0/24", "2001:db8:bad::/48", "198.18.128.0/17"}
        )
    }


@pytest.mark.parametrize(
    ("src", "entry", "rule"),
    [
        (BLOCKED, f"{BLOCKED}/32", "gnp/blocklist ingress rule 0"),
        ("198.18.9.77", "198.18.9.0/24", "gnp/blocklist ingress rule 0"),
        ("198.18.200.1", "198.18.128.0/17", "gnp/blocklist ingress rule 2"),
        ("2001:db8:bad::5", "2001:db8:bad::/48", "gnp/blocklist ingress rule 0"),
    ],
)
def test_a_blocklisted_source_is_dropped_at_xdp_naming_its_rule(
    result: CalcResult, programs: XdpPrograms, src: str, entry: str, rule: str
) -> None:
    outcome = trace(result.spec, packet(src), programs)
    assert outcome.summary() == f"DROP at XDP by {rule}"
    assert outcome.tracking is Tracking.AT_XDP
    # Nothing after XDP ran: no raw rule, no conntrack.
    (step,) = outcome.steps
    assert (step.table, step.chain, step.match, step.action) == (
        "xdp",
        "eth0",
        f"saddr {entry}",
        "DROP",
    )
    assert outcome.to_dict()["tracked"] is None
    # Without XDP the raw table drops it, credited to the same rule.
    raw = trace(result.spec, packet(src))
    assert raw.summary() == f"DROP before conntrack by {rule}"


def test_a_failsafe_port_passes_xdp_from_a_blocklisted_source(
    result: CalcResult, programs: XdpPrograms
) -> None:
    outcome = trace(result.spec, packet(BLOCKED, 22), programs)
    assert outcome.steps[0].table == "xdp"
    assert outcome.steps[0].action.startswith("pass (failsafe port tcp:22)")
    assert outcome.steps[1].table == "raw"
    assert outcome.summary() == trace(result.spec, packet(BLOCKED, 22)).summary()
    assert outcome.verdict is Verdict.ACCEPT
    # The program reads ports by protocol: UDP 22 is no failsafe port, ICMP has none.
    assert trace(result.spec, packet(BLOCKED, 22, 17), programs).tracking is Tracking.AT_XDP
    assert trace(result.spec, packet(BLOCKED, proto=1), programs).tracking is Tracking.AT_XDP


def test_other_sources_pass_xdp_and_walk_on(result: CalcResult, programs: XdpPrograms) -> None:
    outcome = trace(result.spec, packet(OTHER), programs)
    assert outcome.steps[0].action == "pass (source not blocklisted)"
    assert outcome.summary() == trace(result.spec, packet(OTHER)).summary()
    assert outcome.verdict is Verdict.ACCEPT and outcome.tracked


def test_xdp_sees_arriving_packets_only(result: CalcResult, programs: XdpPrograms) -> None:
    sent = packet(SERVER, in_iface=None, out_iface="eth0", direction=Direction.EGRESS)
    sent = dataclasses.replace(sent, dst=BLOCKED)
    assert not any(s.table == "xdp" for s in trace(result.spec, sent, programs).steps)
    # A forwarded packet arrives too.
    forward = dataclasses.replace(
        packet(BLOCKED), dst="198.18.2.2", direction=Direction.FORWARD, out_iface="eth2"
    )
    assert trace(result.spec, forward, programs).tracking is Tracking.AT_XDP
    # An interface without a program: no XDP step at all.
    other_iface = packet(BLOCKED, in_iface="eth1")
    assert not any(s.table == "xdp" for s in trace(result.spec, other_iface, programs).steps)


def test_xdp_never_changes_a_verdict(result: CalcResult, programs: XdpPrograms) -> None:
    sources = [BLOCKED, OTHER, "198.18.9.1", "198.18.200.9", "198.19.0.1"]
    for src in sources:
        for dport in (22, 179, 8080, 9999):
            for proto in (6, 17):
                with_xdp = trace(result.spec, packet(src, dport, proto), programs)
                without = trace(result.spec, packet(src, dport, proto))
                assert with_xdp.verdict is without.verdict, (src, dport, proto)
                if with_xdp.tracking is Tracking.AT_XDP:
                    assert without.tracking is Tracking.BEFORE_CONNTRACK
                    assert with_xdp.decided_by == without.decided_by
                else:
                    assert with_xdp.summary() == without.summary()


def test_xdp_disabled_leaves_nothing_for_the_trace() -> None:
    off = calc(dataclasses.replace(CalcConfig(), xdp_enabled=False))
    assert off.xdp == {}
    programs = XdpPrograms.of(off.xdp, CalcConfig().failsafe_inbound)
    assert trace(off.spec, packet(BLOCKED), programs).tracking is Tracking.BEFORE_CONNTRACK


def test_longest_prefix_wins() -> None:
    nets = ["198.18.0.0/15", "198.18.0.0/24", "198.18.0.2/32", "2001:db8::/32"]
    assert longest_match(nets, "198.18.0.2") == "198.18.0.2/32"
    assert longest_match(nets, "198.18.0.9") == "198.18.0.0/24"
    assert longest_match(nets, "198.19.1.1") == "198.18.0.0/15"
    assert longest_match(nets, "10.0.0.1") is None
    programs = XdpPrograms({"eth0": frozenset(nets)}, frozenset({(6, 22)}))
    decision = decide(programs, packet(BLOCKED, 22))
    assert decision is not None and not decision.dropped and decision.listed == f"{BLOCKED}/32"


FELIX_NO_XDP = """
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {xdpEnabled: false}
"""


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    monkeypatch.delenv("FELIX_XDPENABLED", raising=False)
    app = typer.Typer()
    register(app)
    app.command("version")(lambda: None)

    def run(*args: str, extra: str = "") -> str:
        url = f"sqlite:///{tmp_path}/felis-{len(extra)}.db"
        store = open_datastore(url)
        store.ensure_initialized()
        text = DOCS + (f"---\n{extra}" if extra else "")
        store.apply([to_dict(r) for r in load_documents(text.encode(), "t")])
        store.close()
        argv = ["trace", "--node", NODE, "--datastore", url, "--dst", f"{SERVER}:8080"]
        result = CliRunner().invoke(app, [*argv, "--proto", "tcp", *args])
        assert result.exit_code == 0, result.stdout
        return result.stdout

    return run


def test_cli_shows_the_xdp_drop_and_honours_the_switches(cli: Callable[..., str]) -> None:
    out = cli("--src", BLOCKED)
    lines = out.strip().splitlines()
    assert lines[-1] == "DROP at XDP by gnp/blocklist ingress rule 0"
    assert (
        lines[-2].strip() == f"xdp eth0: saddr {BLOCKED}/32 -> DROP  # gnp/blocklist ingress rule 0"
    )
    assert "assumed: XDP: felis' program is attached to eth0" in out
    data = json.loads(cli("--src", BLOCKED, "-o", "json"))
    assert data["tracking"] == "at XDP" and data["tracked"] is None
    assert data["steps"][0]["kernel_chain"] == "eth0"
    # --no-xdp, or xdpEnabled: false, as the agent: the raw table drops it.
    expected = "DROP before conntrack by gnp/blocklist ingress rule 0"
    assert cli("--src", BLOCKED, "--no-xdp").strip().splitlines()[-1] == expected
    no_xdp = cli("--src", BLOCKED, extra=FELIX_NO_XDP)
    assert no_xdp.strip().splitlines()[-1] == expected
    assert "xdp eth0" not in no_xdp and "assumed: XDP" not in no_xdp
    # A source not listed passes XDP and walks on.
    passed = cli("--src", OTHER)
    assert "xdp eth0: pass (source not blocklisted)" in passed
    assert passed.strip().splitlines()[-1].startswith("ACCEPT tracked")
