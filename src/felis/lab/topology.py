"""The lab topology: a server and a client namespace joined by a veth pair, and a real memcached.

```
memcached-node-1  eth0 198.18.0.1/24  <== veth ==>  felis-lab-client  eth0 198.18.0.2/24
  memcached :12211                                   + 198.18.0.10-.41 as extra source addresses
```

A direct veth pair (no bridge) keeps br_netfilter out of the picture. TCP knobs are set inside
the namespaces only. memcached runs in the foreground as our child (never `-d`), so it is reaped
when it exits; the state file in the run directory lets `down` clean up after a crashed run.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from felis import sysexec
from felis.lab import netns as ns
from felis.lab.errors import LabCommandError, LabError
from felis.lab.safety import require_lab_address
from felis.lab.sysctl import restore_recorded

DEFAULT_RUN_DIR = Path("/run/felis-lab")
STATE_NAME = "state.json"
MEMCACHED_PORT = 12211

SERVER_SYSCTLS = {
    "net.core.somaxconn": "65535",
    "net.ipv4.tcp_max_syn_backlog": "65535",
}
# The widest range by default: high-connection clients widen theirs on purpose, and a range
# that skipped the failsafe ports (22 … 6667) would hide connections a firewall loses when an
# ephemeral port collides with one of them.
DEFAULT_CLIENT_PORTS = (1024, 65535)
PORT_RANGE_FLAG = "--client-ports"


def parse_port_range(text: str) -> tuple[int, int]:
    """`LOW-HIGH` as the client's ephemeral port range; LabError (one line) when invalid."""
    low, sep, high = text.strip().partition("-")
    if not (sep and low.strip().isdigit() and high.strip().isdigit()):
        raise LabError(f"{PORT_RANGE_FLAG}: expected LOW-HIGH (e.g. 1024-65535), not {text!r}")
    return check_port_range((int(low), int(high)))


def check_port_range(ports: tuple[int, int]) -> tuple[int, int]:
    low, high = ports
    if not 1 <= low <= high <= 65535:
        raise LabError(f"{PORT_RANGE_FLAG}: need 1 <= LOW <= HIGH <= 65535, not {low}-{high}")
    return ports


def format_port_range(ports: tuple[int, int]) -> str:
    return f"{ports[0]}-{ports[1]}"


@dataclass(frozen=True)
class LabConfig:
    """Names and addresses of one lab. Tests use their own namespace names and run dir."""

    server_netns: str = "memcached-node-1"
    client_netns: str = "felis-lab-client"
    node_name: str = "memcached-node-1"
    interface: str = "eth0"
    server_ip: str = "198.18.0.1"
    client_ip: str = "198.18.0.2"
    prefix_len: int = 24
    source_base: str = "198.18.0.10"
    source_count: int = 32
    port: int = MEMCACHED_PORT
    memcached_threads: int = 2
    memcached_max_conns: int = 16384
    client_ports: tuple[int, int] = DEFAULT_CLIENT_PORTS
    run_dir: Path = field(default=DEFAULT_RUN_DIR)

    def __post_init__(self) -> None:
        for name in (self.server_netns, self.client_netns):
            if not sysexec.valid_netns_name(name):
                raise LabError(f"invalid network namespace name {name!r}")
        if self.server_netns == self.client_netns:
            raise LabError("server and client namespaces must differ")
        for what, addr in (
            ("server address", self.server_ip),
            ("client address", self.client_ip),
            ("source address", self.source_base),
            ("last source address", self.source_address(self.source_count - 1)),
        ):
            require_lab_address(addr, what)
        if not 1 <= self.source_count <= 200:
            raise LabError(f"source_count must be 1..200, not {self.source_count}")
        check_port_range(self.client_ports)

    def source_address(self, index: int) -> str:
        return str(ipaddress.IPv4Address(self.source_base) + index)

    @property
    def network(self) -> str:
        return str(ipaddress.IPv4Network(f"{self.server_ip}/{self.prefix_len}", strict=False))

    @property
    def state_file(self) -> Path:
        return self.run_dir / STATE_NAME

    def client_sysctls(self) -> dict[str, str]:
        low, high = self.client_ports
        return {"net.ipv4.ip_local_port_range": f"{low} {high}", "net.ipv4.tcp_tw_reuse": "1"}


@dataclass
class LabState:
    server_netns: str
    client_netns: str
    memcached_pid: int | None
    memcached_start_ticks: int | None
    created: float

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)

    @staticmethod
    def load(path: Path) -> LabState | None:
        try:
            data = json.loads(path.read_text())
            return LabState(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise LabError(f"{path}: unreadable lab state ({exc}); remove it by hand") from exc


def _proc_start_ticks(pid: int) -> int | None:
    """Start time of `pid` in clock ticks (field 22 of /proc/PID/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; the rest follows the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    state = _proc_state(pid)
    return state is not None and state not in {"Z", "X"}


def _reap(pid: int) -> None:
    # Only works for our own children; for anything else there is nothing to do.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_process(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; reaps it when it is our child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(pid)
            if not _alive(pid):
                # It may have turned into a zombie just after the reap above: reap again, or
                # our own child would stay behind as a defunct entry.
                _reap(pid)
                return
            time.sleep(0.02)


def listening(pid: int, port: int) -> bool:
    """Whether the process' network namespace has a TCP socket listening on `port`.

    /proc/PID/net/tcp shows the namespace of PID, so no command has to enter the namespace.
    """
    try:
        text = Path(f"/proc/{pid}/net/tcp").read_text()
    except OSError:
        return False
    want = f":{port:04X}"
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) > 3 and parts[1].endswith(want) and parts[3] == "0A":
            return True
    return False


class Topology:
    """Build, inspect and remove one lab. As a context manager: up on enter, down on exit."""

    def __init__(self, config: LabConfig | None = None) -> None:
        self.config = config or LabConfig()
        self._memcached: sysexec.Process | None = None
        # What the last `down` removed (the demo reports it).
        self.removed: list[str] = []

    # -- inspection -------------------------------------------------------------------------

    def state(self) -> LabState | None:
        return LabState.load(self.config.state_file)

    def memcached_pid(self) -> int | None:
        state = self.state()
        if state is None or state.memcached_pid is None:
            return None
        if _proc_start_ticks(state.memcached_pid) != state.memcached_start_ticks:
            return None  # exited, and the PID may have been reused since
        return state.memcached_pid if _alive(state.memcached_pid) else None

    def is_up(self) -> bool:
        cfg = self.config
        if not (sysexec.netns_exists(cfg.server_netns) and sysexec.netns_exists(cfg.client_netns)):
            return False
        pid = self.memcached_pid()
        return pid is not None and listening(pid, cfg.port)

    def status(self) -> dict[str, Any]:
        cfg = self.config
        pid = self.memcached_pid()
        return {
            "up": self.is_up(),
            "server_netns": cfg.server_netns,
            "server_netns_exists": sysexec.netns_exists(cfg.server_netns),
            "client_netns": cfg.client_netns,
            "client_netns_exists": sysexec.netns_exists(cfg.client_netns),
            "memcached": f"{cfg.server_ip}:{cfg.port}",
            "memcached_pid": pid,
            "memcached_listening": pid is not None and listening(pid, cfg.port),
            "client_sources": f"{cfg.source_base} +{cfg.source_count - 1}",
            "run_dir": str(cfg.run_dir),
            "conntrack_max_pending_restore": (cfg.run_dir / "conntrack_max.orig").exists(),
        }

    def client_port_range(self) -> tuple[int, int]:
        """The ephemeral port range the client namespace really has."""
        text = ns.read_proc("/proc/sys/net/ipv4/ip_local_port_range", self.config.client_netns)
        low, high = text.split()
        return int(low), int(high)

    # -- lifecycle --------------------------------------------------------------------------

    def up(self, *, detach: bool = False) -> bool:
        """Build the lab; returns False when it was already complete (idempotent).

        `detach` starts memcached in its own session so it outlives this process (for
        `felis lab up`); otherwise it stays our child and dies with `down`.
        """
        if self.is_up():
            # A lab left up by `felis lab up` may have been built with another port range.
            set_sysctls(self.config.client_netns, self.config.client_sysctls())
            return False
        # Leftovers of a crashed or half-built run. The conntrack_max record is left alone: a
        # guard around this lab may have just written it.
        self.down(restore_sysctl=False)
        try:
            self._build(detach=detach)
        except BaseException:
            self.down(restore_sysctl=False)
            raise
        return True

    def _build(self, *, detach: bool) -> None:
        cfg = self.config
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        for tool in ("ip", "memcached"):
            if shutil.which(tool) is None:
                raise LabError(f"{tool} is not installed (Debian: apt-get install {tool})")
        ns.run(["ip", "netns", "add", cfg.server_netns])
        ns.run(["ip", "netns", "add", cfg.client_netns])
        # Created directly inside both namespaces: the root namespace never sees the pair.
        ns.run(
            [
                "ip", "link", "add", cfg.interface, "netns", cfg.server_netns, "type", "veth",
                "peer", "name", cfg.interface, "netns", cfg.client_netns,
            ]
        )  # fmt: skip
        prefix = str(cfg.prefix_len)
        server_cmds = [
            f"addr add {cfg.server_ip}/{prefix} dev {cfg.interface}",
            "link set lo up",
            f"link set {cfg.interface} up",
        ]
        client_cmds = [f"addr add {cfg.client_ip}/{prefix} dev {cfg.interface}"]
        client_cmds += [
            f"addr add {cfg.source_address(i)}/32 dev {cfg.interface}"
            for i in range(cfg.source_count)
        ]
        client_cmds += ["link set lo up", f"link set {cfg.interface} up"]
        # `ip -batch -` reads ip sub-commands (not shell) from stdin: one process per namespace.
        ns.run(["ip", "-n", cfg.server_netns, "-batch", "-"], input_text="\n".join(server_cmds))
        ns.run(["ip", "-n", cfg.client_netns, "-batch", "-"], input_text="\n".join(client_cmds))
        set_sysctls(cfg.server_netns, SERVER_SYSCTLS)
        set_sysctls(cfg.client_netns, cfg.client_sysctls())
        self._start_memcached(detach=detach)

    def _start_memcached(self, *, detach: bool) -> None:
        cfg = self.config
        argv = [
            "memcached", "-u", "nobody", "-l", cfg.server_ip, "-p", str(cfg.port), "-U", "0",
            "-t", str(cfg.memcached_threads), "-c", str(cfg.memcached_max_conns),
            "-b", "65535", "-m", "64",
        ]  # fmt: skip
        log_path = cfg.run_dir / "memcached.log"
        with log_path.open("wb") as log:
            # Own session: a Ctrl-C on the terminal reaches felis, which then stops memcached
            # in order, instead of killing it under a half-finished phase.
            proc = sysexec.Process(
                argv,
                netns=cfg.server_netns,
                stdout=log,
                merge_stderr=True,
                new_session=True,
                error=LabCommandError,
            )
        if not detach:
            self._memcached = proc
        LabState(
            server_netns=cfg.server_netns,
            client_netns=cfg.client_netns,
            memcached_pid=proc.pid,
            memcached_start_ticks=_proc_start_ticks(proc.pid),
            created=time.time(),
        ).save(cfg.state_file)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if (rc := proc.returncode) is not None:
                log_text = log_path.read_text(errors="replace")
                raise LabError(f"memcached exited ({rc}): {sysexec.error_line(log_text)}")
            if listening(proc.pid, cfg.port):
                return
            time.sleep(0.02)
        raise LabError(f"memcached did not listen on {cfg.server_ip}:{cfg.port} within 10 s")

    def down(self, *, restore_sysctl: bool = True) -> list[str]:
        """Remove everything this lab (or a crashed earlier run) created; returns what went.

        With `restore_sysctl`, an nf_conntrack_max value recorded by a crashed run is put back.
        """
        cfg = self.config
        removed: list[str] = []
        pids: set[int] = set()
        if self._memcached is not None:
            pids.add(self._memcached.pid)
        state = self.state()
        if (
            state is not None
            and state.memcached_pid is not None
            and _proc_start_ticks(state.memcached_pid) == state.memcached_start_ticks
        ):
            pids.add(state.memcached_pid)
        for name in (cfg.server_netns, cfg.client_netns):
            # Anything still inside the lab's namespaces was started by the lab.
            pids.update(ns.netns_pids(name))
        for pid in sorted(pids):
            stop_process(pid)
            removed.append(f"process {pid}")
        if self._memcached is not None:
            self._memcached.wait(timeout=5.0)
            self._memcached = None
        for name in (cfg.server_netns, cfg.client_netns):
            if sysexec.netns_exists(name):
                # Deleting a namespace also destroys the veth end inside it (and so the pair).
                ns.run(["ip", "netns", "delete", name])
                removed.append(f"netns {name}")
        restored = restore_recorded(cfg.run_dir) if restore_sysctl else None
        if restored is not None:
            removed.append(f"nf_conntrack_max restored to {restored}")
        if cfg.state_file.exists():
            cfg.state_file.unlink()
            removed.append(str(cfg.state_file))
        self.removed = removed
        return removed

    def __enter__(self) -> Topology:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The sysctl belongs to whoever changed it (ConntrackMaxGuard restores it).
        self.down(restore_sysctl=False)


def set_sysctls(netns: str, values: dict[str, str]) -> None:
    """Set sysctls inside `netns` (per-namespace knobs only; never the root namespace)."""
    ns.run(["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())], netns=netns)
