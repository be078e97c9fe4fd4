from felis.conntrack.analysis import (
    FORWARDED,
    INBOUND,
    OUTBOUND,
    ConntrackSample,
    advise,
    classify,
    port_totals,
    summarize_peers,
    top,
)
from felis.conntrack.parse import Entry

LOCAL = frozenset({"198.18.0.1", "127.0.0.1"})


def tw(src: str, sport: int, dport: int = 12211, dst: str = "198.18.0.1") -> Entry:
    return Entry(
        "ipv4", "tcp", 119, "TIME_WAIT", src, dst, sport, dport, flags=frozenset({"ASSURED"})
    )


def snap(
    t: float, entries: list[Entry], count: int | None = None, drop: int = 0
) -> ConntrackSample:
    return ConntrackSample(
        taken_at=t,
        count=len(entries) if count is None else count,
        max=1000,
        stats={"drop": drop},
        entries=entries,
        local_addresses=LOCAL,
        interfaces={"198.18.0.1": "eth0"},
    )


def test_classify_directions() -> None:
    assert classify(tw("198.18.0.10", 1000), LOCAL).direction == INBOUND
    out = Entry("ipv4", "tcp", 5, "ESTABLISHED", "198.18.0.1", "198.18.0.9", 40000, 443)
    f = classify(out, LOCAL)
    assert (f.direction, f.port, f.peer) == (OUTBOUND, 443, "198.18.0.9")
    fwd = Entry(
        "ipv4", "udp", 5, None, "10.0.0.1", "10.0.0.2", 1, 53, flags=frozenset({"UNREPLIED"})
    )
    f = classify(fwd, LOCAL)
    assert (f.direction, f.state) == (FORWARDED, "UNREPLIED")


def test_top_heaviest_first_grouped_by_port_peer_state() -> None:
    entries = [tw("198.18.0.10", p) for p in range(5)] + [tw("198.18.0.11", p) for p in range(3)]
    entries.append(Entry("ipv4", "tcp", 5, "ESTABLISHED", "198.18.0.12", "198.18.0.1", 9, 22))
    rows = top(entries, LOCAL)
    assert [(r.peer, r.port, r.state, r.count) for r in rows] == [
        ("198.18.0.10", 12211, "TIME_WAIT", 5),
        ("198.18.0.11", 12211, "TIME_WAIT", 3),
        ("198.18.0.12", 22, "ESTABLISHED", 1),
    ]
    assert len(top(entries, LOCAL, limit=1)) == 1
    assert port_totals(entries, LOCAL)[0].count == 8


def test_advise_counts_new_tuples_and_projects_time_to_full() -> None:
    first = [tw("198.18.0.10", p) for p in range(100)]
    second = first + [tw("198.18.0.11", p) for p in range(200)]  # 200 new in 2 s
    adv = advise(snap(10.0, first), snap(12.0, second))
    assert adv.new_per_s == 100.0
    assert adv.growth_per_s == 100.0
    assert adv.seconds_to_full == (1000 - 300) / 100.0
    assert adv.steady_state_entries == 100 * 120
    [lst] = adv.listeners
    assert (lst.proto, lst.port, lst.entries) == ("tcp", 12211, 300)
    assert lst.local_addresses == ("198.18.0.1",)
    assert lst.interfaces == ("eth0",)
    assert lst.new_per_s == 100.0
    assert lst.peer_nets == ("198.18.0.10/32", "198.18.0.11/32")


def test_advise_full_table_and_drops() -> None:
    entries = [tw("198.18.0.10", p) for p in range(990)]
    adv = advise(snap(0.0, entries, drop=10), snap(1.0, entries, drop=74))
    assert adv.seconds_to_full == 0.0
    assert adv.drops_per_s == 64.0
    assert adv.new_per_s == 0.0
    assert adv.listeners[0].port == 12211


def test_advise_drops_mean_full_even_below_the_max() -> None:
    # Under load a reused TIME_WAIT tuple kills its entry and the new one fails to insert, so a
    # full table's count dips below the max while the kernel keeps dropping.
    first = [tw("198.18.0.10", p) for p in range(950)]
    second = first[:900]
    adv = advise(snap(0.0, first, drop=10), snap(1.0, second, drop=40))
    assert adv.count < 0.98 * adv.max
    assert adv.seconds_to_full == 0.0
    no_drops = advise(snap(0.0, first, drop=10), snap(1.0, second, drop=10))
    assert no_drops.seconds_to_full is None  # shrinking, nothing dropped: not full


def test_advise_ignores_small_listeners_and_outbound() -> None:
    entries = [tw("198.18.0.10", p) for p in range(5)]
    entries += [
        Entry("ipv4", "tcp", 5, "ESTABLISHED", "198.18.0.1", "198.18.0.9", p, 443)
        for p in range(500)
    ]
    adv = advise(snap(0.0, entries), snap(1.0, entries))
    assert adv.listeners == []
    assert adv.seconds_to_full is None


def test_summarize_peers_widens_many_hosts() -> None:
    few = summarize_peers(["198.18.0.10", "198.18.0.11"])
    assert few == ("198.18.0.10/32", "198.18.0.11/32")
    many = summarize_peers([f"198.18.0.{i}" for i in range(10, 42)] + ["fd00::5", "bad"])
    assert many == ("198.18.0.0/24", "fd00::5/128")
