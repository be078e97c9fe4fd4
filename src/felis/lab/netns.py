"""The lab's use of the command runner (`felis.sysexec`): its failures are LabErrors.

Long-running commands (memcached, the load generator) are `sysexec.Process`es started with
`error=LabCommandError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from felis import sysexec
from felis.lab.errors import LabCommandError

if TYPE_CHECKING:
    import subprocess


def run(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    check: bool = True,
    timeout: float = sysexec.DEFAULT_TIMEOUT,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command (inside `netns` if given) and capture its output; see `sysexec.run`."""
    return sysexec.run(
        argv, netns=netns, check=check, timeout=timeout, input_text=input_text,
        error=LabCommandError,
    )  # fmt: skip


def read_proc(path: str, netns: str | None = None) -> str:
    """Read a /proc file as seen from `netns` (per-netns files such as /proc/sys/net/...)."""
    if netns is None:
        return Path(path).read_text()
    return run(["cat", path], netns=netns, timeout=10.0).stdout


def netns_pids(name: str) -> list[int]:
    """PIDs of the processes living in namespace `name` (empty when it does not exist)."""
    if not sysexec.netns_exists(name):
        return []
    proc = run(["ip", "netns", "pids", name], check=False, timeout=10.0)
    return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]


def tcp_retrans_segs(netns: str) -> int:
    """TCP segments retransmitted so far in `netns` (Tcp RetransSegs of /proc/net/snmp).

    A packet of the legitimate load lost on the way shows here long before it shows as a failed
    connection: the retransmission timer fires after 200 ms, the connect deadline after 3 s.
    """
    lines = [line.split() for line in read_proc("/proc/net/snmp", netns).splitlines()]
    tcp = [fields[1:] for fields in lines if fields and fields[0] == "Tcp:"]
    if len(tcp) < 2 or "RetransSegs" not in tcp[0]:
        return 0
    return int(tcp[1][tcp[0].index("RetransSegs")])
