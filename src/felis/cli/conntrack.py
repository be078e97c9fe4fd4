"""`felis conntrack status | top | advise` (a Typer sub-app of `felis`)."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from felis.cli.exits import one_line_errors
from felis.conntrack import kernel
from felis.conntrack.analysis import Advice, advise, port_totals, top
from felis.conntrack.parse import STAT_KEYS
from felis.conntrack.policy import advice_yaml

app = typer.Typer(
    name="conntrack",
    help="Conntrack pressure: table usage, top consumers, and a doNotTrack advisor.",
    no_args_is_help=True,
    add_completion=False,
)

NetnsOpt = Annotated[
    str | None, typer.Option("--netns", help="Read this network namespace (default: current).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _fmt_port(port: int | None) -> str:
    return "-" if port is None else str(port)


@app.command()
@one_line_errors
def status(netns: NetnsOpt = None, as_json: JsonOpt = False) -> None:
    """Entry count, table max and the `conntrack -S` counters summed over CPUs."""
    count = kernel.read_count(netns)
    table_max = kernel.read_max(netns)
    stats = kernel.read_stats(netns)
    data = {"netns": netns, "count": count, "max": table_max}
    data.update({k: stats.get(k, 0) for k in STAT_KEYS})
    if as_json:
        typer.echo(json.dumps(data))
        return
    table = Table(title=f"conntrack in {netns or 'current namespace'}", show_header=False)
    table.add_row("entries", f"{count} / {table_max} ({100.0 * count / max(table_max, 1):.1f}%)")
    for key in STAT_KEYS:
        table.add_row(key, str(stats.get(key, 0)))
    Console().print(table)


@app.command("top")
@one_line_errors
def top_cmd(
    netns: NetnsOpt = None,
    limit: Annotated[int, typer.Option(help="Rows to show (0 = all).")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Entries grouped by local port, peer and TCP state, heaviest first."""
    addr = kernel.addresses(netns)
    entries = kernel.list_entries(netns)
    local = frozenset(addr)
    rows = top(entries, local, limit)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "netns": netns,
                    "entries": len(entries),
                    "ports": [asdict(p) for p in port_totals(entries, local)[: limit or None]],
                    "top": [asdict(r) for r in rows],
                }
            )
        )
        return
    console = Console()
    table = Table(title=f"{len(entries)} conntrack entries in {netns or 'current namespace'}")
    for col in ("dir", "proto", "port", "peer", "state", "entries"):
        table.add_column(col, justify="right" if col == "entries" else "left")
    for r in rows:
        table.add_row(r.direction, r.proto, _fmt_port(r.port), r.peer, r.state, str(r.count))
    console.print(table)
    totals = port_totals(entries, local)[:5]
    if totals:
        console.print(
            "by port: "
            + ", ".join(f"{t.direction} {t.proto}/{_fmt_port(t.port)} {t.count}" for t in totals)
        )


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return "not growing"
    if value <= 0:
        return "full now"
    return f"{value:.0f} s"


def _print_advice(adv: Advice, console: Console) -> None:
    console.print(
        f"table {adv.count} / {adv.max}; new entries {adv.new_per_s:.0f}/s; "
        f"net growth {adv.growth_per_s:+.0f}/s; time to full: {_fmt_seconds(adv.seconds_to_full)}; "
        f"drops {adv.drops_per_s:.0f}/s",
        highlight=False,
    )
    if adv.steady_state_entries > adv.max:
        console.print(
            f"at this rate TIME_WAIT entries alone need ~{adv.steady_state_entries} slots "
            f"(> max {adv.max}): the table will stay full",
            highlight=False,
        )


@app.command("advise")
@one_line_errors
def advise_cmd(
    netns: NetnsOpt = None,
    interval: Annotated[float, typer.Option(help="Seconds between the two samples.")] = 2.0,
    node: Annotated[
        str | None,
        typer.Option(help="Node name for the HostEndpoint (default: --netns, else hostname)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the YAML here.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Find the listeners filling conntrack and propose a doNotTrack policy for them."""
    if interval <= 0:
        raise typer.BadParameter("must be positive", param_hint="--interval")
    first = kernel.snapshot(netns)
    time.sleep(interval)  # the sampling interval itself, not synchronisation
    second = kernel.snapshot(netns)
    adv = advise(first, second)
    node_name = node or netns or socket.gethostname()
    proposals: list[tuple[int, str]] = []
    for listener in adv.listeners:
        iface = listener.interfaces[0] if listener.interfaces else "eth0"
        proposals.append(
            (
                listener.port,
                advice_yaml(listener, node=node_name, interface=iface, table_max=adv.max),
            )
        )
    if output is not None and proposals:
        output.write_text("---\n".join(text for _, text in proposals))
    if as_json:
        data = asdict(adv)
        data["policies"] = {str(port): text for port, text in proposals}
        typer.echo(json.dumps(data))
        return
    console = Console()
    _print_advice(adv, console)
    if not adv.listeners:
        console.print("no listener holds a large share of the table: nothing to propose")
        return
    table = Table(title="listeners under pressure")
    for col in ("proto/port", "local", "entries", "share", "new/s", "peers", "states"):
        table.add_column(col)
    for lst in adv.listeners:
        table.add_row(
            f"{lst.proto}/{lst.port}",
            ",".join(lst.local_addresses),
            str(lst.entries),
            f"{100 * lst.share:.0f}%",
            f"{lst.new_per_s:.0f}",
            ",".join(lst.peer_nets),
            " ".join(f"{k}:{v}" for k, v in list(lst.states.items())[:3]),
        )
    console.print(table)
    for _, text in proposals:
        typer.echo("---")
        typer.echo(text, nl=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="conntrack", help="Conntrack pressure: status, top, advise.")
