"""Running programs inside a named network namespace, always as argument lists."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from felis.lab.errors import LabError

# `ip netns` stores names as files under /run/netns; keep them to a safe, short alphabet.
_NETNS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
NETNS_DIR = Path("/run/netns")


def check_netns_name(name: str) -> str:
    """Return `name` when it is a safe namespace name, else raise LabError."""
    if not _NETNS_NAME.match(name) or name in {".", ".."}:
        raise LabError(f"invalid network namespace name {name!r}")
    return name


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    """The command line that runs `argv` inside `netns` (or unchanged for the current one)."""
    if netns is None:
        return list(argv)
    return ["ip", "netns", "exec", check_netns_name(netns), *argv]


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / check_netns_name(name)).exists()


def run(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    check: bool = True,
    timeout: float = 60.0,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command (inside `netns` if given) and capture its output.

    With `check`, a non-zero exit becomes a LabError naming the command and the first line of
    its error output.
    """
    cmd = in_netns(netns, argv)
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            check=False,
        )
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {cmd[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"command timed out after {timeout:g}s: {' '.join(cmd)}") from exc
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed ({proc.returncode}): {first_line(proc.stderr)}")
    return proc


def first_line(text: str) -> str:
    """The line of an error output worth showing: the first, or a traceback's last."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "no error output"
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def read_proc(path: str, netns: str | None = None) -> str:
    """Read a /proc file as seen from `netns` (per-netns files such as /proc/sys/net/...)."""
    if netns is None:
        return Path(path).read_text()
    return run(["cat", path], netns=netns, timeout=10.0).stdout


def netns_pids(name: str) -> list[int]:
    """PIDs of the processes living in namespace `name` (empty when it does not exist)."""
    if not netns_exists(name):
        return []
    proc = run(["ip", "netns", "pids", name], check=False, timeout=10.0)
    return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]
