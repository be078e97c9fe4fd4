"""iptables renderer: golden files, deltas against (simulated) kernel state, ipset text."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import ClassVar

import pytest
from ir_fixtures import (
    ACCEPT,
    PI,
    TCP,
    all_rulesets,
    client_set,
    seed_ruleset,
    with_chain,
    without_ingress_policy,
)

from felis.dataplane import iptables
from felis.dataplane.ipset import parse_ipset_save
from felis.dataplane.spec import (
    Chain,
    Family,
    Hook,
    HookPosition,
    Jump,
    Match,
    PortRange,
    Rule,
    Ruleset,
    SetMark,
    Table,
    TableSpec,
)
from felis.errors import FelisError

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("FELIS_UPDATE_GOLDEN") == "1"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with FELIS_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from its golden file"


def plan_text(plan: iptables.IptablesPlan) -> str:
    parts = []
    if plan.ipset_prepare:
        parts.append("# ipset restore\n" + plan.ipset_prepare)
    for table, text in plan.tables.items():
        parts.append(f"# {iptables.restore_command(plan.family)} --noflush ({table.value})\n{text}")
    if plan.ipset_cleanup:
        parts.append("# ipset restore (after the tables)\n" + plan.ipset_cleanup)
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# A small model of the kernel: applies restore input, prints iptables-save text.


class KernelSim:
    """Enough of iptables-restore --noflush semantics to check that deltas converge."""

    BUILTIN: ClassVar[dict[str, list[str]]] = {
        "raw": ["PREROUTING", "OUTPUT"],
        "mangle": ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        "filter": ["INPUT", "FORWARD", "OUTPUT"],
    }

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, list[str]]] = {
            t: {c: [] for c in chains} for t, chains in self.BUILTIN.items()
        }

    def restore(self, text: str) -> None:
        table: dict[str, list[str]] = {}
        for line in text.splitlines():
            if line.startswith("*"):
                table = self.tables[line[1:]]
            elif line.startswith(":"):
                table[line[1:].split()[0]] = []
            elif line.startswith("-A "):
                _, chain, body = line.split(" ", 2)
                table[chain].append(body)
            elif line.startswith("-I "):
                _, chain, pos, body = line.split(" ", 3)
                table[chain].insert(int(pos) - 1, body)
            elif line.startswith("-D "):
                _, chain, body = line.split(" ", 2)
                table[chain].remove(body)  # ValueError: deleting a rule that is not there
            elif line.startswith("-X "):
                name = line.split()[1]
                assert not table[name], "deleting a chain that still has rules"
                for rules in table.values():
                    assert not any(re.search(rf"-[jg] {re.escape(name)}\b", r) for r in rules)
                del table[name]

    def save(self) -> str:
        out = []
        for tname, chains in self.tables.items():
            out.append(f"*{tname}")
            for chain in chains:
                policy = "ACCEPT" if chain.isupper() else "-"
                out.append(f":{chain} {policy} [0:0]")
            for chain, rules in chains.items():
                out.extend(f"-A {chain} {body}" for body in rules)
            out.append("COMMIT")
        return "\n".join(out) + "\n"

    def state(self) -> iptables.IptablesState:
        return iptables.IptablesState(tables=iptables.parse_iptables_save(self.save()))


def apply(sim: KernelSim, plan: iptables.IptablesPlan) -> None:
    for text in plan.tables.values():
        sim.restore(text)


# ---------------------------------------------------------------------------------------------
# Golden files.


@pytest.mark.parametrize("name", sorted(all_rulesets()))
def test_full_render_matches_golden(name: str) -> None:
    plan = iptables.render_full(all_rulesets()[name])
    check_golden(f"{name}.iptables", plan_text(plan))


def test_seed_golden_shape() -> None:
    plan = iptables.render_full(seed_ruleset())
    raw = plan.tables[Table.RAW]
    assert raw.startswith("*raw\n:felis-PREROUTING - -\n")
    assert raw.endswith("COMMIT\n") and raw.count("COMMIT") == 1
    assert '-I PREROUTING 1 -m comment --comment "felis:' in raw
    policy = [line for line in raw.splitlines() if line.startswith(f"-A {PI} ")]
    assert len(policy) == 1
    assert re.fullmatch(
        rf'-A {re.escape(PI)} -p tcp -m comment --comment "felis:[A-Za-z0-9_-]{{16}}; '
        r'gnp/memcached-server ingress rule 0" -m set --match-set '
        + client_set(Family.V4)
        + r" src -m multiport --dports 12211 -j MARK --set-xmark "
        r"0x1000000/0x1000000",
        policy[0],
    )
    assert "-j CT --notrack" in raw
    filt = plan.tables[Table.FILTER]
    assert "-A FORWARD -m comment" in filt  # the appended FORWARD rules
    assert "-m conntrack --ctstate DNAT -j RETURN" in filt
    assert plan.restore == raw + plan.tables[Table.MANGLE] + filt
    assert plan.ipset == plan.ipset_prepare
    assert plan.ipset_prepare is not None
    assert "create felis4-s-j0651QXPU3OWTryyoQJxg8 hash:net family inet" in plan.ipset_prepare
    assert "add felis4-s-j0651QXPU3OWTryyoQJxg8 10.128.0.50/32" in plan.ipset_prepare


def test_v6_uses_v6_names() -> None:
    text = plan_text(iptables.render_full(all_rulesets()["everything-v6"]))
    assert "-m icmp6 --icmpv6-type 128" in text and "--icmp-type" not in text
    assert "family inet6" in text and "fd00:3::7,tcp:11211" in text


def test_multiport_slots() -> None:
    text = plan_text(iptables.render_full(all_rulesets()["everything-v4"]))
    for ports in re.findall(r"-ports (\S+)", text):
        assert sum(2 if ":" in p else 1 for p in ports.split(",")) <= 15
    # The 20-slot positive list became two rules; the negated one two matches in one rule.
    assert len(re.findall(r"gnp/all ingress rule 0", text)) == 2
    negated = [line for line in text.splitlines() if "gnp/all ingress rule 1" in line]
    assert len(negated) == 1 and negated[0].count("! --dports") == 2


def test_comment_only_rule_is_just_the_comment() -> None:
    text = plan_text(iptables.render_full(all_rulesets()["everything-v4"]))
    assert re.search(
        r'^-A felis-all -m comment --comment "felis:\S+; gnp/empty ingress"$', text, re.M
    )


# ---------------------------------------------------------------------------------------------
# Deltas.


def fresh(ruleset: Ruleset) -> KernelSim:
    sim = KernelSim()
    apply(sim, iptables.render_full(ruleset))
    return sim


def test_full_render_converges() -> None:
    for ruleset in all_rulesets().values():
        sim = fresh(ruleset)
        assert iptables.render_delta(ruleset, sim.state()).tables == {}


def test_unchanged_writes_nothing() -> None:
    ruleset = seed_ruleset()
    sim = fresh(ruleset)
    sets = parse_ipset_save(
        "create felis4-s-j0651QXPU3OWTryyoQJxg8 hash:net family inet hashsize 1024 "
        "maxelem 1048576\nadd felis4-s-j0651QXPU3OWTryyoQJxg8 10.128.0.50\n"
    )
    plan = iptables.render_delta(ruleset, dataclasses.replace(sim.state(), sets=sets))
    assert plan.empty


def test_one_rule_changed_rewrites_only_that_chain() -> None:
    before = seed_ruleset()
    sim = fresh(before)
    rule = Rule(
        Match(protocol=TCP, dst_ports=(PortRange(12211, 12212),)),
        SetMark(ACCEPT, ACCEPT),
        "gnp/memcached-server ingress rule 0",
    )
    after = with_chain(before, Table.RAW, Chain(PI, (rule,)))
    plan = iptables.render_delta(after, sim.state())
    assert set(plan.tables) == {Table.RAW}
    lines = plan.tables[Table.RAW].splitlines()
    assert lines[0] == "*raw" and lines[-1] == "COMMIT"
    assert lines[1] == f":{PI} - -"
    body = lines[2:-1]
    assert len(body) == 1 and body[0].startswith(f"-A {PI} ")
    assert "--dports 12211:12212" in body[0]
    apply(sim, plan)
    assert iptables.render_delta(after, sim.state()).tables == {}


def test_removed_chain_is_flushed_then_deleted_after_references() -> None:
    before = seed_ruleset()
    sim = fresh(before)
    after = without_ingress_policy(before)
    text = iptables.render_delta(after, sim.state()).tables[Table.RAW]
    first, second = text.split("COMMIT\n")[:2]
    assert f":{PI} - -" in first and f"-X {PI}" not in first
    assert ":felis-fh-eth0 - -" in first
    assert second == f"*raw\n-X {PI}\n"
    apply(sim, iptables.render_delta(after, sim.state()))
    assert PI not in sim.tables["raw"]
    assert iptables.render_delta(after, sim.state()).tables == {}


FOREIGN = '-m comment --comment "kube-proxy says hi" -j KUBE-FIREWALL'


def test_foreign_rule_above_our_hook_is_untouched_and_we_go_back_on_top() -> None:
    ruleset = seed_ruleset()
    sim = fresh(ruleset)
    sim.tables["raw"]["KUBE-FIREWALL"] = []
    sim.tables["raw"]["PREROUTING"].insert(0, FOREIGN)
    sim.tables["raw"]["PREROUTING"].append("-s 10.0.0.1/32 -j DROP")
    plan = iptables.render_delta(ruleset, sim.state())
    assert set(plan.tables) == {Table.RAW}
    text = plan.tables[Table.RAW]
    ours = sim.tables["raw"]["PREROUTING"][1]
    assert text == f"*raw\n-D PREROUTING {ours}\n-I PREROUTING 1 {ours}\nCOMMIT\n"
    assert "KUBE" not in text and "10.0.0.1" not in text
    apply(sim, plan)
    assert sim.tables["raw"]["PREROUTING"] == [ours, FOREIGN, "-s 10.0.0.1/32 -j DROP"]
    assert iptables.render_delta(ruleset, sim.state()).tables == {}


def test_foreign_rules_below_inserts_and_above_appends_are_fine() -> None:
    ruleset = seed_ruleset()
    sim = fresh(ruleset)
    sim.tables["filter"]["FORWARD"].insert(1, "-j DOCKER-USER")
    sim.tables["filter"]["INPUT"].append("-j REJECT")
    assert iptables.render_delta(ruleset, sim.state()).empty is False  # the set is missing
    assert iptables.render_delta(ruleset, sim.state()).tables == {}


def test_hooks_out_of_order_are_rewritten_in_order() -> None:
    ruleset = all_rulesets()["everything-v4"]
    sim = fresh(ruleset)
    sim.tables["filter"]["INPUT"].reverse()
    apply(sim, iptables.render_delta(ruleset, sim.state()))
    assert iptables.render_delta(ruleset, sim.state()).tables == {}
    assert "-j felis-all" in sim.tables["filter"]["INPUT"][0]


def test_stale_hook_in_an_unwanted_kernel_chain_is_removed() -> None:
    ruleset = seed_ruleset()
    sim = fresh(ruleset)
    stale = '-m comment --comment "felis:AAAAAAAAAAAAAAAA" -j felis-INPUT'
    sim.tables["mangle"]["INPUT"].append(stale)
    text = iptables.render_delta(ruleset, sim.state()).tables[Table.MANGLE]
    assert text == f"*mangle\n-D INPUT {stale}\nCOMMIT\n"


def test_cleanup_removes_everything_of_ours_only() -> None:
    ruleset = seed_ruleset()
    sim = fresh(ruleset)
    sim.tables["filter"]["INPUT"].append("-j ACCEPT")
    sets = parse_ipset_save(
        "create felis4-s-j0651QXPU3OWTryyoQJxg8 hash:net family inet\n"
        "create felis6-s-x hash:net family inet6\n"
        "create other hash:net family inet\n"
    )
    plan = iptables.render_cleanup(Family.V4, dataclasses.replace(sim.state(), sets=sets))
    apply(sim, plan)
    for chains in sim.tables.values():
        assert not any(name.startswith("felis-") for name in chains)
        assert not any("felis" in rule for rules in chains.values() for rule in rules)
    assert sim.tables["filter"]["INPUT"] == ["-j ACCEPT"]
    assert plan.ipset_cleanup == "destroy felis4-s-j0651QXPU3OWTryyoQJxg8\nCOMMIT\n"


def test_new_hook_chain_and_kernel_chain_hooks() -> None:
    base = Ruleset(Family.V4, {}, {})
    sim = KernelSim()
    ruleset = Ruleset(
        Family.V4,
        {
            Table.FILTER: TableSpec(
                Table.FILTER,
                {"felis-a": Chain("felis-a")},
                (Hook("INPUT", HookPosition.INSERT, Rule(action=Jump("felis-a"))),),
            )
        },
        {},
    )
    assert iptables.render_delta(base, sim.state()).empty
    apply(sim, iptables.render_delta(ruleset, sim.state()))
    assert sim.tables["filter"]["felis-a"] == []
    assert sim.tables["filter"]["INPUT"][0].endswith("-j felis-a")


# ---------------------------------------------------------------------------------------------
# ipset text.


def test_ipset_delta_adds_then_deletes_and_keeps_other_sets() -> None:
    ruleset = seed_ruleset()
    name = client_set(Family.V4)
    current = parse_ipset_save(
        f"create {name} hash:net family inet hashsize 1024 maxelem 1048576\n"
        f"add {name} 10.0.0.9\n"
        f"add {name} 10.128.0.50\n"
        "create felis4-s-old hash:net family inet\n"
        "create felis6-s-old hash:net family inet6\n"
        "create kube-set hash:ip family inet\n"
    )
    sim = fresh(ruleset)
    plan = iptables.render_delta(ruleset, dataclasses.replace(sim.state(), sets=current))
    assert plan.ipset_prepare == f"del {name} 10.0.0.9/32 -exist\nCOMMIT\n"
    assert plan.ipset_cleanup == "destroy felis4-s-old\nCOMMIT\n"
    grown = dataclasses.replace(
        ruleset,
        sets={name: dataclasses.replace(ruleset.sets[name], members=frozenset({"10.0.0.0/8"}))},
    )
    plan = iptables.render_delta(grown, dataclasses.replace(sim.state(), sets=current))
    assert plan.ipset_prepare == (
        f"add {name} 10.0.0.0/8 -exist\ndel {name} 10.0.0.9/32 -exist\n"
        f"del {name} 10.128.0.50/32 -exist\nCOMMIT\n"
    )


def test_ipset_kind_change_is_refused() -> None:
    ruleset = seed_ruleset()
    current = parse_ipset_save(f"create {client_set(Family.V4)} hash:ip,port family inet\n")
    with pytest.raises(FelisError, match="wanted as net"):
        iptables.render_delta(ruleset, iptables.IptablesState(sets=current))


def test_bad_identifiers_never_reach_the_text() -> None:
    bad = with_chain(
        seed_ruleset(),
        Table.RAW,
        Chain("felis-from-host-endpoint", (Rule(Match(in_iface="eth0 -j ACCEPT")),)),
    )
    with pytest.raises(FelisError, match="invalid interface name"):
        iptables.render_full(bad)
