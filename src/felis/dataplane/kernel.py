"""The only module that changes the kernel: read back, diff, apply atomically, repair, remove.

Each apply reads what the kernel holds now (iptables-save / ipset save, or `nft -j list table`),
asks the pure renderer for the delta to the desired IR, and writes that delta as one transaction
per table (iptables-restore --noflush) or one nft transaction per family (checked with `nft -c`
first). An unchanged state writes nothing. Because the comparison is always against a fresh read,
the same call repairs drift: a rule or chain someone deleted or edited is simply part of the
delta. Rules and tables that are not ours are never touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from felis.dataplane import iptables, nftables
from felis.dataplane.ipset import parse_ipset_save
from felis.dataplane.rulehash import chain_hashes, expand_rules
from felis.dataplane.spec import NFT_TABLE, DataplaneSpec, Family, Ruleset, Table
from felis.errors import FelisError
from felis.sysexec import CommandError, run

FAMILIES = (Family.V4, Family.V6)


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


def _family_name(family: Family) -> str:
    return f"IPv{int(family)}"


def _describe_table(text: str) -> str:
    """A short account of an iptables-restore block: how many chains and hooks it touches."""
    flushed = sum(1 for line in text.splitlines() if line.startswith(":"))
    hooks = sum(1 for line in text.splitlines() if line.startswith("-I "))
    deleted = sum(1 for line in text.splitlines() if line.startswith("-X "))
    parts = [f"{flushed} chain(s) written"] if flushed else []
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
) -> list[RuleCounter]:
    """Join the kernel's per-rule counters with the desired spec to name each rule's origin."""
    comments: dict[tuple[Table, str, str], str] = {}
    if spec is not None and family in spec.rulesets:
        for table, table_spec in spec.ruleset(family).tables.items():
            for chain in table_spec.chains.values():
                rules = expand_rules(chain.rules)
                for rule, rule_hash in zip(rules, chain_hashes(chain.name, rules), strict=True):
                    comments[(table, chain.name, rule_hash)] = rule.comment
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


class IptablesDataplane:
    """iptables/ip6tables + ipset, one `iptables-restore --noflush` per family and apply."""

    backend = "iptables"

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def _save(self, family: Family, *, counters: bool = False) -> iptables.IptablesState:
        tool = "ip6tables-save" if family is Family.V6 else "iptables-save"
        text = run([tool, "-c"] if counters else [tool], netns=self.netns).stdout
        tables = iptables.parse_iptables_save(text)
        sets = parse_ipset_save(run(["ipset", "save"], netns=self.netns).stdout)
        return iptables.IptablesState(tables=tables, sets=sets)

    def _execute(self, plan: iptables.IptablesPlan, report: ApplyReport) -> None:
        name = _family_name(plan.family)
        if plan.ipset_prepare:
            run(["ipset", "restore"], netns=self.netns, input_text=plan.ipset_prepare)
            report.changes.append(f"{name} sets: {_describe_sets(plan.ipset_prepare)}")
        if plan.tables:
            tool = iptables.restore_command(plan.family)
            run([tool, "--noflush", "--wait", "10"], netns=self.netns, input_text=plan.restore)
            for table, text in plan.tables.items():
                report.changes.append(f"{name} {table.value}: {_describe_table(text)}")
        if plan.ipset_cleanup:
            run(["ipset", "restore"], netns=self.netns, input_text=plan.ipset_cleanup)
            report.changes.append(f"{name} sets: {_describe_sets(plan.ipset_cleanup)}")

    def _plans(self, rulesets: Iterable[Ruleset]) -> list[iptables.IptablesPlan]:
        return [iptables.render_delta(rs, self._save(rs.family)) for rs in rulesets]

    def apply(self, spec: DataplaneSpec) -> ApplyReport:
        report = ApplyReport(self.backend)
        for family in FAMILIES:
            ruleset = spec.rulesets.get(family) or Ruleset(family=family, tables={}, sets={})
            plan = iptables.render_delta(ruleset, self._save(family))
            if not plan.empty:
                self._execute(plan, report)
        return report

    def drift(self, spec: DataplaneSpec) -> list[str]:
        differences = []
        for family in FAMILIES:
            ruleset = spec.rulesets.get(family) or Ruleset(family=family, tables={}, sets={})
            plan = iptables.render_delta(ruleset, self._save(family))
            differences += [
                f"{_family_name(family)} {table.value} differs" for table in plan.tables
            ]
            if plan.ipset_prepare or plan.ipset_cleanup:
                differences.append(f"{_family_name(family)} ip sets differ")
        return differences

    def cleanup(self) -> ApplyReport:
        report = ApplyReport(self.backend)
        for family in FAMILIES:
            plan = iptables.render_cleanup(family, self._save(family))
            if not plan.empty:
                self._execute(plan, report)
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
            out += _counters_from(spec, family, measured)
        return out


class NftablesDataplane:
    """Our own `ip felis` / `ip6 felis` tables, one checked `nft -f` transaction per family."""

    backend = "nftables"

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def _read(self, family: Family) -> nftables.NftState:
        family_word = nftables.nft_family(family)
        proc = run(
            ["nft", "-j", "list", "table", family_word, NFT_TABLE],
            netns=self.netns,
            check=False,
        )
        if proc.returncode != 0:
            if "No such file or directory" in proc.stderr:
                return nftables.NftState()
            raise CommandError(["nft", "-j", "list", "table"], proc.returncode, proc.stderr)
        return nftables.parse_nft_json(proc.stdout, family)

    def _write(self, family: Family, transaction: str, report: ApplyReport, what: str) -> None:
        # Check first (VyOS style): a transaction the kernel would refuse never half-starts,
        # and the error names the line.
        run(["nft", "-c", "-f", "-"], netns=self.netns, input_text=transaction)
        run(["nft", "-f", "-"], netns=self.netns, input_text=transaction)
        report.changes.append(f"{_family_name(family)} nft: {what}")

    def apply(self, spec: DataplaneSpec) -> ApplyReport:
        report = ApplyReport(self.backend)
        for family in FAMILIES:
            ruleset = spec.rulesets.get(family)
            if ruleset is None:
                if self._read(family).exists:
                    self._write(family, nftables.render_cleanup(family), report, "table removed")
                continue
            transaction = nftables.render_delta(ruleset, self._read(family))
            if transaction is not None:
                self._write(family, transaction, report, _describe_nft(transaction))
        return report

    def drift(self, spec: DataplaneSpec) -> list[str]:
        differences = []
        for family in FAMILIES:
            ruleset = spec.rulesets.get(family)
            state = self._read(family)
            if ruleset is None:
                if state.exists:
                    differences.append(f"{_family_name(family)} table present but not wanted")
                continue
            transaction = nftables.render_delta(ruleset, state)
            if transaction is not None:
                differences.append(f"{_family_name(family)} nft: {_describe_nft(transaction)}")
        return differences

    def cleanup(self) -> ApplyReport:
        report = ApplyReport(self.backend)
        for family in FAMILIES:
            if self._read(family).exists:
                self._write(family, nftables.render_cleanup(family), report, "table removed")
        return report

    def counters(self, spec: DataplaneSpec | None) -> list[RuleCounter]:
        out: list[RuleCounter] = []
        for family in FAMILIES:
            out += _counters_from(spec, family, self._read(family).counters())
        return out


def _describe_nft(transaction: str) -> str:
    lines = transaction.splitlines()
    flushed = sum(1 for line in lines if line.startswith("flush chain"))
    added = sum(1 for line in lines if line.startswith("add chain"))
    deleted = sum(1 for line in lines if line.startswith("delete chain"))
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


def open_dataplane(backend: str, netns: str | None = None) -> Dataplane:
    if backend == "iptables":
        return IptablesDataplane(netns)
    if backend == "nftables":
        return NftablesDataplane(netns)
    raise FelisError(f"unknown dataplane backend {backend!r} (choose {', '.join(BACKENDS)})")


__all__: Sequence[str] = (
    "ApplyReport",
    "Dataplane",
    "IptablesDataplane",
    "NftablesDataplane",
    "RuleCounter",
    "open_dataplane",
)
