"""The flood phases: a SYN flood from blocklisted sources while the clients run their load.

Calico's DoS defence is an untracked, applyOnForward ingress policy that denies sources
selected from a GlobalNetworkSet blocklist; felis drops those sources in XDP where it can
(docs/xdp.md). Three phases measure what that buys under the same legitimate load:

* `noflood`: the defended host at peace, the blocklist programmed with XDP, no flood;
* `flood-xdp`: the same rules, the flood running, the blocklist dropped in XDP;
* `flood-raw`: the same rules programmed with `--no-xdp`, so the raw table drops the flood.

`--phases flood` stands for all three, in that order. The flood comes from `flood.c` (package
data, compiled on first use like the load generator): spoofed SYNs to memcached's port from
sources in `BLOCKLIST`, sent on the client's end of the veth pair and addressed to the server
end's MAC, so the frames go nowhere else. It is paced to a fixed packet rate and bounded by a
count and a duration, and it stops by itself.

Two ways to send (`--flood-via`), the same frames:

* `driver` (the default): `floodgen.c`, a BPF program run in live-frames mode, hands each frame
  to the veth's XDP transmit path, so it reaches the server as a driver buffer, the way a NIC
  delivers a remote attacker's packet: nobody has built a socket buffer for it yet, and making
  it costs the lab's cores little. For the three phases the veth pair is set up like a server
  NIC (`nic_like`): a queue per core, and NAPI at the server's end (XDP provides it; GRO, for
  the phase without XDP), which such frames need.
* `socket`: AF_PACKET. The sender's kernel builds a socket buffer per frame and the flooder's
  own work lands on the lab's two cores; kept to compare with the first runs
  (docs/benchmarks-lab.md).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import select
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from felis import compiled, sysexec
from felis.lab import netns as ns
from felis.lab.cpu import proc_cpu
from felis.lab.errors import LabCommandError, LabError
from felis.lab.safety import require_lab_address

FLOOD = "flood"
NOFLOOD, FLOOD_XDP, FLOOD_RAW = "noflood", "flood-xdp", "flood-raw"
FLOOD_PHASES = (NOFLOOD, FLOOD_XDP, FLOOD_RAW)
# Phases in which the flooder runs.
FLOODED = (FLOOD_XDP, FLOOD_RAW)
# Far from the clients' 198.18.0.0/24, inside the benchmark range like everything in the lab.
BLOCKLIST = "198.19.0.0/16"
FLOOD_SOURCE_BASE = "198.19.0.1"
FLOOD_SOURCE_COUNT = 4096
# Packets per second: about six SYNs for every legitimate connection this machine completes at
# saturation (15k conn/s on a quiet day), more than all the packets the clients send the server
# (about five per connection), yet a rate the 2-core box can generate without the flooder
# alone taking most of a core (docs/lab.md, "The flood phases").
DEFAULT_FLOOD_RATE = 100_000.0
SOURCE_NAME = "flood.c"
GENERATOR_NAME = "floodgen.c"
DRIVER, SOCKET = "driver", "socket"
FLOOD_VIAS = (DRIVER, SOCKET)
DEFAULT_FLOOD_VIA = DRIVER
# Driver mode's parking place for the generator (see flood.c): a veth pair in the client
# namespace that stays down and carries nothing.
HOLD_IFACE, HOLD_PEER = "felis-fl-hold0", "felis-fl-hold1"
# Driver mode sends a run of frames every ~2 ms (each run has a fixed cost), socket mode up to
# 64 frames per sendmmsg as soon as one is due.
RUNS_PER_SECOND = 500
MIN_RUN, MAX_RUN = 64, 8192
# Frames per transmit flush within a run: the server end's ring (256 frames) is shared with the
# clients' packets, and a flush lands all at once.
DRIVER_FLUSH = 64
SOCKET_BATCH = 64
START_TIMEOUT = 10.0
EXIT_TIMEOUT = 10.0


def expand_phases(phases: list[str]) -> list[str]:
    """`flood` in a phase list stands for its three phases, at its place."""
    out: list[str] = []
    for phase in phases:
        out.extend(FLOOD_PHASES if phase == FLOOD else (phase,))
    return out


@dataclass(frozen=True)
class FloodSpec:
    """One flood: out of which interface, to which MAC and address, how hard, how long."""

    iface: str
    dst_mac: str
    dst: str = "198.18.0.1"
    port: int = 12211
    source_base: str = FLOOD_SOURCE_BASE
    source_count: int = FLOOD_SOURCE_COUNT
    rate: float = DEFAULT_FLOOD_RATE
    duration: float = 10.0
    via: str = DEFAULT_FLOOD_VIA
    generator: Path | None = None
    """Driver mode's compiled floodgen.c."""

    def __post_init__(self) -> None:
        require_lab_address(self.dst)
        require_lab_address(self.source_base, "flood source")
        last = str(ipaddress.IPv4Address(self.source_base) + max(self.source_count - 1, 0))
        require_lab_address(last, "last flood source")
        if self.dst.startswith("127."):
            raise LabError("the flood goes to the lab's server namespace, never to loopback")
        if self.rate <= 0 or self.duration <= 0 or not 1 <= self.source_count <= 65536:
            raise LabError("flood: rate, duration and source count must be positive")
        check_via(self.via)
        if self.via == DRIVER and self.generator is None:
            raise LabError("flood: driver mode needs the compiled frame generator")

    @property
    def batch(self) -> int:
        if self.via == SOCKET:
            return SOCKET_BATCH
        return min(MAX_RUN, max(MIN_RUN, int(self.rate / RUNS_PER_SECOND)))

    @property
    def count(self) -> int:
        """The packet bound: what the rate gives over the duration, and a little slack."""
        return max(1, int(self.rate * self.duration * 1.05))

    def args(self) -> list[str]:
        return [
            "-i", self.iface, "-m", self.dst_mac, "-a", self.dst, "-p", str(self.port),
            "-s", self.source_base, "-k", str(self.source_count), "-r", f"{self.rate:g}",
            "-n", str(self.count), "-d", f"{self.duration:g}", "-b", str(self.batch),
            *(["-x", str(self.generator), "-H", HOLD_IFACE, "-B", str(DRIVER_FLUSH)]
              if self.via == DRIVER else []),
        ]  # fmt: skip


def check_via(via: str) -> None:
    if via not in FLOOD_VIAS:
        raise LabError(f"--flood-via: {' or '.join(FLOOD_VIAS)}, not {via!r}")


@dataclass(frozen=True)
class FloodSummary:
    seconds: float
    sent: int
    """Frames the server's end of the veth took."""
    errors: int
    """Frames the way refused (a full queue)."""
    generated: int


def parse_line(line: str) -> dict[str, Any] | None:
    """One line of the flooder's output; None for blank lines, LabError for garbage."""
    line = line.strip()
    if not line:
        return None
    try:
        obj = json.loads(line)
        if not isinstance(obj, dict) or "type" not in obj:
            raise ValueError("no type")
        return obj
    except ValueError as exc:
        raise LabError(f"flooder printed an unreadable line: {line[:80]!r}") from exc


def parse_summary(obj: dict[str, Any]) -> FloodSummary:
    try:
        return FloodSummary(float(obj["t"]), int(obj["sent"]), int(obj["errors"]),
                            int(obj.get("generated", obj["sent"])))  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise LabError(f"flooder summary unreadable: {obj!r}") from exc


def binary_path(cache: Path | None = None) -> Path:
    return compiled.output_path("felis.lab", SOURCE_NAME, "flood", cache)


def build(cache: Path | None = None, compiler: str | None = None) -> Path:
    """The compiled flooder; the flood phases need it (no Python stand-in can flood)."""
    cc = compiler or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise LabError("the flood phases need a C compiler (Debian: apt-get install gcc)")
    try:
        return compiled.build(
            "felis.lab",
            SOURCE_NAME,
            "flood",
            lambda src, out: [cc, "-O2", "-o", str(out), str(src), "-lbpf"],
            cache=cache,
            error=LabCommandError,
        )
    except LabCommandError as err:
        raise LabError(f"compiling {SOURCE_NAME} failed (it needs libbpf-dev): {err}") from None


def build_generator(cache: Path | None = None) -> Path:
    """Driver mode's frame generator, a BPF object."""
    try:
        return compiled.build_bpf("felis.lab", GENERATOR_NAME, "floodgen", cache=cache,
                                  error=LabCommandError, missing=LabError)  # fmt: skip
    except LabCommandError as err:
        raise LabError(f"compiling {GENERATOR_NAME} failed: {err}") from None


def add_hold_interface(netns: str) -> None:
    """Driver mode's parking place for the generator, made afresh (a crashed run may have left
    one; it carries nothing, so replacing it loses nothing)."""
    remove_hold_interface(netns)
    ns.run(["ip", "-n", netns, "link", "add", HOLD_IFACE, "type", "veth", "peer", "name",
            HOLD_PEER], timeout=10.0)  # fmt: skip


def remove_hold_interface(netns: str) -> None:
    ns.run(["ip", "-n", netns, "link", "delete", HOLD_IFACE], timeout=10.0, check=False)


@dataclass(frozen=True)
class LinkSettings:
    """What `nic_like` changes on one end of the veth pair, to put it back."""

    gro: bool
    rx_queues: int
    tx_queues: int


@contextlib.contextmanager
def nic_like(
    server_netns: str, client_netns: str, iface: str, queues: int | None = None
) -> Iterator[None]:
    """The veth pair set up like a server NIC for the duration, then as it was: one receive
    queue per core (RSS), and NAPI at the server's end.

    Driver-mode frames need NAPI at the receiving end: an XDP program turns it on, GRO does
    for the phases without one. A single-queue veth would put the clients' packets and the
    flood into one 256-frame ring that a busy core drains late; a NIC with XDP has a queue per
    core (docs/lab.md, "The flood phases"). `queues` overrides the count (the benchmark
    measures one queue to show why)."""
    if shutil.which("ethtool") is None:
        raise LabError("the driver-mode flood needs ethtool (Debian: apt-get install ethtool)")
    ends = {server_netns: True, client_netns: False}  # namespace → receiving end
    read = {netns: read_link(netns, iface) for netns in ends}
    try:
        for netns, receiving in ends.items():
            count = min(queues or os.cpu_count() or 1, read[netns][1])
            set_link(netns, iface, LinkSettings(gro=receiving, rx_queues=count,
                                                tx_queues=count))  # fmt: skip
        yield
    finally:
        for netns, (settings, _) in read.items():
            set_link(netns, iface, settings)


def _ethtool(netns: str, *argv: str) -> str:
    return ns.run(["ethtool", *argv], netns=netns, timeout=10.0).stdout


def read_link(netns: str, iface: str) -> tuple[LinkSettings, int]:
    """`iface`'s settings now, and the most queues it can have."""
    queues = _ethtool(netns, "-l", iface)
    rx, tx = channels(queues, "Current hardware settings")
    settings = LinkSettings(gro=gro_on(_ethtool(netns, "-k", iface)), rx_queues=rx, tx_queues=tx)
    return settings, min(channels(queues, "Pre-set maximums"))


def set_link(netns: str, iface: str, settings: LinkSettings) -> None:
    _ethtool(netns, "-K", iface, "gro", "on" if settings.gro else "off")
    _ethtool(netns, "-L", iface, "rx", str(settings.rx_queues), "tx", str(settings.tx_queues))


def gro_on(features: str) -> bool:
    """From `ethtool -k` output."""
    for line in features.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "generic-receive-offload":
            return value.split()[:1] == ["on"]
    raise LabError("ethtool -k shows no generic-receive-offload line")


def channels(text: str, section: str) -> tuple[int, int]:
    """RX and TX queue counts in one section of `ethtool -l` output."""
    found: dict[str, int] = {}
    inside = False
    for line in text.splitlines():
        if line.rstrip().endswith(":") and not line.startswith((" ", "\t")):
            inside = line.strip().rstrip(":") == section
            continue
        key, _, value = line.partition(":")
        if inside and key.strip() in ("RX", "TX") and value.strip().isdigit():
            found[key.strip()] = int(value)
    if set(found) != {"RX", "TX"}:
        raise LabError(f"ethtool -l shows no RX and TX counts under {section!r}")
    return found["RX"], found["TX"]


def link_mac(netns: str, iface: str) -> str:
    """The MAC address of `iface` inside `netns`."""
    out = ns.run(["ip", "-n", netns, "-j", "link", "show", "dev", iface], timeout=10.0).stdout
    try:
        (link,) = json.loads(out)
        return str(link["address"])
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(f"cannot read the MAC address of {iface} in {netns}") from exc


class Flooder:
    """A running flooder in the client namespace; `stop` ends it and keeps its summary."""

    def __init__(self, spec: FloodSpec, netns: str, binary: Path) -> None:
        self.spec = spec
        self.netns = netns
        self.summary: FloodSummary | None = None
        self.cpu_s = 0.0
        self._hold_removed = False
        if spec.via == DRIVER:
            add_hold_interface(netns)
        try:
            self._proc = sysexec.Process([str(binary), *spec.args()], netns=netns,
                                         error=LabCommandError)  # fmt: skip
        except BaseException:
            self._remove_hold()
            raise
        try:
            self._await_start()
        except BaseException:
            self.kill()
            raise

    def _remove_hold(self) -> None:
        if self.spec.via == DRIVER and not self._hold_removed:
            remove_hold_interface(self.netns)
            self._hold_removed = True

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _await_start(self) -> None:
        # The flooder prints its start line before anything else, or exits (closing the
        # pipe) on any setup error: either way the pipe becomes readable.
        stdout = self._proc.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], START_TIMEOUT)
        if not ready:
            raise LabError(f"the flooder did not start within {START_TIMEOUT:g} s")
        obj = parse_line(stdout.readline())
        if obj is None or obj.get("type") != "start":
            self._proc.wait(EXIT_TIMEOUT)
            err = sysexec.error_line(self._proc.error_output())
            raise LabError(f"the flooder did not start: {err or 'no output'}")

    def stop(self) -> FloodSummary | None:
        """End the flood now (SIGTERM; it prints its summary) and reap it; idempotent."""
        if self.summary is not None:
            return self.summary
        self.sample_cpu()
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGTERM)
        rc = self._proc.wait(EXIT_TIMEOUT)
        stdout = self._proc.stdout
        text = stdout.read() if rc is not None and stdout is not None else ""
        failed = rc not in (0, None)
        err = sysexec.error_line(self._proc.error_output()) if failed else ""
        self.kill()
        for line in text.splitlines():
            obj = parse_line(line)
            if obj is not None and obj.get("type") == "summary":
                self.summary = parse_summary(obj)
        if failed and self.summary is None:
            raise LabError(f"the flooder exited with {rc}: {err}")
        return self.summary

    def finish(self, timeout: float) -> FloodSummary | None:
        """Let it reach its own bound (count or duration), then read its summary."""
        self._proc.wait(timeout)
        return self.stop()

    def sample_cpu(self) -> None:
        """Remember the flooder's CPU time while it still runs (gone once reaped)."""
        self.cpu_s = max(self.cpu_s, proc_cpu(self._proc.pid))

    def kill(self) -> None:
        """End it without reading its output (cleanup on the way out); idempotent."""
        self._proc.stop(grace=2.0)
        self._remove_hold()


@dataclass(frozen=True)
class FloodRig:
    """What every flooded phase of a run shares: the flooder, where it sends, how hard."""

    binary: Path
    iface: str
    dst_mac: str
    dst: str
    port: int
    rate: float = DEFAULT_FLOOD_RATE
    via: str = DEFAULT_FLOOD_VIA
    generator: Path | None = None

    def spec(self, load_seconds: float) -> FloodSpec:
        # Past the load's own end (its drain waits up to the 3 s connection deadline), so
        # the whole load runs under the flood; the flood is stopped as soon as the load ends.
        return FloodSpec(iface=self.iface, dst_mac=self.dst_mac, dst=self.dst, port=self.port,
                         rate=self.rate, duration=load_seconds + 4.0, via=self.via,
                         generator=self.generator)  # fmt: skip


HOW_SENT = {
    DRIVER: "TCP SYN, BPF live frames into the veth's XDP transmit path (driver buffers, as "
    "from a NIC; GRO on at the server's end for NAPI)",
    SOCKET: "TCP SYN, AF_PACKET on the client's end of the veth pair",
}


def describe(rate: float, via: str = DEFAULT_FLOOD_VIA) -> dict[str, Any]:
    """What results.json records about the flood."""
    return {
        "rate_pps": rate,
        "via": via,
        "packets": HOW_SENT[via],
        "sources": f"{FLOOD_SOURCE_BASE} +{FLOOD_SOURCE_COUNT - 1} (spoofed)",
        "blocklist": BLOCKLIST,
        "policy": "dos-mitigation: doNotTrack, applyOnForward, ingress Deny from dos-deny-list",
    }


def xdp_dropped(netns: str, iface: str) -> int:
    """Packets felis' XDP program on `iface` has dropped so far (0 when none is attached)."""
    from felis.xdp.attach import XdpDataplane

    xdp = XdpDataplane(netns)
    attached = xdp.status(iface)
    return 0 if attached is None else sum(xdp.counters(attached).values())
