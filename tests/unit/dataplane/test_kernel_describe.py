"""The agent's log line says what a transaction really changed."""

from __future__ import annotations

from felis.dataplane.kernel import _describe_nft, _describe_table


def test_nft_summary_ignores_base_chain_redeclarations_and_pre_delete_flushes() -> None:
    transaction = "\n".join(
        [
            "add table ip felis",
            "add chain ip felis raw-PREROUTING { type filter hook prerouting priority raw; }",
            "add chain ip felis raw-felis-new",
            "flush chain ip felis raw-felis-changed",
            "flush chain ip felis raw-felis-old",
            "add element ip felis felis4-s-x { 198.18.0.2 }",
            "delete chain ip felis raw-felis-old",
        ]
    )
    assert _describe_nft(transaction) == (
        "1 chain(s) added, 1 chain(s) rewritten, 1 chain(s) deleted, 1 set element batch(es)"
    )


def test_nft_summary_of_a_set_change_only() -> None:
    transaction = (
        "add table ip felis\n"
        "add chain ip felis filter-INPUT { type filter hook input priority filter; }\n"
        "delete element ip felis felis4-s-x { 198.18.0.2 }\n"
    )
    assert _describe_nft(transaction) == "1 set element batch(es)"


def test_iptables_summary_counts_flushes_of_deleted_chains_once() -> None:
    text = "*raw\n:felis-a - -\n:felis-old - -\n-A felis-a -j RETURN\nCOMMIT\n*raw\n-X felis-old\n"
    assert _describe_table(text) == "1 chain(s) written, 1 chain(s) deleted"
