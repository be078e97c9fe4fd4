"""Which sources XDP may drop on each interface, read off the raw table the spec programs.

Calico compiles to XDP only the first rule of the first untracked ingress policy of each tier,
and only a Deny with one source selector and nothing else. felis takes every source-only Deny
a packet can meet in the raw ingress walk before anything that could decide otherwise
(`fastpath.leading_denies`): several rules and policies, selectors and CIDRs, IPv4 and IPv6. For
a packet from one of those sources the walk ends in a drop, so dropping it earlier in the
driver changes nothing but the cost; failsafe ports pass XDP first, as they pass the walk's
Deny. Reading the spec rather than the policies means the XDP decision can never disagree with
the chains it stands in front of.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from felis.calc import names
from felis.calc.fastpath import leading_denies
from felis.dataplane.spec import DataplaneSpec, MarkBits, Table


def blocklists(
    spec: DataplaneSpec, interfaces: Iterable[str], marks: MarkBits
) -> Mapping[str, frozenset[str]]:
    """Interface → the networks XDP drops there (both families); interfaces with none are left
    out."""
    out: dict[str, set[str]] = {}
    for ruleset in spec.rulesets.values():
        raw = ruleset.tables.get(Table.RAW)
        if raw is None:
            continue
        for iface in interfaces:
            chain = names.endpoint_chain(names.FROM_HOST_PREFIX, iface)
            for rule in leading_denies(chain, raw.chains, marks):
                match = rule.match
                if match.src_net is not None:
                    out.setdefault(iface, set()).add(match.src_net)
                for set_name in match.src_sets:
                    ipset = ruleset.sets.get(set_name)
                    if ipset is not None:
                        out.setdefault(iface, set()).update(ipset.members)
    return {iface: frozenset(nets) for iface, nets in sorted(out.items()) if nets}
