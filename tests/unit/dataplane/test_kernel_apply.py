"""The kernel layer's apply loop, with a stand-in for the kernel's tools (no root, no kernel).

What is checked: the first apply reads the kernel and writes the delta from what it read; later
applies plan against the state the last write produced, without reading; a write planned from
that memory which the kernel refuses (someone edited our chains) is retried once against a fresh
read; a failure on a fresh read, or a second failure, reaches the caller as the runner's error
and leaves nothing remembered; `drift()` reads and remembers what it read.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence

import pytest
from ir_fixtures import PI, seed_ruleset, with_chain

from felis.dataplane import iptables, nftables, nftables_readback
from felis.dataplane.kernel import IptablesDataplane, NftablesDataplane
from felis.dataplane.spec import (
    Accept,
    Chain,
    DataplaneSpec,
    Family,
    Match,
    PortRange,
    Rule,
    Ruleset,
    Table,
)
from felis.sysexec import CommandError

RESTORE_V4 = "iptables-restore --noflush --wait 10"
RESTORE_V6 = "ip6tables-restore --noflush --wait 10"
READS_IPTABLES = {"iptables-save", "ip6tables-save", "ipset save"}
NFT_WRITE = "nft -f -"
READS_NFT = {"nft -j list table ip felis", "nft -j list table ip6 felis"}
REFUSED = "line 2 failed"


class FakeKernel:
    """Stands in for `felis.sysexec.run`: an empty kernel whose dumps say so, every call
    recorded as (command line, input), and scripted refusals of chosen command lines."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self._taken = 0
        self.refuse: dict[str, int] = {}
        """Command line → how many of its next calls fail."""
        self._lock = threading.Lock()  # the dataplane runs reads and restores side by side

    def __call__(
        self,
        argv: Sequence[str],
        *,
        netns: str | None = None,
        input_text: str | None = None,
        timeout: float = 60.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        line = " ".join(argv)
        with self._lock:
            self.calls.append((line, input_text))
            refused = self.refuse.get(line, 0) > 0
            if refused:
                self.refuse[line] -= 1
        if refused:
            if check:
                raise CommandError(argv, 1, f"{argv[0]}: {REFUSED}", netns=netns)
            return subprocess.CompletedProcess(list(argv), 1, "", REFUSED)
        if line.startswith("nft -j list table"):
            # What nft says about a table that is not there.
            return subprocess.CompletedProcess(
                list(argv), 1, "", "Error: No such file or directory"
            )
        return subprocess.CompletedProcess(list(argv), 0, "", "")

    def commands(self) -> list[str]:
        return [line for line, _ in self.calls]

    def inputs(self, line: str) -> list[str | None]:
        """What every call of `line` so far was given on stdin, oldest first."""
        return [text for called, text in self.calls if called == line]

    def take(self) -> list[str]:
        """The command lines run since the last `take`."""
        out = self.commands()[self._taken :]
        self._taken = len(self.calls)
        return out


def v4_spec(ruleset: Ruleset) -> DataplaneSpec:
    # IPv4 only: the IPv6 delta is empty, so each write is one restore and the order of the
    # recorded calls is certain.
    return DataplaneSpec(node="node-1", rulesets={Family.V4: ruleset})


FIRST = seed_ruleset(Family.V4)
# The ingress policy's port changes: one chain differs.
SECOND = with_chain(
    FIRST,
    Table.RAW,
    Chain(PI, (Rule(Match(protocol=6, dst_ports=(PortRange(11211, 11211),)), Accept()),)),
)
EMPTY_IPTABLES = iptables.IptablesState()


def restore_text(ruleset: Ruleset, state: iptables.IptablesState) -> str:
    return iptables.render_delta(ruleset, state).restore


def nft_delta(ruleset: Ruleset, state: nftables_readback.NftState | None = None) -> str:
    text = nftables.render_delta(ruleset, state or nftables_readback.NftState())
    assert text is not None
    return text


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel()


def test_first_apply_reads_and_writes_then_an_unchanged_spec_runs_nothing(
    kernel: FakeKernel,
) -> None:
    dataplane = IptablesDataplane(runner=kernel)
    report = dataplane.apply(v4_spec(FIRST))
    first = kernel.take()
    assert set(first[:3]) == READS_IPTABLES, "the kernel is read before anything is written"
    assert first[3:] == ["ipset restore", RESTORE_V4]
    assert kernel.inputs(RESTORE_V4) == [restore_text(FIRST, EMPTY_IPTABLES)]
    assert report.wrote
    # The state the write produced is remembered: the same spec again needs no command at all.
    again = dataplane.apply(v4_spec(FIRST))
    assert kernel.take() == []
    assert again.summary() == "in sync, nothing written"


def test_a_change_is_planned_against_the_remembered_state(kernel: FakeKernel) -> None:
    dataplane = IptablesDataplane(runner=kernel)
    dataplane.apply(v4_spec(FIRST))
    kernel.take()
    dataplane.apply(v4_spec(SECOND))
    assert kernel.take() == [RESTORE_V4], "no read-back: the last write's result is known"
    remembered = iptables.state_after(FIRST, EMPTY_IPTABLES)
    written = kernel.inputs(RESTORE_V4)[-1]
    assert written == restore_text(SECOND, remembered)
    assert written != restore_text(SECOND, EMPTY_IPTABLES), "a delta, not a full write"


def test_a_stale_memory_is_retried_once_against_a_fresh_read(kernel: FakeKernel) -> None:
    dataplane = IptablesDataplane(runner=kernel)
    dataplane.apply(v4_spec(FIRST))
    kernel.take()
    # Someone flushed our chains (the fake kernel's dumps are empty): the delta planned from
    # memory no longer fits and the kernel refuses it.
    kernel.refuse[RESTORE_V4] = 1
    report = dataplane.apply(v4_spec(SECOND))
    calls = kernel.take()
    assert calls[0] == RESTORE_V4, "the first attempt is planned from memory"
    assert set(calls[1:4]) == READS_IPTABLES, "then the kernel is read"
    assert calls[4:] == ["ipset restore", RESTORE_V4], "then a delta from what was read"
    _, first_try, retry = kernel.inputs(RESTORE_V4)
    assert first_try == restore_text(SECOND, iptables.state_after(FIRST, EMPTY_IPTABLES))
    assert retry == restore_text(SECOND, EMPTY_IPTABLES)
    assert report.wrote
    # What the retry wrote is what is remembered now.
    dataplane.apply(v4_spec(SECOND))
    assert kernel.take() == []


def test_a_failure_after_a_fresh_read_is_not_retried(kernel: FakeKernel) -> None:
    dataplane = IptablesDataplane(runner=kernel)
    kernel.refuse[RESTORE_V4] = 1
    with pytest.raises(CommandError, match=REFUSED):
        dataplane.apply(v4_spec(FIRST))
    assert kernel.take().count(RESTORE_V4) == 1
    dataplane.apply(v4_spec(FIRST))
    assert set(kernel.take()) >= READS_IPTABLES, "nothing was remembered: the kernel is read"


def test_a_persistent_failure_is_the_runners_error_and_leaves_nothing_remembered(
    kernel: FakeKernel,
) -> None:
    dataplane = IptablesDataplane(runner=kernel)
    dataplane.apply(v4_spec(FIRST))
    kernel.take()
    kernel.refuse[RESTORE_V4] = 2
    with pytest.raises(CommandError) as caught:
        dataplane.apply(v4_spec(SECOND))
    assert str(caught.value) == f"{RESTORE_V4} failed (1): iptables-restore: {REFUSED}"
    assert caught.value.returncode == 1
    assert kernel.take().count(RESTORE_V4) == 2, "one retry, no more"
    dataplane.apply(v4_spec(SECOND))
    calls = kernel.take()
    assert set(calls[:3]) == READS_IPTABLES, "nothing was remembered: the kernel is read"
    assert calls[3:] == ["ipset restore", RESTORE_V4]


def test_without_memory_every_apply_reads_and_nothing_is_retried(kernel: FakeKernel) -> None:
    dataplane = IptablesDataplane(remember=False, runner=kernel)
    dataplane.apply(v4_spec(FIRST))
    kernel.take()
    dataplane.apply(v4_spec(FIRST))
    calls = kernel.take()
    assert set(calls[:3]) == READS_IPTABLES
    assert calls[3:] == ["ipset restore", RESTORE_V4], "the empty kernel is written again"
    kernel.refuse[RESTORE_V4] = 1
    with pytest.raises(CommandError):
        dataplane.apply(v4_spec(FIRST))
    assert kernel.take().count(RESTORE_V4) == 1


def test_drift_reads_and_the_next_apply_repairs_from_what_it_read(kernel: FakeKernel) -> None:
    dataplane = IptablesDataplane(runner=kernel)
    dataplane.apply(v4_spec(FIRST))
    kernel.take()
    # The fake kernel still dumps nothing: everything we wrote is gone.
    differences = dataplane.drift(v4_spec(FIRST))
    assert set(kernel.take()) == READS_IPTABLES
    tables = iptables.render_delta(FIRST, EMPTY_IPTABLES).tables
    assert differences == [*(f"IPv4 {t.value} differs" for t in tables), "IPv4 ip sets differ"]
    dataplane.apply(v4_spec(FIRST))
    assert kernel.take() == ["ipset restore", RESTORE_V4], "planned from the drift's read"
    assert kernel.inputs(RESTORE_V4)[-1] == restore_text(FIRST, EMPTY_IPTABLES)


def test_both_families_restore_side_by_side(kernel: FakeKernel) -> None:
    v6 = seed_ruleset(Family.V6)
    spec = DataplaneSpec(node="node-1", rulesets={Family.V4: FIRST, Family.V6: v6})
    report = IptablesDataplane(runner=kernel).apply(spec)
    assert kernel.inputs(RESTORE_V4) == [restore_text(FIRST, EMPTY_IPTABLES)]
    assert kernel.inputs(RESTORE_V6) == [restore_text(v6, EMPTY_IPTABLES)]
    assert [c.split(":")[0] for c in report.changes] == [
        "IPv4 sets",
        "IPv6 sets",
        *(f"IPv4 {t.value}" for t in iptables.render_delta(FIRST, EMPTY_IPTABLES).tables),
        *(f"IPv6 {t.value}" for t in iptables.render_delta(v6, EMPTY_IPTABLES).tables),
    ]


def test_nft_writes_both_families_in_one_transaction_and_remembers(kernel: FakeKernel) -> None:
    v6 = seed_ruleset(Family.V6)
    spec = DataplaneSpec(node="node-1", rulesets={Family.V4: FIRST, Family.V6: v6})
    dataplane = NftablesDataplane(runner=kernel)
    dataplane.apply(spec)
    calls = kernel.take()
    assert set(calls[:2]) == READS_NFT
    assert calls[2:] == [NFT_WRITE]
    assert kernel.inputs(NFT_WRITE) == [nft_delta(FIRST) + nft_delta(v6)]
    dataplane.apply(spec)
    assert kernel.take() == []


def test_nft_stale_memory_is_retried_and_a_second_failure_raises(kernel: FakeKernel) -> None:
    dataplane = NftablesDataplane(runner=kernel)
    dataplane.apply(v4_spec(FIRST))
    kernel.take()
    kernel.refuse[NFT_WRITE] = 1
    dataplane.apply(v4_spec(SECOND))
    calls = kernel.take()
    assert calls[0] == NFT_WRITE and set(calls[1:3]) == READS_NFT and calls[3:] == [NFT_WRITE]
    _, first_try, retry = kernel.inputs(NFT_WRITE)
    assert first_try == nft_delta(SECOND, nftables.state_after(FIRST))
    assert retry == nft_delta(SECOND)
    kernel.refuse[NFT_WRITE] = 2
    with pytest.raises(CommandError, match=REFUSED):
        dataplane.apply(v4_spec(FIRST))
    assert kernel.take().count(NFT_WRITE) == 2
    dataplane.apply(v4_spec(FIRST))
    assert set(kernel.take()) >= READS_NFT


def test_nft_read_that_fails_for_another_reason_is_an_error(kernel: FakeKernel) -> None:
    kernel.refuse["nft -j list table ip felis"] = 1
    with pytest.raises(CommandError, match=f"nft -j list table ip felis failed .1.: {REFUSED}"):
        NftablesDataplane(runner=kernel).apply(v4_spec(FIRST))
    assert NFT_WRITE not in kernel.commands()
