"""The Calico manifests of each lab phase (pure: data in, documents out).

* `stateful`: the seed's policy without `doNotTrack`: a normal, tracked allow of TCP 12211.
* `donottrack`: the seed (examples/memcached-seed.yaml) with expectedIPs = the lab server.
* `baseline`: no manifests, no rules.
Both policy phases also get the clients as a GlobalNetworkSet labelled `memcached: client`,
which is what the seed's `memcached == 'client'` selectors match.

The flood phases (`felis.lab.flood`) add a DoS blocklist to the donottrack phase's manifests,
as Calico's DoS-defence guide writes it: a GlobalNetworkSet of denied sources and an untracked,
applyOnForward ingress policy that denies them, ordered before the memcached policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from felis.lab.flood import BLOCKLIST, FLOOD_PHASES
from felis.lab.topology import LabConfig

PHASES = ("stateful", "donottrack", "baseline")
API_VERSION = "projectcalico.org/v3"


def host_endpoint(cfg: LabConfig) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "HostEndpoint",
        "metadata": {"name": f"{cfg.node_name}-{cfg.interface}", "labels": {"memcached": "server"}},
        "spec": {
            "interfaceName": cfg.interface,
            "node": cfg.node_name,
            "expectedIPs": [cfg.server_ip],
        },
    }


def memcached_policy(cfg: LabConfig, *, do_not_track: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": "memcached == 'server'", "applyOnForward": True}
    if do_not_track:
        spec["doNotTrack"] = True
    spec["ingress"] = [
        {
            "action": "Allow",
            "protocol": "TCP",
            "source": {"selector": "memcached == 'client'"},
            "destination": {"ports": [cfg.port]},
        }
    ]
    spec["egress"] = [
        {
            "action": "Allow",
            "protocol": "TCP",
            "source": {"ports": [cfg.port]},
            "destination": {"selector": "memcached == 'client'"},
        }
    ]
    return {
        "apiVersion": API_VERSION,
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "memcached-server"},
        "spec": spec,
    }


def client_network_set(cfg: LabConfig) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "GlobalNetworkSet",
        "metadata": {"name": "memcached-clients", "labels": {"memcached": "client"}},
        "spec": {"nets": [cfg.network]},
    }


def blocklist_documents(nets: Sequence[str] = (BLOCKLIST,)) -> list[dict[str, Any]]:
    """The DoS blocklist: the denied sources, and the untracked policy that denies them."""
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "GlobalNetworkSet",
            "metadata": {"name": "dos-deny-list", "labels": {"dos-deny-list": "true"}},
            "spec": {"nets": list(nets)},
        },
        {
            "apiVersion": API_VERSION,
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "dos-mitigation"},
            "spec": {
                "selector": "memcached == 'server'",
                "order": 100,
                "doNotTrack": True,
                "applyOnForward": True,
                "types": ["Ingress"],
                "ingress": [{"action": "Deny", "source": {"selector": "dos-deny-list == 'true'"}}],
            },
        },
    ]


def phase_documents(phase: str, cfg: LabConfig) -> list[dict[str, Any]]:
    """The manifests of `phase` (empty for baseline)."""
    if phase == "baseline":
        return []
    if phase in FLOOD_PHASES:
        return [*phase_documents("donottrack", cfg), *blocklist_documents()]
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    return [
        host_endpoint(cfg),
        memcached_policy(cfg, do_not_track=phase == "donottrack"),
        client_network_set(cfg),
    ]


def to_yaml(docs: Sequence[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False, default_flow_style=False)
