"""Builders for Calico documents used across the model tests."""

from __future__ import annotations

from typing import Any

V3 = "projectcalico.org/v3"


def gnp(spec: dict[str, Any] | None = None, name: str = "pol", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": V3,
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name, **meta},
        "spec": spec if spec is not None else {},
    }


def ingress(**rule: Any) -> dict[str, Any]:
    """A policy with exactly one ingress rule (action Allow unless given)."""
    rule.setdefault("action", "Allow")
    return gnp({"ingress": [rule]})


def egress(**rule: Any) -> dict[str, Any]:
    rule.setdefault("action", "Allow")
    return gnp({"egress": [rule]})


def hep(spec: dict[str, Any] | None = None, name: str = "hep", **meta: Any) -> dict[str, Any]:
    base = {"node": "node1", "interfaceName": "eth0"}
    return {
        "apiVersion": V3,
        "kind": "HostEndpoint",
        "metadata": {"name": name, **meta},
        "spec": base if spec is None else spec,
    }


def gns(nets: list[Any] | None = None, name: str = "set", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": V3,
        "kind": "GlobalNetworkSet",
        "metadata": {"name": name, **meta},
        "spec": {"nets": nets if nets is not None else []},
    }


def tier(spec: dict[str, Any] | None = None, name: str = "mytier") -> dict[str, Any]:
    return {
        "apiVersion": V3,
        "kind": "Tier",
        "metadata": {"name": name},
        "spec": spec if spec is not None else {},
    }


def profile(spec: dict[str, Any] | None = None, name: str = "prof", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": V3,
        "kind": "Profile",
        "metadata": {"name": name, **meta},
        "spec": spec if spec is not None else {},
    }
