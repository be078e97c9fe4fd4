"""XDP series in /metrics: per-interface drop totals that only grow, attach mode, entries."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from felis.agent.agent import AgentState
from felis.agent.metrics import build_registry
from felis.dataplane.spec import DataplaneSpec
from felis.errors import FelisError
from felis.xdp import bpf
from felis.xdp.attach import Attached


@dataclass
class FakeXdp:
    """An XDP dataplane whose program, ids and counters the test sets."""

    program: int = 7
    ids: dict[str, int] = field(default_factory=dict)
    values: dict[int, int] = field(default_factory=dict)
    attached: bool = True
    status_reads: int = 0

    def status(self, iface: str) -> Attached | None:
        self.status_reads += 1
        if not self.attached:
            return None
        maps = {"felis_cnt": 100 + self.program}
        return Attached(iface, self.program, "generic", maps)

    def blocked(self, attached: Attached) -> dict[str, int]:
        return dict(self.ids)


@dataclass
class FakeDataplane:
    def counters(self, spec: object) -> list[object]:
        return []


@dataclass
class FakeAgent:
    xdp: FakeXdp | None
    xdp_programs: dict[str, frozenset[str]] = field(default_factory=dict)
    dataplane: FakeDataplane = field(default_factory=FakeDataplane)
    state: AgentState = field(default_factory=AgentState)
    current_spec: DataplaneSpec | None = None


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch) -> FakeAgent:
    made = FakeAgent(FakeXdp())

    def sums(map_id: int, keys: object) -> dict[int, int]:
        assert made.xdp is not None
        if map_id != 100 + made.xdp.program:
            raise bpf.BpfError(f"reading XDP counter map {map_id}: No such file or directory")
        return {k: made.xdp.values.get(k, 0) for k in keys}  # type: ignore[attr-defined]

    monkeypatch.setattr(bpf, "percpu_sums", sums)
    return made


def scrape(registry: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):  # type: ignore[arg-type]
        if family.name.startswith("felis_xdp"):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


DROPPED = "felis_xdp_dropped_packets_total"


def dropped(values: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return values[(DROPPED, (("interface", "eth0"),))]


def test_drops_are_summed_per_interface_and_only_grow(agent: FakeAgent) -> None:
    xdp = agent.xdp
    assert xdp is not None
    registry, _ = build_registry(agent)
    xdp.ids = {"198.18.0.2/32": 0, "198.18.9.0/24": 1}
    xdp.values = {0: 5, 1: 3}
    agent.xdp_programs = {"eth0": frozenset(xdp.ids)}
    first = scrape(registry)
    assert dropped(first) == 8
    assert first[("felis_xdp_attached", (("interface", "eth0"), ("mode", "generic")))] == 1
    assert first[("felis_xdp_blocklist_entries", (("interface", "eth0"),))] == 2
    # No per-network series: their number would follow the blocklist's size.
    assert not any("198.18" in str(labels) for _, labels in first)

    xdp.values = {0: 7, 1: 3}
    assert dropped(scrape(registry)) == 10
    assert xdp.status_reads == 1, "the program is read again only when its networks change"

    # 198.18.9.0/24 leaves and its id goes to a new network, counting from zero again: the
    # total keeps what it had and adds the newcomer's packets.
    xdp.ids = {"198.18.0.2/32": 0, "198.18.7.0/24": 1}
    xdp.values = {0: 7, 1: 2}
    agent.xdp_programs = {"eth0": frozenset(xdp.ids)}
    assert dropped(scrape(registry)) == 12

    # Detached and attached again (a new program, new maps, counters from zero).
    xdp.program = 8
    xdp.values = {0: 1, 1: 0}
    assert dropped(scrape(registry)) == 13

    # Gone: no longer attached, the total stays.
    xdp.attached = False
    agent.xdp_programs = {}
    last = scrape(registry)
    assert dropped(last) == 13
    assert not any(name == "felis_xdp_attached" for name, _ in last)


def test_an_unreadable_program_is_left_out_not_fatal(agent: FakeAgent) -> None:
    xdp = agent.xdp
    assert xdp is not None

    def broken(iface: str) -> Attached | None:
        raise FelisError("bpftool: not installed")

    xdp.status = broken  # type: ignore[method-assign]
    agent.xdp_programs = {"eth0": frozenset({"198.18.0.2/32"})}
    registry, _ = build_registry(agent)
    assert scrape(registry) == {}


def test_no_xdp_no_series() -> None:
    registry, _ = build_registry(FakeAgent(None))
    assert scrape(registry) == {}
