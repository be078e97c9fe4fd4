"""The lab chart: conn/s, failures/s and conntrack occupancy over time, one line per phase.

With several rounds, a fourth panel shows the within-round ratios of conn/s and their medians;
the time panels then show each phase's first round (every run starts from an empty table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from felis.errors import FelisError
from felis.lab.results import phase_names, round_count

CHART_NAME = "chart.png"
MIN_INTERVAL_S = 0.5
COLORS = {
    "stateful": "#d62728",
    "donottrack": "#2ca02c",
    "handwritten": "#1f77b4",
    "baseline": "#7f7f7f",
    "noflood": "#17becf",
    "flood-xdp": "#ff7f0e",
    "flood-raw": "#8c564b",
}
# How the title names each phase.
TITLES = {
    "stateful": "stateful firewall",
    "donottrack": "felis doNotTrack",
    "handwritten": "hand-written rules",
    "baseline": "no rules",
    "noflood": "blocklist, no flood",
    "flood-xdp": "SYN flood, blocklist in XDP",
    "flood-raw": "SYN flood, blocklist in raw",
}
RATIO_COLORS = {
    "donottrack/handwritten": "#2ca02c",
    "donottrack/baseline": "#9467bd",
    "handwritten/baseline": "#1f77b4",
    "flood-xdp/noflood": "#ff7f0e",
    "flood-raw/noflood": "#8c564b",
    "flood-xdp/flood-raw": "#e377c2",
}
# Phases whose conntrack line stays at 0 (nothing on 12211 is tracked).
UNTRACKED = ("donottrack", "handwritten", "baseline", "noflood", "flood-xdp", "flood-raw")


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


@dataclass(frozen=True)
class RatioSeries:
    name: str  # "donottrack/handwritten"
    rounds: list[int]
    values: list[float]
    median: float | None


def ratio_series(doc: Mapping[str, Any]) -> list[RatioSeries]:
    """Per ratio, its value in each round (rounds where it is undefined are left out)."""
    rounds = doc.get("rounds", {})
    out = []
    for name, med in rounds.get("median", {}).get("ratios", {}).items():
        found = [
            (r["round"], float(r["ratios"][name]))
            for r in rounds.get("per_round", [])
            if r["ratios"].get(name) is not None
        ]
        out.append(RatioSeries(name, [n for n, _ in found], [v for _, v in found], med))
    return out


def _plot_ratios(ax: Any, doc: Mapping[str, Any]) -> None:
    for rs in ratio_series(doc):
        color = RATIO_COLORS.get(rs.name)
        label = rs.name + (f" (median {rs.median:.3f})" if rs.median is not None else "")
        ax.plot(rs.rounds, rs.values, color=color, marker="o", lw=1.8, label=label)
        if rs.median is not None:
            ax.axhline(rs.median, color=color, ls="--", lw=1.0)
    ax.axhline(1.0, color="black", ls=":", lw=1.0)
    ax.set_xticks(range(1, round_count(doc) + 1))
    ax.set_xlabel("round (phases interleaved, each round starting one phase later)")
    ax.set_ylabel("conn/s ratio")
    ax.set_title("Ratios of conn/s within each round; dashed: the median over rounds")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9)


def render_chart(doc: Mapping[str, Any], path: Path) -> Path:
    try:
        import matplotlib
    except ImportError as missing:  # the optional extra: results and report need none of it
        raise FelisError(
            f"the lab's chart needs felis' lab extra (pip install 'felis[lab]'): {missing}"
        ) from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    series = chart_series(doc)
    meta = doc.get("meta", {})
    rounds = round_count(doc)
    if rounds > 1:
        fig, all_axes = plt.subplots(4, 1, figsize=(11, 14), constrained_layout=True)
        axes, ax_ratio = all_axes[:3], all_axes[3]
        # The three time panels share their axis; the ratio panel counts rounds.
        for ax in axes[1:]:
            ax.sharex(axes[0])
        for ax in axes[:2]:
            ax.tick_params(labelbottom=False)
        _plot_ratios(ax_ratio, doc)
    else:
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
    at_zero = [s.phase for s in series if s.phase in UNTRACKED]
    names = " and ".join([", ".join(at_zero[:-1]), at_zero[-1]] if len(at_zero) > 2 else at_zero)
    stay = f" ({names} stay{'s' if len(at_zero) == 1 else ''} at 0)"
    ax_ct.set_title("Conntrack table in the server namespace" + (stay if at_zero else ""))
    ax_ct.set_xlabel(
        "seconds since the phase's load started (each phase ran on its own)"
        + (f"; round 1 of {rounds}" if rounds > 1 else "")
    )
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
    compared = " vs ".join(TITLES.get(s.phase, s.phase) for s in series)
    fig.suptitle(
        f"felis lab: {compared}, same memcached load\n"
        f"backend {meta.get('backend', '?')}, {meta.get('phase_seconds', '?'):g} s per phase"
        + (f" × {rounds} rounds" if rounds > 1 else "")
        + f", {table}, load generator: {meta.get('loadgen', '?')}",
        fontsize=12,
    )
    fig.legend(handles=handles, loc="outside lower center", ncols=1, fontsize=10, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
