"""Each lint check fires on the pitfall it names, stays quiet on the seed, and its suggested
fix, applied, makes the finding go away."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from felis.calc import CalcConfig, parse_failsafe_ports
from felis.lint import NOTE, WARNING, Finding, lint
from felis.model import Resource, from_dict, load_documents, to_dict

SEED_TEXT = (Path(__file__).parents[3] / "examples" / "memcached-seed.yaml").read_text()

CLIENT = """
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: client-1-eth0, labels: {memcached: client}}
spec: {interfaceName: eth0, node: client-1, expectedIPs: [198.18.0.2]}
"""


def docs(*texts: str) -> list[Resource]:
    joined = "\n---\n".join(textwrap.dedent(t).strip() for t in texts)
    return load_documents(joined.encode(), "test.yaml")


def codes(findings: list[Finding], severity: str | None = None) -> list[str]:
    return [f.code for f in findings if severity is None or f.severity == severity]


def only(findings: list[Finding], code: str) -> Finding:
    found = [f for f in findings if f.code == code]
    assert len(found) == 1, found
    return found[0]


def apply_fix(resources: list[Resource], finding: Finding) -> list[Resource]:
    """Apply an `add to gnp/P spec.DIR:` fix the way a user would paste it."""
    head, _, body = finding.fix.partition("\n")
    assert head.startswith("add to gnp/"), finding.fix
    policy, field_path = head[len("add to gnp/") :].rstrip(":").split(" ")[:2]
    direction = field_path.split(".")[1]
    rules: list[Any] = yaml.safe_load(body)
    out = []
    for resource in resources:
        obj = to_dict(resource)
        if resource.kind == "GlobalNetworkPolicy" and resource.metadata.name == policy:
            obj["spec"].setdefault(direction, []).extend(rules)
            if "to spec.types" in head:
                obj["spec"]["types"].append(direction.capitalize())
        out.append(from_dict(obj, "fixed"))
    return out


def seed_without(direction: str) -> str:
    if direction == "egress":
        return SEED_TEXT.split("  egress:")[0]
    head, _, egress = SEED_TEXT.partition("  egress:")
    return head.split("  ingress:")[0] + "  egress:" + egress


# ---------------------------------------------------------------------------------------------


def test_seed_alone_has_only_notes() -> None:
    findings = lint(docs(SEED_TEXT), complete=False)
    assert codes(findings, WARNING) == []
    assert sorted(set(codes(findings))) == ["FL003", "FL004", "FL006"]
    dns = only(findings, "FL003")
    assert dns.endpoints == ("memcached-node-1-eth0",) and "TCP" in dns.message


def test_seed_with_its_clients_is_clean_apart_from_advice() -> None:
    findings = lint(docs(SEED_TEXT, CLIENT), complete=True)
    assert codes(findings, WARNING) == []
    assert sorted(codes(findings)) == ["FL003", "FL004"]


def test_missing_egress_return_path() -> None:
    resources = docs(seed_without("egress"), CLIENT)
    finding = only(lint(resources), "FL001")
    assert finding.severity == WARNING
    assert finding.where == "gnp/memcached-server ingress rule 0"
    assert finding.endpoints == ("memcached-node-1-eth0",)
    assert "no untracked egress rule for the replies" in finding.message
    assert yaml.safe_load(finding.fix.partition("\n")[2]) == [
        {
            "action": "Allow",
            "protocol": "TCP",
            "source": {"ports": [12211]},
            "destination": {"selector": "memcached == 'client'"},
        }
    ]
    assert "FL001" not in codes(lint(apply_fix(resources, finding)))


def test_orphan_untracked_egress_rule() -> None:
    resources = docs(seed_without("ingress"), CLIENT)
    finding = only(lint(resources), "FL001")
    assert finding.where == "gnp/memcached-server egress rule 0"
    assert "half-tracked" in finding.message
    assert "FL001" not in codes(lint(apply_fix(resources, finding)))


CLIENT_FLOW = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: cache-client}
spec:
  selector: memcached == 'server'
  doNotTrack: true
  applyOnForward: true
  egress:
    - action: Allow
      protocol: TCP
      destination:
        nets: [10.9.0.0/16]
        ports: [6379]
"""


def test_host_client_flow_without_reply_rule() -> None:
    resources = docs(SEED_TEXT, CLIENT, CLIENT_FLOW)
    finding = only(lint(resources), "FL002")
    assert finding.where == "gnp/cache-client egress rule 0"
    assert "ephemeral port" in finding.message
    assert yaml.safe_load(finding.fix.partition("\n")[2]) == [
        {"action": "Allow", "protocol": "TCP", "source": {"nets": ["10.9.0.0/16"], "ports": [6379]}}
    ]
    assert "FL002" not in codes(lint(apply_fix(resources, finding)))


def test_reply_allowed_only_by_tracked_policy_is_half_tracked() -> None:
    normal_egress = """
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata: {name: replies}
        spec:
          selector: memcached == 'server'
          egress:
            - action: Allow
              protocol: TCP
              source: {ports: [12211]}
    """
    findings = lint(docs(seed_without("egress"), CLIENT, normal_egress))
    assert "FL001" not in codes(findings)
    finding = only(findings, "FL008")
    assert finding.where == "gnp/memcached-server ingress rule 0"
    assert "half-tracked" in finding.message


def test_untracked_tcp_dns_needs_untracked_replies() -> None:
    dns = """\
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata: {name: dns}
        spec:
          selector: memcached == 'server'
          doNotTrack: true
          applyOnForward: true
          egress:
            - action: Allow
              protocol: TCP
              destination: {ports: [53]}
    """
    dns = textwrap.dedent(dns)
    resources = docs(SEED_TEXT, CLIENT, dns)
    findings = lint(resources)
    dns_findings = [f for f in findings if f.code == "FL003"]
    assert [f.severity for f in dns_findings] == [WARNING]
    assert "replies from port 53" in dns_findings[0].message
    body = yaml.safe_load(dns_findings[0].fix.partition("\n")[2])
    assert body == [{"action": "Allow", "protocol": "TCP", "source": {"ports": [53]}}]
    fixed = docs(
        SEED_TEXT,
        CLIENT,
        dns + "  ingress:\n" + textwrap.indent(yaml.safe_dump(body), "    "),
    )
    assert [f for f in lint(fixed) if f.code == "FL003"] == []


def test_udp_dns_depends_on_the_failsafe_port() -> None:
    without_dns_failsafe = CalcConfig(failsafe_outbound=parse_failsafe_ports("tcp:22"))
    findings = lint(docs(SEED_TEXT, CLIENT), without_dns_failsafe)
    dns = sorted(f.message for f in findings if f.code == "FL003")
    assert len(dns) == 2 and "UDP" in dns[1] and "TCP" in dns[0]


def test_tracked_dns_allowed_by_profile_is_fine() -> None:
    hep_with_profile = SEED_TEXT.replace(
        "  expectedIPs:", "  profiles: [projectcalico-default-allow]\n  expectedIPs:"
    )
    assert "FL003" not in codes(lint(docs(hep_with_profile, CLIENT)))


def test_icmp_errors_note_and_fix() -> None:
    resources = docs(SEED_TEXT, CLIENT)
    finding = only(lint(resources), "FL004")
    assert finding.severity == NOTE
    assert "type 3 code 4" in finding.message and "packet too big" in finding.message
    assert "&id" not in finding.fix, "no YAML anchors in a fix meant for pasting"
    assert "FL004" not in codes(lint(apply_fix(resources, finding)))


def test_donottrack_on_all_interfaces_endpoint() -> None:
    star = """
        apiVersion: projectcalico.org/v3
        kind: HostEndpoint
        metadata: {name: all-ifaces, labels: {memcached: server}}
        spec: {interfaceName: "*", node: memcached-node-1}
    """
    finding = only(lint(docs(SEED_TEXT, CLIENT, star)), "FL005")
    assert finding.severity == WARNING and finding.endpoints == ("all-ifaces",)


def test_selects_nothing() -> None:
    nothing = """
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata: {name: ghost}
        spec:
          selector: role == 'nobody'
          ingress:
            - action: Allow
              source: {notSelector: team == 'none'}
            - action: Allow
              source: {services: {name: kube-dns, namespace: kube-system}}
    """
    findings = [f for f in lint(docs(SEED_TEXT, CLIENT, nothing)) if f.policy == "ghost"]
    assert all(f.code == "FL006" and f.severity == WARNING for f in findings)
    messages = {f.where: f.message for f in findings}
    assert "selects no HostEndpoint" in messages["gnp/ghost"]
    assert "it excludes nothing" in messages["gnp/ghost ingress rule 0"]
    assert "never matches host traffic" in messages["gnp/ghost ingress rule 1"]
    # In a manifest alone, the datastore may hold what matches: advice only.
    alone = lint(docs(nothing), complete=False)
    assert {f.severity for f in alone if f.code == "FL006" and f.rule is None} == {NOTE}


def test_namespace_selectors_are_judged_as_translated() -> None:
    ns = """
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata: {name: ns}
        spec:
          namespaceSelector: "!has(team)"
          ingress:
            - action: Deny
              source: {namespaceSelector: "!has(team)"}
            - action: Deny
              source: {namespaceSelector: "team == 'a'"}
    """
    findings = [f for f in lint(docs(SEED_TEXT, CLIENT, ns)) if f.policy == "ns"]
    # The negations match the HostEndpoints (the policy selects them, rule 0's set holds them).
    assert [(f.where, f.message.split(" matches")[0]) for f in findings] == [
        ("gnp/ns ingress rule 1", 'source.selector pcns.team == "a"')
    ]


def test_selector_matching_only_endpoints_without_addresses() -> None:
    no_ips = CLIENT.replace(", expectedIPs: [198.18.0.2]", "")
    finding = next(f for f in lint(docs(SEED_TEXT, no_ips)) if f.code == "FL006")
    assert "client-1-eth0 match but have no expectedIPs" in finding.message


@pytest.mark.parametrize(("action", "severity"), [("Deny", WARNING), ("Allow", NOTE)])
def test_failsafe_overlap(action: str, severity: str) -> None:
    ssh = f"""
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata: {{name: ssh}}
        spec:
          selector: memcached == 'server'
          ingress:
            - action: {action}
              protocol: TCP
              destination: {{ports: [22, 8080]}}
    """
    finding = only(lint(docs(SEED_TEXT, CLIENT, ssh)), "FL007")
    assert finding.severity == severity and "local tcp:22" in finding.message
    no_failsafe = CalcConfig(failsafe_inbound=())
    assert "FL007" not in codes(lint(docs(SEED_TEXT, CLIENT, ssh), no_failsafe))


def test_an_sctp_failsafe_port_is_checked_like_tcp_and_udp() -> None:
    sctp = """
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata: {name: sctp}
        spec:
          selector: memcached == 'server'
          ingress:
            - action: Deny
              protocol: SCTP
              destination: {ports: [3868]}
    """
    config = CalcConfig(failsafe_inbound=parse_failsafe_ports("tcp:22,sctp:3868"))
    finding = only(lint(docs(SEED_TEXT, CLIENT, sctp), config), "FL007")
    assert "local sctp:3868" in finding.message


def test_untracked_allow_overlapping_failsafe_is_a_note_about_tracking() -> None:
    etcd = SEED_TEXT.replace("- 12211", "- 2379")
    found = {f.where: f for f in lint(docs(etcd, CLIENT)) if f.code == "FL007"}
    assert sorted(found) == [
        "gnp/memcached-server egress rule 0",
        "gnp/memcached-server ingress rule 0",
    ]
    # The egress rule's local port 2379 is matched by raw's reply variant of failsafe-in.
    assert "local tcp:2379" in found["gnp/memcached-server egress rule 0"].message
    for finding in found.values():
        assert finding.severity == NOTE
        assert "this untracked Allow decides that traffic" in finding.message


def test_untracked_deny_overlapping_failsafe_is_a_warning() -> None:
    deny = SEED_TEXT.replace("action: Allow", "action: Deny").replace("- 12211", "- 22")
    found = {f.where: f for f in lint(docs(deny, CLIENT)) if f.code == "FL007"}
    assert found["gnp/memcached-server ingress rule 0"].severity == WARNING
    assert "cannot deny" in found["gnp/memcached-server ingress rule 0"].message


def test_no_ephemeral_port_note_any_more() -> None:
    # Raw failsafe rules no longer take untracked flows, whatever the clients' port range.
    assert "FL009" not in codes(lint(docs(SEED_TEXT, CLIENT)))


def test_findings_print_and_serialise() -> None:
    finding = only(lint(docs(seed_without("egress"), CLIENT)), "FL001")
    text = finding.text()
    assert text.startswith("warning FL001 gnp/memcached-server ingress rule 0: ")
    assert (
        "\n  fix: add to gnp/memcached-server spec.egress (and Egress to spec.types):\n"
        "    - action: Allow" in text
    )
    data = finding.to_json()
    assert data["name"] == "missing-return-path" and data["rule"] == "ingress rule 0"


def test_unknown_profile_is_named_once_and_known_ones_are_quiet() -> None:
    hep_text = """
    apiVersion: projectcalico.org/v3
    kind: HostEndpoint
    metadata: {name: web-eth0}
    spec: {interfaceName: eth0, node: web-1, profiles: [projectcalico-default-allow, web, ghost]}
    """
    profile_text = """
    apiVersion: projectcalico.org/v3
    kind: Profile
    metadata: {name: web}
    spec: {labelsToApply: {role: web}}
    """
    finding = only(lint(docs(hep_text, profile_text)), "FL010")
    assert finding.severity == WARNING
    assert finding.endpoints == ("web-eth0",)
    assert "'ghost'" in finding.message and "'web'" not in finding.message
    # Only a manifest: the profile may already be stored, so it is advice.
    alone = only(lint(docs(hep_text), complete=False), "FL010")
    assert alone.severity == NOTE
    assert "'web', 'ghost'" in alone.message
