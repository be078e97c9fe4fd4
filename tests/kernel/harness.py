"""Network-namespace test hosts for the kernel tests.

Each `Topology` creates its own namespaces (unique names, so parallel runs never collide), joins
them with veth pairs on 198.18.0.0/15 addresses, and removes every namespace and process it made
when the `with` block ends, failing or not. Traffic only ever goes between these namespaces.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

PEER = str(Path(__file__).with_name("tcp_peer.py"))
LAB_NET = ipaddress.ip_network("198.18.0.0/15")


def is_root() -> bool:
    return os.geteuid() == 0


def sh(
    argv: Sequence[str], *, check: bool = True, input_text: str | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, input=input_text, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def wait_until(
    predicate, *, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"
):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Topology:
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"felt-{self.tag}-{role}"

    def add_host(self, role: str, *, forwarding: bool = False) -> str:
        name = self.ns(role)
        sh(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.exec(name, ["ip", "link", "set", "lo", "up"])
        if forwarding:
            self.exec(name, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            self.exec(name, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        return name

    def link(
        self, a: str, a_if: str, a_addrs: Sequence[str], b: str, b_if: str, b_addrs: Sequence[str]
    ) -> None:
        """A veth pair between namespaces a and b with the given interface names/addresses."""
        for addr in (*a_addrs, *b_addrs):
            iface = ipaddress.ip_interface(addr)
            if iface.version == 4 and iface.ip not in LAB_NET:
                raise ValueError(f"{addr} is outside the lab range")
        tmp_a, tmp_b = f"fa{secrets.token_hex(4)}", f"fb{secrets.token_hex(4)}"
        sh(["ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b])
        try:
            sh(["ip", "link", "set", tmp_a, "netns", a])
            sh(["ip", "link", "set", tmp_b, "netns", b])
        except RuntimeError:
            sh(["ip", "link", "del", tmp_a], check=False)
            raise
        for ns, tmp, final, addrs in ((a, tmp_a, a_if, a_addrs), (b, tmp_b, b_if, b_addrs)):
            self.exec(ns, ["ip", "link", "set", tmp, "name", final])
            for addr in addrs:
                extra = ["nodad"] if ":" in addr else []
                self.exec(ns, ["ip", "addr", "add", addr, "dev", final, *extra])
            self.exec(ns, ["ip", "link", "set", final, "up"])

    def route(self, ns: str, dest: str, via: str) -> None:
        self.exec(ns, ["ip", "route", "add", dest, "via", via])

    def exec(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        check: bool = True,
        input_text: str | None = None,
        timeout: float = 30.0,
    ) -> subprocess.CompletedProcess[str]:
        return sh(
            ["ip", "netns", "exec", ns, *argv], check=check, input_text=input_text, timeout=timeout
        )

    def felis(
        self, ns: str | None, args: Sequence[str], *, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "felis", *args]
        if ns is None:
            return sh(argv, check=check, timeout=timeout)
        return self.exec(ns, argv, check=check, timeout=timeout)

    def spawn(self, ns: str, argv: Sequence[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.processes.append(proc)
        return proc

    def serve(
        self, ns: str, address: str, port: int, *, proto: str = "tcp"
    ) -> subprocess.Popen[str]:
        """An echo server bound to address:port in ns; returns once it is listening."""
        proc = self.spawn(ns, [sys.executable, PEER, "serve", address, str(port), "--proto", proto])
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(
                f"echo server in {ns} failed: {line} {proc.stderr.read() if proc.stderr else ''}"
            )
        return proc

    def probe(
        self,
        ns: str,
        address: str,
        port: int,
        *,
        proto: str = "tcp",
        source: str | None = None,
        source_port: int = 0,
        timeout: float = 1.5,
    ) -> bool:
        """True when a request to address:port from ns gets its echo back within timeout."""
        argv = [
            sys.executable,
            PEER,
            "probe",
            address,
            str(port),
            "--proto",
            proto,
            "--timeout",
            str(timeout),
        ]
        if source:
            argv += ["--source", source]
        if source_port:
            argv += ["--source-port", str(source_port)]
        return self.exec(ns, argv, check=False, timeout=timeout + 10).returncode == 0

    def conntrack(self, ns: str, *filters: str) -> list[str]:
        proc = self.exec(ns, ["conntrack", "-L", *filters], check=False)
        return [line for line in proc.stdout.splitlines() if line.strip()]

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for name in reversed(self.namespaces):
            for pid in sh(["ip", "netns", "pids", name], check=False).stdout.split():
                with suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh(["ip", "netns", "del", name], check=False)
        self.namespaces.clear()


@contextmanager
def topology() -> Iterator[Topology]:
    topo = Topology()
    try:
        yield topo
    finally:
        topo.close()
