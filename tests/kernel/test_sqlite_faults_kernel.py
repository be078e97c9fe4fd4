"""The SQLite datastore on a full or read-only file system while an agent enforces it.

The datastore lives on a 1 MiB tmpfs in a private mount namespace (tests/kernel/mount_worker.py;
root ignores permissions, so the fault has to be the file system's). `felis apply` of a change
that would open a port must fail with one line naming the file, leave every stored row and the
revision as they were (a large batch is all-or-nothing), and the running agent must keep its
rules and stay healthy. Once the file system is writable again the same change goes through and
the agent programs it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from harness import Topology, topology, wait_until
from mount_worker import MountNs
from node import CLIENT_HEP, CLIENT_IP, HEP, NODE, SEED_POLICY, SERVER_IP, FelisNode, manifest

METRICS_PORT = 9099

OPEN_12212 = SEED_POLICY.replace("ports: [12211]", "ports: [12211, 12212]")


def _many_sets(count: int) -> list[str]:
    # A batch of many objects: a half-applied one would leave some of them behind.
    return [
        f"""
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkSet
        metadata:
          name: filler-{i}
          labels: {{role: filler}}
        spec:
          nets: [{", ".join(f"198.19.{i}.{4 * j + 1}/32" for j in range(10))}]
        """
        for i in range(count)
    ]


def _health(topo: Topology, ns: str) -> dict[str, Any] | None:
    import json

    proc = topo.exec(
        ns, ["curl", "-s", "-m", "2", f"http://127.0.0.1:{METRICS_PORT}/healthz"], check=False
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _agent_argv(server: str, url: str) -> list[str]:
    return [
        "ip", "netns", "exec", server, sys.executable, "-m", "felis", "agent",
        "--node", NODE, "--backend", "nftables", "--datastore", url,
        "--metrics-port", str(METRICS_PORT), "--refresh-interval", "0",
    ]  # fmt: skip


def _wait_synced(topo: Topology, server: str, revision: int, what: str) -> None:
    def synced() -> bool:
        health = _health(topo, server)
        return bool(health and health["healthy"] and health["revision"] == revision)

    wait_until(synced, timeout=60, what=what)


def _one_line_error(proc: Any, path: Path) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and "Traceback" not in lines[0]
    return str(lines[0])


def test_full_or_read_only_datastore_keeps_data_and_agent(tmp_path: Path) -> None:
    db = tmp_path / "ds" / "felis.db"
    url = f"sqlite://{db}"
    seed, change = tmp_path / "seed.yaml", tmp_path / "change.yaml"
    seed.write_text(manifest(HEP, CLIENT_HEP, SEED_POLICY))
    change.write_text(manifest(OPEN_12212, *_many_sets(40)))
    with topology() as topo:
        server, client = topo.add_host("srv"), topo.add_host("cli")
        # After the namespaces exist: a private mount namespace sees no later `ip netns add`.
        # Its worker imports felis while the links and servers are set up.
        mnt = MountNs(db.parent, size="1m")
        try:
            topo.link(server, "eth0", [f"{SERVER_IP}/24"], client, "eth0", [f"{CLIENT_IP}/24"])
            for port in (12211, 12212):
                topo.serve(server, "0.0.0.0", port)
            kernel = FelisNode(topo, "nftables", tmp_path, server, client, "", "")
            agent = _agent_argv(server, url)
            mnt.spawn(agent, tmp_path / "agent.log")  # starts on an empty store; seeded below
            assert mnt.felis("apply", "-f", str(seed), "--datastore", url).returncode == 0
            stored = mnt.call("dump", file="felis.db")

            _wait_synced(topo, server, stored["revision"], "the agent in sync with the seed")
            assert kernel.reach(client, 12211)
            programmed = (kernel.chain_hashes(), kernel.set_members())
            health = _health(topo, server)

            # 1. Full: the agent holds the file open, so SQLite gets as far as the write.
            assert mnt.call("fill")["free"] == 0
            error = _one_line_error(mnt.felis("apply", "-f", str(change), "--datastore", url), db)
            assert "cannot write" in error and "full" in error, error
            assert mnt.call("dump", file="felis.db") == stored
            mnt.call("unfill")

            # 2. Read-only (for the writer; the agent's own mount is untouched).
            mnt.call("readonly")
            error = _one_line_error(mnt.felis("apply", "-f", str(change), "--datastore", url), db)
            assert "read-only file system" in error, error
            assert mnt.call("dump", file="felis.db") == stored
            mnt.call("writable")

            # Through both, the agent kept running and enforcing exactly what it had.
            assert (kernel.chain_hashes(), kernel.set_members()) == programmed
            assert kernel.reach(client, 12211)
            assert not topo.probe(client, SERVER_IP, 12212, timeout=0.5)
            assert _health(topo, server) == health, "the agent saw a change or an error"

            # 3. Writable again: the same change goes through and reaches the kernel.
            done = mnt.felis("apply", "-f", str(change), "--datastore", url)
            assert done.returncode == 0, done.stderr
            wait_until(lambda: kernel.reach(client, 12212), timeout=30, what="the change applied")
        finally:
            mnt.close()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_an_agent_started_on_a_full_disk_waits_for_it(tmp_path: Path) -> None:
    """A new process cannot open a SQLite file on a full file system (no room for its -wal and
    -shm files). The agent says so and keeps trying, instead of exiting; once space is freed it
    opens the datastore and programs the host."""
    db = tmp_path / "ds" / "felis.db"
    url = f"sqlite://{db}"
    seed = tmp_path / "seed.yaml"
    seed.write_text(manifest(HEP, CLIENT_HEP, SEED_POLICY))
    log = tmp_path / "agent.log"
    with topology() as topo:
        server, client = topo.add_host("srv"), topo.add_host("cli")
        mnt = MountNs(db.parent, size="1m")
        try:
            topo.link(server, "eth0", [f"{SERVER_IP}/24"], client, "eth0", [f"{CLIENT_IP}/24"])
            topo.serve(server, "0.0.0.0", 12211)
            kernel = FelisNode(topo, "nftables", tmp_path, server, client, "", "")
            assert mnt.felis("apply", "-f", str(seed), "--datastore", url).returncode == 0
            # Nobody holds the file open now (a reader would leave its -shm file behind).
            assert mnt.call("fill")["free"] == 0
            agent = _agent_argv(server, url)
            pid = mnt.spawn(agent, log)

            def retrying() -> bool:
                text = log.read_text() if log.exists() else ""
                return text.count("trying again every 2 s") >= 2

            wait_until(retrying, timeout=60, what="the agent to report the full disk twice")
            text = log.read_text()
            assert f"sqlite datastore {db}: cannot open" in text and "no space left" in text
            assert "Traceback" not in text
            assert _alive(pid), "the agent exited instead of waiting"

            mnt.call("unfill")
            stored = mnt.call("dump", file="felis.db")

            _wait_synced(topo, server, stored["revision"], "the agent in sync once space is back")
            assert kernel.reach(client, 12211)
        finally:
            mnt.close()
