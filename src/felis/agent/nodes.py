"""The one warning a node name deserves: no HostEndpoint is on it.

A node with no HostEndpoint gets an empty ruleset, which looks exactly like success; it is
nearly always a typo in `--node` (or the HostEndpoints are not stored yet). The agent, `felis
status`, `render`, `trace` and `plan` all say it in these same words.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

_LISTED = 10
"""Nodes named in the warning; a cluster of thousands must not produce a page."""


def no_endpoints_warning(node: str, hep_nodes: Iterable[str]) -> str | None:
    """None when a HostEndpoint has `spec.node == node`; else one line naming the nodes that
    have some (`hep_nodes`: the spec.node of every stored HostEndpoint)."""
    known = sorted(set(hep_nodes))
    if node in known:
        return None
    line = f"no HostEndpoint has spec.node {node!r}, so nothing is enforced for it"
    if not known:
        return line + " (no HostEndpoint is stored at all)"
    close = difflib.get_close_matches(node, known, n=1)
    listed = ", ".join(known[:_LISTED])
    if len(known) > _LISTED:
        listed += f" and {len(known) - _LISTED} more"
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{line} (nodes with HostEndpoints: {listed}){hint}"
