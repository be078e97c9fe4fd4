"""Read conntrack state from the kernel, in the current or a named network namespace.

Per-namespace values (`nf_conntrack_count`, timeouts, the table itself) must be read from inside
the namespace, so every read runs as `ip netns exec NAME ...` when a namespace is given.
`nf_conntrack_max` is global; reading it inside a namespace shows the global value.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from felis.conntrack.analysis import ConntrackSample
from felis.conntrack.parse import (
    Entry,
    parse_entries,
    parse_int,
    parse_ip_addr_json,
    parse_stats,
)
from felis.errors import FelisError
from felis.sysexec import CommandError, run

PROC = "/proc/sys/net/netfilter/"


class ConntrackError(FelisError):
    """Conntrack state could not be read; the message names the command or file."""


class ConntrackCommandError(ConntrackError, CommandError):
    """A command reading conntrack state failed; it carries the command, exit code and output."""


def _run(netns: str | None, argv: Sequence[str], timeout: float = 120.0) -> str:
    return run(argv, netns=netns, timeout=timeout, error=ConntrackCommandError).stdout


def read_sysctl(name: str, netns: str | None = None) -> str:
    path = PROC + name
    if netns is None:
        try:
            return Path(path).read_text()
        except OSError as exc:
            raise ConntrackError(f"cannot read {path}: {exc.strerror}") from exc
    return _run(netns, ["cat", path])


def read_count(netns: str | None = None) -> int:
    try:
        return parse_int(read_sysctl("nf_conntrack_count", netns), "nf_conntrack_count")
    except ValueError as exc:
        raise ConntrackError(str(exc)) from exc


def read_max(netns: str | None = None) -> int:
    try:
        return parse_int(read_sysctl("nf_conntrack_max", netns), "nf_conntrack_max")
    except ValueError as exc:
        raise ConntrackError(str(exc)) from exc


def read_time_wait_timeout(netns: str | None = None) -> int:
    try:
        text = read_sysctl("nf_conntrack_tcp_timeout_time_wait", netns)
        return parse_int(text, "nf_conntrack_tcp_timeout_time_wait")
    except (ConntrackError, ValueError):
        return 120  # the kernel default; only used for an estimate


def read_stats(netns: str | None = None) -> dict[str, int]:
    """`conntrack -S` summed over CPUs."""
    return parse_stats(_run(netns, ["conntrack", "-S"], timeout=30.0))


def list_entries(netns: str | None = None, extra: Sequence[str] = ()) -> list[Entry]:
    return parse_entries(_run(netns, ["conntrack", "-L", "-o", "extended", *extra]))


def count_port_entries(port: int, netns: str | None = None, proto: str = "tcp") -> int:
    """Entries whose original destination port is `port` (the kernel filters, we count)."""
    out = _run(netns, ["conntrack", "-L", "-p", proto, "--orig-port-dst", str(port)])
    return sum(1 for line in out.splitlines() if line.strip())


def addresses(netns: str | None = None) -> dict[str, str]:
    """Local address -> interface name."""
    text = _run(netns, ["ip", "-j", "addr", "show"], timeout=30.0)
    try:
        return {a.address: a.interface for a in parse_ip_addr_json(text)}
    except ValueError as exc:
        raise ConntrackError(f"ip -j addr show printed unreadable JSON: {exc}") from exc


def snapshot(netns: str | None = None, *, with_entries: bool = True) -> ConntrackSample:
    taken = time.monotonic()
    count = read_count(netns)
    stats = read_stats(netns)
    entries = list_entries(netns) if with_entries else []
    addr = addresses(netns) if with_entries else {}
    return ConntrackSample(
        taken_at=taken,
        count=count,
        max=read_max(netns),
        stats=stats,
        entries=entries,
        local_addresses=frozenset(addr),
        interfaces=addr,
        time_wait_timeout=read_time_wait_timeout(netns),
    )
