"""The command runner: output, input, errors, timeouts and long-running processes (no root)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from felis import sysexec
from felis.errors import FelisError
from felis.sysexec import CommandError, Process

PY = sys.executable
# Blocks until a signal arrives: a command that never ends, without sleeping.
FOREVER = [PY, "-c", "import signal; signal.pause()"]


class OwnError(CommandError):
    """A caller's own error type (the lab's and conntrack's are made like this)."""


def test_output_and_input() -> None:
    proc = sysexec.run([PY, "-c", "import sys; print(sys.stdin.read().upper())"], input_text="ab")
    assert (proc.returncode, proc.stdout) == (0, "AB\n")


def test_input_reaches_the_command_whole_when_the_caller_is_killed(tmp_path: Path) -> None:
    # The command reads its input only once its caller is gone (SIGKILLed right after starting
    # it): through a pipe it would get what had been written by then, a truncated transaction.
    out = tmp_path / "length"
    command = (
        "import os, sys, time\n"
        "deadline = time.monotonic() + 30\n"
        "while os.getppid() == CALLER and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        f"open({str(out)!r}, 'w').write(str(len(sys.stdin.read())))\n"
    )
    caller = (
        "import os, sys\n"
        "from felis import sysexec\n"
        f"command = {command!r}.replace('CALLER', str(os.getpid()))\n"
        "started = lambda pid: print(pid, flush=True)\n"
        "sysexec.run([sys.executable, '-c', command], input_text='x' * 2_000_000,"
        " started=started)\n"
    )
    proc = subprocess.Popen([PY, "-c", caller], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip().isdigit()
    proc.kill()
    proc.wait()
    proc.stdout.close()
    deadline = time.monotonic() + 30
    while not (out.exists() and out.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert out.read_text() == "2000000"


def test_stdin_is_closed_without_input() -> None:
    proc = sysexec.run([PY, "-c", "import sys; print(repr(sys.stdin.read()))"])
    assert proc.stdout == "''\n"


def test_large_stderr_and_stdout_together_do_not_stall() -> None:
    # Each far beyond a pipe's buffer: reading one stream to its end before the other would
    # leave the command blocked on a full pipe.
    code = "import sys; sys.stderr.write('e' * 1_000_000); sys.stdout.write('o' * 1_000_000)"
    proc = sysexec.run([PY, "-c", code], timeout=60)
    assert (len(proc.stdout), len(proc.stderr)) == (1_000_000, 1_000_000)


def test_failure_carries_command_exit_code_and_error_output() -> None:
    argv = [PY, "-c", "import sys; sys.stderr.write('\\nfirst\\nsecond\\n'); sys.exit(3)"]
    with pytest.raises(CommandError) as caught:
        sysexec.run(argv)
    err = caught.value
    assert (err.argv, err.returncode, err.netns) == (argv, 3, None)
    assert err.stderr == "\nfirst\nsecond\n"
    assert str(err).endswith("failed (3): first")
    assert "\n" not in str(err)


def test_error_output_tail_is_bounded_and_a_traceback_shows_its_last_line() -> None:
    code = "import sys; sys.stderr.write('x' * 10000 + '\\nend'); sys.exit(1)"
    with pytest.raises(CommandError) as caught:
        sysexec.run([PY, "-c", code])
    assert len(caught.value.stderr) == sysexec.STDERR_TAIL
    assert caught.value.stderr.endswith("\nend")
    with pytest.raises(CommandError, match=r"failed \(1\): ZeroDivisionError: division by zero$"):
        sysexec.run([PY, "-c", "1 / 0"])


def test_without_check_the_caller_reads_the_exit_code() -> None:
    proc = sysexec.run([PY, "-c", "import sys; sys.exit(4)"], check=False)
    assert proc.returncode == 4


def test_the_error_type_is_the_callers() -> None:
    with pytest.raises(OwnError, match="failed"):
        sysexec.run([PY, "-c", "import sys; sys.exit(1)"], error=OwnError)
    with pytest.raises(OwnError, match="command not found: felis-no-such-tool"):
        sysexec.run(["felis-no-such-tool"], error=OwnError)


def test_timeout() -> None:
    with pytest.raises(CommandError, match=r"timed out after 0\.5s") as caught:
        sysexec.run(FOREVER, timeout=0.5)
    assert caught.value.returncode is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["felis-no-such-tool", "-x"], "command not found: felis-no-such-tool"),
        (
            ["/nonexistent/nft"],
            r"/nonexistent/nft is not installed \(Debian: apt-get install nftables\)",
        ),
    ],
)
def test_missing_tool_raises_even_without_check(argv: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        sysexec.run(argv, check=False)


@pytest.mark.parametrize(
    ("netns", "message"),
    [
        ("../etc", "invalid network namespace name '../etc'"),
        ("felis-no-such-netns-here", "network namespace 'felis-no-such-netns-here' does not exist"),
    ],
)
def test_namespace_is_checked_before_anything_runs(netns: str, message: str) -> None:
    with pytest.raises(CommandError, match=message) as caught:
        sysexec.run(["true"], netns=netns)
    assert caught.value.netns == netns
    with pytest.raises(CommandError, match=message):
        Process(["true"], netns=netns)


def test_message_names_the_command_and_its_namespace() -> None:
    err = CommandError(["nft", "-f", "-"], 1, "Error: oops\n", netns="ns1")
    assert str(err) == "nft -f - (in netns ns1) failed (1): Error: oops"
    assert isinstance(err, FelisError)
    long = CommandError(["x" * 500], 2, "")
    assert str(long) == f"{'x' * 199}… failed (2): no error output"


def test_process_output_error_output_and_exit() -> None:
    code = "import sys; print('one'); print('two'); sys.stderr.write('bad\\n'); sys.exit(2)"
    proc = Process([PY, "-c", code])
    try:
        assert proc.stdout is not None
        assert [line.strip() for line in proc.stdout] == ["one", "two"]
        with pytest.raises(CommandError, match=r"failed \(2\): bad$"):
            proc.check(timeout=30)
        assert proc.returncode == 2
        assert proc.error_output() == "bad\n"
    finally:
        proc.stop()


def test_process_stop_ends_a_command_that_does_not_end_itself() -> None:
    proc = Process(FOREVER)
    assert proc.wait(timeout=0.1) is None
    with pytest.raises(CommandError, match="did not end within"):
        proc.check(timeout=0.1)
    proc.stop(grace=5.0)
    assert proc.returncode is not None
    proc.stop()  # again: nothing left to do
