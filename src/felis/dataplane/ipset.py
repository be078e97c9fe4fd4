"""IP sets for the iptables backend: `ipset restore` input, and `ipset save` read back.

Sets are written in two steps around the table writes: create and fill before
iptables-restore (so new rules find their sets), destroy obsolete ones after (once no rule refers
to them). `ipset restore` is not transactional, so an existing set is never flushed and refilled:
the delta adds the missing members first, then deletes the surplus ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from felis.dataplane.identifiers import DataplaneRenderError, check_set_name
from felis.dataplane.kernel_state import SetState, set_kind_conflicts
from felis.dataplane.memo import RenderCache
from felis.dataplane.set_members import (
    normalise_member,
    normalise_members,
    sorted_members,
    sorted_normal_members,
)
from felis.dataplane.spec import Family, IpSet, SetKind
from felis.errors import FelisError

SET_NAME_PREFIX = "felis"
"""Every kernel IP set whose name starts with this is felis' (calc names them `felis4-…`)."""
MAXELEM = 1048576

_TYPES: Mapping[SetKind, str] = {
    SetKind.NET: "hash:net",
    SetKind.IP_PORT: "hash:ip,port",
    SetKind.PORT: "bitmap:port",
}
_KINDS: Mapping[str, SetKind] = {text: kind for kind, text in _TYPES.items()}
_FAMILIES: Mapping[Family, str] = {Family.V4: "inet", Family.V6: "inet6"}


def _create_line(ipset: IpSet, family: Family, exist: bool) -> str:
    if ipset.kind is SetKind.PORT:
        # Ports only: no address family, and a bitmap over every port instead of a size limit.
        line = f"create {ipset.name} {_TYPES[ipset.kind]} range 0-65535"
    else:
        line = (
            f"create {ipset.name} {_TYPES[ipset.kind]} family {_FAMILIES[family]} maxelem {MAXELEM}"
        )
    return line + " -exist" if exist else line


def render_ipset_full(
    sets: Mapping[str, IpSet], family: Family, cache: RenderCache | None = None
) -> str | None:
    """Create (if missing), flush and fill every set: for a node that has none of them yet."""
    lines = []
    for name in sorted(sets):
        ipset = sets[name]
        check_set_name(name)
        lines.append(_create_line(ipset, family, exist=True))
        lines.append(f"flush {name}")
        members = sorted_normal_members(ipset.kind, ipset.members, family, cache)
        lines.extend(f"add {name} {m}" for m in members)
    return "\n".join([*lines, "COMMIT", ""]) if lines else None


def render_ipset_update(
    sets: Mapping[str, IpSet],
    family: Family,
    current: Mapping[str, SetState],
    cache: RenderCache | None = None,
) -> str | None:
    """Create missing sets and bring members in line; None when nothing differs."""
    set_kind_conflicts(sets, current)
    lines = []
    for name in sorted(sets):
        ipset = sets[name]
        check_set_name(name)
        want = normalise_members(ipset.kind, ipset.members, family, cache)
        have = current.get(name)
        if have is None:
            lines.append(_create_line(ipset, family, exist=True))
            members = sorted_normal_members(ipset.kind, ipset.members, family, cache)
            lines.extend(f"add {name} {m}" for m in members)
            continue
        if have.members is want or have.members == want:
            continue
        # Add before delete: a member moving between two overlapping CIDRs is never absent.
        lines.extend(
            f"add {name} {m} -exist" for m in sorted_members(ipset.kind, want - have.members)
        )
        lines.extend(
            f"del {name} {m} -exist" for m in sorted_members(ipset.kind, have.members - want)
        )
    return "\n".join([*lines, "COMMIT", ""]) if lines else None


def obsolete_sets(
    sets: Mapping[str, IpSet], family: Family, current: Mapping[str, SetState]
) -> list[str]:
    return sorted(
        name
        for name, state in current.items()
        if name.startswith(SET_NAME_PREFIX) and state.family is family and name not in sets
    )


def render_ipset_destroy(names: list[str]) -> str | None:
    """Destroy sets no rule refers to any more (run after the table writes)."""
    if not names:
        return None
    return "\n".join([*(f"destroy {check_set_name(name)}" for name in names), "COMMIT", ""])


def parse_ipset_save(text: str) -> dict[str, SetState]:
    """`ipset save` (or `ipset list -o save`) → {set: state}; sets of unknown types are skipped."""
    kinds: dict[str, tuple[SetKind, Family]] = {}
    members: dict[str, list[str]] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        words = raw.split()
        if not words:
            continue
        try:
            if words[0] == "create":
                name, settype = words[1], words[2]
                # A bitmap:port set has no family: felis' own names say which family's rules
                # use it (felis4-/felis6-).
                default = "inet6" if name.startswith(f"{SET_NAME_PREFIX}6-") else "inet"
                fam = words[words.index("family") + 1] if "family" in words else default
                if settype in _KINDS and fam in ("inet", "inet6"):
                    kinds[name] = (_KINDS[settype], Family.V4 if fam == "inet" else Family.V6)
                    members[name] = []
            elif words[0] == "add" and words[1] in kinds:
                members[words[1]].append(words[2])
        except (IndexError, ValueError):
            raise DataplaneRenderError(f"ipset save output line {lineno}: cannot parse") from None
    out: dict[str, SetState] = {}
    for name, (kind, family) in kinds.items():
        normal = []
        for member in members[name]:
            try:
                normal.append(normalise_member(kind, member, family))
            except FelisError:
                # A member felis never writes still makes the set differ, and is deleted as is.
                normal.append(member)
        out[name] = SetState(name=name, kind=kind, family=family, members=frozenset(normal))
    return out


@dataclass(frozen=True, slots=True)
class SetHeader:
    """One set as `ipset list -t` describes it: what it is and how many members it holds,
    without the members (the kernel sends no member for it, so reading every header of 100,000
    members costs as little as reading an empty set's)."""

    name: str
    kind: SetKind
    family: Family
    entries: int


def parse_ipset_headers(text: str) -> dict[str, SetHeader]:
    """`ipset list -t` → {set: header}; sets of types felis never creates are skipped."""
    out: dict[str, SetHeader] = {}
    fields: dict[str, str] = {}

    def close() -> None:
        name, settype = fields.get("Name", ""), fields.get("Type", "")
        if name and settype in _KINDS:
            words = fields.get("Header", "").split()
            default = "inet6" if name.startswith(f"{SET_NAME_PREFIX}6-") else "inet"
            fam = words[words.index("family") + 1] if "family" in words[:-1] else default
            try:
                entries = int(fields["Number of entries"])
            except (KeyError, ValueError):
                raise DataplaneRenderError(
                    f"ipset list -t: set {name!r} has no readable 'Number of entries'"
                ) from None
            if fam in ("inet", "inet6"):
                family = Family.V4 if fam == "inet" else Family.V6
                out[name] = SetHeader(name, _KINDS[settype], family, entries)
        fields.clear()

    for raw in text.splitlines():
        key, sep, value = raw.partition(":")
        if not sep:
            continue
        if key == "Name" and fields:
            close()
        fields[key.strip()] = value.strip()
    if fields:
        close()
    return out


def set_size_differences(
    sets: Mapping[str, IpSet],
    family: Family,
    headers: Mapping[str, SetHeader],
    cache: RenderCache | None = None,
) -> list[str]:
    """What a look at the set headers alone shows differing from `sets` in one family: a set
    missing, of another type, holding another number of members, or one of ours no rule uses.

    Blind to a member replaced by another (the count stays): only reading the members
    (`parse_ipset_save`) sees that."""
    out = []
    for name in sorted(sets):
        ipset = sets[name]
        have = headers.get(name)
        if have is None:
            out.append(f"set {name} missing")
            continue
        if have.kind is not ipset.kind or have.family is not family:
            out.append(f"set {name} is {_TYPES[have.kind]}, wanted {_TYPES[ipset.kind]}")
            continue
        wanted = len(normalise_members(ipset.kind, ipset.members, family, cache))
        if have.entries != wanted:
            out.append(f"set {name} holds {have.entries} members, {wanted} wanted")
    out += [
        f"set {name} no longer used"
        for name, header in sorted(headers.items())
        if header.family is family and name.startswith(SET_NAME_PREFIX) and name not in sets
    ]
    return out
