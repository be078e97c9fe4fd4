"""Reading `nft monitor`: transactions, who made them, and which concern felis."""

from __future__ import annotations

from felis.dataplane.monitor import Transaction, foreign, touches_felis, transactions

# Captured from `nft monitor` while nft and iptables-nft changed a private namespace.
CAPTURED = """\
add table ip felis
# new generation 2 by process 4961 (nft)
add set ip felis s1 { type ipv4_addr; }
add element ip felis s1 { 1.2.3.4 }
# new generation 5 by process 4964 (nft)
add table ip filter
create chain ip filter felis-X
# new generation 7 by process 4966 (iptables)
insert rule ip filter INPUT counter packets 0 bytes 0 jump felis-X
# new generation 8 by process 4967 (iptables)
delete rule ip filter INPUT handle 3
# new generation 10 by process 4969 (iptables)
add rule ip filter DOCKER-USER counter packets 0 bytes 0 accept
add rule ip nat POSTROUTING counter packets 0 bytes 0 masquerade
# new generation 12 by process 4980 (iptables)
delete rule ip felis c1 handle 3
delete table ip felis
delete table ip filter
# new generation 11 by process 4970 (nft)
"""


def test_lines_group_into_transactions_with_their_process() -> None:
    found = transactions(CAPTURED.splitlines())
    assert [(t.generation, t.pid, t.process) for t in found] == [
        (2, 4961, "nft"),
        (5, 4964, "nft"),
        (7, 4966, "iptables"),
        (8, 4967, "iptables"),
        (10, 4969, "iptables"),
        (12, 4980, "iptables"),
        (11, 4970, "nft"),
    ]
    assert found[1].changes == (
        "add set ip felis s1 { type ipv4_addr; }",
        "add element ip felis s1 { 1.2.3.4 }",
    )


def test_what_concerns_each_backend() -> None:
    flush = transactions(CAPTURED.splitlines())[-1]
    assert [touches_felis(c, "nftables") for c in flush.changes] == [True, True, False]
    assert [touches_felis(c, "iptables") for c in flush.changes] == [False, False, True]
    # A hook rule deleted by handle does not name felis, but it is in a chain felis hooks.
    assert touches_felis("delete rule ip filter INPUT handle 3", "iptables")
    assert not touches_felis("add rule ip filter DOCKER-USER counter accept", "iptables")
    assert not touches_felis("add rule ip nat POSTROUTING counter masquerade", "iptables")
    assert not touches_felis("add table inet firewalld", "nftables")


def test_own_transactions_are_never_foreign() -> None:
    change = Transaction(3, 100, "nft", ("delete table ip felis",))
    assert foreign(change, lambda pid: pid == 100, "nftables") == ()
    assert foreign(change, lambda pid: False, "nftables") == ("delete table ip felis",)
    unrelated = Transaction(4, 200, "nft", ("add table inet other",))
    assert foreign(unrelated, lambda pid: False, "nftables") == ()
