"""The one place felis starts other programs: the dataplane's tools, the lab's, conntrack's.

Commands are argument lists, never shell strings. Every call has a timeout. A command given a
network namespace runs as `ip netns exec NAME ...` (which execs it, so its PID is the
command's own); the name is checked before anything runs. Output is collected with
`communicate`, so a command that fills its stderr pipe while we wait for its stdout cannot stall.

A command that fails, times out, cannot be found or names a missing namespace becomes a
`CommandError` (a one-line FelisError) carrying the command, its exit code and the tail of what it
printed, which is what an operator needs to see. Callers that want their own error type pass a
subclass of CommandError as `error`.

`run` is for commands that finish; `Process` is for the long-running ones (memcached, the load
generator) that the caller stops itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from felis.errors import FelisError

NETNS_DIR = Path("/run/netns")
# `ip netns` keeps names as files under /run/netns; hold them to a safe, short alphabet.
_NETNS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
DEFAULT_TIMEOUT = 60.0
STDERR_TAIL = 4096
"""How much of a failed command's error output an error keeps (the end is where tools explain)."""
_SHOWN = 200
"""Longest command line an error message quotes."""

# Where a missing tool comes from on Debian, for the "not installed" message.
_DEBIAN_PACKAGE = {
    "conntrack": "conntrack",
    "ip": "iproute2",
    "ipset": "ipset",
    "iptables-restore": "iptables",
    "iptables-save": "iptables",
    "ip6tables-restore": "iptables",
    "ip6tables-save": "iptables",
    "memcached": "memcached",
    "nft": "nftables",
}


class CommandError(FelisError):
    """A command failed, timed out, was not installed, or named a namespace that is absent.

    `argv` is the command as the caller gave it (without the `ip netns exec` prefix), `netns`
    where it ran, `returncode` None when it never finished, `stderr` the tail of its error
    output (its standard output when it printed no errors).
    """

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int | None,
        stderr: str,
        *,
        netns: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.netns = netns
        self.returncode = returncode
        self.stderr = stderr[-STDERR_TAIL:]
        if reason is None:
            reason = f"{describe(argv, netns)} failed ({returncode}): {error_line(stderr)}"
        super().__init__(reason)


class Runner(Protocol):
    """What code that runs commands depends on: `run` itself, or a fake in a test."""

    def __call__(
        self,
        argv: Sequence[str],
        *,
        netns: str | None = None,
        input_text: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]: ...


def valid_netns_name(name: str) -> bool:
    return bool(_NETNS_NAME.match(name)) and name not in {".", ".."}


def netns_exists(name: str) -> bool:
    return valid_netns_name(name) and (NETNS_DIR / name).exists()


def describe(argv: Sequence[str], netns: str | None = None) -> str:
    """The command as an error message quotes it: shell-quoted, shortened, with its namespace."""
    text = shlex.join(argv)
    if len(text) > _SHOWN:
        text = text[: _SHOWN - 1] + "…"
    return f"{text} (in netns {netns})" if netns is not None else text


def error_line(text: str) -> str:
    """The line of an error output worth showing: the first, or a Python traceback's last."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "no error output"
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def _command_line(argv: Sequence[str], netns: str | None, error: type[CommandError]) -> list[str]:
    """`argv` as run: prefixed with `ip netns exec NAME` when it belongs in a namespace."""
    if not argv:
        raise error(argv, None, "", netns=netns, reason="empty command")
    if netns is None:
        return list(argv)
    if not valid_netns_name(netns):
        reason = f"invalid network namespace name {netns!r}"
        raise error(argv, None, "", netns=netns, reason=reason)
    if not (NETNS_DIR / netns).exists():
        reason = f"network namespace {netns!r} does not exist"
        raise error(argv, None, "", netns=netns, reason=reason)
    return ["ip", "netns", "exec", netns, *argv]


def _not_installed(
    argv: Sequence[str], netns: str | None, error: type[CommandError]
) -> CommandError:
    program = argv[0]
    package = _DEBIAN_PACKAGE.get(Path(program).name)
    reason = (
        f"{program} is not installed (Debian: apt-get install {package})"
        if package is not None
        else f"command not found: {program}"
    )
    return error(argv, None, "", netns=netns, reason=reason)


def run(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    input_text: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    error: type[CommandError] = CommandError,
    started: Callable[[int], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end and capture its output.

    With `check`, a non-zero exit raises `error`. Without it the caller reads `returncode`;
    a command that is not installed raises either way, since it never ran at all. `started`
    is told the process id as soon as it exists (`ip netns exec` execs the command, so it is
    the command's own), which is how the kernel monitor tells felis' changes from others'.
    """
    cmd = _command_line(argv, netns, error)
    # Input is handed over whole, in an in-memory file, never through a pipe: a caller killed
    # while writing a pipe leaves the command a truncated input, and `nft -f` commits whatever
    # of a transaction still parses (docs/dataplane.md, What is atomic). Without input, stdin
    # is closed rather than inherited: a tool never waits on a terminal.
    source = open(os.memfd_create("felis-input"), "w+") if input_text is not None else None  # noqa: SIM115
    if source is not None:
        source.write(input_text or "")
        source.seek(0)
    try:
        with (
            source or contextlib.nullcontext(),
            subprocess.Popen(
                cmd,
                stdin=source or subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ) as popen,
        ):
            if started is not None:
                started(popen.pid)
            try:
                stdout, stderr = popen.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
                _, stderr = popen.communicate()
                reason = f"{describe(argv, netns)} timed out after {timeout:g}s"
                raise error(argv, None, stderr or "", netns=netns, reason=reason) from None
    except FileNotFoundError:
        raise _not_installed(argv if netns is None else cmd, netns, error) from None
    proc = subprocess.CompletedProcess(cmd, popen.returncode, stdout, stderr)
    if proc.returncode != 0 and netns is not None and shutil.which(argv[0]) is None:
        # `ip netns exec` itself ran and reported that it could not exec the command.
        raise _not_installed(argv, netns, error)
    if check and proc.returncode != 0:
        raise error(argv, proc.returncode, proc.stderr or proc.stdout, netns=netns)
    return proc


class Process:
    """A long-running command: started here, stopped (or waited for) by its owner.

    stdin is closed. stdout goes to `stdout` (a pipe the caller reads line by line, by
    default, or an open file). stderr goes to the same place with `merge_stderr`, else to a
    temporary file read by `error_output()`: a stderr pipe nobody reads while the caller
    follows stdout would fill up and stall the program.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        netns: str | None = None,
        stdout: int | IO[Any] = subprocess.PIPE,
        merge_stderr: bool = False,
        new_session: bool = False,
        error: type[CommandError] = CommandError,
    ) -> None:
        self.argv = list(argv)
        self.netns = netns
        self._error = error
        cmd = _command_line(argv, netns, error)
        # Lives as long as the process; `stop` closes it.
        stderr_file = None if merge_stderr else tempfile.TemporaryFile("w+")  # noqa: SIM115
        self._stderr: IO[str] | None = stderr_file
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT if merge_stderr else self._stderr,
                text=True,
                start_new_session=new_session,
            )
        except FileNotFoundError:
            self._close_stderr()
            raise _not_installed(argv if netns is None else cmd, netns, error) from None
        except BaseException:
            self._close_stderr()
            raise

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def stdout(self) -> IO[str] | None:
        """The command's output when it goes to a pipe."""
        return self._proc.stdout

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None when the command is still running after `timeout`."""
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def error_output(self) -> str:
        """What the command wrote to stderr so far (empty when merged into stdout)."""
        if self._stderr is None or self._stderr.closed:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()

    def check(self, timeout: float) -> None:
        """Wait for the end; a non-zero exit, or no end within `timeout`, raises the error."""
        rc = self.wait(timeout)
        if rc is None:
            reason = f"{describe(self.argv, self.netns)} did not end within {timeout:g}s"
            raise self._error(self.argv, None, self.error_output(), netns=self.netns, reason=reason)
        if rc != 0:
            raise self._error(self.argv, rc, self.error_output(), netns=self.netns)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, SIGKILL after `grace` seconds, reap it, close its streams (idempotent)."""
        if self._proc.poll() is None:
            self._proc.terminate()
            if self.wait(grace) is None:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            with contextlib.suppress(OSError):
                self._proc.stdout.close()
        self._close_stderr()

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            with contextlib.suppress(OSError):
                self._stderr.close()
