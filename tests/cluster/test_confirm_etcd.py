"""`felis apply --confirm` on etcd: the marks contract and the rollback scenarios of
tests/unit/datastore/test_datastore_marks.py and tests/unit/resources/test_confirm.py, and the
whole flow through real processes: the applying process killed with its session right after
its write, the watchdog it left behind rolling back at the deadline, in one etcd transaction.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from etcd_harness import EtcdCluster, etcd_store, poll

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "datastore"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "resources"))

from resources_helpers import items
from test_confirm import (  # noqa: F401
    clock,
    gns,
    nets,
    seeded,
    test_exactly_one_actor_rolls_back,
    test_records_what_each_changed_object_was,
    test_rollback_refuses_to_clobber_a_later_change,
    test_second_confirmed_apply_is_refused_while_one_is_pending,
    test_unconfirmed_change_is_restored_at_once,
    watchdog,
)
from test_datastore_marks import (  # noqa: F401
    test_absent_mark,
    test_apply_and_delete_together_or_not_at_all,
    test_mark_written_with_objects_in_one_transaction,
    test_marks_are_not_resources,
    test_removed_mark_never_reuses_a_version,
    test_stale_version_writes_nothing,
)

from felis.cli import main
from felis.datastore import Datastore, WatchEvent
from felis.resources import ResourceService
from felis.resources import confirm as confirming

pytestmark = pytest.mark.cluster


@pytest.fixture
def store(etcd: EtcdCluster) -> Iterator[Datastore]:
    with etcd_store(etcd) as opened:
        yield opened


def _felis(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The command line in-process (a process start costs seconds on a busy machine)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _record(store: Datastore) -> confirming.Record | None:
    current = confirming.read(store)
    return None if current is None else current.record


def _gone(pid: int) -> bool:
    """The process ended (a zombie left for its adoptive parent to reap counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_killed_apply_is_rolled_back_by_its_watchdog_and_a_confirmed_one_stays(
    etcd: EtcdCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    watchdogs: list[int] = []
    applying: subprocess.Popen[bytes] | None = None
    with etcd_store(etcd) as store:
        try:
            ResourceService(store).apply(items(gns("a", "198.18.0.0/24")))
            since = store.revision()
            change = tmp_path / "change.yaml"
            change.write_text(gns("a", "198.18.5.0/24") + "---\n" + gns("b", "198.18.6.0/24"))
            applying = subprocess.Popen(
                [
                    *(sys.executable, "-m", "felis", "apply", "--confirm", "1s"),
                    *("-f", str(change), "--datastore", etcd.url),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            poll(lambda: _record(store) is not None, 30, "the pending record")
            with suppress(ProcessLookupError):
                os.killpg(applying.pid, signal.SIGKILL)
            applying.wait(timeout=10)
            record = _record(store)
            assert record is not None
            watchdogs.append(int(record.watchdog.split()[1]))
            poll(
                lambda: (r := _record(store)) is not None and r.state == "rolled-back",
                30,
                "the rollback",
            )
            assert nets(store) == {"a": ["198.18.0.0/24"]}
            # The apply's transaction, then the rollback's: one revision each.
            events = _drained(store, since)
            assert [(e.type, e.name) for e in events] == [
                ("MODIFIED", "a"),
                ("ADDED", "b"),
                ("MODIFIED", "a"),
                ("DELETED", "b"),
            ]
            assert len({e.revision for e in events[:2]}) == 1
            assert len({e.revision for e in events[2:]}) == 1
            code, _, err = _felis(capsys, "confirm", "--datastore", etcd.url)
            assert code == 1 and err.startswith("too late: ")
            poll(lambda: _gone(watchdogs[0]), 30, "the watchdog to end")

            # Confirmed in time: the change stays and the watchdog ends by itself.
            args = ("-f", str(change), "--datastore", etcd.url)
            code, out, err = _felis(capsys, "apply", "--confirm", "1h", *args)
            assert code == 0, err
            record = _record(store)
            assert record is not None and record.state == "pending"
            watchdogs.append(int(record.watchdog.split()[1]))
            code, out, _ = _felis(capsys, "confirm", "--datastore", etcd.url)
            assert code == 0 and out.startswith("Confirmed: ")
            poll(lambda: _gone(watchdogs[1]), 30, "the watchdog to end after the confirmation")
            assert nets(store)["b"] == ["198.18.6.0/24"]
            record = _record(store)
            assert record is not None and record.state == "confirmed"
        finally:
            for pid in watchdogs:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if applying is not None and applying.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(applying.pid, signal.SIGKILL)
                applying.wait(timeout=10)


def _drained(store: Datastore, since: int) -> list[WatchEvent]:
    stop = threading.Event()
    stop.set()
    return list(store.watch(since, stop=stop, poll_interval=0.01))
