"""SIGKILL at any moment of a large apply (issue 13 item 2).

The agent is killed at random moments while it rewrites a large ruleset (policies whose every
rule changes, sets half rewritten, chains created and deleted), alternately killed alone and
together with the command it runs. After every kill (tests/kernel/crash.py, `judge`): with
nftables, both families' tables and sets hold A's state or B's, as one transaction; with
iptables, each table of each family does (obsolete chains may be left flushed and unreferenced,
their deletion being a second transaction), and each ipset set holds A's members, B's, or every
member they share and nothing outside them. No jump or set lookup dangles, foreign rules and
sets are untouched, and a restarted agent converges. bench/bench_crash.py runs 100 kills.
"""

from __future__ import annotations

import crash
from node import FelisNode

SCALE = crash.Scale(policies=100, members=1_500)
"""3,760 rules per family (7,520 in all) and 9,500 set members; the bench runs 9,296 rules
per family and 25,300 members."""
KILLS = 4


def test_sigkill_mid_apply_leaves_every_table_old_or_new(node: FelisNode) -> None:
    run = crash.CrashRun(node, SCALE)
    run.prepare()
    run.kill(KILLS)
    run.recover()
    assert run.violations() == [], run.summary()
    # Not vacuous: the kills met the kernel writes themselves.
    assert any("restore" in k.during or "nft" in k.during for k in run.kills), run.summary()
