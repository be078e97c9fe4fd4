"""Write the doNotTrack policy the advisor proposes, and have felis itself validate it."""

from __future__ import annotations

import re
from collections.abc import Sequence

import yaml

from felis.conntrack.analysis import Listener
from felis.errors import FelisError
from felis.model.constants import API_VERSION

_NAME_BAD = re.compile(r"[^a-z0-9.-]+")


def resource_name(*parts: str) -> str:
    """A valid Calico resource name (lowercase alphanumerics, '-' and '.') built from parts."""
    raw = "-".join(p for p in parts if p).lower()
    name = _NAME_BAD.sub("-", raw).strip("-.")
    return name[:253] or "felis"


def policy_documents(
    listener: Listener,
    *,
    node: str,
    interface: str,
    peer_nets: Sequence[str] | None = None,
    order: float = 10,
) -> list[dict[str, object]]:
    """A HostEndpoint for the listener's interface and an untracked (doNotTrack) policy that
    allows both directions: ingress to the port and egress from it. Untracked rules skip
    conntrack, so replies are not matched as ESTABLISHED: the egress rule is required."""
    hep_name = resource_name(node, interface)
    nets = list(peer_nets if peer_nets is not None else listener.peer_nets)
    proto = listener.proto.upper()
    source: dict[str, object] = {"nets": nets} if nets else {}
    destination: dict[str, object] = {"nets": nets} if nets else {}
    hep: dict[str, object] = {
        "apiVersion": API_VERSION,
        "kind": "HostEndpoint",
        "metadata": {"name": hep_name, "labels": {"host-endpoint": hep_name}},
        "spec": {
            "node": node,
            "interfaceName": interface,
            "expectedIPs": list(listener.local_addresses),
        },
    }
    gnp: dict[str, object] = {
        "apiVersion": API_VERSION,
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": resource_name("notrack", hep_name, proto, str(listener.port))},
        "spec": {
            "order": order,
            "selector": f"host-endpoint == '{hep_name}'",
            "doNotTrack": True,
            "applyOnForward": True,
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": proto,
                    **({"source": source} if source else {}),
                    "destination": {"ports": [listener.port]},
                }
            ],
            "egress": [
                {
                    "action": "Allow",
                    "protocol": proto,
                    "source": {"ports": [listener.port]},
                    **({"destination": destination} if destination else {}),
                }
            ],
        },
    }
    return [hep, gnp]


HEADER = """\
# Proposed by `felis conntrack advise`: take {proto}/{port} on {iface} out of conntrack.
# {entries} of {max} table entries belong to this listener; new entries {rate:.0f}/s.
# Apply: felis apply -f FILE   (then the agent programs it)
# Note: a HostEndpoint turns on default-deny for tracked traffic on {iface} that no other
# policy allows (failsafe ports stay open). Review before applying.
"""


def render_yaml(docs: Sequence[dict[str, object]], header: str = "") -> str:
    body = yaml.safe_dump_all(list(docs), sort_keys=False, default_flow_style=False)
    return header + body


def validate(text: str, source: str = "conntrack-advise") -> None:
    """Raise FelisError unless felis' own model accepts every document."""
    from felis.model import load_documents

    load_documents(text.encode(), source)


def advice_yaml(
    listener: Listener, *, node: str, interface: str, table_max: int, order: float = 10
) -> str:
    """Validated YAML for one listener (HostEndpoint + doNotTrack GlobalNetworkPolicy)."""
    docs = policy_documents(listener, node=node, interface=interface, order=order)
    header = HEADER.format(
        proto=listener.proto.upper(),
        port=listener.port,
        iface=interface,
        entries=listener.entries,
        max=table_max,
        rate=listener.new_per_s,
    )
    text = render_yaml(docs, header)
    try:
        validate(text)
    except FelisError as exc:
        raise FelisError(f"the proposed policy does not validate: {exc}") from exc
    return text
