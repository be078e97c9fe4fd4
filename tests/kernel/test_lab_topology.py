"""The lab topology: built, used and removed without a trace (root, own namespaces)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from felis.lab.topology import LabConfig, Topology, listening

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]


def config(tmp_path: Path) -> LabConfig:
    tag = secrets.token_hex(3)
    return LabConfig(
        server_netns=f"flt-{tag}-s", client_netns=f"flt-{tag}-c", run_dir=tmp_path / "run"
    )


def netns_names() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


def root_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return sorted(line.split(":")[1].strip() for line in out.splitlines())


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """The process has ended: gone, or a zombie. A zombie has stopped for good; reaping it is
    its parent's job (in the crash test, the first Topology of this same process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in {"Z", "X"}:
            return True
        time.sleep(0.05)
    return False


def test_up_down_leaves_no_trace(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    links_before = root_links()
    with Topology(cfg) as topo:
        assert topo.is_up()
        pid = topo.memcached_pid()
        assert pid is not None and listening(pid, 12211)
        assert {cfg.server_netns, cfg.client_netns} <= netns_names()
        addrs = subprocess.run(
            ["ip", "-n", cfg.client_netns, "-o", "addr"], capture_output=True, text=True, check=True
        ).stdout
        assert "198.18.0.2/24" in addrs and "198.18.0.41/32" in addrs
        somaxconn = subprocess.run(
            ["ip", "netns", "exec", cfg.server_netns, "sysctl", "-n", "net.core.somaxconn"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert somaxconn == "65535"
        assert root_links() == links_before  # the veth pair never lives in the root namespace
        assert topo.up() is False  # idempotent
    assert not ({cfg.server_netns, cfg.client_netns} & netns_names())
    assert not Path(f"/proc/{pid}").exists()  # gone and reaped: not even a zombie
    assert root_links() == links_before
    assert not cfg.state_file.exists()


def test_down_removes_leftovers_of_a_crashed_run(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    first = Topology(cfg)
    first.up()
    pid = first.memcached_pid()
    assert pid is not None
    # A new process knows only the run dir and the names, as after a crash.
    removed = Topology(cfg).down()
    assert any(item.startswith("netns") for item in removed)
    assert not ({cfg.server_netns, cfg.client_netns} & netns_names())
    assert wait_gone(pid)
    first.down()  # nothing left to do, and no error


def test_failed_build_removes_what_was_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(tmp_path)

    def broken(self: Topology, *, detach: bool) -> None:
        raise RuntimeError("memcached would not start")

    monkeypatch.setattr(Topology, "_start_memcached", broken)
    with pytest.raises(RuntimeError):
        Topology(cfg).up()
    assert not ({cfg.server_netns, cfg.client_netns} & netns_names())


def test_sigterm_removes_the_lab(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    script = f"""
import sys, time
from pathlib import Path
from felis.lab.signals import cleanup_on_signals
from felis.lab.topology import LabConfig, Topology
cfg = LabConfig(server_netns={cfg.server_netns!r}, client_netns={cfg.client_netns!r},
                run_dir=Path({str(cfg.run_dir)!r}))
try:
    with cleanup_on_signals(), Topology(cfg) as t:
        print(t.memcached_pid(), flush=True)
        time.sleep(120)
except BaseException as exc:
    print(type(exc).__name__, flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline().strip() == "Terminated"
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        Topology(cfg).down()
    assert not ({cfg.server_netns, cfg.client_netns} & netns_names())
    assert wait_gone(pid)
