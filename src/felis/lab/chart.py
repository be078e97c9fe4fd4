"""The lab chart: conn/s, failures/s and conntrack occupancy over time, one line per phase."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from felis.lab.results import phase_names

CHART_NAME = "chart.png"
MIN_INTERVAL_S = 0.5
COLORS = {"stateful": "#d62728", "donottrack": "#2ca02c", "baseline": "#7f7f7f"}


@dataclass(frozen=True)
class Series:
    phase: str
    t: list[float]
    conn_per_s: list[float]
    failures_total: list[int]  # cumulative: timeouts come in waves, a running total reads better
    conntrack: list[int]
    conntrack_max: int


def chart_series(doc: Mapping[str, Any]) -> list[Series]:
    """Per phase, the per-second values the chart draws (rates from counts per interval)."""
    out = []
    for name in phase_names(doc):
        phase = doc[name]
        t: list[float] = []
        conn: list[float] = []
        fail: list[int] = []
        ct: list[int] = []
        prev_t = 0.0
        failed_total = 0
        for s in phase.get("series", []):
            dt = s["t"] - prev_t
            prev_t = s["t"]
            failed_total += s["failed"] + s["timed_out"]
            if dt < MIN_INTERVAL_S:
                # The drain after the load ends is a short partial interval: as a rate it
                # would show as a spike. Its failures still count in the running total.
                if fail:
                    fail[-1] = failed_total
                continue
            t.append(s["t"])
            conn.append(s["completed"] / dt)
            fail.append(failed_total)
            ct.append(s["conntrack_count"])
        out.append(Series(name, t, conn, fail, ct, int(phase.get("conntrack_max", 0))))
    return out


def render_chart(doc: Mapping[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = chart_series(doc)
    meta = doc.get("meta", {})
    fig, axes = plt.subplots(3, 1, figsize=(11, 10), sharex=True, constrained_layout=True)
    ax_conn, ax_fail, ax_ct = axes
    for s in series:
        color = COLORS.get(s.phase)
        p = doc[s.phase]
        label = (
            f"{s.phase}: {p['conn_per_s']:.0f} conn/s, {p['connections_failed']} failed, "
            f"peak {p['conntrack_peak']} entries"
        )
        ax_conn.plot(s.t, s.conn_per_s, color=color, lw=2, marker="o", ms=3, label=label)
        ax_fail.plot(s.t, s.failures_total, color=color, lw=2, marker="o", ms=3, label=s.phase)
        ax_ct.plot(s.t, s.conntrack, color=color, lw=2.5, marker="o", ms=3, label=s.phase, zorder=3)
    maxes = sorted({s.conntrack_max for s in series if s.conntrack_max})
    for m in maxes:
        ax_ct.axhline(m, color="black", ls=":", lw=1, zorder=1)
        ax_ct.annotate(
            f"nf_conntrack_max = {m}",
            xy=(0, m),
            xycoords=("axes fraction", "data"),
            xytext=(4, -12),
            textcoords="offset points",
            fontsize=9,
        )
    ax_conn.set_ylabel("completed connections / s")
    ax_conn.set_title("Throughput: connect → memcached request → reply → close")
    ax_conn.legend(loc="lower right", fontsize=9)
    ax_fail.set_ylabel("failed connections (total)")
    ax_fail.set_title("Failed connections so far (error, or not done within 3 s)")
    ax_fail.legend(loc="upper left", fontsize=9)
    ax_ct.set_ylabel("entries in server namespace")
    ax_ct.set_title("Conntrack table occupancy (memcached-node-1)")
    ax_ct.set_xlabel("seconds since the phase's load started")
    ax_ct.legend(loc="center right", fontsize=9)
    top = max([*(max(s.conntrack, default=0) for s in series), *maxes, 1])
    fail_top = max([*(max(s.failures_total, default=0) for s in series), 1])
    # A little room below zero, so phases that stay at 0 show as a line, not as the axis.
    ax_ct.set_ylim(-0.04 * top, top * 1.12)
    ax_fail.set_ylim(-0.04 * fail_top, fail_top * 1.15)
    conn_top = max([*(max(s.conn_per_s, default=0) for s in series), 1])
    ax_conn.set_ylim(-0.03 * conn_top, conn_top * 1.12)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_xlim(left=0)
    fig.suptitle(
        f"felis lab — conntrack exhaustion and doNotTrack "
        f"(backend {meta.get('backend', '?')}, {meta.get('phase_seconds', '?')} s per phase, "
        f"load generator: {meta.get('loadgen', '?')})",
        fontsize=12,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
