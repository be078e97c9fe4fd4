"""The quick drift check: every rule, chain and hook as the full check sees them, sets by their
declaration and (ipset) their size, without reading a single member. What it cannot see (a
member replaced by another) is shown here too; the full check sees it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Mapping, Sequence

import pytest
from ir_fixtures import PI, client_set, seed_ruleset, with_chain

from felis.dataplane import nftables, nftables_readback
from felis.dataplane.identifiers import DataplaneRenderError
from felis.dataplane.ipset import SetHeader, parse_ipset_headers, set_size_differences
from felis.dataplane.kernel import IptablesDataplane, NftablesDataplane, QuickDriftCheck
from felis.dataplane.memo import RenderCache
from felis.dataplane.spec import (
    Accept,
    Chain,
    DataplaneSpec,
    Family,
    IpSet,
    Match,
    PortRange,
    Rule,
    SetKind,
    Table,
)

IPSET_LIST_T = """\
Name: felis4-s-a
Type: hash:net
Revision: 7
Header: family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x0bd445d3
Size in memory: 504
References: 1
Number of entries: 3

Name: felis6-p-b
Type: bitmap:port
Revision: 3
Header: range 0-65535
Size in memory: 8264
References: 0
Number of entries: 2

Name: other
Type: hash:ip
Revision: 6
Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1
Size in memory: 200
References: 0
Number of entries: 9
"""


def test_parse_ipset_headers() -> None:
    assert parse_ipset_headers(IPSET_LIST_T) == {
        "felis4-s-a": SetHeader("felis4-s-a", SetKind.NET, Family.V4, 3),
        # No family in a bitmap's header: felis' name says it.
        "felis6-p-b": SetHeader("felis6-p-b", SetKind.PORT, Family.V6, 2),
    }
    assert parse_ipset_headers("") == {}
    with pytest.raises(DataplaneRenderError, match="felis4-x"):
        parse_ipset_headers("Name: felis4-x\nType: hash:net\nHeader: family inet\n")


NETS = IpSet("felis4-s-a", SetKind.NET, frozenset({"10.0.0.1", "10.1.0.0/16", "10.2.0.0/24"}))


def sizes(headers: Mapping[str, SetHeader], sets: Mapping[str, IpSet] | None = None) -> list[str]:
    return set_size_differences(sets or {NETS.name: NETS}, Family.V4, headers)


def header(entries: int, kind: SetKind = SetKind.NET, name: str = NETS.name) -> SetHeader:
    return SetHeader(name, kind, Family.V4, entries)


def test_set_sizes() -> None:
    assert sizes({NETS.name: header(3)}) == []
    assert sizes({NETS.name: header(2)}) == ["set felis4-s-a holds 2 members, 3 wanted"]
    assert sizes({}) == ["set felis4-s-a missing"]
    assert sizes({NETS.name: header(3, SetKind.IP_PORT)}) == [
        "set felis4-s-a is hash:ip,port, wanted hash:net"
    ]
    stale = header(0, name="felis4-s-old")
    assert sizes({NETS.name: header(3), stale.name: stale}) == ["set felis4-s-old no longer used"]
    # Another family's sets, and sets that are not felis', are not this family's business.
    other = SetHeader("felis6-s-x", SetKind.NET, Family.V6, 1)
    assert sizes({NETS.name: header(3), other.name: other, "foreign": header(1, name="x")}) == []
    # The wanted count is of the members felis writes: overlapping nets collapse first.
    overlapping = dataclasses.replace(NETS, members=NETS.members | {"10.1.2.0/24"})
    assert sizes({NETS.name: header(3)}, {NETS.name: overlapping}) == []


def test_a_member_swapped_for_another_is_not_seen_by_size() -> None:
    # What the quick check cannot see; the full check compares the members themselves.
    swapped = dataclasses.replace(NETS, members=NETS.members - {"10.0.0.1"} | {"10.9.9.9"})
    assert sizes({NETS.name: header(3)}, {NETS.name: swapped}) == []


# --------------------------------------------------------------------------- nftables, terse


FIRST = seed_ruleset(Family.V4)
CSET = client_set(Family.V4)


def terse(state: nftables_readback.NftState) -> nftables_readback.NftState:
    """What `nft -t` reads back: every set without its elements."""
    return dataclasses.replace(
        state,
        sets={name: dataclasses.replace(s, members=frozenset()) for name, s in state.sets.items()},
    )


def test_terse_readback_with_members_as_wanted_is_in_sync() -> None:
    written = nftables.state_after(FIRST)
    assert written.sets[CSET].members, "the seed's client set has members"
    read = terse(written)
    assert nftables.render_delta(FIRST, read) is not None, "without members, the sets differ"
    assert (
        nftables.render_delta(FIRST, nftables_readback.members_as_wanted(read, FIRST.sets)) is None
    )


def test_terse_readback_still_sees_rules_and_missing_sets() -> None:
    changed = with_chain(
        FIRST,
        Table.RAW,
        Chain(PI, (Rule(Match(protocol=6, dst_ports=(PortRange(1, 1),)), Accept()),)),
    )
    read = nftables_readback.members_as_wanted(terse(nftables.state_after(changed)), FIRST.sets)
    delta = nftables.render_delta(FIRST, read)
    assert delta is not None and f"flush chain ip felis raw-{PI}" in delta
    gone = dataclasses.replace(terse(nftables.state_after(FIRST)), sets={})
    delta = nftables.render_delta(FIRST, nftables_readback.members_as_wanted(gone, FIRST.sets))
    assert delta is not None and f"add set ip felis {CSET}" in delta


def test_a_set_of_another_type_is_left_for_the_delta_to_refuse() -> None:
    read = terse(nftables.state_after(FIRST))
    other = dataclasses.replace(read.sets[CSET], kind=SetKind.IP_PORT)
    read = dataclasses.replace(read, sets={**read.sets, CSET: other})
    assert nftables_readback.members_as_wanted(read, FIRST.sets).sets[CSET] == other
    with pytest.raises(DataplaneRenderError):
        nftables.render_delta(FIRST, nftables_readback.members_as_wanted(read, FIRST.sets))


TERSE = """\
table inet other {
	flowtable ft {
		hook ingress priority filter
		devices = { eth0 }
	}

	chain raw-felis-x {
		counter packets 0 bytes 0 accept comment "felis:CCCCCCCCCCCCCCCC"
	}
}
table ip felis {
	comment "the table's own"
	set felis4-s-a {
		type ipv4_addr
		flags interval
	}

	set felis4-n-b {
		type ipv4_addr . inet_proto . inet_service
	}

	set felis4-p-c {
		type inet_service
	}

	chain raw-PREROUTING {
		comment "a chain's own comment is no rule"
		type filter hook prerouting priority raw; policy accept;
		tcp dport { 80, 443 } counter jump raw-felis-x comment "felis:AAAAAAAAAAAAAAAA; rule 0"
		ip saddr 198.18.0.9 drop
	}

	chain raw-felis-x {
		counter packets 0 bytes 0 accept comment "felis:BBBBBBBBBBBBBBBB; say \\"hi\\""
	}

	chain junk {
	}
}
table ip6 felis {
	chain filter-felis-y {
		counter packets 0 bytes 0 accept comment "felis:DDDDDDDDDDDDDDDD"
	}
}
"""


def test_parse_nft_terse() -> None:
    state = nftables_readback.parse_nft_terse(TERSE, Family.V4)
    assert state.exists
    raw = state.tables[Table.RAW].chains
    # Our rules by their hash; another program's rule in our chain as a rule without one.
    assert raw["PREROUTING"].hashes == ("AAAAAAAAAAAAAAAA", None)
    assert raw["felis-x"].hashes == ("BBBBBBBBBBBBBBBB",)
    assert set(state.tables) == {Table.RAW}, "other tables' chains are not ours"
    assert state.stray_chains == ("junk",)
    assert {n: s.kind for n, s in state.sets.items()} == {
        "felis4-s-a": SetKind.NET,
        "felis4-n-b": SetKind.IP_PORT,
        "felis4-p-c": SetKind.PORT,
    }
    assert all(not s.members for s in state.sets.values())
    v6 = nftables_readback.parse_nft_terse(TERSE, Family.V6)
    assert v6.tables[Table.FILTER].chains["felis-y"].hashes == ("DDDDDDDDDDDDDDDD",)
    assert not v6.sets
    assert nftables_readback.parse_nft_terse("", Family.V4) == nftables_readback.NftState()


def test_full_readback_normalises_an_unchanged_set_once() -> None:
    """The full check's read-back remembers normalised members by value in the dataplane's
    cache: the same listing twice gives the very same members, equal to an uncached read."""
    listing = json.dumps(
        {
            "nftables": [
                {"table": {"family": "ip", "name": "felis"}},
                {
                    "set": {
                        "family": "ip",
                        "table": "felis",
                        "name": "felis4-s-a",
                        "type": "ipv4_addr",
                        "elem": [
                            {"prefix": {"addr": "10.0.0.0", "len": 24}},
                            {"prefix": {"addr": "10.0.1.0", "len": 24}},
                            "10.9.0.1",
                        ],
                    }
                },
            ]
        }
    )
    cache = RenderCache()
    first = nftables_readback.parse_nft_json(listing, Family.V4, cache).sets["felis4-s-a"]
    again = nftables_readback.parse_nft_json(listing, Family.V4, cache).sets["felis4-s-a"]
    assert again.members is first.members
    plain = nftables_readback.parse_nft_json(listing, Family.V4).sets["felis4-s-a"]
    assert plain.members == first.members == {"10.0.0.0/23", "10.9.0.1/32"}


# --------------------------------------------------------------------------- the kernel layer


class Kernel:
    """Stands in for `felis.sysexec.run`: canned output per command line, calls recorded."""

    def __init__(self, outputs: dict[str, str]) -> None:
        self.outputs = outputs
        self.calls: list[str] = []

    def __call__(
        self,
        argv: Sequence[str],
        *,
        netns: str | None = None,
        input_text: str | None = None,
        timeout: float = 60.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        line = " ".join(argv)
        self.calls.append(line)
        return subprocess.CompletedProcess(list(argv), 0, self.outputs.get(line, ""), "")

    def take(self) -> set[str]:
        out, self.calls = set(self.calls), []
        return out


def spec(ruleset: object = FIRST) -> DataplaneSpec:
    return DataplaneSpec(node="node-1", rulesets={Family.V4: ruleset})  # type: ignore[dict-item]


def test_iptables_quick_check_reads_set_headers_not_members() -> None:
    members = len(FIRST.sets[CSET].members)
    kernel = Kernel(
        {"ipset list -t": f"Name: {CSET}\nType: hash:net\nHeader: family inet\n"
         f"Number of entries: {members + 1}\n"}
    )  # fmt: skip
    dataplane = IptablesDataplane(runner=kernel)
    assert isinstance(dataplane, QuickDriftCheck)
    quick = dataplane.quick_drift(spec())
    assert kernel.take() == {"iptables-save", "ip6tables-save", "ipset list -t"}
    # The tables as the full check sees them (the fake kernel has none of them) ...
    full = dataplane.drift(spec())
    assert kernel.take() == {"iptables-save", "ip6tables-save", "ipset save"}
    tables = [line for line in full if "ip sets" not in line]
    assert tables and quick[: len(tables)] == tables
    # ... and the set by its size.
    assert quick[len(tables) :] == [
        f"IPv4 set {CSET} holds {members + 1} members, {members} wanted"
    ]


def test_quick_checks_leave_the_remembered_state_alone() -> None:
    """A quick read has no members to plan from: an apply after it still plans from what the
    last write left, and runs nothing when nothing changed."""
    for dataplane in (IptablesDataplane(runner=Kernel({})), NftablesDataplane(runner=Kernel({}))):
        dataplane.apply(spec())
        kernel = dataplane.runner
        assert isinstance(kernel, Kernel)
        assert dataplane.quick_drift(spec()), "the fake kernel holds nothing"
        kernel.take()
        assert not dataplane.apply(spec()).wrote
        assert kernel.take() == set()


def test_nftables_quick_check_is_one_terse_listing() -> None:
    kernel = Kernel({})
    dataplane = NftablesDataplane(runner=kernel)
    quick = dataplane.quick_drift(spec())
    assert kernel.calls == ["nft -t list ruleset"]
    assert quick and quick == dataplane.drift(spec())
