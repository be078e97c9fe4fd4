"""Workloads shared by the benchmarks."""

from __future__ import annotations

from typing import Any


def big_cluster(local_node: str, local_ip: str, spread: int) -> list[dict[str, Any]]:
    """5,000 HostEndpoints (one local, on `eth0`; the rest on 1,250 other nodes) and 1,000
    policies (2 ingress rules + 1 egress rule each, rule selectors over 500 `app` labels, a
    quarter doNotTrack); one policy in `spread` selects the local endpoint."""
    objects: list[dict[str, Any]] = []
    for i in range(5_000):
        local = i == 0
        objects.append(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "HostEndpoint",
                "metadata": {
                    "name": f"{local_node}-eth0" if local else f"hep-{i}",
                    "labels": {"app": f"app{i % 500}", "role": "server" if local else "client"},
                },
                "spec": {
                    "node": local_node if local else f"remote-{i // 4}",
                    "interfaceName": "eth0",
                    "expectedIPs": [local_ip if local else f"10.0.{i // 256}.{i % 256}"],
                },
            }
        )  # fmt: skip
    for i in range(1_000):
        objects.append(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "GlobalNetworkPolicy",
                "metadata": {"name": f"policy-{i}"},
                "spec": {
                    "order": float(i % 50),
                    "selector": "role == 'server'" if i % spread == 0 else f"role == 'r{i % 10}'",
                    "doNotTrack": i % 4 == 0,
                    "applyOnForward": i % 4 == 0,
                    "ingress": [
                        {
                            "action": "Allow",
                            "protocol": "TCP",
                            "source": {"selector": f"app == 'app{(i * 7) % 500}'"},
                            "destination": {"ports": [80, 443]},
                        },
                        {"action": "Deny", "source": {"nets": ["192.168.0.0/16"]}},
                    ],
                    "egress": [
                        {
                            "action": "Allow",
                            "destination": {"selector": f"app == 'app{(i * 7 + 2) % 500}'"},
                        }
                    ],
                },
            }
        )
    return objects
