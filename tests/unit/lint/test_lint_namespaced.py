"""FL011: one note for the kinds Calico never applies to a host endpoint; NetworkSets count as
peers for rule selectors that reach namespaced objects."""

from __future__ import annotations

import textwrap

from felis.lint import NOTE, Finding, lint
from felis.model import Resource, load_documents

HEP = """
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: server-eth0, labels: {role: server}}
spec: {interfaceName: eth0, node: node-1, expectedIPs: [198.18.0.1]}
"""

FROM_NAMESPACED_CLIENTS = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: from-clients}
spec:
  selector: role == 'server'
  ingress:
    - action: Allow
      protocol: TCP
      source: {namespaceSelector: all(), selector: role == 'client'}
"""

NETSET = """
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: clients, namespace: team-a, labels: {role: client}}
spec: {nets: [198.18.0.2/32]}
"""


def docs(*texts: str) -> list[Resource]:
    joined = "\n---\n".join(textwrap.dedent(t).strip() for t in texts)
    return load_documents(joined.encode(), "test.yaml")


def fl011(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.code == "FL011"]


def _policy(kind: str, name: str, namespace: str = "") -> str:
    where = f", namespace: {namespace}" if namespace else ""
    return f"""
    apiVersion: projectcalico.org/v3
    kind: {kind}
    metadata: {{name: {name}{where}}}
    spec: {{selector: all()}}
    """


def test_one_note_counts_every_kind_without_host_effect() -> None:
    resources = docs(
        HEP,
        _policy("NetworkPolicy", "a", "team-a"),
        _policy("NetworkPolicy", "a", "team-b"),
        _policy("StagedGlobalNetworkPolicy", "b"),
        _policy("StagedNetworkPolicy", "c", "team-a"),
        """
        apiVersion: projectcalico.org/v3
        kind: StagedKubernetesNetworkPolicy
        metadata: {name: d}
        spec: {podSelector: {}}
        """,
    )
    (note,) = fl011(lint(resources))
    assert note.severity == NOTE
    assert note.message.startswith(
        "2 NetworkPolicy, 1 StagedGlobalNetworkPolicy, 1 StagedNetworkPolicy, "
        "1 StagedKubernetesNetworkPolicy: these kinds do not apply to host endpoints"
    )


def test_no_note_without_those_kinds() -> None:
    assert fl011(lint(docs(HEP, FROM_NAMESPACED_CLIENTS, NETSET))) == []


def test_a_network_set_is_a_peer_of_a_namespaced_rule_selector() -> None:
    without = [f for f in lint(docs(HEP, FROM_NAMESPACED_CLIENTS)) if f.code == "FL006"]
    assert [f.rule for f in without] == ["ingress rule 0"]
    with_set = lint(docs(HEP, FROM_NAMESPACED_CLIENTS, NETSET))
    assert [f for f in with_set if f.code == "FL006"] == []
