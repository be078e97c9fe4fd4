"""`felis lab up | down | status | run` (a Typer sub-app of `felis`)."""

from __future__ import annotations

import functools
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from felis.cli.exits import one_line_errors
from felis.lab.flood import DEFAULT_FLOOD_RATE, DEFAULT_FLOOD_VIA
from felis.lab.run import (
    DEFAULT_PHASE_SECONDS,
    ProgressView,
    RunOptions,
    intro,
    label_width,
    parse_phases,
    print_report,
    run_lab,
)
from felis.lab.signals import Terminated, cleanup_on_signals
from felis.lab.topology import (
    DEFAULT_CLIENT_PORTS,
    DEFAULT_RUN_DIR,
    PORT_RANGE_FLAG,
    LabConfig,
    Topology,
    format_port_range,
    parse_port_range,
)

app = typer.Typer(
    name="lab",
    help="The conntrack lab: namespaces, a real memcached, a load generator, the demo.",
    no_args_is_help=True,
    add_completion=False,
)

P = ParamSpec("P")
R = TypeVar("R")

RunDirOpt = Annotated[Path, typer.Option("--run-dir", help="Where the lab keeps its state.")]
ClientPortsOpt = Annotated[
    str,
    typer.Option(
        PORT_RANGE_FLAG,
        help="The client's ephemeral port range, LOW-HIGH (net.ipv4.ip_local_port_range).",
    ),
]
DEFAULT_CLIENT_PORTS_TEXT = format_port_range(DEFAULT_CLIENT_PORTS)


def lab_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """One line for user errors and interruptions, never a traceback; an interruption also
    says the lab is gone (the signal handlers removed it)."""
    with_errors = one_line_errors(fn)

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        err = Console(stderr=True)
        try:
            return with_errors(*args, **kwargs)
        except KeyboardInterrupt:
            err.print("interrupted: the lab was removed", highlight=False)
            raise typer.Exit(130) from None
        except Terminated as exc:
            err.print(f"{exc}: the lab was removed", highlight=False)
            raise typer.Exit(128 + exc.signum) from None

    return wrapper


@app.command()
@lab_errors
def up(
    run_dir: RunDirOpt = DEFAULT_RUN_DIR,
    client_ports: ClientPortsOpt = DEFAULT_CLIENT_PORTS_TEXT,
    hold: Annotated[
        bool,
        typer.Option(
            "--hold",
            help="Stay in the foreground and remove the lab on Ctrl-C/SIGTERM "
            "(memcached stays this process' child).",
        ),
    ] = False,
) -> None:
    """Build the lab (idempotent): namespaces, veth pair, addresses, memcached on :12211."""
    topo = Topology(LabConfig(run_dir=run_dir, client_ports=parse_port_range(client_ports)))
    cfg = topo.config
    console = Console()
    if hold:
        with cleanup_on_signals(), topo:
            console.print(
                f"lab up: {cfg.server_netns} {cfg.server_ip}:{cfg.port} <- {cfg.client_netns}; "
                "Ctrl-C removes it",
                highlight=False,
            )
            signal.pause()
        return
    built = topo.up(detach=True)
    console.print(
        f"lab {'up' if built else 'already up'}: memcached {cfg.server_ip}:{cfg.port} in "
        f"{cfg.server_netns}; clients in {cfg.client_netns} "
        f"({cfg.source_base} +{cfg.source_count - 1}); `felis lab down` removes it",
        highlight=False,
    )


@app.command()
@lab_errors
def down(run_dir: RunDirOpt = DEFAULT_RUN_DIR) -> None:
    """Remove the lab, including leftovers of a crashed run; restores nf_conntrack_max."""
    removed = Topology(LabConfig(run_dir=run_dir)).down()
    Console().print(
        "removed: " + ", ".join(removed) if removed else "nothing to remove", highlight=False
    )


@app.command()
@lab_errors
def status(
    run_dir: RunDirOpt = DEFAULT_RUN_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show whether the lab is up and what it consists of."""
    info = Topology(LabConfig(run_dir=run_dir)).status()
    if as_json:
        typer.echo(json.dumps(info))
        return
    console = Console()
    for key, value in info.items():
        console.print(f"{key:30} {value}", highlight=False)


@app.command()
@lab_errors
def run(
    *,
    phase_seconds: Annotated[
        float, typer.Option("--phase-seconds", help="Load duration of each phase.")
    ] = DEFAULT_PHASE_SECONDS,
    conntrack_max: Annotated[
        int | None,
        typer.Option(
            "--conntrack-max",
            help="Set the global net.netfilter.nf_conntrack_max for the run (always restored).",
        ),
    ] = None,
    results: Annotated[
        Path, typer.Option("--results", help="Directory for results.json and chart.png.")
    ] = Path("lab-results"),
    backend: Annotated[
        str, typer.Option("--backend", help="Dataplane backend: iptables or nftables.")
    ] = "nftables",
    phases: Annotated[
        str,
        typer.Option(
            "--phases",
            help="Comma-separated phases, run in this order: stateful, donottrack, "
            "handwritten (the lab's own minimal ruleset, the reference), baseline; flood "
            "(noflood, flood-xdp, flood-raw: a SYN flood from blocklisted sources, dropped "
            "in XDP or in raw).",
        ),
    ] = "stateful,donottrack,baseline",
    flood_rate: Annotated[
        float,
        typer.Option("--flood-rate", help="Packets per second of the flood phases' SYN flood."),
    ] = DEFAULT_FLOOD_RATE,
    flood_via: Annotated[
        str,
        typer.Option(
            "--flood-via",
            help="How the flood is sent: driver (frames into the veth's XDP transmit path, "
            "as from a NIC) or socket (AF_PACKET; the sender's kernel builds each packet).",
        ),
    ] = DEFAULT_FLOOD_VIA,
    rounds: Annotated[
        int,
        typer.Option(
            "--rounds",
            help="Run the phases this many times, interleaved, each round starting one phase "
            "later; reports within-round ratios and their medians.",
        ),
    ] = 1,
    client_ports: ClientPortsOpt = DEFAULT_CLIENT_PORTS_TEXT,
    concurrency: Annotated[int, typer.Option(help="Connections in flight.")] = 64,
    threads: Annotated[int, typer.Option(help="Load-generator threads.")] = 2,
    run_dir: RunDirOpt = DEFAULT_RUN_DIR,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Exit with status 1 when the run does not show the expected outcomes "
            "(stateful exhausted, doNotTrack clean).",
        ),
    ] = False,
) -> None:
    """Run the demo: stateful vs doNotTrack vs no rules, same load; writes results and chart.

    `--phases handwritten,donottrack,baseline --rounds 6` measures felis' doNotTrack rules
    against a hand-written ruleset for the same policy; `--phases flood --rounds 5` measures
    the clients' throughput under a SYN flood with the blocklist in XDP and in raw.
    """
    opts = RunOptions(
        phase_seconds=phase_seconds,
        conntrack_max=conntrack_max,
        results=results,
        backend=backend,
        phases=parse_phases(phases),
        rounds=rounds,
        threads=threads,
        concurrency=concurrency,
        flood_rate=flood_rate,
        flood_via=flood_via,
        config=LabConfig(run_dir=run_dir, client_ports=parse_port_range(client_ports)),
    )
    console = Console()
    console.print(intro(opts), highlight=False, markup=False)
    with ProgressView(console, label_width(opts)) as view:
        doc = run_lab(opts, on_sample=view)
    if not print_report(doc, console, results) and check:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="lab", help="Network-namespace lab: real memcached, real load.")
