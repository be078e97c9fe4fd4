"""Running system tools (iptables-restore, nft, ipset, conntrack, ip) safely.

Commands are always argument lists, never shell strings, optionally inside a named network
namespace (`ip netns exec`). A failure becomes a one-line FelisError naming the tool and the
first line of what it printed, which is what an operator needs to see.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence

from felis.errors import FelisError

_NETNS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class CommandError(FelisError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"{' '.join(self.argv[:3])} failed ({returncode}): {first_line(stderr)}")


def check_netns_name(name: str) -> str:
    if not _NETNS_NAME.match(name) or name in {".", ".."}:
        raise FelisError(f"invalid network namespace name {name!r}")
    return name


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    """The command line that runs `argv` inside `netns` (unchanged for the current one)."""
    if netns is None:
        return list(argv)
    return ["ip", "netns", "exec", check_netns_name(netns), *argv]


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return "no error output"


def run(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    input_text: str | None = None,
    timeout: float = 60.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    cmd = in_netns(netns, argv)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, input=input_text, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise FelisError(f"command not found: {cmd[0]} (is it installed?)") from None
    except subprocess.TimeoutExpired:
        raise FelisError(f"{' '.join(cmd[:3])} timed out after {timeout:g}s") from None
    if check and proc.returncode != 0:
        raise CommandError(cmd, proc.returncode, proc.stderr or proc.stdout)
    return proc
