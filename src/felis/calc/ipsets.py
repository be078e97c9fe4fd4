"""IP set membership for rule selectors and named ports, kept up to date incrementally
(docs/calico-semantics.md#ip-sets).

Members come from every host endpoint in the cluster (its expectedIPs; a HEP without them adds
nothing) and every global or namespaced network set (its nets, masked). Several objects may
contribute the same address, so each set keeps a count per member; a member leaves only when its
last contributor does. Each set also has a version number that moves whenever its members change,
so the calculator can rebuild exactly the `IpSet` values that changed.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from felis.calc.inputs import NamedPort, family_of
from felis.calc.sources import (
    NamedPortSource,
    NetsSource,
    PortsSource,
    SelectorSource,
    SetSource,
)
from felis.dataplane.spec import Family
from felis.selector import LabelIndex, Selector

ObjId = tuple[str, str]
"""(kind, name): ("hep", name) or ("gns", name), a NetworkSet's name being `<namespace>/<name>`."""


@dataclass(frozen=True, slots=True)
class ObjData:
    cidrs: tuple[str, ...]
    """Addresses it contributes to selector sets."""
    ips: tuple[str, ...] = ()
    """Bare addresses it contributes to named-port sets (host endpoints only)."""
    ports: tuple[NamedPort, ...] = ()


class _Members:
    __slots__ = ("clock", "counts", "version")

    def __init__(self, clock: Iterator[int]) -> None:
        self.counts: dict[Family, Counter[str]] = {Family.V4: Counter(), Family.V6: Counter()}
        # Versions come from one clock shared by all sets, so a set that is dropped and
        # tracked again never repeats a version a cache may still hold.
        self.clock = clock
        self.version = next(clock)

    def add(self, members: Iterable[str], delta: int) -> None:
        changed = False
        for member in members:
            counter = self.counts[family_of(member.partition(",")[0])]
            before = counter[member]
            after = before + delta
            if after > 0:
                counter[member] = after
            else:
                del counter[member]
            changed |= (before > 0) != (after > 0)
        if changed:
            self.version = next(self.clock)

    def frozen(self, family: Family) -> frozenset[str]:
        return frozenset(self.counts[family])


def _named_port_members(data: ObjData, protocol: str, port_name: str) -> list[str]:
    out = []
    for port in data.ports:
        if port.name == port_name and protocol in ("any", port.protocol):
            out += [f"{ip},{port.protocol}:{port.port}" for ip in data.ips]
    return out


class Membership:
    """Selector and named-port set members over all labelled objects."""

    def __init__(self) -> None:
        self._index: LabelIndex[ObjId, str] = LabelIndex()
        self._objects: dict[ObjId, ObjData] = {}
        self._selectors: dict[str, Selector] = {}
        self._selector_refs: Counter[str] = Counter()
        self._selector_members: dict[str, _Members] = {}
        self._named_ports: dict[str, NamedPortSource] = {}
        self._named_port_refs: Counter[str] = Counter()
        self._named_port_members: dict[str, _Members] = {}
        self._named_ports_by_selector: dict[str, set[str]] = {}
        self._clock = itertools.count(1)

    # ------------------------------------------------------------------ selectors and sets

    def acquire(self, source: SetSource) -> None:
        """Start (or keep) tracking a set's members; paired with `release`."""
        if isinstance(source, SelectorSource):
            self._acquire_selector(source.selector)
        elif isinstance(source, NamedPortSource):
            self._acquire_selector(source.selector)
            set_id = source.set_id
            self._named_port_refs[set_id] += 1
            if self._named_port_refs[set_id] == 1:
                self._named_ports[set_id] = source
                uid = source.selector.unique_id
                self._named_ports_by_selector.setdefault(uid, set()).add(set_id)
                members = self._named_port_members[set_id] = _Members(self._clock)
                for obj in self._index.matches(uid):
                    members.add(
                        _named_port_members(self._objects[obj], source.protocol, source.port_name),
                        1,
                    )

    def release(self, source: SetSource) -> None:
        if isinstance(source, SelectorSource):
            self._release_selector(source.selector)
        elif isinstance(source, NamedPortSource):
            set_id = source.set_id
            self._named_port_refs[set_id] -= 1
            if self._named_port_refs[set_id] <= 0:
                del self._named_port_refs[set_id]
                del self._named_ports[set_id]
                del self._named_port_members[set_id]
                uid = source.selector.unique_id
                by_sel = self._named_ports_by_selector[uid]
                by_sel.discard(set_id)
                if not by_sel:
                    del self._named_ports_by_selector[uid]
            self._release_selector(source.selector)

    def _acquire_selector(self, selector: Selector) -> None:
        uid = selector.unique_id
        self._selector_refs[uid] += 1
        if self._selector_refs[uid] > 1:
            return
        self._selectors[uid] = selector
        self._index.update_selector(uid, selector)
        members = self._selector_members[uid] = _Members(self._clock)
        for obj in self._index.matches(uid):
            members.add(self._objects[obj].cidrs, 1)

    def _release_selector(self, selector: Selector) -> None:
        uid = selector.unique_id
        self._selector_refs[uid] -= 1
        if self._selector_refs[uid] > 0:
            return
        del self._selector_refs[uid]
        del self._selectors[uid]
        del self._selector_members[uid]
        self._index.remove_selector(uid)

    # ------------------------------------------------------------------ objects

    def _contribute(self, obj: ObjId, data: ObjData, uids: Iterable[str], delta: int) -> None:
        for uid in uids:
            self._selector_members[uid].add(data.cidrs, delta)
            for set_id in self._named_ports_by_selector.get(uid, ()):
                source = self._named_ports[set_id]
                self._named_port_members[set_id].add(
                    _named_port_members(data, source.protocol, source.port_name), delta
                )

    def upsert(self, obj: ObjId, labels: Mapping[str, str], data: ObjData) -> None:
        old = self._objects.get(obj)
        if old is not None:
            self._contribute(obj, old, self._index.selectors_matching(obj), -1)
        self._objects[obj] = data
        self._index.update_labels(obj, labels)
        self._contribute(obj, data, self._index.selectors_matching(obj), 1)

    def remove(self, obj: ObjId) -> None:
        old = self._objects.get(obj)
        if old is None:
            return
        self._contribute(obj, old, self._index.selectors_matching(obj), -1)
        del self._objects[obj]
        self._index.remove_labels(obj)

    # ------------------------------------------------------------------ answers

    def version(self, source: SetSource) -> int:
        if isinstance(source, SelectorSource):
            return self._selector_members[source.selector.unique_id].version
        if isinstance(source, NamedPortSource):
            return self._named_port_members[source.set_id].version
        return 0

    def members(self, source: SetSource, family: Family) -> frozenset[str]:
        if isinstance(source, PortsSource):
            return frozenset(map(str, source.ports))
        if isinstance(source, SelectorSource):
            return self._selector_members[source.selector.unique_id].frozen(family)
        if isinstance(source, NamedPortSource):
            return self._named_port_members[source.set_id].frozen(family)
        assert isinstance(source, NetsSource)
        return frozenset(c for c in source.cidrs if family_of(c) is family)
