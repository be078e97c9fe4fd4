"""A private mount namespace holding a tiny tmpfs, for datastore-fault tests.

Root ignores file permissions, so a "read-only datastore" or a "full disk" has to be real: this
module runs itself under `unshare --mount --propagation private`, mounts a small tmpfs there and
then obeys one JSON command per line on stdin (one JSON reply per line on stdout). Nothing it
mounts is visible outside its namespace, and the namespace (with the tmpfs) disappears when the
worker and every process it started are gone. `MountNs` is the test side. Create it after the
network namespaces its commands enter: `ip netns add` bind-mounts under /run/netns, and a
private mount namespace does not see mounts made after it was created.

Commands: `run` (a command in this namespace, waited for), `felis` (a felis command, exit code
and output as from `python -m felis`), `spawn` (a long-running one, its
output to a log file), `fill` (one file takes every free block), `unfill`, `readonly` (a
read-only bind mount over the directory), `writable` (that bind mount removed), `dump` (what a
datastore file holds, read with plain sqlite3).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

FILL = "fill.bin"


def _serve(directory: Path, size: str) -> None:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "felis-test", str(directory)],
        check=True,
    )
    spawned: list[subprocess.Popen[bytes]] = []

    def reply(value: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    reply({"ready": True})
    # Paid now, while the test builds its namespaces, not at the first `felis` command.
    import felis.cli.resources  # noqa: F401

    try:
        for line in sys.stdin:
            command = json.loads(line)
            name = command["cmd"]
            if name == "run":
                proc = subprocess.run(
                    command["argv"], capture_output=True, text=True, timeout=120, check=False
                )
                reply({"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr})
            elif name == "felis":
                reply(_felis(command["argv"]))
            elif name == "spawn":
                with open(command["log"], "ab") as log:
                    child = subprocess.Popen(
                        command["argv"],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                spawned.append(child)
                reply({"pid": child.pid})
            elif name == "fill":
                fd = os.open(directory / FILL, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    block = b"\0" * 4096
                    with contextlib.suppress(OSError):  # ENOSPC: the point
                        while True:
                            os.write(fd, block)
                finally:
                    os.close(fd)
                reply({"free": os.statvfs(directory).f_bavail})
            elif name == "unfill":
                (directory / FILL).unlink()
                reply({"free": os.statvfs(directory).f_bavail})
            elif name == "readonly":
                subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
                subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=True)
                reply({"ok": True})
            elif name == "dump":
                reply(_dump(directory / command["file"]))
            elif name == "writable":
                subprocess.run(["umount", str(directory)], check=True)
                reply({"ok": True})
            else:
                reply({"error": f"unknown command {name}"})
    finally:
        for child in spawned:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def _felis(argv: list[str]) -> dict[str, Any]:
    """`felis ARGV` as `python -m felis` runs it, in a child forked from this process: the
    import of felis is paid once per worker, not once per command."""
    import tempfile

    from felis.cli import main

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # the child: never returns into the command loop
            code = 1
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                main(argv)
                code = 0
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return {
            "rc": os.waitstatus_to_exitcode(status),
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


def _dump(path: Path) -> dict[str, Any]:
    """Every stored row and the revision, read with plain sqlite3 (no felis code involved)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT kind, name, revision, value FROM resources ORDER BY 1, 2")
        resources = [list(row) for row in rows]
        revision = conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0]
    finally:
        conn.close()
    return {"resources": resources, "revision": revision}


class MountNs:
    """The test side: starts the worker; `close()` ends it and everything it started."""

    def __init__(self, directory: Path, size: str = "1m") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private",
             sys.executable, __file__, str(directory), size],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )  # fmt: skip
        self.pids: list[int] = []
        try:
            ready = self._read()
            if not ready.get("ready"):
                raise RuntimeError(f"mount worker did not start: {ready}")
        except BaseException:
            self.close()
            raise

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"mount worker exited ({self.proc.wait(timeout=10)})")
        result: dict[str, Any] = json.loads(line)
        return result

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        out = self.call("run", argv=list(argv))
        return subprocess.CompletedProcess(list(argv), out["rc"], out["stdout"], out["stderr"])

    def felis(self, *args: str) -> subprocess.CompletedProcess[str]:
        out = self.call("felis", argv=list(args))
        return subprocess.CompletedProcess(list(args), out["rc"], out["stdout"], out["stderr"])

    def spawn(self, argv: list[str], log: Path) -> int:
        pid = int(self.call("spawn", argv=argv, log=str(log))["pid"])
        self.pids.append(pid)
        return pid

    def close(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            if self.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), sys.argv[2])
