"""The hand-written reference ruleset: its text on both backends, and how the lab applies it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from felis.lab import firewall as fwmod
from felis.lab import handwritten as hw
from felis.lab.firewall import Firewall, has_tables
from felis.lab.handwritten import (
    Handwritten,
    iptables_removal,
    iptables_ruleset,
    nft_removal,
    nft_ruleset,
)
from felis.lab.topology import LabConfig

CFG = LabConfig()


def lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def test_nft_ruleset_is_the_minimal_shape() -> None:
    assert lines(nft_ruleset(CFG)) == [
        # Declared, deleted and redeclared in one transaction: a second apply replaces the first.
        "table ip felis-handwritten",
        "delete table ip felis-handwritten",
        "table ip felis-handwritten {",
        "chain raw-prerouting {",
        "type filter hook prerouting priority raw; policy accept;",
        'iifname "eth0" ip saddr 198.18.0.0/24 tcp dport 12211 notrack accept',
        "}",
        "chain raw-output {",
        "type filter hook output priority raw; policy accept;",
        'oifname "eth0" ip daddr 198.18.0.0/24 tcp sport 12211 notrack accept',
        "}",
        "chain input {",
        "type filter hook input priority filter; policy accept;",
        'iifname "eth0" ip saddr 198.18.0.0/24 tcp dport 12211 accept',
        'iifname "eth0" ct state established,related accept',
        'iifname "eth0" tcp dport 22 accept',
        'iifname "eth0" drop',
        "}",
        "chain output {",
        "type filter hook output priority filter; policy accept;",
        'oifname "eth0" ip daddr 198.18.0.0/24 tcp sport 12211 accept',
        'oifname "eth0" ct state established,related accept',
        'oifname "eth0" drop',
        "}",
        "}",
    ]
    assert nft_removal() == "delete table ip felis-handwritten\n"


def test_iptables_ruleset_uses_chains_of_its_own() -> None:
    assert lines(iptables_ruleset(CFG)) == [
        "*raw",
        ":hand-PREROUTING - [0:0]",
        ":hand-OUTPUT - [0:0]",
        "-A PREROUTING -j hand-PREROUTING",
        "-A OUTPUT -j hand-OUTPUT",
        "-A hand-PREROUTING -i eth0 -s 198.18.0.0/24 -p tcp --dport 12211 -j CT --notrack",
        "-A hand-OUTPUT -o eth0 -d 198.18.0.0/24 -p tcp --sport 12211 -j CT --notrack",
        "COMMIT",
        "*filter",
        ":hand-INPUT - [0:0]",
        ":hand-OUTPUT - [0:0]",
        "-A INPUT -j hand-INPUT",
        "-A OUTPUT -j hand-OUTPUT",
        "-A hand-INPUT -i eth0 -s 198.18.0.0/24 -p tcp --dport 12211 -j ACCEPT",
        "-A hand-INPUT -i eth0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A hand-INPUT -i eth0 -p tcp --dport 22 -j ACCEPT",
        "-A hand-INPUT -i eth0 -j DROP",
        "-A hand-OUTPUT -o eth0 -d 198.18.0.0/24 -p tcp --sport 12211 -j ACCEPT",
        "-A hand-OUTPUT -o eth0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A hand-OUTPUT -o eth0 -j DROP",
        "COMMIT",
    ]
    removal = lines(iptables_removal())
    assert removal[:6] == [
        "*raw",
        "-D PREROUTING -j hand-PREROUTING",
        "-D OUTPUT -j hand-OUTPUT",
        "-F hand-PREROUTING",
        "-F hand-OUTPUT",
        "-X hand-PREROUTING",
    ]
    assert "-D INPUT -j hand-INPUT" in removal and "-X hand-INPUT" in removal
    assert removal.count("COMMIT") == 2


def test_texts_follow_the_lab_config() -> None:
    cfg = LabConfig(interface="veth9", server_ip="198.19.4.1", prefix_len=22, port=11211)
    assert 'iifname "veth9" ip saddr 198.19.4.0/22 tcp dport 11211 notrack accept' in (
        nft_ruleset(cfg)
    )
    assert "-A hand-OUTPUT -o veth9 -d 198.19.4.0/22 -p tcp --sport 11211 -j ACCEPT" in (
        iptables_ruleset(cfg)
    )


Call = tuple[list[str], str | None, str | None]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    made: list[Call] = []

    def fake_run(
        argv: list[str], *, netns: str | None = None, input_text: str | None = None, **kw: object
    ) -> object:
        made.append((list(argv), netns, input_text))
        return None

    monkeypatch.setattr(hw.ns, "run", fake_run)
    return made


@pytest.mark.parametrize(
    ("backend", "argv"),
    [("nftables", ["nft", "-f", "-"]), ("iptables", ["iptables-restore", "--noflush"])],
)
def test_program_and_cleanup_in_the_server_namespace(
    calls: list[Call], backend: str, argv: list[str]
) -> None:
    hand = Handwritten(CFG, backend)
    hand.cleanup()  # nothing programmed: nothing to remove
    assert calls == []
    hand.program()
    assert calls == [(argv, "memcached-node-1", hand.ruleset())]
    hand.cleanup()
    assert calls[1] == (argv, "memcached-node-1", hand.removal())
    hand.cleanup()
    assert len(calls) == 2


def test_firewall_programs_the_handwritten_phase_without_felis(
    calls: list[Call], tmp_path: Path
) -> None:
    fw = Firewall(LabConfig(run_dir=tmp_path), "iptables", tmp_path, felis=["FELIS"])
    assert fw.program("handwritten") is None
    assert [argv for argv, _, _ in calls] == [["iptables-restore", "--noflush"]]
    fw.cleanup()
    assert len(calls) == 2 and "-X hand-INPUT" in (calls[1][2] or "")
    assert not list(tmp_path.iterdir())  # no manifests, no datastore


def test_flush_leftovers_empties_even_rule_free_tables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # What iptables-nft leaves after its rules are removed: tables and accept-policy base chains.
    empty_chains = json.dumps(
        {
            "nftables": [
                {"metainfo": {}},
                {"table": {"family": "ip", "name": "raw"}},
                {"chain": {"table": "raw", "name": "PREROUTING", "policy": "accept"}},
            ]
        }
    )
    ran: list[list[str]] = []

    class Proc:
        stdout = empty_chains

    def fake_run(argv: list[str], **kw: object) -> Proc:
        ran.append(list(argv))
        return Proc()

    monkeypatch.setattr(fwmod.ns, "run", fake_run)
    fw = Firewall(LabConfig(run_dir=tmp_path), "nftables", tmp_path)
    assert fw.flush_leftovers() == 0  # nothing that changes a verdict...
    assert ran[-1] == ["nft", "flush", "ruleset"]  # ...but the hooks go too
    assert has_tables(empty_chains)
    assert not has_tables('{"nftables": [{"metainfo": {}}]}')
    Proc.stdout = '{"nftables": [{"metainfo": {}}]}'
    ran.clear()
    assert fw.flush_leftovers() == 0
    assert ran == [["nft", "-j", "list", "ruleset"]]
