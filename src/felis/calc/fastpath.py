"""The untracked fast path: Allow rules lifted out of the raw chains into the raw hook itself.

Every packet of an untracked flow walks the raw table: the dispatch by interface, the endpoint
chain, the tiers, each policy chain and the verdict rules after it. For the flows doNotTrack
exists for (tens of thousands of new connections a second) that walk is most of felis' cost.

The walk before the first Allow that matches is, in most policies, a run of other Allow rules:
nothing in it can decide anything but "accept, untracked". So the same Allow rules, each with
the endpoint's interface added, can sit in front of the walk, in the raw hook, with the action
the walk would end in (set the accept mark, NOTRACK, ACCEPT). A packet matching one of them gets
exactly the verdict and mark the walk would give; a packet matching none takes the walk as
before. `leading_allows` finds that run by walking the endpoint chain under the one assumption
every packet meets it with: no verdict bit set yet. It stops at the first rule that could decide
otherwise (a Deny, a Pass, a Log, a failsafe accept, anything it does not recognise), so it can
only ever lift fewer rules than it might, never one that would change a verdict.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping

from felis.dataplane.spec import Chain, Jump, MarkBits, Match, Return, Rule, SetMark

MAX_LIFTED_RULES = 32
"""Per endpoint and direction. Lifted rules are crossed by every packet before the walk, so a
policy with hundreds of leading Allows keeps most of them in the walk, where only the packets of
that interface meet them."""


class _Stop(Exception):
    """A rule that could decide something other than "accept, untracked" was reached."""


@dataclasses.dataclass
class _Walk:
    chains: Mapping[str, Chain]
    marks: MarkBits
    limit: int
    found: list[Rule] = dataclasses.field(default_factory=list)
    depth: int = 0

    def mark_test(self, match: Match) -> bool | None:
        """The outcome of the match's mark test while every bit of `MarkBits.all` is clear (the
        state the walk assumes), or None when the match tests more than marks."""
        marks_only = dataclasses.replace(match, mark_set=0, mark_clear=0).is_empty()
        if not marks_only:
            return None
        known = self.marks.all
        if (match.mark_set | match.mark_clear) & ~known:
            raise _Stop  # a bit whose value the walk does not know
        return not match.mark_set

    def chain(self, name: str) -> None:
        chain = self.chains.get(name)
        if chain is None or self.depth > 8:
            raise _Stop
        self.depth += 1
        try:
            for rule in chain.rules:
                if not self.rule(rule):
                    return
        finally:
            self.depth -= 1

    def rule(self, rule: Rule) -> bool:
        """Walk one rule; False when the current chain returns here."""
        action = rule.action
        accept = self.marks.accept
        if isinstance(action, SetMark) and action == SetMark(accept, accept):
            if rule.match.mark_set or rule.match.mark_clear:
                raise _Stop
            if len(self.found) >= self.limit:
                raise _Stop
            self.found.append(rule)
            return True
        test = self.mark_test(rule.match)
        if test is None:
            raise _Stop
        if not test:
            return True
        match action:
            case None:
                return True
            case SetMark(value=0, mask=mask) if not mask & ~self.marks.all:
                return True  # clears bits that are clear already
            case Jump(target=target):
                self.chain(target)
                return True
            case Return():
                return False
        raise _Stop


def leading_allows(
    endpoint_chain: str, chains: Mapping[str, Chain], marks: MarkBits
) -> tuple[Rule, ...]:
    """The Allow rules (each setting the accept bit) a packet meets in `endpoint_chain` and the
    chains it jumps to, before any rule that could decide otherwise, in the order it meets
    them."""
    walk = _Walk(chains, marks, MAX_LIFTED_RULES)
    with contextlib.suppress(_Stop):
        walk.chain(endpoint_chain)
    return tuple(walk.found)
