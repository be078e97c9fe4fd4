"""The flood phases: a SYN flood from blocklisted sources while the clients run their load.

Calico's DoS defence is an untracked, applyOnForward ingress policy that denies sources
selected from a GlobalNetworkSet blocklist; felis drops those sources in XDP where it can
(docs/xdp.md). Three phases measure what that buys under the same legitimate load:

* `noflood`: the defended host at peace, the blocklist programmed with XDP, no flood;
* `flood-xdp`: the same rules, the flood running, the blocklist dropped in XDP;
* `flood-raw`: the same rules programmed with `--no-xdp`, so the raw table drops the flood.

`--phases flood` stands for all three, in that order. The flood comes from `flood.c` (package
data, compiled on first use like the load generator): spoofed SYNs to memcached's port from
sources in `BLOCKLIST`, sent with AF_PACKET on the client's end of the veth pair and addressed
to the server end's MAC, so the frames go nowhere else. It is paced to a fixed packet rate and
bounded by a count and a duration, and it stops by itself.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import select
import shutil
import signal
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
    batch: int = 64

    def __post_init__(self) -> None:
        require_lab_address(self.dst)
        require_lab_address(self.source_base, "flood source")
        last = str(ipaddress.IPv4Address(self.source_base) + max(self.source_count - 1, 0))
        require_lab_address(last, "last flood source")
        if self.dst.startswith("127."):
            raise LabError("the flood goes to the lab's server namespace, never to loopback")
        if self.rate <= 0 or self.duration <= 0 or not 1 <= self.source_count <= 65536:
            raise LabError("flood: rate, duration and source count must be positive")

    @property
    def count(self) -> int:
        """The packet bound: what the rate gives over the duration, and a little slack."""
        return max(1, int(self.rate * self.duration * 1.05))

    def args(self) -> list[str]:
        return [
            "-i", self.iface, "-m", self.dst_mac, "-a", self.dst, "-p", str(self.port),
            "-s", self.source_base, "-k", str(self.source_count), "-r", f"{self.rate:g}",
            "-n", str(self.count), "-d", f"{self.duration:g}", "-b", str(self.batch),
        ]  # fmt: skip


@dataclass(frozen=True)
class FloodSummary:
    seconds: float
    sent: int
    errors: int


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
        return FloodSummary(float(obj["t"]), int(obj["sent"]), int(obj["errors"]))
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
            lambda src, out: [cc, "-O2", "-o", str(out), str(src)],
            cache=cache,
            error=LabCommandError,
        )
    except LabCommandError as err:
        raise LabError(f"compiling {SOURCE_NAME} failed: {err}") from None


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
        self.summary: FloodSummary | None = None
        self.cpu_s = 0.0
        self._proc = sysexec.Process([str(binary), *spec.args()], netns=netns,
                                     error=LabCommandError)  # fmt: skip
        try:
            self._await_start()
        except BaseException:
            self._proc.stop(grace=2.0)
            raise

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
        self._proc.stop(grace=2.0)
        for line in text.splitlines():
            obj = parse_line(line)
            if obj is not None and obj.get("type") == "summary":
                self.summary = parse_summary(obj)
        if failed and self.summary is None:
            raise LabError(f"the flooder exited with {rc}: {err}")
        return self.summary

    def sample_cpu(self) -> None:
        """Remember the flooder's CPU time while it still runs (gone once reaped)."""
        self.cpu_s = max(self.cpu_s, proc_cpu(self._proc.pid))

    def kill(self) -> None:
        """End it without reading its output (cleanup on the way out); idempotent."""
        self._proc.stop(grace=2.0)


@dataclass(frozen=True)
class FloodRig:
    """What every flooded phase of a run shares: the flooder, where it sends, how hard."""

    binary: Path
    iface: str
    dst_mac: str
    dst: str
    port: int
    rate: float = DEFAULT_FLOOD_RATE

    def spec(self, load_seconds: float) -> FloodSpec:
        # Past the load's own end (its drain waits up to the 3 s connection deadline), so
        # the whole load runs under the flood; the flood is stopped as soon as the load ends.
        return FloodSpec(iface=self.iface, dst_mac=self.dst_mac, dst=self.dst, port=self.port,
                         rate=self.rate, duration=load_seconds + 4.0)  # fmt: skip


def describe(rate: float) -> dict[str, Any]:
    """What results.json records about the flood."""
    return {
        "rate_pps": rate,
        "packets": "TCP SYN, AF_PACKET on the client's end of the veth pair",
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
