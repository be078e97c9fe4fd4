"""Kernel change events (`nft monitor`), so that drift is seen when it happens, not at the next
periodic check.

The kernel announces every nftables transaction to its listeners, iptables-nft's included (it
uses the same kernel API). `nft monitor` prints each change on one line and closes each
transaction with a line naming the process that made it:

    delete table ip felis
    # new generation 11 by process 4970 (nft)

felis knows the process ids of its own `nft` / `iptables-restore` runs, so a transaction made
by anyone else that touches what felis owns is a foreign change to check and repair. ipset is
not nftables: its sets are not seen here and stay with the periodic check.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from felis.sysexec import CommandError, Process, Runner, run

log = logging.getLogger("felis.monitor")

_GENERATION = re.compile(r"^# new generation (\d+) by process (\d+) \((.*)\)$")
# Base chains felis hooks into with iptables: a rule deleted from them is printed by handle
# only ("delete rule ip filter INPUT handle 3"), so any change there may be ours.
_IPTABLES_HOOK_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})
_IPTABLES_TABLES = frozenset({"raw", "mangle", "filter"})


@dataclass(frozen=True, slots=True)
class Transaction:
    """One kernel transaction as `nft monitor` reported it."""

    generation: int
    pid: int
    process: str
    changes: tuple[str, ...]


class MonitorParser:
    """Groups `nft monitor` lines into transactions."""

    def __init__(self) -> None:
        self._pending: list[str] = []

    def feed(self, line: str) -> Transaction | None:
        line = line.rstrip("\n")
        match = _GENERATION.match(line)
        if match is None:
            if line and not line.startswith("#"):
                self._pending.append(line)
            return None
        changes, self._pending = tuple(self._pending), []
        return Transaction(int(match[1]), int(match[2]), match[3], changes)


def _words(change: str) -> list[str]:
    return change.split()


def touches_felis(change: str, backend: str, table: str = "felis") -> bool:
    """Whether one change line can concern what felis programs with `backend`.

    nftables: anything in felis' own table (`table` in any family). iptables: anything naming a
    felis chain, and any rule change in the base chains of the raw, mangle and filter tables,
    where felis' hook rules live; a deleted table or base chain there as well.
    """
    words = _words(change)
    if len(words) < 4:
        return False
    kind, family, name = words[1], words[2], words[3]
    if backend == "nftables":
        return name == table
    if family not in ("ip", "ip6") or name not in _IPTABLES_TABLES:
        return False
    if kind == "table":
        return True
    chain = words[4] if len(words) > 4 else ""
    return chain.startswith("felis") or chain in _IPTABLES_HOOK_CHAINS or "felis" in change


def foreign(
    transaction: Transaction, own: Callable[[int], bool], backend: str, table: str = "felis"
) -> tuple[str, ...]:
    """The changes of a transaction felis did not make that concern its rules."""
    if own(transaction.pid):
        return ()
    return tuple(c for c in transaction.changes if touches_felis(c, backend, table))


def transactions(lines: Iterable[str]) -> list[Transaction]:
    parser = MonitorParser()
    return [t for line in lines if (t := parser.feed(line)) is not None]


class OwnProcesses:
    """The process ids of the commands felis ran lately, to recognise its own transactions.

    Bounded: a pid is forgotten after `keep` newer commands, long after its transaction was
    reported (the kernel reports it before the command even exits).
    """

    def __init__(self, keep: int = 4096) -> None:
        self._order: deque[int] = deque()
        self._pids: set[int] = set()
        self._keep = keep
        self._lock = threading.Lock()

    def started(self, pid: int) -> None:
        with self._lock:
            self._order.append(pid)
            self._pids.add(pid)
            while len(self._order) > self._keep:
                self._pids.discard(self._order.popleft())

    def __contains__(self, pid: object) -> bool:
        with self._lock:
            return pid in self._pids

    def runner(self) -> Runner:
        """`sysexec.run`, recording every pid it starts."""
        return functools.partial(run, started=self.started)


class KernelMonitor:
    """Follows `nft monitor` in a namespace (None: this one) and calls `on_change` with the
    changes of every foreign transaction that concerns felis' rules, from its own thread."""

    def __init__(
        self,
        backend: str,
        own: OwnProcesses,
        on_change: Callable[[tuple[str, ...]], None],
        *,
        netns: str | None = None,
        table: str = "felis",
    ) -> None:
        self.backend = backend
        self.own = own
        self.on_change = on_change
        self.netns = netns
        self.table = table
        self._process: Process | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """False when nothing can be followed (no `nft`): the periodic check still runs."""
        try:
            # `nft monitor` is started by us, so its own pid never makes a transaction.
            self._process = Process(["nft", "monitor"], netns=self.netns)
        except CommandError as err:
            log.warning("kernel change events unavailable (%s); relying on periodic checks", err)
            return False
        self._thread = threading.Thread(target=self._follow, name="felis-monitor", daemon=True)
        self._thread.start()
        return True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(grace=2.0)
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _follow(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        parser = MonitorParser()
        for line in process.stdout:
            transaction = parser.feed(line)
            if transaction is None:
                continue
            changes = foreign(transaction, self.own.__contains__, self.backend, self.table)
            if changes:
                self.on_change(changes)
        log.warning("kernel change events ended: %s", process.error_output().strip() or "EOF")
