"""FelixConfiguration through the command line: a Calico bundle holding one applies, `felis get`
shows it, bad ones name their field, and render/plan/trace use the node's settings with the
documented precedence (felis options, FELIX_ environment, node object, default object)."""

from __future__ import annotations

import json

import pytest
from cli_helpers import NODE, SEED, Felis, write

FELIX = f"""apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: default
spec:
  failsafeInboundHostPorts:
    - protocol: TCP
      port: 22
    - protocol: UDP
      port: 68
  failsafeOutboundHostPorts: []
  logSeverityScreen: Info
  reportingInterval: 0s
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: node.{NODE}
spec:
  failsafeInboundHostPorts:
    - port: 2222
"""


@pytest.fixture(autouse=True)
def _no_felix_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith(("FELIX_", "FELIS_FAILSAFE")):
            monkeypatch.delenv(name)


def test_a_calico_bundle_with_felix_configuration_applies(felis: Felis, tmp_path: object) -> None:
    bundle = SEED.read_text() + "---\n" + FELIX
    path = write(tmp_path, "bundle.yaml", bundle)  # type: ignore[arg-type]
    applied = felis("apply", "-f", path)
    assert applied.code == 0, applied.err
    assert "Successfully applied" in applied.out
    listed = felis("get", "felixconfig")
    assert listed.out_lines == ["NAME", "default", f"node.{NODE}"]
    wide = felis("get", "felixconfigurations", "-o", "wide")
    assert wide.out_lines[0].split() == ["NAME", "SCOPE", "FAILSAFEINBOUND", "FAILSAFEOUTBOUND"]
    assert wide.out_lines[1].split() == ["default", "all", "nodes", "tcp:22,udp:68", "none"]
    assert wide.out_lines[2].split() == [f"node.{NODE}", "node", NODE, "tcp:2222"]
    stored = json.loads(felis("get", "felixconfiguration", "default", "-o", "json").out)
    assert stored["spec"]["logSeverityScreen"] == "Info", "other fields are kept as written"
    assert stored["spec"]["failsafeOutboundHostPorts"] == []
    # The same bundle again changes nothing.
    again = felis("apply", "-f", path)
    assert again.code == 0 and "unchanged" in again.out


def test_a_bad_felix_configuration_names_document_and_field(felis: Felis, tmp_path: object) -> None:
    bad = FELIX.replace("port: 2222", "port: 2222\n      protocol: ICMP")
    path = write(tmp_path, "bad.yaml", bad)  # type: ignore[arg-type]
    result = felis("apply", "-f", path)
    assert result.code == 1
    assert result.err_lines[0] == (
        f"{path}: document 2 (FelixConfiguration node.{NODE}): "
        "spec.failsafeInboundHostPorts[0].protocol: unsupported protocol 'ICMP': must be TCP, "
        "UDP or SCTP"
    )
    listed = felis("get", "felixconfig")
    assert "node." not in listed.out and "default" not in listed.out, "nothing was written"


def _failsafe_lines(text: str) -> list[str]:
    return [
        line
        for line in text.splitlines()
        if line.startswith("add rule ip felis filter-felis-failsafe-in ")
    ]


def test_render_uses_the_node_object_then_environment_then_options(
    felis: Felis, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert felis("apply", "-f", str(SEED)).code == 0
    path = write(tmp_path, "felix.yaml", FELIX)  # type: ignore[arg-type]
    assert felis("apply", "-f", path).code == 0

    def rendered() -> list[str]:
        result = felis("render", "--node", NODE, "--family", "4")
        assert result.code == 0, result.err
        return _failsafe_lines(result.out)

    [node_line] = rendered()
    assert "tcp dport { 2222 }" in node_line
    monkeypatch.setenv("FELIX_FAILSAFEINBOUNDHOSTPORTS", "tcp:10.0.0.0/8:443")
    [env_line] = rendered()
    assert "ip saddr 10.0.0.0/8" in env_line and "{ 443 }" in env_line
    monkeypatch.setenv("FELIS_FAILSAFE_INBOUND_HOST_PORTS", "udp:53")
    [option_line] = rendered()
    assert "udp dport { 53 }" in option_line
    flag = felis("render", "--node", NODE, "--failsafe-inbound", "none", "--family", "4")
    assert _failsafe_lines(flag.out) == []


def test_a_bad_environment_value_is_one_warning_line(
    felis: Felis, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert felis("apply", "-f", str(SEED)).code == 0
    monkeypatch.setenv("FELIX_IPTABLESMARKMASK", "0x3")
    result = felis("render", "--node", NODE, "--backend", "iptables")
    assert result.code == 0
    assert result.err_lines == [
        "# warning: environment FELIX_IPTABLESMARKMASK (iptablesMarkMask): mark mask 0x3 has "
        "2 bit(s) set: felis needs at least 5 (accept, pass, drop and two scratch bits); ignored"
    ]
    assert "0x1b000000" in result.out, "the built-in mask is used"
    traced = felis(
        "trace",
        "--node",
        NODE,
        "--src",
        "10.128.0.50:40000",
        "--dst",
        "10.128.0.162:22",
        "--proto",
        "tcp",
        "-o",
        "json",
    )
    assert traced.code == 0
    assert any("FELIX_IPTABLESMARKMASK" in w for w in json.loads(traced.out)["warnings"])


def test_plan_shows_a_failsafe_change(felis: Felis, tmp_path: object) -> None:
    assert felis("apply", "-f", str(SEED)).code == 0
    path = write(tmp_path, "felix.yaml", FELIX)  # type: ignore[arg-type]
    planned = felis("plan", "-f", path, "--node", NODE, "-o", "json")
    assert planned.code == 3, planned.err
    report = json.loads(planned.out)
    text = json.dumps(report["delta"])
    assert "failsafe in tcp:2222" in text
    assert "FelixConfiguration" in json.dumps(report["resources"])
