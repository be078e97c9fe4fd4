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


STYLES = {"baseline": "--"}  # dashed, so a line at 0 drawn over another at 0 shows both


def _legend_label(name: str, phase: Mapping[str, Any]) -> str:
    return (
        f"{name}: {phase['conn_per_s']:,.0f} conn/s avg, {phase['connections_failed']:,} failed, "
        f"conntrack peak {phase['conntrack_peak']:,}"
    )


def render_chart(doc: Mapping[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    series = chart_series(doc)
    meta = doc.get("meta", {})
    fig, axes = plt.subplots(3, 1, figsize=(11, 10.5), sharex=True, constrained_layout=True)
    ax_conn, ax_fail, ax_ct = axes
    handles = []
    for s in series:
        style = {
            "color": COLORS.get(s.phase),
            "ls": STYLES.get(s.phase, "-"),
            "lw": 2.2,
            "marker": "o",
            "ms": 3,
        }
        (line,) = ax_conn.plot(
            s.t, s.conn_per_s, label=_legend_label(s.phase, doc[s.phase]), **style
        )
        handles.append(line)
        ax_fail.plot(s.t, s.failures_total, **style)
        ax_ct.plot(s.t, s.conntrack, zorder=3, **style)
    end = max((max(s.t, default=0.0) for s in series), default=0.0)
    st = doc.get("stateful")
    full_at = st.get("table_full_after_s") if st else None
    if full_at is not None and end > full_at:
        # The blackout, shaded on every panel so cause (table full) and effect line up.
        for ax in axes:
            ax.axvspan(full_at, end, color=COLORS["stateful"], alpha=0.07, lw=0)
        # Text in the middle of the shaded span, low, where only stateful's line (at 0) runs.
        mid = (full_at + end) / 2
        conn_peak = max([*(max(s.conn_per_s, default=0) for s in series), 1])
        ax_conn.annotate(
            "stateful: conntrack table full → every new connection is dropped",
            xy=(mid, 0),
            xytext=(mid, 0.2 * conn_peak),
            ha="center",
            color=COLORS["stateful"],
            fontsize=10,
            arrowprops={"arrowstyle": "->", "color": COLORS["stateful"]},
        )
    maxes = sorted({s.conntrack_max for s in series if s.conntrack_max})
    for m in maxes:
        ax_ct.axhline(m, color="black", ls=":", lw=1.2, zorder=1)
        ax_ct.annotate(
            f"table limit nf_conntrack_max = {m:,}",
            xy=(1, m),
            xycoords=("axes fraction", "data"),
            xytext=(-6, 5),
            textcoords="offset points",
            ha="right",
            fontsize=9,
        )
    thousands = FuncFormatter(lambda v, _pos: f"{v / 1000:.0f}k" if abs(v) >= 1000 else f"{v:.0f}")
    ax_conn.yaxis.set_major_formatter(thousands)
    ax_ct.yaxis.set_major_formatter(thousands)
    ax_conn.set_ylabel("connections / s")
    ax_conn.set_title("Throughput: completed connect → memcached get → reply → close, per second")
    ax_fail.set_ylabel("failed (running total)")
    ax_fail.set_title("Failed connections so far (error, or not done within 3 s)")
    ax_ct.set_ylabel("entries")
    ax_ct.set_title("Conntrack table in the server namespace (donottrack and baseline stay at 0)")
    ax_ct.set_xlabel("seconds since the phase's load started (each phase ran on its own)")
    top = max([*(max(s.conntrack, default=0) for s in series), *maxes, 1])
    fail_top = max([*(max(s.failures_total, default=0) for s in series), 1])
    conn_top = max([*(max(s.conn_per_s, default=0) for s in series), 1])
    # A little room below zero, so phases that stay at 0 show as a line, not as the axis.
    ax_ct.set_ylim(-0.04 * top, top * 1.15)
    ax_fail.set_ylim(-0.04 * fail_top, fail_top * 1.15)
    ax_conn.set_ylim(-0.03 * conn_top, conn_top * 1.15)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_xlim(left=0)
    setting = meta.get("conntrack_max_setting")
    table = f"table lowered to {setting:,} entries" if setting else "the machine's own table size"
    fig.suptitle(
        "felis lab: stateful firewall vs felis doNotTrack vs no rules, same memcached load\n"
        f"backend {meta.get('backend', '?')}, {meta.get('phase_seconds', '?'):g} s per phase, "
        f"{table}, load generator: {meta.get('loadgen', '?')}",
        fontsize=12,
    )
    fig.legend(handles=handles, loc="outside lower center", ncols=1, fontsize=10, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
