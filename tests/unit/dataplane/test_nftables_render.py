"""nftables renderer: golden files, `nft -c` acceptance, deltas against a simulated table."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ir_fixtures import (
    ACCEPT,
    PI,
    TCP,
    all_rulesets,
    client_set,
    hook,
    seed_ruleset,
    with_chain,
    without_ingress_policy,
)
from test_iptables_render import check_golden

from felis.dataplane import nftables, nftables_readback, spec
from felis.dataplane.spec import (
    Chain,
    Family,
    IpSet,
    Jump,
    Match,
    PortRange,
    Return,
    Rule,
    Ruleset,
    SetKind,
    SetMark,
    Table,
    TableSpec,
)
from felis.errors import FelisError

GOLDEN = Path(__file__).parent / "golden"


def nft_check(path: Path) -> subprocess.CompletedProcess[str]:
    # `nft -c` changes nothing; the private network namespace makes that certain.
    return subprocess.run(
        ["unshare", "-n", "nft", "-c", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


needs_nft = pytest.mark.skipif(
    shutil.which("nft") is None or shutil.which("unshare") is None or os.geteuid() != 0,
    reason="needs nft, unshare and root",
)


class NftSim:
    """Applies our `nft -f` statements to a model of one table and prints `nft -j` JSON."""

    def __init__(self, family: Family) -> None:
        self.fam = nftables_readback.nft_family(family)
        self.exists = False
        self.chains: dict[str, list[tuple[int, str]]] = {}
        self.base: dict[str, str] = {}
        self.sets: dict[str, tuple[str, set[str]]] = {}
        self.handle = 0

    def _next(self) -> int:
        self.handle += 1
        return self.handle

    def _referenced(self, pattern: str) -> bool:
        return any(re.search(pattern, text) for rules in self.chains.values() for _, text in rules)

    def apply(self, text: str) -> None:
        prefix = f"{self.fam} {spec.CHAIN_PREFIX[:-1]}"
        for line in text.splitlines():
            if not line:
                continue
            verb, obj, rest = line.split(" ", 2)
            assert rest.startswith(prefix + " ") or rest == prefix, line
            rest = rest[len(prefix) + 1 :]
            name, _, tail = rest.partition(" ")
            if (verb, obj) == ("add", "table"):
                self.exists = True
            elif (verb, obj) == ("delete", "table"):
                self.__init__(Family.V4 if self.fam == "ip" else Family.V6)  # type: ignore[misc]
            elif (verb, obj) == ("add", "chain"):
                assert self.exists
                self.chains.setdefault(name, [])
                if tail:
                    self.base[name] = tail
            elif (verb, obj) == ("flush", "chain"):
                self.chains[name] = []
            elif (verb, obj) == ("delete", "chain"):
                assert not self.chains[name], f"deleting non-empty chain {name}"
                assert not self._referenced(rf"(jump|goto) {re.escape(name)}\b")
                del self.chains[name]
                self.base.pop(name, None)
            elif (verb, obj) == ("add", "rule"):
                for target in re.findall(r"(?:jump|goto) (\S+)", tail):
                    assert target in self.chains, f"jump to missing chain {target}"
                for set_name in re.findall(r"@(\S+)", tail):
                    assert set_name in self.sets, f"missing set {set_name}"
                self.chains[name].append((self._next(), tail))
            elif (verb, obj) == ("add", "set"):
                self.sets.setdefault(name, (tail, set()))
            elif (verb, obj) in (("add", "element"), ("delete", "element")):
                items = {item.strip() for item in tail.strip("{} ").split(",")}
                members = self.sets[name][1]
                if verb == "add":
                    members |= items
                else:
                    assert items <= members, f"deleting absent elements {items - members}"
                    members -= items
            elif (verb, obj) == ("delete", "set"):
                assert not self._referenced(rf"@{re.escape(name)}\b")
                del self.sets[name]
            else:
                raise AssertionError(f"unexpected statement {line}")

    def _elem(self, decl: str, member: str) -> Any:
        if "." in decl and "inet_proto" in decl:
            addr, proto, port = (part.strip() for part in member.split(" . "))
            return {"concat": [addr, proto, int(port)]}
        net = ipaddress.ip_network(member)
        if net.num_addresses == 1:
            return str(net.network_address)
        return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}

    def json(self, counters: dict[str, int] | None = None) -> str:
        if not self.exists:
            return ""
        items: list[dict[str, Any]] = [
            {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": self.fam, "name": "felis", "handle": 1}},
        ]
        for name, (decl, members) in self.sets.items():
            settype: Any = "ipv4_addr" if "ipv4_addr" in decl else "ipv6_addr"
            if "inet_proto" in decl:
                settype = [settype, "inet_proto", "inet_service"]
            obj: dict[str, Any] = {"family": self.fam, "name": name, "table": "felis"}
            obj["type"] = settype
            if members:
                obj["elem"] = [self._elem(decl, m) for m in sorted(members)]
            items.append({"set": obj})
        for name in self.chains:
            items.append({"chain": {"family": self.fam, "table": "felis", "name": name}})
        for name, rules in self.chains.items():
            for handle, text in rules:
                rule: dict[str, Any] = {
                    "family": self.fam,
                    "table": "felis",
                    "chain": name,
                    "handle": handle,
                    "expr": [{"counter": {"packets": handle, "bytes": 100 * handle}}],
                }
                found = re.search(r'comment "([^"]*)"$', text)
                if found:
                    rule["comment"] = found.group(1)
                items.append({"rule": rule})
        return json.dumps({"nftables": items})

    def state(self) -> nftables_readback.NftState:
        return nftables_readback.parse_nft_json(
            self.json(), Family.V4 if self.fam == "ip" else Family.V6
        )


def fresh(ruleset: Ruleset) -> NftSim:
    sim = NftSim(ruleset.family)
    sim.apply(nftables.render_full(ruleset))
    return sim


# ---------------------------------------------------------------------------------------------
# Golden files and the real parser.


@pytest.mark.parametrize("name", sorted(all_rulesets()))
def test_full_render_matches_golden(name: str) -> None:
    check_golden(f"{name}.nft", nftables.render_full(all_rulesets()[name]))


@needs_nft
@pytest.mark.parametrize("name", sorted(all_rulesets()))
def test_nft_accepts_golden(name: str) -> None:
    result = nft_check(GOLDEN / f"{name}.nft")
    assert result.returncode == 0, result.stderr


@needs_nft
def test_nft_accepts_deltas_and_cleanup(tmp_path: Path) -> None:
    before = seed_ruleset()
    after = _changed_policy(before)
    sim = fresh(before)
    texts = {
        "delta": nftables.render_delta(after, sim.state()),
        "cleanup": nftables.render_cleanup(Family.V6),
    }
    for name, text in texts.items():
        assert text is not None
        path = tmp_path / f"{name}.nft"
        # A delta assumes the table exists: check it on top of the full render.
        path.write_text(nftables.render_full(before) + text if name == "delta" else text)
        result = nft_check(path)
        assert result.returncode == 0, f"{name}: {result.stderr}"


def test_nft_rejects_a_broken_file_so_the_check_means_something(tmp_path: Path) -> None:
    if shutil.which("nft") is None or os.geteuid() != 0:
        pytest.skip("needs nft and root")
    path = tmp_path / "bad.nft"
    path.write_text("add table ip felis\nadd rule ip felis nochain counter bogus\n")
    assert nft_check(path).returncode != 0


def test_seed_shape() -> None:
    text = nftables.render_full(seed_ruleset())
    lines = text.splitlines()
    assert lines[:3] == ["add table ip felis", "delete table ip felis", "add table ip felis"]
    assert (
        "add chain ip felis raw-PREROUTING "
        "{ type filter hook prerouting priority raw; policy accept; }" in lines
    )
    assert (
        "add chain ip felis mangle-POSTROUTING "
        "{ type filter hook postrouting priority mangle; policy accept; }" in lines
    )
    cset = client_set(Family.V4)
    assert f"add set ip felis {cset} {{ type ipv4_addr; flags interval; }}" in lines
    assert f"add element ip felis {cset} {{ 10.128.0.50/32 }}" in lines
    policy = [line for line in lines if line.startswith(f"add rule ip felis raw-{PI} ")]
    assert len(policy) == 1
    assert re.fullmatch(
        rf"add rule ip felis raw-{re.escape(PI)} meta l4proto tcp ip saddr @{cset} "
        r"tcp dport \{ 12211 \} counter meta mark set meta mark & 0xfeffffff \| 0x1000000 "
        r'comment "felis:[A-Za-z0-9_-]{16}; gnp/memcached-server ingress rule 0"',
        policy[0],
    )
    assert all(" counter" in line for line in lines if line.startswith("add rule"))
    assert re.search(
        r"^add rule ip felis filter-felis-OUTPUT ct status dnat counter return ", text, re.M
    )
    assert "meta mark & 0x1000000 == 0x1000000 counter notrack" in text
    # Every rule of ours is added after every chain it jumps to.
    order = {line.split()[4]: i for i, line in enumerate(lines) if line.startswith("add chain")}
    for i, line in enumerate(lines):
        for target in re.findall(r"(?:jump|goto) (\S+)", line):
            assert order[target] < i


def test_same_hashes_as_iptables() -> None:
    from felis.dataplane import iptables

    for ruleset in all_rulesets().values():
        ipt = iptables.render_full(ruleset)
        nft = nftables.render_full(ruleset)
        for table, text in ipt.tables.items():
            for name in ruleset.tables[table].chains:
                ipt_hashes = re.findall(rf"^-A {re.escape(name)} .*?felis:(\S{{16}})", text, re.M)
                nft_name = nftables.layer_chain(table, name)
                nft_hashes = re.findall(
                    rf"^add rule \S+ felis {re.escape(nft_name)} .*felis:(\S{{16}})", nft, re.M
                )
                assert ipt_hashes == nft_hashes, name


def test_v6_syntax() -> None:
    text = nftables.render_full(all_rulesets()["everything-v6"])
    assert "add table ip6 felis" in text
    assert "ip6 saddr @felis6-s-a" in text and " ip saddr" not in text
    assert "icmpv6 type 128" in text and "type ipv6_addr" in text
    assert "fd00:3::7 . tcp . 11211" in text


def test_interface_wildcard_and_comment_only_rule() -> None:
    text = nftables.render_full(all_rulesets()["everything-v4"])
    assert 'oifname "veth*"' in text
    assert re.search(
        r'^add rule ip felis filter-felis-all counter comment "felis:\S+; gnp/empty', text, re.M
    )


def test_not_dnat_is_refused() -> None:
    ruleset = with_chain(
        seed_ruleset(), Table.FILTER, Chain("felis-OUTPUT", (Rule(Match(ct_dnat=False), Return()),))
    )
    with pytest.raises(FelisError, match="not DNAT"):
        nftables.render_full(ruleset)


# ---------------------------------------------------------------------------------------------
# Deltas.


def _changed_policy(ruleset: Ruleset) -> Ruleset:
    rule = Rule(
        Match(protocol=TCP, dst_ports=(PortRange(12211, 12212),)),
        SetMark(ACCEPT, ACCEPT),
        "gnp/memcached-server ingress rule 0",
    )
    return with_chain(ruleset, Table.RAW, Chain(PI, (rule,)))


def test_full_render_converges() -> None:
    for ruleset in all_rulesets().values():
        assert nftables.render_delta(ruleset, fresh(ruleset).state()) is None


def test_delta_on_an_absent_table_programs_everything() -> None:
    ruleset = seed_ruleset()
    sim = NftSim(Family.V4)
    text = nftables.render_delta(ruleset, sim.state())
    assert text is not None
    sim.apply(text)
    assert nftables.render_delta(ruleset, sim.state()) is None
    assert nftables.render_delta(Ruleset(Family.V4, {}, {}), NftSim(Family.V4).state()) is None


def test_one_rule_changed_rewrites_only_that_chain() -> None:
    before = seed_ruleset()
    sim = fresh(before)
    after = _changed_policy(before)
    text = nftables.render_delta(after, sim.state())
    assert text is not None
    changes = [
        line for line in text.splitlines() if not line.startswith(("add table", "add chain"))
    ]
    assert changes[0] == f"flush chain ip felis raw-{PI}"
    assert len(changes) == 2 and changes[1].startswith(f"add rule ip felis raw-{PI} ")
    assert "tcp dport { 12211-12212 }" in changes[1]
    sim.apply(text)
    assert nftables.render_delta(after, sim.state()) is None


def test_removed_chain_is_flushed_then_deleted_after_references() -> None:
    before = seed_ruleset()
    sim = fresh(before)
    after = without_ingress_policy(before)
    text = nftables.render_delta(after, sim.state())
    assert text is not None
    lines = text.splitlines()
    flush = lines.index(f"flush chain ip felis raw-{PI}")
    delete = lines.index(f"delete chain ip felis raw-{PI}")
    last_rule = max(i for i, line in enumerate(lines) if line.startswith("add rule"))
    assert flush < last_rule < delete
    sim.apply(text)  # the simulator refuses deleting a referenced or non-empty chain
    assert f"raw-{PI}" not in sim.chains
    assert nftables.render_delta(after, sim.state()) is None


def test_stray_rule_in_a_base_chain_is_rewritten_away() -> None:
    ruleset = seed_ruleset()
    sim = fresh(ruleset)
    sim.chains["raw-PREROUTING"].insert(0, (999, "counter accept"))
    text = nftables.render_delta(ruleset, sim.state())
    assert text is not None
    assert "flush chain ip felis raw-PREROUTING" in text
    sim.apply(text)
    assert next(t for _, t in sim.chains["raw-PREROUTING"]).startswith(
        "counter jump raw-felis-PREROUTING"
    )
    assert nftables.render_delta(ruleset, sim.state()) is None


def test_unwanted_base_chain_and_stray_chain_are_deleted() -> None:
    ruleset = seed_ruleset()
    sim = fresh(ruleset)
    sim.apply(
        "add chain ip felis filter-POSTROUTING "
        "{ type filter hook postrouting priority filter; policy accept; }"
    )
    sim.apply("add chain ip felis leftover")
    text = nftables.render_delta(ruleset, sim.state())
    assert text is not None
    assert "delete chain ip felis filter-POSTROUTING" in text
    assert "delete chain ip felis leftover" in text
    sim.apply(text)
    assert nftables.render_delta(ruleset, sim.state()) is None


def test_set_members_and_obsolete_sets() -> None:
    ruleset = seed_ruleset()
    sim = fresh(ruleset)
    cset = client_set(Family.V4)
    sim.apply(f"add element ip felis {cset} {{ 10.9.9.9/32 }}")
    sim.apply("add set ip felis felis4-s-old { type ipv4_addr; flags interval; }")
    grown = dataclasses.replace(
        ruleset,
        sets={
            cset: dataclasses.replace(
                ruleset.sets[cset], members=frozenset({"10.128.0.50", "10.1.0.0/16"})
            )
        },
    )
    text = nftables.render_delta(grown, sim.state())
    assert text == (
        "add table ip felis\n"
        + "".join(line + "\n" for line in text.splitlines() if line.startswith("add chain"))
        + f"add element ip felis {cset} {{ 10.1.0.0/16 }}\n"
        + f"delete element ip felis {cset} {{ 10.9.9.9/32 }}\n"
        + "delete set ip felis felis4-s-old\n"
    )
    sim.apply(text)
    assert nftables.render_delta(grown, sim.state()) is None


def test_ip_port_set_kind_change_is_refused() -> None:
    ruleset = seed_ruleset()
    sim = fresh(ruleset)
    sim.apply("add set ip felis felis4-x { type ipv4_addr . inet_proto . inet_service; }")
    extra = IpSet("felis4-x", SetKind.NET, frozenset({"10.0.0.1"}))
    changed = dataclasses.replace(ruleset, sets={**ruleset.sets, "felis4-x": extra})
    with pytest.raises(FelisError, match="exists in the kernel as ip,port but is wanted as net"):
        nftables.render_delta(changed, sim.state())


def test_cleanup_deletes_only_our_table() -> None:
    assert nftables.render_cleanup(Family.V4) == "add table ip felis\ndelete table ip felis\n"
    assert nftables.render_cleanup(Family.V6) == "add table ip6 felis\ndelete table ip6 felis\n"


def test_empty_ruleset_against_our_table_removes_all_chains_and_sets() -> None:
    sim = fresh(seed_ruleset())
    text = nftables.render_delta(Ruleset(Family.V4, {}, {}), sim.state())
    assert text is not None
    sim.apply(text)
    assert sim.chains == {} and sim.sets == {}


def test_mangle_output_hook_is_a_route_chain() -> None:
    ruleset = Ruleset(
        Family.V4,
        {
            Table.MANGLE: TableSpec(
                Table.MANGLE,
                {"felis-o": Chain("felis-o")},
                (hook("OUTPUT", Rule(action=Jump("felis-o"))),),
            )
        },
        {},
    )
    text = nftables.render_full(ruleset)
    assert "mangle-OUTPUT { type route hook output priority mangle; policy accept; }" in text
