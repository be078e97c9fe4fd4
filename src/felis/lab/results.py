"""Results of a lab run: per-second samples, per-phase totals, results.json (pure).

results.json has one object per phase name (`stateful`, `donottrack`, `handwritten`,
`baseline`), `meta` and `rounds`:
```
{"meta": {"phases": [...], "backend": ..., "phase_seconds": ..., "rounds": ..., ...},
 "stateful": {"conn_per_s": ..., "connections_ok": ..., "connections_failed": ...,
              "conntrack_peak": ..., "conntrack_max": ..., "kernel_drops": ...,
              "cpu_us_per_conn": ..., "series": [...]},
 ...,
 "rounds": {"count": ..., "per_round": [...], "median": {...}, "connections_failed": {...}}}
```
With several rounds a phase object sums its runs (see `combine_runs`); each run is kept whole in
`rounds.per_round`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from felis.lab.cpu import us_per_conn
from felis.lab.flood import DEFAULT_FLOOD_VIA
from felis.lab.rounds import median, rounds_section

RESULTS_NAME = "results.json"


@dataclass(frozen=True)
class Sample:
    """One second of one phase: load-generator counters plus the conntrack table."""

    t: float  # seconds since the phase's load started
    completed: int
    failed: int
    timed_out: int
    syn_retrans: int
    p50_us: int
    p99_us: int
    conntrack_count: int
    kernel_drops: int  # `conntrack -S` drop since the phase started


@dataclass
class FloodFigures:
    """What the flood did in one run of a flood phase (felis.lab.flood)."""

    rate_pps: float  # the rate asked for; 0 in `noflood`
    sent: int = 0  # frames the server's end took
    errors: int = 0  # frames the way refused (a full queue)
    generated: int = 0  # frames the flooder made
    seconds: float = 0.0
    flooder_cpu_s: float = 0.0  # the flooder process itself (user + system)
    xdp_mode: str | None = None  # the server interface's XDP mode, None when none attached
    xdp_dropped: int = 0  # packets felis' XDP program counted as dropped
    via: str = DEFAULT_FLOOD_VIA  # how the flooder sent (felis.lab.flood.FLOOD_VIAS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate_pps": self.rate_pps,
            "via": self.via,
            "sent": self.sent,
            "generated": self.generated,
            "sent_pps": round(self.sent / self.seconds, 1) if self.seconds > 0 else 0.0,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "flooder_cpu_s": round(self.flooder_cpu_s, 3),
            "xdp_mode": self.xdp_mode,
            "xdp_dropped": self.xdp_dropped,
        }


def combine_flood(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The flood figures of several runs: counts and seconds summed, the rate recomputed."""
    out = dict(runs[0])
    for key in ("sent", "errors", "generated", "xdp_dropped"):
        out[key] = sum(r.get(key, 0) for r in runs)
    for key in ("seconds", "flooder_cpu_s"):
        out[key] = round(sum(r[key] for r in runs), 3)
    out["sent_pps"] = round(out["sent"] / out["seconds"], 1) if out["seconds"] > 0 else 0.0
    modes = {r["xdp_mode"] for r in runs}
    # A run without XDP among runs with it must show, not be hidden behind the first's mode.
    out["xdp_mode"] = runs[0]["xdp_mode"] if len(modes) == 1 else "/".join(sorted(map(str, modes)))
    return out


@dataclass
class PhaseResult:
    name: str
    backend: str | None
    conntrack_max: int
    duration_s: float = 0.0
    connections_ok: int = 0
    failed: int = 0
    timed_out: int = 0
    syn_retransmits: int = 0
    p50_us: int = 0
    p99_us: int = 0
    kernel_drops: int = 0
    early_drop: int = 0
    insert_failed: int = 0
    entries_port_end: int = 0
    leftover_rules: int = 0
    cpu_busy_s: float = 0.0  # whole box, /proc/stat, while the load ran
    # The server's share: memcached's own CPU, and the box's softirq time, where the kernel
    # receives packets (on a veth pair it cannot be split between the two ends).
    memcached_cpu_s: float = 0.0
    softirq_s: float = 0.0
    # Segments the clients retransmitted: legitimate packets lost on the way to the server.
    tcp_retrans_segs: int = 0
    round: int = 1
    samples: list[Sample] = field(default_factory=list)
    flood: FloodFigures | None = None

    @property
    def server_cpu_s(self) -> float:
        return self.memcached_cpu_s + self.softirq_s

    @property
    def connections_failed(self) -> int:
        """Everything that did not complete: errors and timeouts (3 s deadline)."""
        return self.failed + self.timed_out

    @property
    def conn_per_s(self) -> float:
        return self.connections_ok / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def conntrack_peak(self) -> int:
        return max((s.conntrack_count for s in self.samples), default=0)

    def _first_full(self) -> int | None:
        for i, s in enumerate(self.samples):
            if self.conntrack_max and s.conntrack_count >= self.conntrack_max:
                return i
        return None

    @property
    def table_full_after_s(self) -> float | None:
        """When the table was first seen full (1 s sampling: an upper bound); None if never."""
        i = self._first_full()
        return None if i is None else self.samples[i].t

    @property
    def conn_per_s_before_full(self) -> float | None:
        """The rate while the table still had room: what the phase ran at before the blackout.

        Only whole seconds before the first full sample count, since that sample is partly
        blacked out already; None when the table never filled or filled within the first second.
        """
        i = self._first_full()
        if not i:
            return None
        t = self.samples[i - 1].t
        return sum(s.completed for s in self.samples[:i]) / t if t > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "conn_per_s": round(self.conn_per_s, 1),
            "connections_ok": self.connections_ok,
            "connections_failed": self.connections_failed,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "syn_retransmits": self.syn_retransmits,
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "conntrack_peak": self.conntrack_peak,
            "conntrack_max": self.conntrack_max,
            "kernel_drops": self.kernel_drops,
            "early_drop": self.early_drop,
            "insert_failed": self.insert_failed,
            "entries_12211_end": self.entries_port_end,
            "table_full_after_s": self.table_full_after_s,
            "conn_per_s_before_full": _round(self.conn_per_s_before_full),
            "leftover_rules": self.leftover_rules,
            "duration_s": round(self.duration_s, 3),
            "cpu_busy_s": round(self.cpu_busy_s, 3),
            "cpu_us_per_conn": _round(us_per_conn(self.cpu_busy_s, self.connections_ok)),
            "tcp_retrans_segs": self.tcp_retrans_segs,
            "memcached_cpu_s": round(self.memcached_cpu_s, 3),
            "softirq_s": round(self.softirq_s, 3),
            "server_cpu_s": round(self.server_cpu_s, 3),
            "server_cpu_us_per_conn": _round(us_per_conn(self.server_cpu_s, self.connections_ok)),
            "backend": self.backend,
            **({"flood": self.flood.to_dict()} if self.flood is not None else {}),
            "series": [asdict(s) for s in self.samples],
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


# How a phase's runs add up over rounds: counts are summed, and for these the worst run stands.
SUMMED = (
    "connections_ok", "connections_failed", "failed", "timed_out", "syn_retransmits",
    "kernel_drops", "early_drop", "insert_failed", "leftover_rules",
)  # fmt: skip
WORST = ("p50_us", "p99_us", "conntrack_peak", "conntrack_max", "entries_12211_end")


def combine_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One phase object for all of a phase's runs (a single run is returned as it is).

    Rates are recomputed from the sums. Each run starts from an empty conntrack table, so the
    runs cannot be joined into one time line: `series` is the first run's, and
    `table_full_after_s` the earliest fill of any run.
    """
    out = dict(runs[0])
    if len(runs) == 1:
        return out
    for key in SUMMED:
        out[key] = sum(r[key] for r in runs)
    for key in WORST:
        out[key] = max(r[key] for r in runs)
    duration = sum(r["duration_s"] for r in runs)
    busy = sum(r["cpu_busy_s"] for r in runs)
    out["duration_s"] = round(duration, 3)
    out["conn_per_s"] = round(out["connections_ok"] / duration, 1) if duration > 0 else 0.0
    out["cpu_busy_s"] = round(busy, 3)
    out["cpu_us_per_conn"] = _round(us_per_conn(busy, out["connections_ok"]))
    if all("server_cpu_s" in r for r in runs):
        out["tcp_retrans_segs"] = sum(r.get("tcp_retrans_segs", 0) for r in runs)
        for key in ("memcached_cpu_s", "softirq_s", "server_cpu_s"):
            out[key] = round(sum(r[key] for r in runs), 3)
        out["server_cpu_us_per_conn"] = _round(
            us_per_conn(out["server_cpu_s"], out["connections_ok"])
        )
    if all("flood" in r for r in runs):
        out["flood"] = combine_flood([r["flood"] for r in runs])
    fills = [r["table_full_after_s"] for r in runs if r["table_full_after_s"] is not None]
    out["table_full_after_s"] = min(fills, default=None)
    out["conn_per_s_before_full"] = _round(median(r["conn_per_s_before_full"] for r in runs))
    return out


def results_document(runs: Sequence[PhaseResult], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The results document from every run, in the order they ran (rounds one after another)."""
    names = list(dict.fromkeys(r.name for r in runs))
    dicts = [(r.round, r.name, r.to_dict()) for r in runs]
    doc: dict[str, Any] = {"meta": {**meta, "phases": names}}
    for name in names:
        doc[name] = combine_runs([d for _, n, d in dicts if n == name])
    doc["rounds"] = rounds_section(dicts)
    return doc


def write_results(directory: Path, doc: Mapping[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / RESULTS_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def phase_names(doc: Mapping[str, Any]) -> list[str]:
    names = doc.get("meta", {}).get("phases")
    if isinstance(names, list):
        return [str(n) for n in names if n in doc]
    return [k for k in doc if k not in {"meta", "rounds"}]


def round_count(doc: Mapping[str, Any]) -> int:
    return int(doc.get("rounds", {}).get("count", 1))


def _n(x: Any) -> str:
    return f"{round(float(x)):,}"


def _ms(us: Any) -> str:
    return f"{float(us) / 1000:.1f}"


def _full_after(x: Any) -> str:
    return "never" if x is None else f"{float(x):.0f} s"


# The comparison table is laid out with one column per phase and one row per measure, so it
# stays readable in an 80-column terminal (three phases fit; ten measures side by side did not).
MEASURES: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("conn/s (average)", "conn_per_s", _n),
    ("connections ok", "connections_ok", _n),
    ("connections failed", "connections_failed", _n),
    ("p99 latency (ms)", "p99_us", _ms),
    ("conntrack peak", "conntrack_peak", _n),
    ("conntrack max", "conntrack_max", _n),
    ("table full after", "table_full_after_s", _full_after),
    ("kernel drops", "kernel_drops", _n),
    ("12211 entries at end", "entries_12211_end", _n),
)


def _opt(fmt: Callable[[Any], str]) -> Callable[[Any], str]:
    return lambda x: "–" if x is None else fmt(x)


# With several rounds, the medians over rounds (the per-round figures are in their own table).
ROUND_MEASURES: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("conn/s (median round)", "conn_per_s", _opt(_n)),
    ("CPU µs/conn (median)", "cpu_us_per_conn", _opt(_n)),
)


def _flood_value(key: str, fmt: Callable[[Any], str]) -> Callable[[Mapping[str, Any]], str]:
    def cell(phase: Mapping[str, Any]) -> str:
        flood = phase.get("flood")
        return "–" if flood is None else fmt(flood.get(key))

    return cell


# Added when a flood phase ran: what the flood was and where it was dropped.
FLOOD_MEASURES: tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...] = (
    ("server CPU µs/conn", lambda p: _opt(_n)(p.get("server_cpu_us_per_conn"))),
    ("client TCP retransmits", lambda p: _opt(_n)(p.get("tcp_retrans_segs"))),
    ("flood sent (pkt/s)", _flood_value("sent_pps", _opt(_n))),
    ("XDP drops", _flood_value("xdp_dropped", _opt(_n))),
    ("XDP mode", _flood_value("xdp_mode", lambda x: "none" if x is None else str(x))),
)


def has_flood(doc: Mapping[str, Any]) -> bool:
    return any("flood" in doc[name] for name in phase_names(doc))


def comparison_rows(doc: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The comparison table as text: the header (phase names) and one row per measure."""
    names = phase_names(doc)
    rows = []
    for label, key, fmt in MEASURES:
        rows.append([label, *(fmt(doc[name].get(key, 0)) for name in names)])
    flood = has_flood(doc)
    if flood:
        for label, cell in FLOOD_MEASURES:
            rows.append([label, *(cell(doc[name]) for name in names)])
    if round_count(doc) > 1:
        medians = doc["rounds"]["median"]
        measures = ROUND_MEASURES
        if flood:
            measures += (("server µs/conn (median)", "server_cpu_us_per_conn", _opt(_n)),)
        for label, key, fmt in measures:
            rows.append([label, *(fmt(medians.get(key, {}).get(name)) for name in names)])
    return ["", *names], rows


_ratio = _opt(lambda x: f"{float(x):.3f}")


def rounds_rows(doc: Mapping[str, Any]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The per-round tables as text, by title: conn/s and CPU per phase, and the ratios.

    Each has one row per round and a last row of medians; split in two so each fits an
    80-column terminal.
    """
    rounds = doc["rounds"]
    names = phase_names(doc)
    per_round = rounds["per_round"]

    def cell(conn: Any, cpu: Any) -> str:
        return f"{_opt(_n)(conn)} · {_opt(_n)(cpu)}"

    values = [
        [str(r["round"]), *(
            cell(r["phases"][n]["conn_per_s"], r["phases"][n]["cpu_us_per_conn"])
            if n in r["phases"] else "–"
            for n in names
        )]
        for r in per_round
    ]  # fmt: skip
    med = rounds["median"]
    values.append(
        ["median", *(cell(med["conn_per_s"].get(n), med["cpu_us_per_conn"].get(n)) for n in names)]
    )
    keys = list(med["ratios"])
    ratios = [[str(r["round"]), *(_ratio(r["ratios"].get(k)) for k in keys)] for r in per_round]
    ratios.append(["median", *(_ratio(med["ratios"][k]) for k in keys)])
    return {
        "rounds: conn/s · CPU µs/conn (whole box)": (["round", *names], values),
        # Wrapped after the slash: the full names, without widening the table.
        "rounds: conn/s ratios": (
            ["round", *(k.replace("/", "/\n") for k in keys)],
            ratios,
        ),
    }


@dataclass(frozen=True)
class Check:
    """One outcome the demo is meant to show; `required` ones decide the verdict."""

    ok: bool
    text: str
    required: bool = True


def _k(rate: float) -> str:
    return f"{rate / 1000:.1f}k"


def checks(doc: Mapping[str, Any]) -> list[Check]:
    """The acceptance outcomes, each with a plain-language sentence (for the phases present)."""
    out: list[Check] = []
    st, dnt, base = doc.get("stateful"), doc.get("donottrack"), doc.get("baseline")
    if st:
        full = st["conntrack_max"] > 0 and st["conntrack_peak"] >= st["conntrack_max"]
        ok = full and st["connections_failed"] > 0 and st["kernel_drops"] > 0
        if full:
            when = st.get("table_full_after_s")
            text = (
                f"stateful: the conntrack table filled ({_n(st['conntrack_peak'])}/"
                f"{_n(st['conntrack_max'])} entries{f' within {when:.0f} s' if when else ''}); "
                f"then the kernel dropped new connections ({_n(st['kernel_drops'])} drops) "
                f"and {_n(st['connections_failed'])} connections failed."
            )
        else:
            text = (
                f"stateful: the table did NOT fill ({_n(st['conntrack_peak'])}/"
                f"{_n(st['conntrack_max'])}); lower --conntrack-max or lengthen --phase-seconds."
            )
        out.append(Check(ok, text))
    if dnt:
        ok = dnt["connections_failed"] == 0 and dnt["entries_12211_end"] == 0
        out.append(
            Check(
                ok,
                f"donottrack: {_n(dnt['connections_failed'])} failed connections, "
                f"{_n(dnt['entries_12211_end'])} conntrack entries for port 12211 "
                f"(table peak {_n(dnt['conntrack_peak'])}).",
            )
        )
    hand = doc.get("handwritten")
    if hand:
        out.append(
            Check(
                hand["connections_failed"] == 0 and hand["entries_12211_end"] == 0,
                f"handwritten (the reference ruleset): {_n(hand['connections_failed'])} failed "
                f"connections, {_n(hand['entries_12211_end'])} conntrack entries for port 12211.",
            )
        )
    if st and dnt:
        before = st.get("conn_per_s_before_full")
        note = f"; stateful ran at {_k(before)} only until its table filled" if before else ""
        out.append(
            Check(
                dnt["conn_per_s"] >= st["conn_per_s"],
                f"throughput: donottrack {_k(dnt['conn_per_s'])} conn/s "
                f"{'≥' if dnt['conn_per_s'] >= st['conn_per_s'] else '<'} stateful "
                f"{_k(st['conn_per_s'])} conn/s (averages{note}).",
            )
        )
    if base:
        others = [doc[n] for n in ("donottrack", "stateful", "handwritten") if n in doc]
        top = max((p["conn_per_s"] for p in others), default=0.0)
        text = f"baseline (no rules): {_k(base['conn_per_s'])} conn/s, the machine's ceiling"
        within = doc.get("rounds", {}).get("median", {}).get("ratios", {})
        if round_count(doc) > 1 and within.get("donottrack/baseline") is not None:
            text += (
                f"; donottrack reached {within['donottrack/baseline']:.2f} of it "
                f"(median of {round_count(doc)} rounds)"
            )
        elif dnt and base["conn_per_s"] > 0:
            text += f"; donottrack reached {dnt['conn_per_s'] / base['conn_per_s']:.2f} of it"
        if top > base["conn_per_s"]:
            # One short run per phase on a machine that swings ±15%: not a real inversion.
            text += " (a phase beat it: within this machine's ±15% run-to-run noise)"
        # Informational: a single run cannot order phases that differ by less than the noise.
        out.append(Check(top <= base["conn_per_s"], text + ".", required=False))
    return out + flood_checks(doc)


# Legitimate throughput under the flood, with the blocklist in XDP, against the same host at
# peace (issue 15's target).
FLOOD_TARGET = 0.9


def _flood_ratio(doc: Mapping[str, Any], num: str, den: str) -> tuple[float | None, str]:
    """The ratio of conn/s num/den: the median over rounds with several, else the run's."""
    key = f"{num}/{den}"
    if round_count(doc) > 1:
        value = doc.get("rounds", {}).get("median", {}).get("ratios", {}).get(key)
        return value, f"median of {round_count(doc)} rounds"
    a, b = doc.get(num), doc.get(den)
    if not a or not b or not b["conn_per_s"]:
        return None, "one round"
    return round(a["conn_per_s"] / b["conn_per_s"], 3), "one round"


def flood_checks(doc: Mapping[str, Any]) -> list[Check]:
    """The flood phases: the flood hit the layer it was meant to, the clients got through,
    and how close to peace-time throughput they got (the target is informational)."""
    out: list[Check] = []
    xdp, raw, calm = doc.get("flood-xdp"), doc.get("flood-raw"), doc.get("noflood")
    for name, phase in (("flood-xdp", xdp), ("flood-raw", raw)):
        if not phase or "flood" not in phase:
            continue
        fl = phase["flood"]
        served = phase["connections_ok"] > 0
        if name == "flood-xdp":
            ok = served and fl["xdp_mode"] is not None and fl["xdp_dropped"] > 0
            where = (
                f"XDP ({fl['xdp_mode']}) dropped {_n(fl['xdp_dropped'])} of "
                f"{_n(fl['sent'])} flood packets"
                if fl["xdp_mode"] is not None
                else "NO XDP program was attached"
            )
        else:
            ok = served and fl["xdp_mode"] is None and fl["sent"] > 0
            where = (
                f"XDP off, the raw table dropped the flood ({_n(fl['sent'])} packets)"
                if fl["xdp_mode"] is None
                else f"XDP was NOT off ({fl['xdp_mode']})"
            )
        out.append(
            Check(
                ok,
                f"{name}: {where} at {_n(fl['sent_pps'])} pkt/s; "
                f"{_n(phase['connections_ok'])} legitimate connections, "
                f"{_n(phase['connections_failed'])} failed.",
            )
        )
    if calm and xdp:
        ratio, how = _flood_ratio(doc, "flood-xdp", "noflood")
        raw_ratio, _ = _flood_ratio(doc, "flood-raw", "noflood") if raw else (None, "")
        text = (
            f"target flood-xdp ≥ {FLOOD_TARGET} × noflood: "
            + ("not measurable" if ratio is None else f"{ratio:.3f}")
            + f" ({how})"
            + ("" if raw_ratio is None else f"; flood-raw reached {raw_ratio:.3f}")
            + "."
        )
        out.append(Check(ratio is not None and ratio >= FLOOD_TARGET, text, required=False))
    return out


def verdict(doc: Mapping[str, Any]) -> tuple[bool, str, list[tuple[str, str]]]:
    """Whether every required outcome showed, a headline, and (mark, sentence) per check.

    Marks: `ok`, `FAIL` (a required outcome did not show), `note` (informational, not met).
    """
    found = checks(doc)
    ok = all(c.ok for c in found if c.required)
    if "stateful" in doc and "donottrack" in doc:
        head = (
            "Verdict: the stateful firewall ran out of conntrack entries and dropped new "
            "connections; felis' doNotTrack policy kept port 12211 out of conntrack, with 0 "
            "failures."
            if ok
            else "Verdict: this run did NOT show the expected outcome (see FAIL below)."
        )
    else:
        head = "Verdict: " + ("as expected." if ok else "NOT as expected (see FAIL below).")
    marks = [("ok" if c.ok else ("FAIL" if c.required else "note"), c.text) for c in found]
    return ok, head, marks


def scale_note(doc: Mapping[str, Any]) -> str | None:
    """How the (possibly lowered) table relates to the machine's real one."""
    st = doc.get("stateful")
    meta = doc.get("meta", {})
    original = meta.get("conntrack_max_original")
    if not st or not original:
        return None
    # The stateful average includes the blackout; when the table filled within the first
    # second there is no clean pre-full rate, and the same load without conntrack stands in.
    rate, whose = st.get("conn_per_s_before_full"), ""
    for other in ("donottrack", "baseline"):
        if not rate and doc.get(other):
            rate, whose = doc[other]["conn_per_s"], f" (the {other} rate)"
    parts = []
    if meta.get("conntrack_max_setting"):
        parts.append(
            f"The global table was lowered to {_n(st['conntrack_max'])} entries for the run "
            f"(this machine's setting: {_n(original)}) so that it fills in seconds."
        )
    if rate:
        parts.append(
            f"At {_k(rate)} conn/s{whose} a {_n(original)}-entry table fills in about "
            f"{original / rate:.0f} s; with each closed connection held 120 s in TIME_WAIT, a "
            f"tracked server sustains only about {_k(original / 120)} new conn/s."
        )
    return " ".join(parts) or None
