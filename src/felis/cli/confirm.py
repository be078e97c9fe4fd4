"""`felis confirm`: keep a change made with `felis apply --confirm`, or see what is pending;
and the watchdog process that `apply --confirm` leaves behind (a hidden mode of the same
command). The semantics are `felis.resources.confirm`'s."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from typing import Annotated

import typer

from felis.cli.output import ReportFormat
from felis.cli.resources import DatastoreOption
from felis.datastore import Datastore, open_datastore
from felis.resources import confirm as confirming


class _Process:
    """A started watchdog (`confirming.Watchdog`)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.description = f"pid {proc.pid} on {socket.gethostname()}"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def watchdog_starter(datastore: str | None) -> Callable[[str, float], confirming.Watchdog]:
    """What `apply --confirm` starts: `felis confirm --watchdog` in a session of its own with
    no terminal and no inherited descriptors, so that neither the end of the applying process
    nor the hang-up of its terminal or SSH connection reaches it."""

    def start(record_id: str, deadline: float) -> confirming.Watchdog:
        argv = [sys.executable, "-m", "felis", "confirm", "--watchdog", record_id]
        argv += ["--deadline", repr(deadline)]
        if datastore is not None:
            argv += ["--datastore", datastore]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        return _Process(proc)

    return start


@contextmanager
def _opened(datastore: str | None, read_only: bool) -> Iterator[Datastore]:
    with closing(open_datastore(datastore, read_only=read_only)) as store:
        yield store


def confirm(
    status: Annotated[
        bool,
        typer.Option("--status", help="Show the change awaiting confirmation; confirm nothing"),
    ] = False,
    output: Annotated[
        ReportFormat,
        typer.Option("--output", "-o", help="With --status: text, or the record as JSON"),
    ] = ReportFormat.text,
    datastore: DatastoreOption = None,
    watchdog: Annotated[str | None, typer.Option("--watchdog", hidden=True)] = None,
    deadline: Annotated[float | None, typer.Option("--deadline", hidden=True)] = None,
) -> None:
    """Keep the change made by `felis apply --confirm`, before its window ends.

    Exit code 0 when confirmed; 1 when nothing is pending or the window has already ended (the
    change was then rolled back, or its rollback refused: the line says which). With --status
    shows what is pending, or how the last such change ended, and exits 0.
    """
    if watchdog is not None:
        _watch(datastore, watchdog, deadline or 0.0)
        return
    # Read-only first: confirming against a mistyped path must not create a datastore.
    open_datastore(datastore, read_only=True).close()
    actor = f"felis confirm on {socket.gethostname()}"
    with _opened(datastore, False) as store:
        if status:
            # Looking is enough for an expired change to be rolled back: whoever looks
            # after the deadline sees the outcome, not a stale "pending".
            confirming.settle(store, actor=actor)
            current = confirming.read(store)
            if output is ReportFormat.json:
                typer.echo(json.dumps(confirming.as_json(current), indent=2, sort_keys=True))
            else:
                for line in confirming.describe(current):
                    typer.echo(line)
            return
        record = confirming.confirm(store, actor=actor)
    typer.echo(
        f"Confirmed: the change applied at {confirming.timestamp(record.applied_at)} by "
        f"{record.by} stays ({len(record.touched)} resource(s))"
    )


def _watch(datastore: str | None, record_id: str, deadline: float) -> None:
    # Its own session already keeps terminal hang-ups away; a stray SIGHUP sent to it
    # directly must not end it either.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="felis confirm watchdog: %(message)s")
    confirming.watch(
        lambda read_only: _opened(datastore, read_only),
        record_id,
        deadline,
        actor=f"watchdog on {socket.gethostname()}",
    )


def register(app: typer.Typer) -> None:
    app.command()(confirm)
