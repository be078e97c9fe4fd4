"""The memcached seed on memcached-node-1 gives the layout of reference §5.13 with felis names."""

from __future__ import annotations

from pathlib import Path

import pytest
from calc_helpers import chain, chains

from felis.calc import CalcResult, HostInterface, compute
from felis.dataplane.spec import (
    Accept,
    Family,
    HookPosition,
    Jump,
    MarkBits,
    Match,
    NoTrack,
    PortRange,
    Return,
    Rule,
    SetKind,
    SetMark,
    Table,
)
from felis.model import load_documents

SEED = Path(__file__).parents[3] / "examples" / "memcached-seed.yaml"
M = MarkBits.from_mask()
ACCEPT = M.accept
SET_V4 = "felis4-s-j0651QXPU3OWTryyoQJxg8"


@pytest.fixture(scope="module")
def seed() -> CalcResult:
    resources = load_documents(SEED.read_bytes(), str(SEED))
    return compute(
        resources, "memcached-node-1", [HostInterface("eth0", ("10.128.0.162/24",))], None
    )


def test_untracked_policy_only_in_raw(seed: CalcResult) -> None:
    raw = chains(seed, Table.RAW)
    assert "felis-pi-memcached-server" in raw
    assert "felis-po-memcached-server" in raw
    for table in (Table.MANGLE, Table.FILTER):
        assert not [c for c in chains(seed, table) if c.startswith(("felis-pi-", "felis-po-"))]
    assert seed.spec.endpoints == ("memcached-node-1-eth0",)
    assert seed.warnings == []


def test_raw_layout(seed: CalcResult) -> None:
    assert chains(seed, Table.RAW) == [
        "felis-PREROUTING",
        "felis-OUTPUT",
        "felis-from-host-endpoint",
        "felis-to-host-endpoint",
        "felis-fh-eth0",
        "felis-th-eth0",
        "felis-untracked-accept",
        "felis-failsafe-in",
        "felis-failsafe-out",
        "felis-pi-memcached-server",
        "felis-po-memcached-server",
    ]
    raw = seed.spec.ruleset(Family.V4).table(Table.RAW)
    # The fast path: the policy's Allow rule, limited to the interface, ahead of the walk.
    assert raw.hooks_for("PREROUTING", HookPosition.INSERT) == (
        Rule(
            Match(
                in_iface="eth0",
                protocol=6,
                src_sets=(SET_V4,),
                dst_ports=(PortRange(12211, 12211),),
            ),
            Jump("felis-untracked-accept"),
            "gnp/memcached-server ingress rule 0",
        ),
        Rule(action=Jump("felis-PREROUTING")),
    )
    assert raw.hooks_for("OUTPUT", HookPosition.INSERT) == (
        Rule(
            Match(
                out_iface="eth0",
                protocol=6,
                dst_sets=(SET_V4,),
                src_ports=(PortRange(12211, 12211),),
            ),
            Jump("felis-untracked-accept"),
            "gnp/memcached-server egress rule 0",
        ),
        Rule(action=Jump("felis-OUTPUT")),
    )
    assert raw.chains["felis-untracked-accept"].rules == (
        Rule(action=SetMark(ACCEPT, M.all)),
        Rule(action=NoTrack()),
        Rule(action=Accept(), comment="Untracked policy accepted packet"),
    )
    assert raw.chains["felis-PREROUTING"].rules == (
        Rule(action=SetMark(0, M.all)),
        Rule(action=Jump("felis-from-host-endpoint")),
        Rule(Match(mark_set=ACCEPT), Accept()),
    )
    assert chain(seed, Table.RAW, "felis-from-host-endpoint") == [
        "in_iface=eth0 -> Goto(target='felis-fh-eth0')"
    ]
    fh = raw.chains["felis-fh-eth0"].rules
    # Clear verdict bits, the tier (jump, NOTRACK, RETURN), and failsafe last: an untracked
    # Allow wins over a failsafe port.
    assert fh[0] == Rule(action=SetMark(0, M.accept | M.pass_))
    assert fh[1] == Rule(action=SetMark(0, M.pass_), comment="Start of tier default")
    assert fh[2].match == Match(mark_clear=M.pass_)
    assert fh[2].action == Jump("felis-pi-memcached-server")
    assert fh[3] == Rule(Match(mark_set=ACCEPT), NoTrack())
    assert fh[4] == Rule(Match(mark_set=ACCEPT), Return(), "Return if policy accepted")
    assert fh[5] == Rule(action=Jump("felis-failsafe-in"))
    assert len(fh) == 6
    th = raw.chains["felis-th-eth0"].rules
    assert th[2].action == Jump("felis-po-memcached-server")
    assert th[3].action == NoTrack()
    assert th[5] == Rule(action=Jump("felis-failsafe-out"))


def test_policy_chains(seed: CalcResult) -> None:
    raw = seed.spec.ruleset(Family.V4).table(Table.RAW)
    assert raw.chains["felis-pi-memcached-server"].rules == (
        Rule(
            Match(protocol=6, src_sets=(SET_V4,), dst_ports=(PortRange(12211, 12211),)),
            SetMark(ACCEPT, ACCEPT),
            "gnp/memcached-server ingress rule 0",
        ),
    )
    assert raw.chains["felis-po-memcached-server"].rules == (
        Rule(
            Match(protocol=6, dst_sets=(SET_V4,), src_ports=(PortRange(12211, 12211),)),
            SetMark(ACCEPT, ACCEPT),
            "gnp/memcached-server egress rule 0",
        ),
    )
    sets = seed.spec.ruleset(Family.V4).sets
    assert set(sets) == {SET_V4}
    assert sets[SET_V4].kind is SetKind.NET
    assert sets[SET_V4].comment == 'memcached == "client"'
    assert set(seed.spec.ruleset(Family.V6).sets) == {"felis6-s-j0651QXPU3OWTryyoQJxg8"}


def _ports(*numbers: int) -> str:
    return repr(tuple(PortRange(n, n) for n in numbers))


TCP_FAILSAFE = (22, 179, 2379, 2380, 5473, 6443, 6666, 6667)


def test_raw_failsafe_allows_replies_in_one_rule_per_protocol(seed: CalcResult) -> None:
    rules = chain(seed, Table.RAW, "felis-failsafe-in")
    assert rules == [
        f"protocol=6 dst_ports={_ports(*TCP_FAILSAFE)} -> Accept() "
        "# failsafe in tcp:22,179,2379,2380,5473,6443,6666,6667",
        f"protocol=17 dst_ports={_ports(68)} -> Accept() # failsafe in udp:68",
        f"protocol=17 src_ports={_ports(53, 67)} -> Accept() # failsafe out udp:53,67 reply",
        f"protocol=6 src_ports={_ports(*TCP_FAILSAFE[1:])} -> Accept() "
        "# failsafe out tcp:179,2379,2380,5473,6443,6666,6667 reply",
    ]
    assert len(chain(seed, Table.FILTER, "felis-failsafe-in")) == 2


def test_mangle_layout(seed: CalcResult) -> None:
    # No preDNAT policy: PREROUTING is not hooked, so its chains are not programmed.
    assert chains(seed, Table.MANGLE) == [
        "felis-POSTROUTING",
        "felis-to-host-endpoint",
        "felis-th-eth0",
        "felis-failsafe-out",
    ]
    assert chain(seed, Table.MANGLE, "felis-th-eth0") == [
        "ct_states=established,related -> SetMark(value=16777216, mask=16777216)",
        "ct_states=established,related -> Return()",
        "ct_states=invalid -> Drop()",
        "-> Jump(target='felis-failsafe-out')",
        "-> SetMark(value=0, mask=50331648)",
        "-> Drop() # Drop if no profiles matched",
    ]
    assert chain(seed, Table.MANGLE, "felis-POSTROUTING") == [
        "-> SetMark(value=0, mask=452984832)",
        "ct_dnat=True -> Jump(target='felis-to-host-endpoint')",
        "mark_set=16777216 -> Return() # Host endpoint policy accepted packet.",
    ]
    mangle = seed.spec.ruleset(Family.V4).table(Table.MANGLE)
    # Accepted already (untracked policy, or the FORWARD append rule): the jump is skipped.
    assert mangle.hooks_for("POSTROUTING", HookPosition.INSERT) == (
        Rule(Match(mark_clear=ACCEPT), Jump("felis-POSTROUTING")),
    )


def test_filter_default_deny_and_forward_allow(seed: CalcResult) -> None:
    assert chain(seed, Table.FILTER, "felis-fh-eth0") == [
        "ct_states=established,related -> Accept()",
        "ct_states=invalid -> Drop()",
        "-> Jump(target='felis-failsafe-in')",
        "-> SetMark(value=0, mask=50331648)",
        "-> Drop() # Drop if no profiles matched",
    ]
    assert chain(seed, Table.FILTER, "felis-fhfw-eth0")[-2:] == [
        "-> SetMark(value=16777216, mask=16777216) # Allow forwarded traffic by default",
        "-> Return() # Return for accepted forward traffic",
    ]
    assert chain(seed, Table.FILTER, "felis-thfw-eth0")[-1] == (
        "-> Return() # Return for accepted forward traffic"
    )


def test_filter_output_never_negates_ct_dnat(seed: CalcResult) -> None:
    for family in (Family.V4, Family.V6):
        for table in seed.spec.ruleset(family).tables.values():
            for ch in table.chains.values():
                assert all(rule.match.ct_dnat is not False for rule in ch.rules)
    assert chain(seed, Table.FILTER, "felis-OUTPUT") == [
        "-> SetMark(value=0, mask=452984832)",
        "ct_dnat=True -> Return() # DNAT: policed in mangle POSTROUTING",
        "-> Jump(target='felis-to-host-endpoint')",
        "mark_set=16777216 -> Accept() # Host endpoint policy accepted packet.",
    ]


def test_filter_hooks(seed: CalcResult) -> None:
    flt = seed.spec.ruleset(Family.V4).table(Table.FILTER)
    assert flt.kernel_chains == ("INPUT", "FORWARD", "OUTPUT")
    assert flt.hooks_for("FORWARD", HookPosition.APPEND) == (
        Rule(Match(mark_set=ACCEPT), Accept(), "Policy explicitly accepted packet."),
        Rule(action=SetMark(ACCEPT, ACCEPT), comment="Mark forwarded packet as policed"),
    )
    assert chain(seed, Table.FILTER, "felis-FORWARD") == [
        f"-> SetMark(value=0, mask={M.all & ~ACCEPT})",
        "mark_clear=16777216 -> Jump(target='felis-from-hep-forward')",
        "-> Jump(target='felis-to-hep-forward')",
    ]
    # Accepted by untracked policy: decided in the hook, before any jump.
    for kernel_chain, target in (("INPUT", "felis-INPUT"), ("OUTPUT", "felis-OUTPUT")):
        assert flt.hooks_for(kernel_chain, HookPosition.INSERT) == (
            Rule(Match(mark_set=ACCEPT), Accept()),
            Rule(action=Jump(target)),
        )
    mangle = seed.spec.ruleset(Family.V4).table(Table.MANGLE)
    assert mangle.kernel_chains == ("POSTROUTING",)


def test_all_names_fit() -> None:
    resources = load_documents(SEED.read_bytes(), str(SEED))
    result = compute(resources, "memcached-node-1", None, None)
    for ruleset in result.spec.rulesets.values():
        for table in ruleset.tables.values():
            assert all(len(name) <= 28 and name.startswith("felis-") for name in table.chains)
        assert all(len(name) <= 31 for name in ruleset.sets)
