"""A mistake that would lock you out (`felis apply --confirm`), on a real kernel and SQLite.

The test's own management connection (TCP 2222, not a failsafe port) reaches the server until
a confirmed apply replaces its policy with one that allows the wrong port. The applying
process is killed with its whole session, as a dropped SSH connection ends a shell, right
after its write. Nobody confirms: after the window the change is rolled back by the watchdog
the apply left behind, the running agent follows, and 2222 answers again.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing, suppress

import pytest
from harness import wait_until
from node import CLIENT_HEP, HEP, FelisNode, felis_node, manifest

from felis.datastore import SqliteDatastore
from felis.resources import confirm as confirming

MANAGEMENT = 2222


def _management(port: int) -> str:
    return f"""
    apiVersion: projectcalico.org/v3
    kind: GlobalNetworkPolicy
    metadata: {{name: management}}
    spec:
      selector: memcached == 'server'
      ingress:
        - action: Allow
          protocol: TCP
          source: {{selector: memcached == 'client'}}
          destination: {{ports: [{port}]}}
    """


def _record(node: FelisNode) -> confirming.Record | None:
    with SqliteDatastore(node.workdir / "felis.db", read_only=True) as store:
        current = confirming.read(store)
    return None if current is None else current.record


def test_unconfirmed_lockout_is_rolled_back_without_the_applying_process(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with felis_node("nftables", tmp_path) as node:
        node.apply(manifest(HEP, CLIENT_HEP, _management(MANAGEMENT)))
        node.serve(MANAGEMENT)
        agent = node.start_agent()
        node.wait_reach(node.client, MANAGEMENT, True)

        mistake = node.workdir / "mistake.yaml"
        mistake.write_text(manifest(_management(MANAGEMENT + 1)))
        applying = subprocess.Popen(
            [
                *(sys.executable, "-m", "felis", "apply", "--confirm", "2s"),
                *("-f", str(mistake), "--datastore", node.datastore),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        watchdog_pid = 0
        try:
            record = wait_until(lambda: _record(node), timeout=30, what="the pending record")
            # The test holds the write lock while it looks at the lock-out, so that seeing it
            # does not race the window on a loaded machine; the rollback waits for the lock.
            with closing(sqlite3.connect(node.workdir / "felis.db", isolation_level=None)) as hold:
                hold.execute("BEGIN IMMEDIATE")
                with suppress(ProcessLookupError):
                    os.killpg(applying.pid, signal.SIGKILL)
                applying.wait(timeout=10)
                assert record.state == "pending"
                assert [t.name for t in record.touched] == ["management"]
                watchdog_pid = int(record.watchdog.split()[1])
                node.wait_reach(node.client, MANAGEMENT, False)
                hold.execute("ROLLBACK")

            node.wait_reach(node.client, MANAGEMENT, True)
            settled = _record(node)
            assert settled is not None and settled.state == "rolled-back"
            assert settled.settled_by.startswith(("watchdog on ", "agent "))
            with SqliteDatastore(node.workdir / "felis.db") as store:
                restored = store.get("GlobalNetworkPolicy", "management")
                assert restored["spec"]["ingress"][0]["destination"]["ports"] == [MANAGEMENT]
                with pytest.raises(confirming.ConfirmError, match=r"^too late: "):
                    confirming.confirm(store, actor="test")
            assert agent.poll() is None, "the agent keeps running throughout"
        finally:
            if watchdog_pid:
                with suppress(ProcessLookupError):
                    os.kill(watchdog_pid, signal.SIGKILL)
            if applying.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(applying.pid, signal.SIGKILL)
                applying.wait(timeout=10)
