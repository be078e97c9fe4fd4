"""Several felis agent nodes watching one etcd, for the cluster tests and bench_propagation.

Why a bridge: an agent runs inside its node's network namespace, where the root namespace's
127.0.0.1 (where `etcd_harness` members listen) is unreachable. So etcd members additionally
listen on one address of a veth in the root namespace, 198.19.R.1 (R picked at random among
subnets the root namespace does not route yet); the veth's other end is a port of a bridge in
a hub namespace, and every node namespace has an `eth1` on that bridge. The test process keeps
using 127.0.0.1 (etcdctl, `felis apply`); agents use the bridge address. Nothing but that one
veth touches the root namespace, and nothing touches its firewall.

Layout (every namespace private to this environment, every address in 198.18.0.0/15):

    root ns   fr<tag> 198.19.R.1/24 ── hub ns bridge br0 ──┬── node i eth1 198.19.R.(10+i)/24
    client ns c<i> 198.18.(10+i).2/24 ─────────────────────│── node i eth0 198.18.(10+i).1/24

Each node runs `felis agent --node node-<i>` (HostEndpoint `node-<i>-eth0` on eth0, labelled like
the kernel tests' memcached server) with its log in a file and /healthz on its own 127.0.0.1.
`agent_env()` removes every namespace, the root veth, every process and the work directory it
made, whatever happens inside.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

KERNEL_TESTS = Path(__file__).resolve().parents[1] / "kernel"
if str(KERNEL_TESTS) not in sys.path:
    sys.path.insert(0, str(KERNEL_TESTS))

from etcd_harness import ETCD, EtcdCluster, Member, poll  # noqa: E402
from harness import Topology, sh  # noqa: E402
from node import SEED_POLICY, FelisNode, manifest  # noqa: E402

SERVE_PORT = 12211  # what SEED_POLICY allows (ingress to it, egress from it)
OTHER_PORT = 12212  # served too, never allowed: must stay blocked
METRICS_PORT = 9099  # each agent's own 127.0.0.1, inside its namespace


def require_root_and_etcd() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    if not (os.path.exists(ETCD) and os.access(ETCD, os.X_OK)):
        pytest.skip("etcd is not installed (Debian package etcd-server)")


def _free_hub_octet() -> int:
    routes = sh(["ip", "-4", "route", "show", "table", "all"]).stdout
    taken = {r for r in range(256) if f"198.19.{r}." in routes}
    choices = [r for r in range(20, 250) if r not in taken]
    if not choices:
        raise RuntimeError("no free 198.19.x.0/24 subnet in the root namespace")
    return random.choice(choices)


@dataclass
class BridgedEtcd(EtcdCluster):
    """`EtcdCluster` whose members also serve clients on the hub address (see module doc)."""

    bridge_ip: str = ""

    def _command(self, member: Member, state: str) -> list[str]:
        command = super()._command(member, state)
        if self.bridge_ip:
            at = command.index("--listen-client-urls") + 1
            command[at] = f"{member.client_url},http://{self.bridge_ip}:{member.client_port}"
        return command

    @property
    def agent_url(self) -> str:
        """The datastore URL as seen from inside a node namespace."""
        return "etcd://" + ",".join(f"{self.bridge_ip}:{m.client_port}" for m in self.members)


def hep(node: str, address: str) -> str:
    return f"""
    apiVersion: projectcalico.org/v3
    kind: HostEndpoint
    metadata:
      name: {node}-eth0
      labels:
        memcached: server
        node: {node}
    spec:
      interfaceName: eth0
      node: {node}
      expectedIPs: [{address}]
    """


def client_set(name: str, nets: list[str]) -> str:
    return f"""
    apiVersion: projectcalico.org/v3
    kind: GlobalNetworkSet
    metadata:
      name: {name}
      labels:
        memcached: client
    spec:
      nets: [{", ".join(nets)}]
    """


def seed_policy(*ports: int) -> str:
    """SEED_POLICY with other ports (default: its own)."""
    if not ports or ports == (SERVE_PORT,):
        return SEED_POLICY
    text = SEED_POLICY.replace("ports: [12211]", "ports: [" + ", ".join(map(str, ports)) + "]")
    assert text != SEED_POLICY
    return text


# Runs in the client namespace: a bounded stream of echo connections, one after another,
# until the stop file appears (or a hard cap), then prints one JSON line of counts.
STREAM_SCRIPT = textwrap.dedent(
    """
    import json, os, socket, sys, time
    addresses, port = sys.argv[1].split(","), int(sys.argv[2])
    stop_file, cap = sys.argv[3], float(sys.argv[4])
    ok = failed = 0
    errors = []
    end = time.monotonic() + cap
    while not os.path.exists(stop_file) and time.monotonic() < end:
        for address in addresses:
            try:
                with socket.create_connection((address, port), timeout=2) as sock:
                    sock.settimeout(2)
                    sock.sendall(b"felis-stream\\n")
                    if sock.recv(64) != b"felis-stream\\n":
                        raise OSError("bad echo")
                ok += 1
            except OSError as err:
                failed += 1
                errors.append(f"{address}: {err}")
        if ok + failed == len(addresses):
            print(f"started ok={ok}", flush=True)
        time.sleep(0.005)
    print(json.dumps({"ok": ok, "failed": failed, "errors": errors[:5]}), flush=True)
    """
)


@dataclass
class AgentNode:
    env: AgentEnv
    index: int
    name: str
    ns: str
    server_ip: str
    client_ip: str
    hub_ip: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def kernel(self) -> FelisNode:
        """The kernel tests' readers (chain hashes, set members, ruleset) for this namespace."""
        return FelisNode(
            self.env.topo, self.env.backend, self.env.workdir, self.ns, self.env.client, "", ""
        )

    def start(self, *extra: str) -> None:
        assert self.process is None or self.process.poll() is not None, "agent already running"
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"=== start {self.starts}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.ns,
                    sys.executable,
                    "-m",
                    "felis",
                    "agent",
                    "--node",
                    self.name,
                    "--backend",
                    self.env.backend,
                    "--datastore",
                    self.env.etcd.agent_url,
                    "--metrics-port",
                    str(METRICS_PORT),
                    "--refresh-interval",
                    "0",
                    *extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.env.processes.append(self.process)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the agent and wait for it to exit; returns its exit code."""
        process = self.process
        assert process is not None
        if process.poll() is None:
            process.send_signal(sig)
        try:
            return process.wait(timeout=30)
        finally:
            self.process = None

    def log_text(self, start: int | None = None) -> str:
        """The agent's log (only the given start's part when `start` is set)."""
        text = self.log_path.read_text(errors="replace")
        if start is None:
            return text
        part = text.split(f"=== start {start}\n", 1)[1]
        return part.split(f"=== start {start + 1}\n", 1)[0]

    def health(self) -> dict[str, Any] | None:
        """The agent's /healthz JSON (None while it does not answer)."""
        proc = self.env.topo.exec(
            self.ns,
            ["curl", "-s", "-m", "2", f"http://127.0.0.1:{METRICS_PORT}/healthz"],
            check=False,
        )
        if proc.returncode != 0 or not proc.stdout.strip():
            return None
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def nft_json(self) -> dict[str, Any]:
        proc = self.env.topo.exec(self.ns, ["nft", "-a", "-j", "list", "ruleset"])
        data: dict[str, Any] = json.loads(proc.stdout)
        return data

    def has_chain(self, chain: str) -> bool:
        return any(chain in name for name in self.kernel.chain_hashes())

    def state(self) -> tuple[dict[str, tuple[str | None, ...]], dict[str, frozenset[str]]]:
        """What the agent programmed: every felis chain's rule hashes and every set's members."""
        kernel = self.kernel
        return kernel.chain_hashes(), kernel.set_members()

    def reach(self, port: int = SERVE_PORT) -> bool:
        return self.env.topo.probe(self.env.client, self.server_ip, port, timeout=1.0)

    def wait_in_sync(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            health = self.health()
            return bool(health and health["healthy"])

        poll(ready, timeout, f"{self.name} in sync")


@dataclass
class AgentEnv:
    backend: str
    workdir: Path
    topo: Topology
    hub: str
    client: str
    octet: int
    root_if: str
    etcd: BridgedEtcd
    nodes: list[AgentNode] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def hub_address(self, host: int) -> str:
        return f"198.19.{self.octet}.{host}"

    def add_node(self, *, serve: bool = True) -> AgentNode:
        """A node namespace with eth0 (HEP side, to the client) and eth1 (to etcd)."""
        index = len(self.nodes)
        ns = self.topo.add_host(f"n{index}")
        server_ip, client_ip = f"198.18.{10 + index}.1", f"198.18.{10 + index}.2"
        self.topo.link(
            ns, "eth0", [f"{server_ip}/24"], self.client, f"c{index}", [f"{client_ip}/24"]
        )
        hub_ip = self.hub_address(10 + index)
        self._to_hub(ns, hub_ip, f"p{index}")
        node = AgentNode(
            self, index, f"node-{index}", ns, server_ip, client_ip, hub_ip,
            self.workdir / f"agent-{index}.log",
        )  # fmt: skip
        if serve:
            for port in (SERVE_PORT, OTHER_PORT):
                self.topo.serve(ns, "0.0.0.0", port)
        self.nodes.append(node)
        return node

    def twin(self, node: AgentNode, role: str) -> str:
        """A fresh namespace looking like `node` to felis (same eth0 address), linked to etcd."""
        ns = self.topo.add_host(role)
        # eth0's peer stays unattached in the hub: the address exists, nothing reaches it.
        twins = len(self.topo.namespaces)
        self.topo.link(ns, "eth0", [f"{node.server_ip}/24"], self.hub, f"z{twins}", [])
        self._to_hub(ns, self.hub_address(100 + twins), f"t{twins}")
        return ns

    def _to_hub(self, ns: str, address: str, port_name: str) -> None:
        self.topo.link(ns, "eth1", [f"{address}/24"], self.hub, port_name, [])
        self.topo.exec(self.hub, ["ip", "link", "set", port_name, "master", "br0"])

    def felis(self, *args: str, ns: str | None = None) -> str:
        """A felis command (root namespace: against 127.0.0.1; in `ns`: against the bridge)."""
        url = self.etcd.url if ns is None else self.etcd.agent_url
        return self.topo.felis(ns, [*args, "--datastore", url]).stdout

    def apply(self, *documents: str) -> str:
        path = self.workdir / "apply.yaml"
        path.write_text(manifest(*documents))
        return self.felis("apply", "-f", str(path))

    def seed(self) -> None:
        """Every node's HEP and the client set (no policy yet: the HEPs deny all but failsafe)."""
        self.apply(
            *(hep(n.name, n.server_ip) for n in self.nodes),
            client_set("clients", [f"{n.client_ip}/32" for n in self.nodes]),
        )

    def once_state(
        self, node: AgentNode, role: str = "fresh"
    ) -> tuple[dict[str, tuple[str | None, ...]], dict[str, frozenset[str]]]:
        """What `felis agent --once` programs for `node` in a brand-new namespace."""
        ns = self.twin(node, role)
        self.felis("agent", "--node", node.name, "--once", "--backend", self.backend, ns=ns)
        fresh = FelisNode(self.topo, self.backend, self.workdir, ns, "", "", "")
        return fresh.chain_hashes(), fresh.set_members()

    @contextlib.contextmanager
    def stream(self, nodes: list[AgentNode], cap: float = 90.0) -> Iterator[Callable[[], Any]]:
        """Connections to `nodes` from the client, back to back, while the block runs.

        Yields a function that stops the stream and returns its counts
        ({"ok": n, "failed": n, "errors": [...]}).
        """
        stop_file = self.workdir / f"stop-{time.monotonic_ns()}"
        proc = self.topo.spawn(
            self.client,
            [
                sys.executable,
                "-c",
                STREAM_SCRIPT,
                ",".join(n.server_ip for n in nodes),
                str(SERVE_PORT),
                str(stop_file),
                str(cap),
            ],
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        result: dict[str, Any] = {}

        def finish() -> Any:
            if not result:
                stop_file.touch()
                out, err = proc.communicate(timeout=cap + 30)
                result.update(json.loads(out.strip().splitlines()[-1]) if out.strip() else {})
                result.setdefault("stderr", err[-500:])
            return result

        try:
            assert first.strip() == f"started ok={len(nodes)}", f"stream did not start: {first}"
            yield finish
        finally:
            finish()

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        self.etcd.close()
        sh(["ip", "link", "del", self.root_if], check=False)
        self.topo.close()


@contextlib.contextmanager
def agent_env(
    nodes: int, *, backend: str = "nftables", etcd_members: int = 1, serve: bool = True
) -> Iterator[AgentEnv]:
    """`nodes` agent namespaces and an etcd of `etcd_members` (agents not started yet)."""
    workdir = Path(tempfile.mkdtemp(prefix="felis-agents-"))
    topo = Topology()
    octet = _free_hub_octet()
    root_if = f"fr{topo.tag}"
    env: AgentEnv | None = None
    try:
        hub = topo.add_host("hub")
        client = topo.add_host("cli")
        topo.exec(hub, ["ip", "link", "add", "br0", "type", "bridge"])
        topo.exec(hub, ["ip", "link", "set", "br0", "up"])
        sh(["ip", "link", "add", root_if, "type", "veth", "peer", "name", f"fh{topo.tag}"])
        (workdir / "etcd").mkdir()
        etcd = BridgedEtcd(size=etcd_members, root=workdir / "etcd", bridge_ip=f"198.19.{octet}.1")
        env = AgentEnv(backend, workdir, topo, hub, client, octet, root_if, etcd)
        sh(["ip", "link", "set", f"fh{topo.tag}", "netns", hub])
        topo.exec(hub, ["ip", "link", "set", f"fh{topo.tag}", "name", "up0"])
        topo.exec(hub, ["ip", "link", "set", "up0", "master", "br0"])
        topo.exec(hub, ["ip", "link", "set", "up0", "up"])
        sh(["ip", "addr", "add", f"{env.hub_address(1)}/24", "dev", root_if])
        sh(["ip", "link", "set", root_if, "up"])
        for _ in range(nodes):
            env.add_node(serve=serve)
        env.etcd.start()
        yield env
    finally:
        if env is not None:
            env.close()
        else:
            sh(["ip", "link", "del", root_if], check=False)
            topo.close()
        shutil.rmtree(workdir, ignore_errors=True)


def timed_all(
    nodes: list[AgentNode], done: Callable[[AgentNode], bool], since: float
) -> list[float]:
    """Poll every node concurrently until `done(node)`; seconds from `since` to each success."""
    results: dict[int, float] = {}
    errors: list[BaseException] = []

    def watch(node: AgentNode) -> None:
        try:
            poll(lambda: done(node), 60.0, f"{node.name} programmed")
            results[node.index] = time.monotonic() - since
        except BaseException as err:  # reported by the caller
            errors.append(err)

    threads = [threading.Thread(target=watch, args=(n,)) for n in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [results[n.index] for n in nodes]
