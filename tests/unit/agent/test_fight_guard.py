"""The agent never fights another program in a loop over felis' rules."""

from __future__ import annotations

from felis.agent.agent import FightGuard


def test_repairs_back_off_only_when_they_keep_coming() -> None:
    guard = FightGuard(window=10.0, limit=3, longest=8.0)
    assert guard.repaired(0.0) == 0.0
    assert guard.repaired(1.0) == 0.0
    # The third repair within the window: wait, and twice as long each further time.
    assert guard.repaired(2.0) == 1.0
    assert guard.not_before == 3.0
    assert [guard.repaired(t) for t in (3.0, 4.0, 5.0, 6.0)] == [2.0, 4.0, 8.0, 8.0]
    # A quiet window resets it.
    assert guard.repaired(100.0) == 0.0
    assert guard.repaired(101.0) == 0.0
