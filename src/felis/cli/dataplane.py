"""Commands that reach the dataplane: `felis render` and `felis agent`."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import closing
from enum import StrEnum
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from felis.agent.nodes import no_endpoints_warning
from felis.calc import CalcConfig, CalcResult, compute, parse_failsafe_ports
from felis.calc.felixconfig import ConfigOverrides, EffectiveConfig, effective_config
from felis.cli.output import console
from felis.cli.resources import DatastoreOption, read_datastore
from felis.dataplane.spec import Family
from felis.datastore import Datastore, StorageUnavailable, open_datastore
from felis.errors import FelisError
from felis.model import HostEndpoint, Resource
from felis.model.felixconfig import FelixConfiguration

if TYPE_CHECKING:
    from felis.dataplane.monitor import OwnProcesses
    from felis.xdp.attach import XdpDataplane


class Backend(StrEnum):
    iptables = "iptables"
    nftables = "nftables"


class FamilyChoice(StrEnum):
    v4 = "4"
    v6 = "6"
    both = "both"


class StatusFormat(StrEnum):
    table = "table"
    json = "json"


def _node_name(value: str) -> str:
    if not value.strip():
        raise typer.BadParameter("must not be empty")
    return value


NodeOption = Annotated[
    str, typer.Option("--node", help="Node name (HostEndpoint spec.node)", callback=_node_name)
]
AllowEmptyOption = Annotated[
    bool,
    typer.Option(
        "--allow-empty",
        help="Go on when no HostEndpoint is on NODE (by default an error: a mistyped node "
        "name would otherwise print an empty ruleset as if all were well)",
    ),
]
BackendOption = Annotated[Backend, typer.Option("--backend", help="Kernel interface to program")]
FailsafeInOption = Annotated[
    str | None,
    typer.Option(
        "--failsafe-inbound",
        help="Inbound failsafe ports, Calico syntax (tcp:22,udp:68,...; 'none'); wins over "
        "$FELIX_FAILSAFEINBOUNDHOSTPORTS and the FelixConfigurations (docs/configuration.md)",
        envvar="FELIS_FAILSAFE_INBOUND_HOST_PORTS",
        show_default=False,
    ),
]
FailsafeOutOption = Annotated[
    str | None,
    typer.Option(
        "--failsafe-outbound",
        help="Outbound failsafe ports, Calico syntax; wins over "
        "$FELIX_FAILSAFEOUTBOUNDHOSTPORTS and the FelixConfigurations",
        envvar="FELIS_FAILSAFE_OUTBOUND_HOST_PORTS",
        show_default=False,
    ),
]


def calc_config(failsafe_inbound: str | None, failsafe_outbound: str | None) -> CalcConfig:
    """Calico's failsafe defaults unless the operator gave a list."""
    defaults = CalcConfig()
    return dataclasses.replace(
        defaults,
        failsafe_inbound=defaults.failsafe_inbound
        if failsafe_inbound is None
        else parse_failsafe_ports(failsafe_inbound),
        failsafe_outbound=defaults.failsafe_outbound
        if failsafe_outbound is None
        else parse_failsafe_ports(failsafe_outbound),
    )


def _xdp_dataplane(own: OwnProcesses) -> XdpDataplane | None:
    """XDP when this host can build and load the program; else None, with one warning."""
    from felis.xdp.attach import XdpDataplane

    missing = [tool for tool in ("clang", "bpftool") if shutil.which(tool) is None]
    if missing:
        logging.getLogger("felis.agent").warning(
            "XDP off: %s not installed (Debian: apt-get install clang bpftool); blocklists "
            "are dropped in the raw table",
            " and ".join(missing),
        )
        return None
    return XdpDataplane(runner=own.runner())


def config_overrides(
    failsafe_inbound: str | None, failsafe_outbound: str | None
) -> ConfigOverrides:
    """felis' own failsafe options: above every other source (docs/configuration.md)."""
    return ConfigOverrides(
        None if failsafe_inbound is None else parse_failsafe_ports(failsafe_inbound),
        None if failsafe_outbound is None else parse_failsafe_ports(failsafe_outbound),
    )


def node_config(
    resources: list[Resource],
    node: str,
    backend: Backend,
    failsafe_inbound: str | None,
    failsafe_outbound: str | None,
) -> EffectiveConfig:
    """NODE's settings as its agent would resolve them from the same objects, this process'
    `FELIX_…` environment and felis' options."""
    return effective_config(
        os.environ,
        node,
        [r for r in resources if isinstance(r, FelixConfiguration)],
        backend=backend.value,
        overrides=config_overrides(failsafe_inbound, failsafe_outbound),
    )


def node_warning(resources: list[Resource], node: str, *, allow_empty: bool) -> str | None:
    """The no-HostEndpoint warning for `node`, or FelisError unless `allow_empty`."""
    warning = no_endpoints_warning(
        node, (r.spec.node for r in resources if isinstance(r, HostEndpoint))
    )
    if warning and not allow_empty:
        raise FelisError(f"{warning} (--allow-empty to go on anyway)")
    return warning


def render(
    node: NodeOption,
    backend: BackendOption = Backend.nftables,
    datastore: DatastoreOption = None,
    family: Annotated[FamilyChoice, typer.Option("--family", help="IP family")] = (
        FamilyChoice.both
    ),
    failsafe_inbound: FailsafeInOption = None,
    failsafe_outbound: FailsafeOutOption = None,
    allow_empty: AllowEmptyOption = False,
) -> None:
    """Print the kernel text felis would program on NODE.

    The exact text felis would apply from scratch; no root needed.

    Interfaces are not read: every HostEndpoint with an interfaceName is assumed present and
    HostEndpoints matched only by expectedIPs are left out.
    """
    resources = read_datastore(datastore)
    empty = node_warning(resources, node, allow_empty=allow_empty)
    config = node_config(resources, node, backend, failsafe_inbound, failsafe_outbound)
    result = compute(resources, node, None, config.calc)
    for warning in ([empty] if empty else []) + [*config.warnings, *result.warnings]:
        typer.echo(f"# warning: {warning}", err=True)
    for skipped in sorted([*config.skipped, *result.skipped]):
        typer.echo(f"# error: {skipped}", err=True)
    families = {
        FamilyChoice.v4: [Family.V4],
        FamilyChoice.v6: [Family.V6],
        FamilyChoice.both: [Family.V4, Family.V6],
    }[family]
    if backend is Backend.nftables:
        from felis.dataplane import nftables

        for fam in families:
            typer.echo(nftables.render_full(result.spec.ruleset(fam)))
    else:
        from felis.dataplane import iptables

        for fam in families:
            text = iptables.render_full(result.spec.ruleset(fam))
            typer.echo(f"# ipset restore (IPv{int(fam)})\n{text.ipset}")
            typer.echo(f"# {'ip6tables' if fam is Family.V6 else 'iptables'}-restore --noflush")
            typer.echo(text.restore)


def agent(
    node: NodeOption,
    backend: BackendOption = Backend.nftables,
    once: Annotated[bool, typer.Option("--once", help="Converge once and exit")] = False,
    cleanup: Annotated[
        bool, typer.Option("--cleanup", help="Remove everything felis programmed, then exit")
    ] = False,
    datastore: DatastoreOption = None,
    failsafe_inbound: FailsafeInOption = None,
    failsafe_outbound: FailsafeOutOption = None,
    refresh_interval: Annotated[
        float,
        typer.Option(
            "--refresh-interval",
            help="Seconds between quick drift checks (rules, set sizes; set members on the "
            "longer ipsetsRefreshInterval / nftablesRefreshInterval); 0: no periodic check",
        ),
    ] = 30.0,
    metrics_port: Annotated[
        int,
        typer.Option("--metrics-port", help="Prometheus /metrics and /healthz port (0: off)"),
    ] = 9099,
    metrics_address: Annotated[
        str, typer.Option("--metrics-address", help="Address the metrics server binds")
    ] = "127.0.0.1",
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning")] = "info",
    xdp: Annotated[
        bool,
        typer.Option(
            "--xdp/--no-xdp",
            help="Drop eligible blocklisted sources in XDP (needs clang and bpftool); "
            "FelixConfiguration xdpEnabled also turns it off",
        ),
    ] = True,
    kernel_events: Annotated[
        bool,
        typer.Option(
            "--kernel-events/--no-kernel-events",
            help="Repair another program's changes to felis' rules as they happen "
            "(nft monitor), not only at the next drift check",
        ),
    ] = True,
) -> None:
    """Program this host for NODE and keep it converged.

    This host is the network namespace the agent runs in.
    """
    from felis.agent.agent import Agent, AgentSettings
    from felis.agent.interfaces import read_interfaces
    from felis.dataplane.kernel import open_dataplane
    from felis.dataplane.monitor import KernelMonitor, OwnProcesses

    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    own_processes = OwnProcesses()
    dataplane = open_dataplane(backend.value, runner=own_processes.runner())
    xdp_dataplane = _xdp_dataplane(own_processes) if xdp or cleanup else None
    if cleanup:
        report = dataplane.cleanup()
        detached = (
            [i for i in xdp_dataplane.interfaces() if xdp_dataplane.detach(i)]
            if (xdp_dataplane is not None)
            else []
        )
        typer.echo(
            f"cleanup: {report.summary()}"
            + (f"; XDP removed from {', '.join(detached)}" if detached else "")
        )
        return
    overrides = config_overrides(failsafe_inbound, failsafe_outbound)
    settings = AgentSettings(
        node=node,
        environ=dict(os.environ),
        overrides=overrides if xdp else dataclasses.replace(overrides, xdp_enabled=False),
        refresh_interval=refresh_interval,
    )
    if once:
        with closing(open_datastore(datastore)) as store:
            runner = Agent(settings, store, dataplane, read_interfaces, xdp=xdp_dataplane)
            report = runner.converge_once()
            typer.echo(f"{node}: {report.summary()}")
            for warning in runner.state.all_warnings:
                typer.echo(f"warning: {warning}", err=True)
            return
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("felis.agent").info("signal %d: stopping; rules stay in place", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    opened = _open_when_possible(datastore, stop)
    if opened is None:
        return
    with closing(opened) as store:
        runner = Agent(settings, store, dataplane, read_interfaces, xdp=xdp_dataplane)
        server = None
        if metrics_port:
            from felis.agent.metrics import build_registry, serve_metrics

            registry, metrics = build_registry(runner, _conntrack_reader())
            runner.on_apply = metrics.observe_apply
            server = serve_metrics(runner, registry, metrics_address, metrics_port)
        monitor = None
        if kernel_events:
            monitor = KernelMonitor(backend.value, own_processes, runner.kernel_changed)
            monitor.start()
        try:
            runner.run(stop)
        finally:
            if monitor is not None:
                monitor.stop()
            if server is not None:
                server.shutdown()


# Between attempts to open a datastore that cannot be opened yet, as the agent's other retries.
OPEN_RETRY_SECONDS = 2.0


def _open_when_possible(datastore: str | None, stop: threading.Event) -> Datastore | None:
    """The datastore, once it can be opened; None when stopped first.

    A SQLite file on a full or read-only file system cannot be opened by a new process (SQLite
    cannot create its -wal and -shm files). The agent waits for it rather than exit: the rules
    it programmed before stay in force either way, and it picks up the datastore as soon as the
    file system is fixed, without a service manager restarting it every few seconds. Anything
    else (a bad URL, a file that is not a felis datastore) is refused at once, as before."""
    log = logging.getLogger("felis.agent")
    while True:
        try:
            return open_datastore(datastore)
        except StorageUnavailable as err:
            log.error("%s; trying again every %.0f s (the rules in place stay)", err,
                      OPEN_RETRY_SECONDS)  # fmt: skip
        if stop.wait(OPEN_RETRY_SECONDS):
            return None


def _conntrack_reader() -> Callable[[], dict[str, int]]:
    from felis.conntrack.kernel import read_count, read_max, read_stats

    def read() -> dict[str, int]:
        return {"entries": read_count(), "max": read_max(), **read_stats()}

    return read


def status(
    node: NodeOption,
    backend: BackendOption = Backend.nftables,
    datastore: DatastoreOption = None,
    output: Annotated[StatusFormat, typer.Option("--output", "-o", help="Output format")] = (
        StatusFormat.table
    ),
    failsafe_inbound: FailsafeInOption = None,
    failsafe_outbound: FailsafeOutOption = None,
) -> None:
    """Show this host: endpoints, drift, conntrack, XDP, rule counters.

    A node without HostEndpoints is shown with a warning, not refused: status is how one
    finds out."""
    from felis.agent.interfaces import read_interfaces
    from felis.conntrack.kernel import read_count, read_max, read_stats
    from felis.dataplane.kernel import open_dataplane

    resources = read_datastore(datastore)
    empty = node_warning(resources, node, allow_empty=True)
    config = node_config(resources, node, backend, failsafe_inbound, failsafe_outbound)
    interfaces = read_interfaces()
    result = compute(resources, node, interfaces, config.calc)
    dataplane = open_dataplane(backend.value)
    drift = dataplane.drift(result.spec)
    counters = dataplane.counters(result.spec)
    conntrack = {"entries": read_count(), "max": read_max(), **read_stats()}
    report = {
        "node": node,
        "backend": backend.value,
        "endpoints": list(result.spec.endpoints),
        "in_sync": not drift,
        "drift": drift,
        "warnings": ([empty] if empty else []) + [*config.warnings, *result.warnings],
        "skipped": [str(skipped) for skipped in sorted([*config.skipped, *result.skipped])],
        "settings": config.summary(),
        "conntrack": conntrack,
        "xdp": xdp_status(result, [i.name for i in interfaces]),
        "rules": [
            {
                "family": int(c.family),
                "table": c.table,
                "chain": c.chain,
                "comment": c.comment,
                "packets": c.packets,
                "bytes": c.bytes,
            }
            for c in counters
        ],
    }
    if output is StatusFormat.json:
        import json

        typer.echo(json.dumps(report, indent=2))
        return
    _print_status(report)


XDP_TOP = 5
"""Busiest blocklist entries `felis status` names per interface."""


def xdp_status(result: CalcResult, interfaces: list[str]) -> list[dict[str, Any]]:
    """Per host-endpoint interface (and any interface carrying felis' XDP program): the
    program's attach mode (`off` without one), its entries and drops, and how many networks
    the policy makes eligible (`eligible`: what the agent would put there)."""
    from felis.calc import names
    from felis.dataplane.spec import Table
    from felis.xdp.attach import XdpDataplane, shared_ring_warning

    chains = {
        name
        for ruleset in result.spec.rulesets.values()
        if (table := ruleset.tables.get(Table.FILTER)) is not None
        for name in table.chains
    }
    wanted = {i for i in interfaces if names.endpoint_chain(names.FROM_HOST_PREFIX, i) in chains}
    xdp = XdpDataplane()
    rows = []
    try:
        wanted.update(xdp.interfaces())
    except (FelisError, OSError, ValueError) as err:
        return [{"interface": "*", "mode": "unknown", "error": str(err)}]
    for iface in sorted(wanted | set(result.xdp)):
        row: dict[str, Any] = {
            "interface": iface,
            "mode": "off",
            "program": None,
            "eligible": len(result.xdp.get(iface, ())),
            "entries": 0,
            "dropped_packets": 0,
            "top": [],
        }
        try:
            attached = xdp.status(iface)
            if attached is not None:
                counts = xdp.counters(attached)
                busiest = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
                row.update(
                    mode=attached.mode,
                    program=attached.program,
                    entries=len(counts),
                    dropped_packets=sum(counts.values()),
                    top=[{"net": net, "packets": n} for net, n in busiest[:XDP_TOP] if n],
                )
                if warning := shared_ring_warning(attached):
                    row["warning"] = warning
        except (FelisError, OSError, ValueError) as err:
            row.update(mode="unknown", error=str(err))
        rows.append(row)
    return rows


def _xdp_line(row: dict[str, Any]) -> str:
    text = f"{row['interface']} {row['mode']}"
    if row.get("error"):
        return f"{text} ({row['error']})"
    if row["program"] is not None:
        text += f" ({row['entries']} entries, {row['dropped_packets']} packets dropped"
        if row["top"]:
            text += "; most: " + ", ".join(f"{t['net']} {t['packets']}" for t in row["top"])
        text += ")"
    elif row["eligible"]:
        text += f" ({row['eligible']} eligible networks dropped in raw instead: agent down, "
        text += "--no-xdp, or no clang/bpftool)"
    if row.get("warning"):
        text += f"; warning: {row['warning']}"
    return text


def _print_status(report: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table as RichTable

    out = console()
    state = "in sync" if report["in_sync"] else "DRIFTED: " + "; ".join(report["drift"])
    out.print(f"[bold]{escape(report['node'])}[/] ({report['backend']}): {escape(state)}")
    out.print(escape(f"host endpoints: {', '.join(report['endpoints']) or 'none active'}"))
    out.print(escape(f"settings: {report['settings']}"))
    ct = report["conntrack"]
    out.print(
        f"conntrack: {ct['entries']}/{ct['max']} entries, drop {ct.get('drop', 0)}, "
        f"early_drop {ct.get('early_drop', 0)}, insert_failed {ct.get('insert_failed', 0)}"
    )
    for row in report["xdp"]:
        out.print(escape(f"XDP: {_xdp_line(row)}"))
    for skipped in report["skipped"]:
        out.print(f"[red]error:[/] {escape(skipped)}")
    for warning in report["warnings"]:
        out.print(f"[yellow]warning:[/] {escape(warning)}")
    table = RichTable(title="policy rule counters (untracked traffic included)")
    for column in ("family", "table", "chain", "rule", "packets", "bytes"):
        # Folded, never cut short with an ellipsis: a rule name is what the reader looks for.
        table.add_column(column, overflow="fold")
    for rule in report["rules"]:
        if rule["comment"].startswith("gnp/") or rule["packets"]:
            table.add_row(
                f"IPv{rule['family']}",
                rule["table"],
                escape(rule["chain"]),
                escape(rule["comment"]),
                str(rule["packets"]),
                str(rule["bytes"]),
            )
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command()(render)
    app.command()(agent)
    app.command()(status)
