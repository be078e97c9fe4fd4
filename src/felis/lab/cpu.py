"""Whole-box CPU time from /proc/stat, for CPU per connection.

Packet processing runs in softirq and is charged to no process, and client, server and kernel
share the box, so the honest per-connection figure is the whole box's busy time over the
connections completed in the same interval.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROC_STAT = Path("/proc/stat")


class CpuTimes(NamedTuple):
    """Seconds since boot, summed over CPUs."""

    busy: float
    total: float
    softirq: float


def parse_cpu_line(line: str, clk_tck: int = CLK_TCK) -> CpuTimes:
    """The aggregate `cpu` line of /proc/stat."""
    fields = [int(x) for x in line.split()[1:]]
    # user nice system idle iowait irq softirq steal (guest is already inside user)
    total = sum(fields[:8])
    idle = fields[3] + fields[4]
    return CpuTimes((total - idle) / clk_tck, total / clk_tck, fields[6] / clk_tck)


def cpu_times(path: Path = PROC_STAT) -> CpuTimes:
    return parse_cpu_line(path.read_text().split("\n", 1)[0])


def us_per_conn(busy_s: float, connections: int) -> float | None:
    """Microseconds of busy CPU per completed connection; None when nothing completed."""
    return 1e6 * busy_s / connections if connections > 0 else None


def proc_cpu(pid: int | None) -> float:
    """user + system seconds of one process (0 when it is gone or unknown)."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    rest = stat.rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK
