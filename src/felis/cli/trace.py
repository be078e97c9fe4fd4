"""`felis trace`: which rule decides a packet's fate on a node, walked through felis' own IR."""

from __future__ import annotations

import dataclasses
import json
from enum import StrEnum
from typing import Annotated

import typer

from felis.cli.dataplane import (
    AllowEmptyOption,
    Backend,
    BackendOption,
    FailsafeInOption,
    FailsafeOutOption,
    NodeOption,
    node_config,
    node_warning,
)
from felis.cli.exits import BadUsage
from felis.cli.output import ReportFormat, console
from felis.cli.resources import DatastoreOption, read_datastore
from felis.dataplane.spec import CtState, Table
from felis.errors import FelisError
from felis.model.constants import PORT_PROTOCOLS
from felis.trace.assume import PacketRequest, setup
from felis.trace.packet import Direction, TraceError, parse_host_port, parse_protocol
from felis.trace.walk import CONNTRACK, XDP, Step, TraceResult, Verdict
from felis.trace.xdp import XdpPrograms

EPHEMERAL_PORT = 40000
"""Port assumed for a side given without one (a typical client port, outside the failsafes)."""


class State(StrEnum):
    new = "new"
    established = "established"
    related = "related"
    invalid = "invalid"


def trace(
    node: NodeOption,
    src: Annotated[str, typer.Option("--src", help="Source IP[:PORT] ([IPv6]:PORT)")],
    dst: Annotated[str, typer.Option("--dst", help="Destination IP[:PORT] ([IPv6]:PORT)")],
    proto: Annotated[str, typer.Option("--proto", help="tcp, udp, icmp, icmpv6, sctp or N")],
    iface: Annotated[
        str | None,
        typer.Option(
            "--iface",
            help="Interface the packet enters (ingress, forward) or leaves by (egress); "
            "default: the interface of the HostEndpoint listing the local address",
            show_default=False,
        ),
    ] = None,
    out_iface: Annotated[
        str | None,
        typer.Option("--out-iface", help="Output interface of a forwarded packet"),
    ] = None,
    direction: Annotated[
        Direction | None,
        typer.Option(
            "--direction",
            help="ingress (to this host), egress (from it) or forward; default: egress if "
            "only --src is an expected IP of the node's HostEndpoints, else ingress",
            show_default=False,
        ),
    ] = None,
    state: Annotated[
        State, typer.Option("--state", help="Conntrack state if the packet is tracked")
    ] = State.new,
    dnat: Annotated[
        bool, typer.Option("--dnat", help="The packet's connection was DNAT'd")
    ] = False,
    icmp_type: Annotated[
        int | None,
        typer.Option("--icmp-type", min=0, max=255, help="ICMP type (default: echo request)"),
    ] = None,
    icmp_code: Annotated[
        int | None, typer.Option("--icmp-code", min=0, max=255, help="ICMP code")
    ] = None,
    backend: BackendOption = Backend.nftables,
    datastore: DatastoreOption = None,
    output: Annotated[ReportFormat, typer.Option("--output", "-o", help="Output format")] = (
        ReportFormat.text
    ),
    failsafe_inbound: FailsafeInOption = None,
    failsafe_outbound: FailsafeOutOption = None,
    allow_empty: AllowEmptyOption = False,
    xdp: Annotated[
        bool,
        typer.Option(
            "--xdp/--no-xdp",
            help="Trace felis' XDP program in front of the raw table, as the agent attaches it "
            "(default; FelixConfiguration xdpEnabled: false also turns it off)",
        ),
    ] = True,
) -> None:
    """Show which rule decides a packet's fate on NODE.

    The packet walks through the rules felis computes for NODE, as the kernel would walk it.

    Interfaces are not read: see docs/trace.md for what is assumed. Exit code 0 whatever the
    verdict; read it from the last line (or `verdict` in JSON). A NODE no HostEndpoint is on
    is an error unless --allow-empty: every packet would meet no rule at all.
    """
    from felis.calc import compute
    from felis.trace.walk import trace as walk

    try:
        request = _request(
            src, dst, proto, iface, out_iface, direction, state, dnat, icmp_type, icmp_code
        )
    except TraceError as err:
        # Every check in _request is about how the options were written.
        raise BadUsage(str(err)) from None
    resources = read_datastore(datastore)
    empty = node_warning(resources, node, allow_empty=allow_empty)
    prepared = setup(resources, node, request)
    config = node_config(resources, node, backend, failsafe_inbound, failsafe_outbound)
    calc = config.calc if xdp else dataclasses.replace(config.calc, xdp_enabled=False)
    result = compute(resources, node, prepared.interfaces, calc)
    programs = XdpPrograms.of(result.xdp, calc.failsafe_inbound)
    outcome = walk(result.spec, prepared.packet, programs)
    if any(step.table == XDP for step in outcome.steps):
        prepared.notes.append(
            f"XDP: felis' program is attached to {prepared.packet.in_iface} (the agent attaches "
            "it where clang and bpftool are installed; --no-xdp to trace without it)"
        )
    warnings = ([empty] if empty else []) + [*config.warnings, *result.warnings]
    warnings += [str(skipped) for skipped in config.skipped]
    if output is ReportFormat.json:
        report = outcome.to_dict()
        report["node"] = node
        report["backend"] = backend.value
        report["assumptions"] = prepared.notes
        report["warnings"] = warnings
        for step in report["steps"]:
            step["kernel_chain"] = kernel_chain_name(backend, step["table"], step["chain"])
        typer.echo(json.dumps(report, indent=2))
        return
    _print(outcome, node, backend, prepared.notes, warnings)


def _request(
    src: str,
    dst: str,
    proto: str,
    iface: str | None,
    out_iface: str | None,
    direction: Direction | None,
    state: State,
    dnat: bool,
    icmp_type: int | None,
    icmp_code: int | None,
) -> PacketRequest:
    protocol = parse_protocol(proto)
    src_ip, sport = parse_host_port(src, "--src")
    dst_ip, dport = parse_host_port(dst, "--dst")
    if protocol in PORT_PROTOCOLS:
        if dport is None:
            raise TraceError(f"--dst: {proto} needs a destination port (IP:PORT)")
        if sport is None:
            sport = EPHEMERAL_PORT
    elif sport is not None or dport is not None:
        raise TraceError(f"--src/--dst: protocol {proto} has no ports")
    if protocol in (1, 58):
        if icmp_type is None:
            icmp_type = 8 if protocol == 1 else 128
    elif icmp_type is not None or icmp_code is not None:
        raise TraceError("--icmp-type/--icmp-code need --proto icmp or icmpv6")
    for name, value in (("--iface", iface), ("--out-iface", out_iface)):
        if value is not None and not _valid_iface(value):
            raise TraceError(f"{name}: {value!r} is not an interface name")
    return PacketRequest(
        src=src_ip,
        dst=dst_ip,
        protocol=protocol,
        sport=sport,
        dport=dport,
        direction=direction,
        iface=iface,
        out_iface=out_iface,
        ct_state=CtState(state.value),
        dnat=dnat,
        icmp_type=icmp_type,
        icmp_code=icmp_code,
    )


def _valid_iface(name: str) -> bool:
    return 0 < len(name) <= 15 and all(ch.isalnum() or ch in "-_.@" for ch in name)


def kernel_chain_name(backend: Backend, table: str, chain: str) -> str:
    """The chain as the backend's own listing shows it (nft keeps every layer in one table)."""
    if table in (CONNTRACK, XDP):
        return chain
    if backend is Backend.nftables:
        from felis.dataplane.nftables import layer_chain

        return layer_chain(Table(table), chain)
    return chain


def _step_text(step: Step, backend: Backend) -> str:
    if step.table == CONNTRACK:
        return f"conntrack: {step.action}"
    if step.table == XDP:
        text = f"xdp {step.chain}: " + (f"{step.match} -> " if step.match else "") + step.action
        return text + (f"  # {step.comment}" if step.comment else "")
    chain = kernel_chain_name(backend, step.table, step.chain)
    where = chain + (f"[{step.index}]" if step.index is not None else "")
    text = f"{where}: "
    text += f"{step.match} -> {step.action}" if step.match else step.action or step.comment
    if step.comment and step.action:
        text += f"  # {step.comment}"
    return text


def _print(
    outcome: TraceResult, node: str, backend: Backend, notes: list[str], warnings: list[str]
) -> None:
    from rich.markup import escape

    out = console()
    out.print(f"[bold]{escape(outcome.packet.describe())}[/] on node {escape(node)}")
    for note in notes:
        out.print(f"[dim]assumed: {escape(note)}[/]")
    for warning in warnings:
        out.print(f"[yellow]warning:[/] {escape(warning)}")
    stage = None
    for step in outcome.steps:
        current = step.table if step.table in (CONNTRACK, XDP) else f"{step.table} {step.hook}"
        if current != stage:
            stage = current
            if step.table not in (CONNTRACK, XDP):
                out.print(f"[cyan]{escape(current)}[/]")
        indent = "  " * (step.depth + 1)
        out.print(f"{indent}{escape(_step_text(step, backend))}")
    for prefix in outcome.logs:
        out.print(f"[dim]logged with prefix {escape(prefix)!r}[/]")
    colour = "green" if outcome.verdict is Verdict.ACCEPT else "red"
    out.print(f"[bold {colour}]{escape(outcome.summary())}[/]")


def register(app: typer.Typer) -> None:
    app.command()(trace)


__all__ = ["FelisError", "register", "trace"]
