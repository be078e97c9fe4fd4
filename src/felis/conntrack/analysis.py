"""Pure analysis of conntrack samples: who fills the table, how fast, and what to do about it.

Nothing here reads the kernel; `felis.conntrack.kernel` takes the `ConntrackSample`s.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from felis.conntrack.parse import Entry

INBOUND = "in"
OUTBOUND = "out"
FORWARDED = "fwd"


@dataclass(frozen=True)
class ConntrackSample:
    """What the kernel showed at one moment in one namespace."""

    taken_at: float  # monotonic seconds
    count: int
    max: int
    stats: dict[str, int]
    entries: Sequence[Entry]
    local_addresses: frozenset[str]
    interfaces: dict[str, str] = field(default_factory=dict)  # address -> interface
    time_wait_timeout: int = 120


@dataclass(frozen=True)
class Flow:
    """An entry seen from this host: the service port, the local address and the peer."""

    direction: str
    proto: str
    port: int | None
    local: str
    peer: str
    state: str


def classify(entry: Entry, local: frozenset[str]) -> Flow:
    """Inbound if the original destination is ours (port = our listener), outbound if the
    original source is ours (port = the remote service), else forwarded."""
    state = entry.state or ("UNREPLIED" if "UNREPLIED" in entry.flags else "-")
    if entry.dst in local:
        return Flow(INBOUND, entry.proto, entry.dport, entry.dst, entry.src, state)
    if entry.src in local:
        return Flow(OUTBOUND, entry.proto, entry.dport, entry.src, entry.dst, state)
    return Flow(FORWARDED, entry.proto, entry.dport, entry.dst, entry.src, state)


@dataclass(frozen=True)
class TopRow:
    direction: str
    proto: str
    port: int | None
    peer: str
    state: str
    count: int


def top(entries: Iterable[Entry], local: frozenset[str], limit: int = 20) -> list[TopRow]:
    """Entries grouped by (direction, protocol, port, peer, state), heaviest first."""
    counts: Counter[tuple[str, str, int | None, str, str]] = Counter()
    for entry in entries:
        f = classify(entry, local)
        counts[(f.direction, f.proto, f.port, f.peer, f.state)] += 1
    rows = [TopRow(d, p, port, peer, st, n) for (d, p, port, peer, st), n in counts.items()]
    rows.sort(key=lambda r: (-r.count, r.port or 0, r.peer, r.state))
    return rows[:limit] if limit > 0 else rows


@dataclass(frozen=True)
class PortTotal:
    direction: str
    proto: str
    port: int | None
    count: int


def port_totals(entries: Iterable[Entry], local: frozenset[str]) -> list[PortTotal]:
    counts: Counter[tuple[str, str, int | None]] = Counter()
    for entry in entries:
        f = classify(entry, local)
        counts[(f.direction, f.proto, f.port)] += 1
    rows = [PortTotal(d, p, port, n) for (d, p, port), n in counts.items()]
    rows.sort(key=lambda r: (-r.count, r.port or 0))
    return rows


@dataclass(frozen=True)
class Listener:
    """One local listener and its share of the pressure."""

    proto: str
    port: int
    local_addresses: tuple[str, ...]
    interfaces: tuple[str, ...]
    entries: int
    share: float  # of the table's max
    new_per_s: float
    growth_per_s: float
    peers: tuple[str, ...]
    peer_nets: tuple[str, ...]
    states: dict[str, int]


@dataclass(frozen=True)
class Advice:
    count: int
    max: int
    interval_s: float
    new_per_s: float  # new entries per second, whole table
    growth_per_s: float  # net change of the count per second
    seconds_to_full: float | None  # None: not growing; 0: full now
    steady_state_entries: int  # new_per_s x TIME_WAIT lifetime
    drops_per_s: float
    listeners: list[Listener]


_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
FULL_FRACTION = 0.98
MIN_SHARE = 0.10


def _summarize(nets: list[_Net], wide: int, limit: int) -> list[_Net]:
    collapsed = sorted(set(nets), key=lambda n: (int(n.network_address), n.prefixlen))
    if len(collapsed) > limit:
        collapsed = sorted(
            {n.supernet(new_prefix=wide) if n.prefixlen > wide else n for n in collapsed},
            key=lambda n: (int(n.network_address), n.prefixlen),
        )
    # Drop networks contained in a wider one that is also listed.
    return [n for n in collapsed if not any(o != n and n.subnet_of(o) for o in collapsed)]  # type: ignore[arg-type]


def summarize_peers(peers: Iterable[str], limit: int = 8) -> tuple[str, ...]:
    """Peer addresses as CIDRs: exact host routes when few, otherwise /24 (or /64) networks."""
    v4: list[_Net] = []
    v6: list[_Net] = []
    for p in set(peers):
        try:
            net = ipaddress.ip_network(p)
        except ValueError:
            continue
        (v4 if net.version == 4 else v6).append(net)
    out = [str(n) for n in _summarize(v4, 24, limit)]
    out += [str(n) for n in _summarize(v6, 64, limit)]
    return tuple(out)


def advise(
    first: ConntrackSample, second: ConntrackSample, *, min_share: float = MIN_SHARE
) -> Advice:
    """Compare two snapshots of the same namespace taken a short interval apart.

    New entries are the original tuples present in the second dump but not in the first: exact
    for short-lived flows, which stay in TIME_WAIT far longer than the interval.
    """
    interval = max(second.taken_at - first.taken_at, 1e-6)
    before = {e.key for e in first.entries}
    local = second.local_addresses

    inbound: dict[tuple[str, int], list[Entry]] = defaultdict(list)
    new_by_listener: Counter[tuple[str, int]] = Counter()
    count_first: Counter[tuple[str, int]] = Counter()
    total_new = 0
    for e in first.entries:
        f = classify(e, first.local_addresses)
        if f.direction == INBOUND and f.port is not None:
            count_first[(f.proto, f.port)] += 1
    for e in second.entries:
        is_new = e.key not in before
        total_new += is_new
        f = classify(e, local)
        if f.direction == INBOUND and f.port is not None:
            inbound[(f.proto, f.port)].append(e)
            new_by_listener[(f.proto, f.port)] += is_new

    total_new_rate = total_new / interval
    listeners = []
    for (proto, port), entries in inbound.items():
        n = len(entries)
        new_rate = new_by_listener[(proto, port)] / interval
        share = n / second.max if second.max else 0.0
        new_share = new_rate / total_new_rate if total_new_rate else 0.0
        if share < min_share and new_share < min_share:
            continue
        addrs = tuple(sorted({e.dst for e in entries}))
        states = Counter(classify(e, local).state for e in entries)
        listeners.append(
            Listener(
                proto=proto,
                port=port,
                local_addresses=addrs,
                interfaces=tuple(sorted({second.interfaces.get(a, "") for a in addrs} - {""})),
                entries=n,
                share=share,
                new_per_s=new_rate,
                growth_per_s=(n - count_first[(proto, port)]) / interval,
                peers=tuple(sorted({e.src for e in entries})),
                peer_nets=summarize_peers(e.src for e in entries),
                states=dict(states.most_common()),
            )
        )
    listeners.sort(key=lambda item: (-item.entries, -item.new_per_s, item.port))

    growth = (second.count - first.count) / interval
    drops = second.stats.get("drop", 0) - first.stats.get("drop", 0)
    # Kernel drops mean inserts are failing: the table is full even when the count dips below
    # the max. It does under load: a client reusing a TIME_WAIT port (tcp_tw_reuse) makes
    # conntrack kill the old entry, and the new one then fails to insert.
    if second.max and (second.count >= FULL_FRACTION * second.max or drops > 0):
        to_full: float | None = 0.0
    elif growth > 0:
        to_full = (second.max - second.count) / growth
    else:
        to_full = None
    return Advice(
        count=second.count,
        max=second.max,
        interval_s=interval,
        new_per_s=total_new_rate,
        growth_per_s=growth,
        seconds_to_full=to_full,
        steady_state_entries=int(total_new_rate * second.time_wait_timeout),
        drops_per_s=max(0, drops) / interval,
        listeners=listeners,
    )
