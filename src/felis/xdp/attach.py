"""Loading, attaching, updating and removing felis' XDP program on an interface.

`ip link` loads and attaches the compiled object (native mode where the driver has it, generic
otherwise); `bpftool` reads and writes the program's maps by id. Map and program ids are global,
so only the `ip` commands need the interface's network namespace.

No bpffs pins are needed for protection to survive an agent restart: an attached program holds
its maps, and a restarted agent finds both again through the interface (`ip -d link` names the
program, `bpftool prog show` its maps). The program is recognised as felis' by its name;
another tool's XDP program is never replaced or removed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from felis import compiled
from felis.errors import FelisError
from felis.sysexec import CommandError, Runner, run
from felis.xdp import bpf, maps
from felis.xdp.maps import Blocklist

PROGRAM_NAME = "felis_blocklist"
SOURCE = "blocklist.c"
_MODES = {1: "native", 2: "generic", 3: "offload"}


class XdpError(CommandError):
    """An XDP command failed (one line, like every command error)."""


def build(cache: Path | None = None) -> Path:
    """The compiled XDP object, built with clang for BPF on first use."""
    return compiled.build_bpf(
        "felis.xdp", SOURCE, "blocklist", cache=cache, error=XdpError, missing=FelisError
    )


@dataclass(frozen=True, slots=True)
class Attached:
    iface: str
    program: int
    mode: str
    """`native`, `generic` or `offload`."""
    maps: dict[str, int]
    kind: str | None = None
    """The link kind (`veth`, ...); None for a device without one (a NIC)."""


class XdpDataplane:
    def __init__(
        self, netns: str | None = None, *, runner: Runner = run, obj: Path | None = None
    ) -> None:
        self.netns = netns
        self.runner = runner
        self._obj = obj

    def _ip(self, *argv: str) -> str:
        return self.runner(["ip", *argv], netns=self.netns, timeout=30).stdout

    def _bpftool(self, *argv: str, input_text: str | None = None) -> Any:
        out = self.runner(["bpftool", "-j", *argv], input_text=input_text, timeout=60).stdout
        return json.loads(out) if out.strip() else None

    def _link(self, iface: str) -> dict[str, Any]:
        (link,) = json.loads(self._ip("-j", "-d", "link", "show", "dev", iface))
        return dict(link)

    def _program(self, iface: str) -> dict[str, Any] | None:
        xdp = self._link(iface).get("xdp")
        return xdp if isinstance(xdp, dict) and "prog" in xdp else None

    def interfaces(self) -> list[str]:
        """The interfaces of this namespace that carry felis' program."""
        links = json.loads(self._ip("-j", "-d", "link", "show"))
        return sorted(
            str(link["ifname"])
            for link in links
            if isinstance(link.get("xdp"), dict)
            and link["xdp"].get("prog", {}).get("name") == PROGRAM_NAME
        )

    def status(self, iface: str) -> Attached | None:
        """felis' program on `iface`, or None (nothing attached, or another tool's program)."""
        link = self._link(iface)
        xdp = link.get("xdp")
        if not isinstance(xdp, dict) or xdp.get("prog", {}).get("name") != PROGRAM_NAME:
            return None
        program = int(xdp["prog"]["id"])
        info = self._bpftool("prog", "show", "id", str(program))
        found = {}
        for map_id in info.get("map_ids", []):
            shown = self._bpftool("map", "show", "id", str(map_id))
            found[str(shown["name"])] = int(map_id)
        kind = link.get("linkinfo", {}).get("info_kind")
        mode = _MODES.get(int(xdp.get("mode", 0)), "unknown")
        return Attached(iface, program, mode, found, str(kind) if kind else None)

    def attach(self, iface: str, *, allow_generic: bool = True) -> Attached:
        """felis' program on `iface`, attaching it if needed: native mode first, then generic
        when allowed. A generic attachment found where generic is no longer allowed is
        replaced by a native one, or removed (FelisError) when the driver has none."""
        current = self.status(iface)
        if current is not None and (allow_generic or current.mode != "generic"):
            return current
        if current is not None:
            self.detach(iface)
        other = self._program(iface)
        if other is not None:
            raise FelisError(
                f"another XDP program ({other['prog'].get('name', '?')}) is attached to {iface}; "
                "felis leaves it in place and does not attach its own"
            )
        obj = str(self._obj or build())
        modes = ["xdpdrv", "xdpgeneric"] if allow_generic else ["xdpdrv"]
        for index, mode in enumerate(modes):
            try:
                self._ip("link", "set", "dev", iface, mode, "obj", obj, "sec", "xdp")
                break
            except CommandError as err:
                if index < len(modes) - 1:
                    continue
                if not allow_generic:
                    raise FelisError(
                        f"{iface} has no native XDP and genericXDPEnabled is false: {err}"
                    ) from None
                raise
        attached = self.status(iface)
        if attached is None:
            raise FelisError(f"XDP program did not stay attached to {iface}")
        return attached

    def detach(self, iface: str) -> bool:
        """Remove felis' program from `iface` (its maps go with it); another tool's program is
        left alone. True when something was removed."""
        attached = self.status(iface)
        if attached is None:
            return False
        mode = {"native": "xdpdrv", "generic": "xdpgeneric"}.get(attached.mode, "xdp")
        self._ip("link", "set", "dev", iface, mode, "off")
        return True

    # -- maps ---------------------------------------------------------------------------------

    def _dump(self, map_id: int) -> list[dict[str, Any]]:
        return list(self._bpftool("map", "dump", "id", str(map_id)) or [])

    @staticmethod
    def _bytes(words: list[str]) -> bytes:
        return bytes(int(w, 16) for w in words)

    def blocked(self, attached: Attached) -> dict[str, int]:
        """The networks in the program's blocklists, with their entry ids."""
        out = {}
        for name in (maps.BLOCKLIST_V4, maps.BLOCKLIST_V6):
            for entry in self._dump(attached.maps[name]):
                key, value = self._bytes(entry["key"]), self._bytes(entry["value"])
                out[maps.lpm_cidr(key)] = maps.read_id(value)
        return out

    def failsafe(self, attached: Attached) -> set[bytes]:
        return {self._bytes(e["key"]) for e in self._dump(attached.maps[maps.FAILSAFE])}

    def sync(self, attached: Attached, wanted: Blocklist) -> int:
        """Make the maps hold `wanted`, in place (the program is not reloaded); the number of
        entries written or removed. Failsafe ports are added before any block and removed after,
        so no moment has a new block without its failsafe exceptions."""
        current = self.blocked(attached)
        ids = maps.assign_ids(wanted.networks, current)
        fs_now = self.failsafe(attached)
        fs_wanted = {maps.failsafe_key(proto, port) for proto, port in wanted.failsafe}
        lines: list[str] = []
        fs_map = attached.maps[maps.FAILSAFE]
        for key in sorted(fs_wanted - fs_now):
            lines.append(_map_command("update", fs_map, key, b"\x01"))
        for cidr, entry in sorted(ids.items()):
            if current.get(cidr) == entry:
                continue
            zero = maps.entry_id(entry)
            # A reused id starts counting from zero for its new network.
            lines.append(_map_command("update", attached.maps[maps.COUNTERS], zero, bytes(8)))
            lines.append(
                _map_command("update", _family_map(attached, cidr), maps.lpm_key(cidr), zero)
            )
        for cidr in sorted(set(current) - set(ids)):
            lines.append(_map_command("delete", _family_map(attached, cidr), maps.lpm_key(cidr)))
        for key in sorted(fs_now - fs_wanted):
            lines.append(_map_command("delete", fs_map, key))
        if lines:
            script = "".join(line + "\n" for line in lines)
            self.runner(["bpftool", "batch", "file", "-"], input_text=script, timeout=120)
        return len(lines)

    def counters(self, attached: Attached) -> dict[str, int]:
        """Packets dropped per blocked network, summed over CPUs."""
        ids = self.blocked(attached)
        # bpf(2) directly: bpftool would print all 262,144 slots once per CPU (about 20 s).
        totals = bpf.percpu_sums(attached.maps[maps.COUNTERS], ids.values())
        return {cidr: totals.get(entry, 0) for cidr, entry in ids.items()}


def _family_map(attached: Attached, cidr: str) -> int:
    return attached.maps[maps.BLOCKLIST_V6 if ":" in cidr else maps.BLOCKLIST_V4]


def _map_command(verb: str, map_id: int, key: bytes, value: bytes | None = None) -> str:
    """One line of a `bpftool batch` script."""
    words = ["map", verb, "id", str(map_id), "key", *maps.hex_words(key)]
    if value is not None:
        words += ["value", *maps.hex_words(value)]
    return " ".join(words)


SYS_NET = Path("/sys/class/net")
VETH_SHARED_RING = (
    "veth with one receive queue: under native XDP all its traffic, legitimate and blocked, "
    "shares one 256-frame ring; give it a queue per core (ethtool -L, docs/xdp.md)"
)


def receive_queues(iface: str, sys_net: Path = SYS_NET) -> int | None:
    """How many receive queues `iface` has now (None when sysfs does not say)."""
    try:
        return sum(1 for entry in (sys_net / iface / "queues").iterdir()
                   if entry.name.startswith("rx-"))  # fmt: skip
    except OSError:
        return None


def shared_ring_warning(attached: Attached, sys_net: Path = SYS_NET) -> str | None:
    """The warning `felis status` shows for a single-queue veth under native XDP."""
    if attached.kind != "veth" or attached.mode != "native":
        return None
    return VETH_SHARED_RING if receive_queues(attached.iface, sys_net) == 1 else None
