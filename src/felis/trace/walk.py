"""Walk a packet through a `DataplaneSpec` the way netfilter runs it (docs/trace.md).

Per kernel chain, felis' INSERT hooks run first, then other programs' rules (assumed absent: a
trace only knows felis' IR), then felis' APPEND hooks, then the chain's policy (assumed ACCEPT).
Jumps push, gotos replace the current frame, RETURN or the end of a chain pops; RETURN in (or
the end of) a kernel chain applies its policy. ACCEPT ends the current kernel chain only, DROP
ends the walk. The mark travels with the packet through every table; NOTRACK in raw makes every
later table see conntrack state `untracked`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from felis.dataplane.spec import (
    Accept,
    CtState,
    DataplaneSpec,
    Drop,
    Goto,
    HookPosition,
    Jump,
    Log,
    NoTrack,
    Return,
    Rule,
    Ruleset,
    SetMark,
    Table,
    TableSpec,
)
from felis.trace.describe import describe_action, describe_match
from felis.trace.matching import PacketState, PacketView, SetIndex
from felis.trace.packet import Direction, Packet, TraceError, protocol_text
from felis.trace.xdp import XdpDecision, XdpPrograms, decide

MAX_DEPTH = 64
"""Deeper call stacks mean a jump loop (the kernel refuses those; a broken spec may not)."""

CONNTRACK = "conntrack"
XDP = "xdp"
"""The stage before every hook of an arriving packet, when felis' XDP program is attached."""
_STAGE = tuple[Table, str]

PATHS: dict[Direction, tuple[_STAGE | str, ...]] = {
    Direction.INGRESS: (
        (Table.RAW, "PREROUTING"),
        CONNTRACK,
        (Table.MANGLE, "PREROUTING"),
        (Table.FILTER, "INPUT"),
    ),
    Direction.EGRESS: (
        (Table.RAW, "OUTPUT"),
        CONNTRACK,
        (Table.FILTER, "OUTPUT"),
        (Table.MANGLE, "POSTROUTING"),
    ),
    Direction.FORWARD: (
        (Table.RAW, "PREROUTING"),
        CONNTRACK,
        (Table.MANGLE, "PREROUTING"),
        (Table.FILTER, "FORWARD"),
        (Table.MANGLE, "POSTROUTING"),
    ),
}
"""The netfilter hooks a packet meets, in order, for the kernel chains felis hooks into."""


class Verdict(StrEnum):
    ACCEPT = "ACCEPT"
    DROP = "DROP"


class Tracking(StrEnum):
    TRACKED = "tracked"
    UNTRACKED = "untracked"
    BEFORE_CONNTRACK = "before conntrack"
    """Dropped in raw: the packet never reached conntrack."""
    AT_XDP = "at XDP"
    """Dropped by felis' XDP program, before the raw table (and so before conntrack)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One thing that happened to the packet: a rule that matched, or a stage event."""

    table: str
    hook: str
    """Kernel chain (PREROUTING, INPUT, …); empty for the conntrack stage."""
    chain: str
    """IR chain name, or the kernel chain for hooks and policies."""
    index: int | None
    """Rule position in `chain` (for a kernel chain: among felis' hooks, inserts first)."""
    depth: int
    comment: str
    match: str
    action: str
    mark: int
    """The packet mark after this step."""

    def label(self) -> str:
        """How a deciding step is named: its comment, else where it is and what it matched."""
        if self.comment:
            return self.comment
        where = f"{self.table} {self.chain}"
        if self.index is not None:
            where += f" rule {self.index}"
        return where + (f" [{self.match}]" if self.match else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "hook": self.hook,
            "chain": self.chain,
            "index": self.index,
            "depth": self.depth,
            "comment": self.comment,
            "match": self.match,
            "action": self.action,
            "mark": f"{self.mark:#x}",
        }


@dataclass(frozen=True, slots=True)
class TraceResult:
    packet: Packet
    verdict: Verdict
    tracking: Tracking
    decided_by: str
    """Comment (or location) of the deciding rule; `default` when no felis rule decided."""
    deciding_step: Step | None
    steps: tuple[Step, ...]
    logs: tuple[str, ...]
    """Prefixes of the LOG rules the packet hit, in order."""
    mark: int

    @property
    def accepted(self) -> bool:
        return self.verdict is Verdict.ACCEPT

    @property
    def tracked(self) -> bool:
        """Went through conntrack with an entry lookup (False: untracked or dropped in raw)."""
        return self.tracking is Tracking.TRACKED

    def summary(self) -> str:
        return f"{self.verdict} {self.tracking} by {self.decided_by}"

    def to_dict(self) -> dict[str, Any]:
        p = self.packet
        return {
            "packet": {
                "family": int(p.family),
                "direction": p.direction.value,
                "src": p.src,
                "dst": p.dst,
                "protocol": p.protocol,
                "sport": p.sport,
                "dport": p.dport,
                "icmp_type": p.icmp_type,
                "icmp_code": p.icmp_code,
                "in_iface": p.in_iface,
                "out_iface": p.out_iface,
                "ct_state": p.ct_state.value,
                "dnat": p.dnat,
            },
            "verdict": self.verdict.value,
            "tracking": self.tracking.value,
            "tracked": None
            if self.tracking in (Tracking.BEFORE_CONNTRACK, Tracking.AT_XDP)
            else self.tracked,
            "decided_by": self.decided_by,
            "summary": self.summary(),
            "logs": list(self.logs),
            "mark": f"{self.mark:#x}",
            "steps": [step.to_dict() for step in self.steps],
        }


def trace(
    spec: DataplaneSpec | Ruleset, packet: Packet, xdp: XdpPrograms | None = None
) -> TraceResult:
    """The fate of `packet` on the host `spec` describes (pure). With `xdp`, felis' XDP
    programs run first on the interfaces they are on (`CalcResult.xdp`); without, there are
    none."""
    if isinstance(spec, DataplaneSpec):
        try:
            ruleset = spec.ruleset(packet.family)
        except KeyError:
            raise TraceError(f"the spec has no IPv{int(packet.family)} ruleset") from None
    else:
        ruleset = spec
    if ruleset.family is not packet.family:
        raise TraceError(
            f"an IPv{int(packet.family)} packet on an IPv{int(ruleset.family)} ruleset"
        )
    return _Walk(ruleset, packet, xdp=xdp).run()


_FOREIGN = Rule(comment="(rules of other programs: assumed absent)")
"""Stands between the INSERT and APPEND hooks of a kernel chain."""


@dataclass(slots=True)
class _Frame:
    chain: str
    rules: Sequence[Rule]
    base: bool
    """A kernel chain, or a chain reached from one by goto: its end applies the policy."""
    pos: int = 0
    caller: Step | None = None
    """The nearest step with a comment that jumped (or went) here, directly or through
    uncommented rules: what an uncommented rule of this chain acts for, such as the shared
    chain an untracked Allow or Deny ends in."""


@dataclass(slots=True)
class _Outcome:
    verdict: Verdict | None
    """None: the kernel chain's policy (ACCEPT) applied."""
    decider: Step | None = None


@dataclass(slots=True)
class _Walk:
    ruleset: Ruleset
    packet: Packet
    xdp: XdpPrograms | None = None
    steps: list[Step] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    mark: int = 0
    ct_state: CtState = CtState.INVALID
    dnat: bool = False
    notrack: bool = False
    after_conntrack: bool = False
    at_xdp: bool = False
    mark_origin: dict[int, Step] = field(default_factory=dict)
    view: PacketView = field(init=False)

    def __post_init__(self) -> None:
        self.view = PacketView(self.packet, SetIndex(self.ruleset.sets))
        self.mark = self.packet.mark

    def run(self) -> TraceResult:
        decision = decide(self.xdp, self.packet) if self.xdp is not None else None
        if decision is not None:
            step = self._xdp_step(decision)
            if decision.dropped:
                self.at_xdp = True
                return self._result(Verdict.DROP, step)
        accepted_by: Step | None = None
        for stage in PATHS[self.packet.direction]:
            if isinstance(stage, str):
                self._conntrack()
                continue
            table, hook = stage
            spec = self.ruleset.tables.get(table)
            if spec is None:
                continue
            outcome = self._run_kernel_chain(spec, hook)
            if outcome.verdict is Verdict.DROP:
                return self._result(Verdict.DROP, outcome.decider)
            if outcome.verdict is Verdict.ACCEPT:
                accepted_by = outcome.decider
        return self._result(Verdict.ACCEPT, accepted_by)

    def _xdp_step(self, decision: XdpDecision) -> Step:
        if decision.dropped:
            # XDP holds only sources the raw walk drops (felis.calc.xdp), so the rule that
            # drop would be credited to is the one XDP stands in for.
            behind = _Walk(self.ruleset, self.packet).run()
            origin = behind.deciding_step
            comment = ""
            if behind.verdict is Verdict.DROP and origin is not None and origin.table == "raw":
                comment = origin.label()
            match, action = f"saddr {decision.entry}", "DROP"
        elif decision.failsafe:
            comment = ""
            port = f"{protocol_text(self.packet.protocol)}:{self.packet.dport}"
            match = f"dport {port}"
            action = f"pass (failsafe port {port})"
            if decision.listed is not None:
                action += f", though saddr {decision.listed} is blocklisted"
        else:
            comment, match, action = "", "", "pass (source not blocklisted)"
        step = Step(XDP, "", decision.iface, None, 0, comment, match, action, self.mark)
        self.steps.append(step)
        return step

    def _result(self, verdict: Verdict, decider: Step | None) -> TraceResult:
        if self.at_xdp:
            tracking = Tracking.AT_XDP
        elif self.notrack:
            tracking = Tracking.UNTRACKED
        elif self.after_conntrack:
            tracking = Tracking.TRACKED
        else:
            tracking = Tracking.BEFORE_CONNTRACK
        return TraceResult(
            packet=self.packet,
            verdict=verdict,
            tracking=tracking,
            decided_by=decider.label() if decider is not None else "default",
            deciding_step=decider,
            steps=tuple(self.steps),
            logs=tuple(self.logs),
            mark=self.mark,
        )

    def _conntrack(self) -> None:
        self.after_conntrack = True
        if self.notrack:
            self.ct_state, self.dnat = CtState.UNTRACKED, False
            action = "skipped (NOTRACK): state untracked"
        else:
            self.ct_state, self.dnat = self.packet.ct_state, self.packet.dnat
            action = f"lookup: state {self.ct_state}" + (", DNAT'd" if self.dnat else "")
        self.steps.append(Step(CONNTRACK, "", CONNTRACK, None, 0, "", "", action, self.mark))

    def _run_kernel_chain(self, spec: TableSpec, hook: str) -> _Outcome:
        rules = (
            *spec.hooks_for(hook, HookPosition.INSERT),
            _FOREIGN,
            *spec.hooks_for(hook, HookPosition.APPEND),
        )
        table = spec.table.value
        stack = [_Frame(hook, rules, base=True)]
        while stack:
            frame = stack[-1]
            if frame.pos >= len(frame.rules):
                stack.pop()
                if frame.base:
                    break
                continue
            index, rule = frame.pos, frame.rules[frame.pos]
            frame.pos += 1
            if rule is _FOREIGN:
                self._step(table, hook, hook, None, len(stack) - 1, rule)
                continue
            state = PacketState(self.mark, self.ct_state, self.dnat)
            if not self.view.matches(rule.match, state):
                continue
            step = self._step(table, hook, frame.chain, index, len(stack) - 1, rule)
            acting = step if step.comment or frame.caller is None else frame.caller
            action = rule.action
            if isinstance(action, Accept):
                return _Outcome(Verdict.ACCEPT, self._decider(rule, acting))
            if isinstance(action, Drop):
                return _Outcome(Verdict.DROP, self._decider(rule, acting))
            if isinstance(action, Return):
                stack.pop()
                if frame.base:
                    break
            elif isinstance(action, Jump | Goto):
                target = _chain(spec, action.target, frame.chain)
                if isinstance(action, Goto):
                    stack.pop()
                stack.append(
                    _Frame(
                        action.target,
                        target,
                        base=isinstance(action, Goto) and frame.base,
                        caller=step if step.comment else frame.caller,
                    )
                )
                if len(stack) > MAX_DEPTH:
                    raise TraceError(
                        f"{table} chain {action.target}: jumps nest deeper than "
                        f"{MAX_DEPTH} (a loop?)"
                    )
            elif isinstance(action, SetMark):
                self._set_mark(action, acting)
            elif isinstance(action, NoTrack):
                if not self.after_conntrack:
                    self.notrack = True
                    self.ct_state = CtState.UNTRACKED
            elif isinstance(action, Log):
                self.logs.append(action.prefix)
        self.steps.append(
            Step(table, hook, hook, None, 0, "", "", "policy ACCEPT (assumed)", self.mark)
        )
        return _Outcome(None)

    def _step(
        self, table: str, hook: str, chain: str, index: int | None, depth: int, rule: Rule
    ) -> Step:
        if isinstance(rule.action, SetMark):
            mark = (self.mark & ~rule.action.mask) | rule.action.value
        else:
            mark = self.mark
        step = Step(
            table=table,
            hook=hook,
            chain=chain,
            index=index,
            depth=depth,
            comment=rule.comment,
            match=describe_match(rule.match),
            action="" if rule is _FOREIGN else describe_action(rule.action),
            mark=mark,
        )
        self.steps.append(step)
        return step

    def _set_mark(self, action: SetMark, step: Step) -> None:
        self.mark = (self.mark & ~action.mask) | action.value
        for bit in _bits(action.mask):
            if action.value & bit:
                self.mark_origin[bit] = step
            else:
                self.mark_origin.pop(bit, None)

    def _decider(self, rule: Rule, step: Step) -> Step:
        """A verdict taken on a mark bit was decided by the rule that set the bit."""
        for bit in _bits(rule.match.mark_set):
            origin = self.mark_origin.get(bit)
            if origin is not None:
                return origin
        return step


def _chain(spec: TableSpec, name: str, caller: str) -> Sequence[Rule]:
    chain = spec.chains.get(name)
    if chain is None:
        raise TraceError(f"{spec.table} chain {caller} jumps to {name}, which does not exist")
    return chain.rules


def _bits(value: int) -> Iterator[int]:
    bit = 1
    while bit <= value:
        if value & bit:
            yield bit
        bit <<= 1
