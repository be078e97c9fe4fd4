"""The node's settings from FelixConfigurations and the environment (felis.calc.felixconfig), the
calculator taking new settings, and chainInsertMode in the hooks."""

from __future__ import annotations

from typing import Any

import pytest
from calc_helpers import ETH0, NODE, chain, gnp, hep, run

from felis.calc import (
    DEFAULT_FAILSAFE_INBOUND,
    DEFAULT_FAILSAFE_OUTBOUND,
    CalcConfig,
    Calculator,
    FailsafePort,
    Skipped,
    parse_failsafe_ports,
)
from felis.calc.config import DEFAULT_LOG_PREFIX
from felis.calc.felixconfig import PARAMS, ConfigOverrides, effective_config
from felis.calc.hooks import place_hooks
from felis.dataplane import iptables
from felis.dataplane.kernel_state import hooks_in_place
from felis.dataplane.spec import Family, HookPosition, MarkBits, Table
from felis.model import from_dict
from felis.model.felixconfig import HONOURED_FIELDS, SPEC_FIELDS, FelixConfiguration


def felix(name: str, annotations: dict[str, str] | None = None, **spec: Any) -> FelixConfiguration:
    resource = from_dict(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "FelixConfiguration",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": spec,
        }
    )
    assert isinstance(resource, FelixConfiguration)
    return resource


def ports(text: str) -> tuple[FailsafePort, ...]:
    return parse_failsafe_ports(text)


DEFAULT = felix(
    "default",
    failsafeInboundHostPorts=[{"protocol": "TCP", "port": 22}, {"protocol": "UDP", "port": 68}],
    logPrefix="from-default",
    chainInsertMode="Append",
)
NODE_CONFIG = felix(
    f"node.{NODE}",
    failsafeInboundHostPorts=[{"port": 2222}, {"protocol": "SCTP", "port": 3868}],
)


# --------------------------------------------------------------------------- precedence


def test_every_honoured_field_is_resolved() -> None:
    assert {param.field for param in PARAMS} == HONOURED_FIELDS
    assert all(field in SPEC_FIELDS for field in HONOURED_FIELDS)


def test_built_in_defaults_without_objects_or_environment() -> None:
    config = effective_config({}, NODE, [])
    assert config.calc == CalcConfig()
    assert set(config.origins.values()) == {"built-in default"}
    assert config.summary() == "built-in defaults"
    assert config.warnings == () and config.skipped == ()


def test_default_object_over_built_in() -> None:
    config = effective_config({}, NODE, [DEFAULT])
    assert config.calc.failsafe_inbound == ports("tcp:22,udp:68")
    assert config.calc.failsafe_outbound == DEFAULT_FAILSAFE_OUTBOUND
    assert config.calc.log_prefix == "from-default"
    assert config.calc.chain_insert_mode == "append"
    assert config.origins["failsafeInboundHostPorts"] == "FelixConfiguration default"
    assert config.origins["failsafeOutboundHostPorts"] == "built-in default"


def test_node_object_over_default_field_by_field() -> None:
    config = effective_config({}, NODE, [DEFAULT, NODE_CONFIG])
    assert config.calc.failsafe_inbound == ports("tcp:2222,sctp:3868")
    assert config.origins["failsafeInboundHostPorts"] == f"FelixConfiguration node.{NODE}"
    # Fields the node object leaves out still come from `default`.
    assert config.calc.log_prefix == "from-default"
    # Another node's object never applies here.
    other = effective_config({}, "node-2", [DEFAULT, NODE_CONFIG])
    assert other.calc.failsafe_inbound == ports("tcp:22,udp:68")


def test_environment_over_node_object() -> None:
    env = {
        "FELIX_FAILSAFEINBOUNDHOSTPORTS": "tcp:22, udp:68, tcp:10.0.0.0/8:443",
        "felix_LogPrefix": "env-prefix",
        "FELIX_CHAININSERTMODE": "insert",
        "FELIX_IPTABLESMARKMASK": "0xff00",
        "FELIX_INTERFACEEXCLUDE": "kube-ipvs0,/^veth/",
        "FELIX_UNRELATED": "x",
        "OTHER": "y",
    }
    config = effective_config(env, NODE, [DEFAULT, NODE_CONFIG])
    assert config.calc.failsafe_inbound == (
        FailsafePort("tcp", 22),
        FailsafePort("udp", 68),
        FailsafePort("tcp", 443, "10.0.0.0/8"),
    )
    assert config.calc.log_prefix == "env-prefix"
    assert config.calc.chain_insert_mode == "insert"
    assert config.calc.marks == MarkBits.from_mask(0xFF00)
    assert config.calc.interface_exclude == ("kube-ipvs0", "/^veth/")
    assert config.origins["logPrefix"] == "environment FELIX_LOGPREFIX"
    assert config.warnings == ()


def test_felis_options_win_over_everything() -> None:
    env = {"FELIX_FAILSAFEINBOUNDHOSTPORTS": "tcp:1"}
    overrides = ConfigOverrides(failsafe_inbound=ports("tcp:9"), failsafe_outbound=())
    config = effective_config(env, NODE, [DEFAULT, NODE_CONFIG], overrides=overrides)
    assert config.calc.failsafe_inbound == ports("tcp:9")
    assert config.calc.failsafe_outbound == ()
    assert "--failsafe-inbound" in config.origins["failsafeInboundHostPorts"]


def test_empty_list_and_none_mean_no_entries() -> None:
    empty = felix("default", failsafeInboundHostPorts=[], failsafeOutboundHostPorts=[])
    config = effective_config({}, NODE, [empty])
    assert config.calc.failsafe_inbound == () and config.calc.failsafe_outbound == ()
    # An absent list is not an empty one: the next source decides.
    assert effective_config({}, NODE, [felix("default")]).calc.failsafe_inbound == (
        DEFAULT_FAILSAFE_INBOUND
    )
    env = {"FELIX_FAILSAFEINBOUNDHOSTPORTS": "none", "FELIX_FAILSAFEOUTBOUNDHOSTPORTS": "NONE"}
    config = effective_config(env, NODE, [DEFAULT])
    assert config.calc.failsafe_inbound == () and config.calc.failsafe_outbound == ()
    assert (
        config.origins["failsafeInboundHostPorts"] == "environment FELIX_FAILSAFEINBOUNDHOSTPORTS"
    )


def test_an_empty_environment_value_is_not_set() -> None:
    # Felix ignores an empty value ("use none to disable").
    config = effective_config({"FELIX_FAILSAFEINBOUNDHOSTPORTS": ""}, NODE, [DEFAULT])
    assert config.calc.failsafe_inbound == ports("tcp:22,udp:68")


def test_felix_env_syntax() -> None:
    env = {"FELIX_FAILSAFEOUTBOUNDHOSTPORTS": "53, udp:[fd00::/8]:53,, SCTP:3868"}
    config = effective_config(env, NODE, [])
    assert config.calc.failsafe_outbound == (
        FailsafePort("tcp", 53),
        FailsafePort("udp", 53, "fd00::/8"),
        FailsafePort("sctp", 3868),
    )


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("FELIX_FAILSAFEINBOUNDHOSTPORTS", "icmp:22", "protocol must be tcp, udp or sctp"),
        ("FELIX_FAILSAFEINBOUNDHOSTPORTS", "tcp:99999", "not a number in 1-65535"),
        ("FELIX_CHAININSERTMODE", "top", "must be Insert or Append"),
        ("FELIX_CHAININSERTMODE", "none", "'none' is not allowed"),
        ("FELIX_IPTABLESMARKMASK", "0x3", "needs at least 5"),
        ("FELIX_IPTABLESMARKMASK", "lots", "not a 32-bit number"),
        ("FELIX_INTERFACEEXCLUDE", "eth0, eth1", "neither an interface name"),
    ],
)
def test_a_bad_environment_value_is_a_warning_and_the_next_source_decides(
    variable: str, value: str, reason: str
) -> None:
    config = effective_config({variable: value}, NODE, [DEFAULT])
    [warning] = config.warnings
    assert warning.startswith(f"environment {variable} (")
    assert reason in warning and warning.endswith("; ignored")
    assert "\n" not in warning
    assert config.calc.failsafe_inbound == ports("tcp:22,udp:68")
    assert config.calc.chain_insert_mode == "append"
    assert config.calc.marks == CalcConfig().marks


def test_annotation_overrides_the_spec_field_of_its_object() -> None:
    annotated = felix(
        "default",
        annotations={"config.projectcalico.org/FailsafeInboundHostPorts": "tcp:8022"},
        failsafeInboundHostPorts=[{"port": 22}],
    )
    config = effective_config({}, NODE, [annotated])
    assert config.calc.failsafe_inbound == ports("tcp:8022")


def test_an_object_with_an_unusable_value_is_skipped_whole() -> None:
    bad = felix(
        f"node.{NODE}",
        annotations={"config.projectcalico.org/IptablesMarkMask": "0x1"},
        logPrefix="from-node",
    )
    config = effective_config({}, NODE, [DEFAULT, bad])
    [skipped] = config.skipped
    assert skipped.kind == "FelixConfiguration" and skipped.name == f"node.{NODE}"
    assert "annotation config.projectcalico.org/IptablesMarkMask" in skipped.reason
    assert config.calc.log_prefix == "from-default", "the node object is left out whole"


def test_refused_objects_are_reported_skipped() -> None:
    refused = {f"node.{NODE}": "spec.logPrefix: bad", "node.other": "spec.x: bad"}
    config = effective_config({}, NODE, [DEFAULT], refused=refused)
    # Only the objects this node reads: another node's broken object is that node's problem.
    assert config.skipped == (Skipped("FelixConfiguration", f"node.{NODE}", "spec.logPrefix: bad"),)
    assert config.calc.log_prefix == "from-default"


def test_selector_scoped_objects_are_named_and_ignored() -> None:
    scoped = felix("zone-a", nodeSelector="zone == 'a'", logPrefix="scoped")
    config = effective_config({}, NODE, [scoped])
    assert config.calc.log_prefix == DEFAULT_LOG_PREFIX
    [warning] = config.warnings
    assert warning.startswith("FelixConfiguration zone-a: nodeSelector-scoped")


def test_mark_mask_and_insert_mode_follow_the_backend() -> None:
    masks = felix(
        "default",
        iptablesMarkMask=0xFF000000,
        nftablesMarkMask=0x00FF0000,
        chainInsertMode="Append",
    )
    iptables_config = effective_config({}, NODE, [masks])
    assert iptables_config.calc.marks == MarkBits.from_mask(0xFF000000)
    assert iptables_config.calc.chain_insert_mode == "append"
    nft = effective_config({}, NODE, [masks], backend="nftables")
    assert nft.calc.marks == MarkBits.from_mask(0x00FF0000)
    assert "iptablesMarkMask" not in nft.origins
    # Append has no meaning for the nftables backend: said once, and not applied.
    assert nft.calc.chain_insert_mode == "insert"
    assert any("has no effect with the nftables backend" in w for w in nft.warnings)


def test_full_refresh_interval_follows_the_backend() -> None:
    # Felix's defaults: IP sets re-read every 90 s, the nftables table every 180 s.
    assert effective_config({}, NODE, []).full_refresh == 90.0
    assert effective_config({}, NODE, [], backend="nftables").full_refresh == 180.0
    stored = felix("default", ipsetsRefreshInterval="2m", nftablesRefreshInterval="1m30s")
    assert effective_config({}, NODE, [stored]).full_refresh == 120.0
    nft = effective_config({}, NODE, [stored], backend="nftables")
    assert nft.full_refresh == 90.0
    assert nft.origins["nftablesRefreshInterval"] == "FelixConfiguration default"
    assert "ipsetsRefreshInterval" not in nft.origins
    # The environment and annotations take Felix's form there: a number of seconds.
    env = effective_config({"FELIX_IPSETSREFRESHINTERVAL": "30"}, NODE, [stored])
    assert env.full_refresh == 30.0
    assert effective_config({"FELIX_IPSETSREFRESHINTERVAL": "none"}, NODE, []).full_refresh == 0
    noted = felix(f"node.{NODE}", {"config.projectcalico.org/NftablesRefreshInterval": "45"})
    assert effective_config({}, NODE, [noted, stored], backend="nftables").full_refresh == 45.0


def test_a_bad_refresh_interval_in_the_environment_is_a_warning() -> None:
    config = effective_config({"FELIX_IPSETSREFRESHINTERVAL": "90s"}, NODE, [])
    assert config.full_refresh == 90.0
    assert config.warnings == (
        "environment FELIX_IPSETSREFRESHINTERVAL (ipsetsRefreshInterval): invalid number of "
        "seconds '90s'; ignored",
    )
    negative = effective_config(
        {"FELIX_NFTABLESREFRESHINTERVAL": "-1"}, NODE, [], backend="nftables"
    )
    assert negative.full_refresh == 180.0 and "must be 0 or more" in negative.warnings[0]


def test_only_default_without_a_node() -> None:
    config = effective_config({}, None, [DEFAULT, NODE_CONFIG])
    assert config.calc.failsafe_inbound == ports("tcp:22,udp:68")


# --------------------------------------------------------------------------- the calculator


SERVER = hep("h1", iface="eth0", ips=["10.0.0.1"])
LOGGED = gnp("logged", ingress=[{"action": "Log"}, {"action": "Allow"}])


def test_compute_ignores_felix_configuration_objects() -> None:
    assert run([SERVER, DEFAULT]).spec == run([SERVER]).spec


def test_set_config_renders_again() -> None:
    calc = Calculator(NODE)
    calc.set_interfaces([ETH0])
    for resource in (SERVER, LOGGED):
        calc.upsert(resource)
    before = calc.result().spec
    calc.set_config(CalcConfig())
    # Equal settings change nothing: the same tables, not rebuilt.
    assert calc.result().spec.ruleset(Family.V4).tables is before.ruleset(Family.V4).tables
    new = effective_config({}, NODE, [DEFAULT, NODE_CONFIG]).calc
    calc.set_config(new)
    fresh = run([SERVER, LOGGED], config=new)
    assert calc.result().spec == fresh.spec
    assert any("from-default" in rule for rule in chain(fresh, Table.FILTER, "felis-pi-logged"))
    assert chain(fresh, Table.FILTER, "felis-failsafe-in") == [
        "protocol=6 dst_ports=(PortRange(first=2222, last=2222),) -> Accept() "
        "# failsafe in tcp:2222",
        "protocol=132 dst_ports=(PortRange(first=3868, last=3868),) -> Accept() "
        "# failsafe in sctp:3868",
    ]


def _hooks(config: CalcConfig, table: Table, family: Family = Family.V4) -> list[tuple[str, str]]:
    spec = run([SERVER, LOGGED], config=config).spec.ruleset(family).table(table)
    return [(hook.kernel_chain, hook.position.value) for hook in spec.hooks]


def test_append_mode_turns_every_insert_into_an_append_before_the_old_appends() -> None:
    inserted = _hooks(CalcConfig(), Table.FILTER)
    appended = _hooks(CalcConfig(chain_insert_mode="append"), Table.FILTER)
    assert {position for _, position in appended} == {"append"}
    assert ("FORWARD", "insert") in inserted
    # Per kernel chain, the same rules in the same order: the former inserts, then the appends.
    spec_in = run([SERVER, LOGGED]).spec.ruleset(Family.V4).table(Table.FILTER)
    spec_app = (
        run([SERVER, LOGGED], config=CalcConfig(chain_insert_mode="append"))
        .spec.ruleset(Family.V4)
        .table(Table.FILTER)
    )
    for kernel_chain in spec_in.kernel_chains:
        rules_in = [
            *spec_in.hooks_for(kernel_chain, HookPosition.INSERT),
            *spec_in.hooks_for(kernel_chain, HookPosition.APPEND),
        ]
        assert list(spec_app.hooks_for(kernel_chain, HookPosition.APPEND)) == rules_in
    assert place_hooks(spec_in_tables := {Table.FILTER: spec_in}, "insert") == spec_in_tables


def test_append_mode_in_iptables_text_and_read_back() -> None:
    config = CalcConfig(chain_insert_mode="append")
    ruleset = run([SERVER, LOGGED], config=config).spec.ruleset(Family.V4)
    text = iptables.render_full(ruleset).restore
    hook_lines = [line for line in text.splitlines() if line.startswith(("-I ", "-A INPUT"))]
    assert hook_lines and all(line.startswith("-A INPUT") for line in hook_lines)
    assert "-I " not in text
    # What the kernel would read back is in place: no rewrite on the next apply.
    after = iptables.state_after(ruleset, iptables.IptablesState())
    assert iptables.render_delta(ruleset, after).empty
    # Foreign rules first, ours at the end: in place; ours first: not in place.
    hashes = after.tables[Table.FILTER].chains["INPUT"].hashes
    assert hooks_in_place((None, *hashes), (), hashes)
    assert not hooks_in_place((*hashes, None), (), hashes)


def test_generic_xdp_is_felix_s_setting_with_felis_own_default() -> None:
    """genericXDPEnabled as Felix reads it; felis' built-in default allows the generic
    fallback (Felix's does not: docs/xdp.md)."""
    assert effective_config({}, NODE, []).calc.xdp_generic is True
    stored = effective_config({}, NODE, [felix("default", genericXDPEnabled=False)])
    assert stored.calc.xdp_generic is False
    assert stored.origins["genericXDPEnabled"] == "FelixConfiguration default"
    env = effective_config({"FELIX_GENERICXDPENABLED": "true"}, NODE,
                           [felix("default", genericXDPEnabled=False)])  # fmt: skip
    assert env.calc.xdp_generic is True
    assert env.origins["genericXDPEnabled"] == "environment FELIX_GENERICXDPENABLED"
