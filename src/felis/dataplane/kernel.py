"""The only module that changes the kernel: read back, diff, apply atomically, repair, remove.

An apply asks the pure renderer for the delta from what the kernel holds to the desired IR, and
writes that delta as one transaction per table (iptables-restore --noflush) or one nft
transaction per family. An unchanged state writes nothing. Rules and tables that are not ours
are never touched.

What the kernel holds is read back (iptables-save / ipset save, or `nft -j list table`) the first
time, after any failure, and by every `drift()`; after a successful write of our own, the state
that write produced is remembered instead (`state_after`), because reading back a 50k-rule table
costs far more than the change itself (docs/benchmarks-dataplane.md). That is sound as long as
nobody else edits our chains between drift checks, and self-correcting when they do: a delta
that no longer fits the kernel fails as a whole (each transaction is atomic), the remembered
state is dropped, and the apply is retried once against a fresh read. `drift()` always reads
fresh and leaves what it read as the remembered state, so the apply that follows a detected drift
repairs it. `IptablesDataplane(netns, remember=False)` reads back before every apply.

That loop is written once (`_RememberingDataplane.apply`); each backend supplies how to read,
plan, write and predict. Every command goes through the `runner` a dataplane is built with
(`felis.sysexec.run` unless a test passes a stand-in for the kernel). Each dataplane also owns
the `RenderCache` its renders share (`felis.dataplane.memo`): what it rendered for one spec is
reused for the unchanged chains of the next, and nothing is shared with another dataplane.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar, runtime_checkable

from felis.dataplane import iptables, nftables, nftables_readback
from felis.dataplane.ipset import parse_ipset_headers, parse_ipset_save, set_size_differences
from felis.dataplane.kernel_state import SetState, desired_hooks, hook_hashes
from felis.dataplane.memo import RenderCache
from felis.dataplane.rule_identity import chain_kernel_rules
from felis.dataplane.set_members import normalise_members
from felis.dataplane.spec import NFT_TABLE, DataplaneSpec, Family, Ruleset, Table
from felis.errors import FelisError
from felis.sysexec import CommandError, Runner, run

FAMILIES = (Family.V4, Family.V6)

S = TypeVar("S")
"""A backend's kernel state of one family, as read back or as a write left it."""
W = TypeVar("W")
"""What one apply writes, in a backend's own terms."""

log = logging.getLogger(__name__)


@dataclass
class ApplyReport:
    backend: str
    changes: list[str] = field(default_factory=list)
    """One line per table/set batch written, e.g. `IPv4 filter: 3 chains rewritten`."""

    @property
    def wrote(self) -> bool:
        return bool(self.changes)

    def summary(self) -> str:
        return "; ".join(self.changes) if self.changes else "in sync, nothing written"


@dataclass(frozen=True, slots=True)
class RuleCounter:
    family: Family
    table: str
    chain: str
    comment: str
    rule_hash: str
    packets: int
    bytes: int


class Dataplane(Protocol):
    backend: str

    def apply(self, spec: DataplaneSpec) -> ApplyReport: ...

    def drift(self, spec: DataplaneSpec) -> list[str]: ...

    def cleanup(self) -> ApplyReport: ...

    def counters(self, spec: DataplaneSpec | None) -> list[RuleCounter]: ...


@runtime_checkable
class QuickDriftCheck(Protocol):
    """A dataplane whose drift can also be checked without reading every set member."""

    def quick_drift(self, spec: DataplaneSpec) -> list[str]:
        """What differs from `spec` in every rule, chain, hook and set declaration (and, where
        the kernel tells it cheaply, each set's size); set members are not read. Nothing read is
        remembered: a difference found is confirmed, and repaired, through `drift`."""
        ...


def _family_name(family: Family) -> str:
    return f"IPv{int(family)}"


def _describe_table(text: str) -> str:
    """A short account of an iptables-restore block: how many chains and hooks it touches."""
    flushed = sum(1 for line in text.splitlines() if line.startswith(":"))
    hooks = sum(1 for line in text.splitlines() if line.startswith("-I "))
    deleted = sum(1 for line in text.splitlines() if line.startswith("-X "))
    # A chain about to be deleted is flushed first; only count the ones that keep rules.
    written = flushed - deleted
    parts = [f"{written} chain(s) written"] if written else []
    if hooks:
        parts.append(f"{hooks} hook(s) placed")
    if deleted:
        parts.append(f"{deleted} chain(s) deleted")
    return ", ".join(parts) or "rules updated"


def _describe_sets(text: str) -> str:
    words = [line.split(None, 1)[0] for line in text.splitlines() if line.strip()]
    counts = {verb: words.count(verb) for verb in ("create", "add", "del", "destroy")}
    return ", ".join(f"{n} {verb}" for verb, n in counts.items() if n)


def _counters_from(
    spec: DataplaneSpec | None,
    family: Family,
    measured: dict[tuple[Table, str, str], tuple[int, int]],
    cache: RenderCache,
) -> list[RuleCounter]:
    """Join the kernel's per-rule counters with the desired spec to name each rule's origin."""
    comments: dict[tuple[Table, str, str], str] = {}
    if spec is not None and family in spec.rulesets:
        for table, table_spec in spec.ruleset(family).tables.items():
            for chain in table_spec.chains.values():
                kernel = chain_kernel_rules(chain, cache=cache)
                for rule, rule_hash in zip(kernel.rules, kernel.hashes, strict=True):
                    comments[(table, chain.name, rule_hash)] = rule.comment
            # Hook rules count too: the untracked fast path decides in them.
            for kernel_chain, (inserts, appends) in desired_hooks(table_spec, cache).items():
                ins_hashes, app_hashes = hook_hashes(kernel_chain, inserts, appends, cache)
                for rule, rule_hash in zip(
                    (*inserts, *appends), (*ins_hashes, *app_hashes), strict=True
                ):
                    comments[(table, kernel_chain, rule_hash)] = rule.comment
    return [
        RuleCounter(
            family=family,
            table=table.value,
            chain=chain,
            comment=comments.get((table, chain, rule_hash), ""),
            rule_hash=rule_hash,
            packets=packets,
            bytes=octets,
        )
        for (table, chain, rule_hash), (packets, octets) in sorted(measured.items())
    ]


class _RememberingDataplane(ABC, Generic[S, W]):
    """The apply loop both backends share: plan against the remembered (or a freshly read)
    kernel state, write, remember the state the write produced, and retry once against a fresh
    read when a write planned from memory fails.

    A backend says how to read the kernel (`_read_all`), what to write to bring a state to the
    spec (`_plan`), how to write it (`_execute`) and what the kernel holds afterwards
    (`_state_after`). Commands go through `runner`, so a test can stand in for the kernel.
    Every render goes through `cache`, this instance's own.
    """

    backend: str

    def __init__(
        self, netns: str | None = None, *, remember: bool = True, runner: Runner = run
    ) -> None:
        self.netns = netns
        self.remember = remember
        self.runner = runner
        self.cache = RenderCache()
        """What this dataplane's renders remember (per chain, per match, per set); it never
        changes a result, so `forget` leaves it alone."""
        self._known: dict[Family, S] = {}
        """Per family, the kernel state our last successful write produced (or last read)."""

    def forget(self) -> None:
        """Drop the remembered kernel state: the next apply reads the kernel back."""
        self._known.clear()

    @abstractmethod
    def _read_all(self, families: Sequence[Family]) -> dict[Family, S]: ...

    @abstractmethod
    def _plan(self, spec: DataplaneSpec, states: Mapping[Family, S]) -> W: ...

    @abstractmethod
    def _execute(self, work: W, report: ApplyReport) -> None: ...

    @abstractmethod
    def _state_after(self, spec: DataplaneSpec, states: Mapping[Family, S]) -> dict[Family, S]: ...

    def _states(self, *, from_memory: bool) -> tuple[dict[Family, S], bool]:
        """Every family's state to plan against, and whether any came from memory rather
        than from a read."""
        # Taken out while we work: any failure leaves nothing remembered.
        known = {f: self._known.pop(f, None) for f in FAMILIES}
        if not (self.remember and from_memory):
            known = dict.fromkeys(FAMILIES)
        read = self._read_all([f for f in FAMILIES if known[f] is None])
        states = {f: state if state is not None else read[f] for f, state in known.items()}
        return states, any(state is not None for state in known.values())

    def apply(self, spec: DataplaneSpec) -> ApplyReport:
        report = ApplyReport(self.backend)
        states, remembered = self._states(from_memory=True)
        work = self._plan(spec, states)
        try:
            self._execute(work, report)
        except FelisError as err:
            if not remembered:
                raise
            # The remembered state was stale (someone edited the kernel): retry once against
            # a fresh read; a second failure is a real one.
            log.info("%s apply failed (%s); re-reading the kernel", self.backend, err)
            states, _ = self._states(from_memory=False)
            self._execute(self._plan(spec, states), report)
        if self.remember:
            self._known.update(self._state_after(spec, states))
        return report


def _ruleset(spec: DataplaneSpec, family: Family) -> Ruleset:
    """The family's ruleset, empty when the spec has none (our chains are then removed)."""
    return spec.rulesets.get(family) or Ruleset(family=family, tables={}, sets={})


class IptablesDataplane(_RememberingDataplane[iptables.IptablesState, list[iptables.IptablesPlan]]):
    """iptables/ip6tables + ipset, one `iptables-restore --noflush` per family and apply (the
    two families' restores run side by side)."""

    backend = "iptables"

    def _save(self, family: Family, *, counters: bool = False) -> iptables.IptablesState:
        tool = "ip6tables-save" if family is Family.V6 else "iptables-save"
        text = self.runner([tool, "-c"] if counters else [tool], netns=self.netns).stdout
        tables = iptables.parse_iptables_save(text)
        sets = parse_ipset_save(self.runner(["ipset", "save"], netns=self.netns).stdout)
        return iptables.IptablesState(tables=tables, sets=sets)

    def _read_all(self, families: Sequence[Family]) -> dict[Family, iptables.IptablesState]:
        """Fresh states of several families: the dumps run side by side and `ipset save`
        (which lists every family's sets) runs once."""
        if not families:
            return {}
        tools = {f: "ip6tables-save" if f is Family.V6 else "iptables-save" for f in families}
        with ThreadPoolExecutor(max_workers=len(families) + 1) as pool:
            dumps = {
                f: pool.submit(self.runner, [tool], netns=self.netns) for f, tool in tools.items()
            }
            ipsets = pool.submit(self.runner, ["ipset", "save"], netns=self.netns)
        sets = parse_ipset_save(ipsets.result().stdout)
        return {
            family: iptables.IptablesState(
                tables=iptables.parse_iptables_save(dump.result().stdout), sets=sets
            )
            for family, dump in dumps.items()
        }

    def _plan(
        self, spec: DataplaneSpec, states: Mapping[Family, iptables.IptablesState]
    ) -> list[iptables.IptablesPlan]:
        plans = [
            iptables.render_delta(_ruleset(spec, f), states[f], cache=self.cache) for f in FAMILIES
        ]
        return [plan for plan in plans if not plan.empty]

    def _state_after(
        self, spec: DataplaneSpec, states: Mapping[Family, iptables.IptablesState]
    ) -> dict[Family, iptables.IptablesState]:
        return {
            f: iptables.state_after(_ruleset(spec, f), states[f], cache=self.cache)
            for f in FAMILIES
        }

    def _restore(self, plan: iptables.IptablesPlan) -> None:
        tool = iptables.restore_command(plan.family)
        self.runner([tool, "--noflush", "--wait", "10"], netns=self.netns, input_text=plan.restore)

    def _ipset_restore(self, family: Family, text: str, report: ApplyReport) -> None:
        self.runner(["ipset", "restore"], netns=self.netns, input_text=text)
        report.changes.append(f"{_family_name(family)} sets: {_describe_sets(text)}")

    def _execute(self, work: list[iptables.IptablesPlan], report: ApplyReport) -> None:
        """Sets first (new rules find them), then the tables, then obsolete sets (no rule refers
        to them any more)."""
        for plan in work:
            if plan.ipset_prepare:
                self._ipset_restore(plan.family, plan.ipset_prepare, report)
        restores = [plan for plan in work if plan.tables]
        if len(restores) > 1:
            # iptables-restore and ip6tables-restore write different tables (one transaction
            # each either way), so they run side by side: a change costs one restore's time,
            # not two. Leaving the `with` waits for both before any error is raised.
            with ThreadPoolExecutor(max_workers=len(restores)) as pool:
                futures = [pool.submit(self._restore, plan) for plan in restores]
            for future in futures:
                future.result()
        elif restores:
            self._restore(restores[0])
        for plan in restores:
            for table, text in plan.tables.items():
                report.changes.append(
                    f"{_family_name(plan.family)} {table.value}: {_describe_table(text)}"
                )
        for plan in work:
            if plan.ipset_cleanup:
                self._ipset_restore(plan.family, plan.ipset_cleanup, report)

    def drift(self, spec: DataplaneSpec) -> list[str]:
        differences = []
        states = self._read_all(FAMILIES)
        for family in FAMILIES:
            state = self._known[family] = states[family]
            plan = iptables.render_delta(_ruleset(spec, family), state, cache=self.cache)
            differences += [
                f"{_family_name(family)} {table.value} differs" for table in plan.tables
            ]
            if plan.ipset_prepare or plan.ipset_cleanup:
                differences.append(f"{_family_name(family)} ip sets differ")
        return differences

    def quick_drift(self, spec: DataplaneSpec) -> list[str]:
        """`drift` with `ipset list -t` instead of `ipset save`: the rules in full, each set by
        type and number of members. At 100,000 members this reads a few hundred bytes of set
        headers instead of every member (docs/benchmarks.md); a member replaced by another,
        which leaves the count alone, waits for the next `drift`."""
        with ThreadPoolExecutor(max_workers=len(FAMILIES) + 1) as pool:
            dumps = {
                f: pool.submit(
                    self.runner,
                    ["ip6tables-save" if f is Family.V6 else "iptables-save"],
                    netns=self.netns,
                )
                for f in FAMILIES
            }
            listing = pool.submit(self.runner, ["ipset", "list", "-t"], netns=self.netns)
        headers = parse_ipset_headers(listing.result().stdout)
        differences = []
        for family in FAMILIES:
            ruleset = _ruleset(spec, family)
            # The sets as wanted, so that the delta compares the tables alone; the headers
            # speak for the sets.
            sets = {
                name: SetState(
                    name,
                    ipset.kind,
                    family,
                    normalise_members(ipset.kind, ipset.members, family, self.cache),
                )
                for name, ipset in ruleset.sets.items()
            }
            state = iptables.IptablesState(
                tables=iptables.parse_iptables_save(dumps[family].result().stdout), sets=sets
            )
            plan = iptables.render_delta(ruleset, state, cache=self.cache)
            differences += [
                f"{_family_name(family)} {table.value} differs" for table in plan.tables
            ]
            differences += [
                f"{_family_name(family)} {what}"
                for what in set_size_differences(ruleset.sets, family, headers, self.cache)
            ]
        return differences

    def cleanup(self) -> ApplyReport:
        report = ApplyReport(self.backend)
        self.forget()
        for family in FAMILIES:
            plan = iptables.render_cleanup(family, self._save(family), cache=self.cache)
            if not plan.empty:
                self._execute([plan], report)
        return report

    def counters(self, spec: DataplaneSpec | None) -> list[RuleCounter]:
        out: list[RuleCounter] = []
        for family in FAMILIES:
            state = self._save(family, counters=True)
            measured = {
                (table, chain.name, rule.hash): (rule.packets or 0, rule.bytes or 0)
                for table, table_state in state.tables.items()
                for chain in table_state.chains.values()
                for rule in chain.rules
                if rule.hash is not None
            }
            out += _counters_from(spec, family, measured, self.cache)
        return out


_NftWork = list[tuple[Family, str, str]]
"""[(family, transaction, description)] of the families whose table differs."""


class NftablesDataplane(_RememberingDataplane[nftables_readback.NftState, _NftWork]):
    """Our own `ip felis` / `ip6 felis` tables, both written by one `nft -f` transaction."""

    backend = "nftables"

    def _read(self, family: Family) -> nftables_readback.NftState:
        argv = ["nft", "-j", "list", "table", nftables_readback.nft_family(family), NFT_TABLE]
        proc = self.runner(argv, netns=self.netns, check=False)
        if proc.returncode != 0:
            if "No such file or directory" in proc.stderr:
                return nftables_readback.NftState()
            raise CommandError(argv, proc.returncode, proc.stderr, netns=self.netns)
        return nftables_readback.parse_nft_json(proc.stdout, family, self.cache)

    def _read_all(self, families: Sequence[Family]) -> dict[Family, nftables_readback.NftState]:
        if len(families) < 2:
            return {family: self._read(family) for family in families}
        with ThreadPoolExecutor(max_workers=len(families)) as pool:
            futures = {family: pool.submit(self._read, family) for family in families}
        return {family: future.result() for family, future in futures.items()}

    def _plan(
        self, spec: DataplaneSpec, states: Mapping[Family, nftables_readback.NftState]
    ) -> _NftWork:
        out: _NftWork = []
        for family in FAMILIES:
            state = states[family]
            ruleset = spec.rulesets.get(family)
            if ruleset is None:
                if state.exists:
                    out.append((family, nftables.render_cleanup(family), "table removed"))
                continue
            transaction = nftables.render_delta(ruleset, state, cache=self.cache)
            if transaction is not None:
                out.append((family, transaction, _describe_nft(transaction)))
        return out

    def _state_after(
        self, spec: DataplaneSpec, states: Mapping[Family, nftables_readback.NftState]
    ) -> dict[Family, nftables_readback.NftState]:
        # Our table holds exactly the ruleset, whatever it held before; no ruleset, no table.
        return {
            family: nftables.state_after(ruleset, cache=self.cache)
            if (ruleset := spec.rulesets.get(family)) is not None
            else nftables_readback.NftState()
            for family in FAMILIES
        }

    def _execute(self, work: _NftWork, report: ApplyReport) -> None:
        if not work:
            return
        # Both families in one `nft -f`, so one kernel transaction: nft fetches its cache of
        # every chain and set before adding a rule or an element, which costs more than a small
        # change itself on a big table; doing that once instead of once per family halves it.
        # (A separate `nft -c` pass would double the cost of every write without adding any
        # safety: one `nft -f` is refused as a whole, with the error naming the line.)
        text = "".join(transaction for _, transaction, _ in work)
        self.runner(["nft", "-f", "-"], netns=self.netns, input_text=text)
        report.changes.extend(f"{_family_name(f)} nft: {what}" for f, _, what in work)

    def drift(self, spec: DataplaneSpec) -> list[str]:
        differences = []
        for family in FAMILIES:
            ruleset = spec.rulesets.get(family)
            state = self._read(family)
            self._known[family] = state
            if ruleset is None:
                if state.exists:
                    differences.append(f"{_family_name(family)} table present but not wanted")
                continue
            transaction = nftables.render_delta(ruleset, state, cache=self.cache)
            if transaction is not None:
                differences.append(f"{_family_name(family)} nft: {_describe_nft(transaction)}")
        return differences

    def quick_drift(self, spec: DataplaneSpec) -> list[str]:
        """`drift` from the terse listing (`nft -t list ruleset`: no set elements, which the
        kernel then does not even send): every chain, rule and hook, and which sets exist with
        which type. Members are not compared: a foreign change to them is a kernel event
        (`felis.dataplane.monitor`), and `drift` reads them all. Listing our table instead,
        terse or not, makes nft fetch every element (nftables 1.0.6); the text form costs nft
        and felis a third of the JSON form's CPU."""
        text = self.runner(["nft", "-t", "list", "ruleset"], netns=self.netns).stdout
        differences = []
        for family in FAMILIES:
            ruleset = spec.rulesets.get(family)
            state = nftables_readback.parse_nft_terse(text, family)
            if ruleset is None:
                if state.exists:
                    differences.append(f"{_family_name(family)} table present but not wanted")
                continue
            state = nftables_readback.members_as_wanted(state, ruleset.sets, self.cache)
            transaction = nftables.render_delta(ruleset, state, cache=self.cache)
            if transaction is not None:
                differences.append(f"{_family_name(family)} nft: {_describe_nft(transaction)}")
        return differences

    def cleanup(self) -> ApplyReport:
        report = ApplyReport(self.backend)
        self.forget()
        for family in FAMILIES:
            if self._read(family).exists:
                self._execute([(family, nftables.render_cleanup(family), "table removed")], report)
        return report

    def counters(self, spec: DataplaneSpec | None) -> list[RuleCounter]:
        out: list[RuleCounter] = []
        for family in FAMILIES:
            out += _counters_from(spec, family, self._read(family).counters(), self.cache)
        return out


def _describe_nft(transaction: str) -> str:
    lines = transaction.splitlines()
    deleted = sum(1 for line in lines if line.startswith("delete chain"))
    # Obsolete chains are flushed before they are deleted; base chains are re-declared in every
    # transaction (an idempotent `add chain … { … hook … }`), which changes nothing.
    flushed = sum(1 for line in lines if line.startswith("flush chain")) - deleted
    added = sum(1 for line in lines if line.startswith("add chain") and " hook " not in line)
    elements = sum(1 for line in lines if line.startswith(("add element", "delete element")))
    parts = []
    if added:
        parts.append(f"{added} chain(s) added")
    if flushed:
        parts.append(f"{flushed} chain(s) rewritten")
    if deleted:
        parts.append(f"{deleted} chain(s) deleted")
    if elements:
        parts.append(f"{elements} set element batch(es)")
    return ", ".join(parts) or "table updated"


BACKENDS = ("iptables", "nftables")


def open_dataplane(backend: str, netns: str | None = None, *, runner: Runner = run) -> Dataplane:
    if backend == "iptables":
        return IptablesDataplane(netns, runner=runner)
    if backend == "nftables":
        return NftablesDataplane(netns, runner=runner)
    raise FelisError(f"unknown dataplane backend {backend!r} (choose {', '.join(BACKENDS)})")


__all__: Sequence[str] = (
    "ApplyReport",
    "Dataplane",
    "IptablesDataplane",
    "NftablesDataplane",
    "QuickDriftCheck",
    "RuleCounter",
    "open_dataplane",
)
