from pathlib import Path

from felis.conntrack.parse import (
    parse_entries,
    parse_entry,
    parse_ip_addr_json,
    parse_stats,
    stats_delta,
)

# Captured from `ip netns exec <server> conntrack -L -o extended` / `conntrack -S` in the lab,
# plus udp/icmp/ipv6/plain-format lines as conntrack-tools 1.4.7 prints them.
DATA = Path(__file__).parent / "data"
LISTING = (DATA / "conntrack_list.txt").read_text()
STATS = (DATA / "conntrack_stats.txt").read_text()


def test_tcp_time_wait_entry_has_both_tuples_and_flags() -> None:
    e = parse_entry(LISTING.splitlines()[0])
    assert e is not None
    assert (e.family, e.proto, e.timeout, e.state) == ("ipv4", "tcp", 119, "TIME_WAIT")
    assert (e.src, e.dst, e.sport, e.dport) == ("198.18.0.35", "198.18.0.1", 5440, 12211)
    assert (e.reply_src, e.reply_dst, e.reply_sport, e.reply_dport) == (
        "198.18.0.1",
        "198.18.0.35",
        12211,
        5440,
    )
    assert e.flags == frozenset({"ASSURED"})


def test_listing_skips_banner_and_garbage() -> None:
    entries = parse_entries(LISTING)
    assert len(entries) == 6
    assert [e.proto for e in entries] == ["tcp", "tcp", "udp", "icmp", "tcp", "tcp"]


def test_udp_without_state_and_icmp_without_ports() -> None:
    entries = parse_entries(LISTING)
    udp, icmp = entries[2], entries[3]
    assert udp.state is None and udp.dport == 53 and "UNREPLIED" in udp.flags
    assert icmp.sport is None and icmp.dport is None and icmp.dst == "198.18.0.2"


def test_ipv6_and_plain_format() -> None:
    entries = parse_entries(LISTING)
    assert entries[4].family == "ipv6" and entries[4].dst == "fd00::1"
    plain = entries[5]
    assert plain.family == "ipv4" and plain.state == "SYN_SENT" and plain.timeout == 117


def test_key_identifies_original_tuple() -> None:
    e = parse_entries(LISTING)[0]
    assert e.key == ("tcp", "198.18.0.35", "198.18.0.1", 5440, 12211)


def test_stats_summed_over_cpus() -> None:
    s = parse_stats(STATS)
    assert s["drop"] == 800
    assert s["early_drop"] == 5
    assert s["insert_failed"] == 1
    assert s["invalid"] == 7
    assert s["error"] == 2
    assert "cpu" not in s


def test_stats_defaults_and_delta() -> None:
    assert parse_stats("")["drop"] == 0
    before = parse_stats(STATS)
    after = dict(before, drop=before["drop"] + 10)
    assert stats_delta(before, after)["drop"] == 10
    assert stats_delta(after, before)["drop"] == 0


def test_ip_addr_json() -> None:
    text = (
        '[{"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1"}]},'
        '{"ifname":"eth0","addr_info":[{"family":"inet","local":"198.18.0.1"},'
        '{"family":"inet6","local":"fe80::1"}]}]'
    )
    addrs = parse_ip_addr_json(text)
    assert [(a.interface, a.address) for a in addrs] == [
        ("lo", "127.0.0.1"),
        ("eth0", "198.18.0.1"),
        ("eth0", "fe80::1"),
    ]
