"""Interleaved rounds (pure): the order of each round, within-round ratios and their medians.

The machine's speed drifts from minute to minute by more than the differences worth measuring,
so phases are compared within a round (same minute) and the rounds are summarised by medians.
Each round starts one phase later than the one before (a b c, b c a, c a b, ...), so no phase
always runs first, or always right after another.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# (numerator, denominator): felis against the hand-written reference and against no rules, and
# the reference itself against no rules (what any firewall costs).
RATIO_PAIRS = (
    ("donottrack", "handwritten"),
    ("donottrack", "baseline"),
    ("handwritten", "baseline"),
)
# The flood phases (felis.lab.flood): legitimate throughput under the flood against the same
# host at peace, with the blocklist in XDP and in raw, and the two against each other.
FLOOD_RATIO_PAIRS = (
    ("flood-xdp", "noflood"),
    ("flood-raw", "noflood"),
    ("flood-xdp", "flood-raw"),
)
# Per-phase values summarised by their median over the rounds.
MEDIAN_VALUES = ("conn_per_s", "cpu_us_per_conn", "server_cpu_us_per_conn")


def round_order(phases: Sequence[str], rnd: int) -> list[str]:
    """The phases of round `rnd` (1-based): the list rotated left by rnd - 1."""
    if not phases:
        return []
    shift = (rnd - 1) % len(phases)
    return [*phases[shift:], *phases[:shift]]


def ratio_name(num: str, den: str) -> str:
    return f"{num}/{den}"


def round_ratios(conn_per_s: Mapping[str, float]) -> dict[str, float | None]:
    """The ratios of conn/s for the pairs whose phases both ran (None when the denominator
    completed nothing)."""
    out: dict[str, float | None] = {}
    for num, den in (*RATIO_PAIRS, *FLOOD_RATIO_PAIRS):
        if num in conn_per_s and den in conn_per_s:
            d = conn_per_s[den]
            out[ratio_name(num, den)] = round(conn_per_s[num] / d, 3) if d > 0 else None
    return out


def median(values: Iterable[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def _rounded(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def rounds_section(runs: Sequence[tuple[int, str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The `rounds` object of results.json from (round, phase, phase object) in run order."""
    by_round: dict[int, dict[str, Mapping[str, Any]]] = {}
    for rnd, phase, obj in runs:
        by_round.setdefault(rnd, {})[phase] = obj
    per_round: list[dict[str, Any]] = [
        {
            "round": rnd,
            "order": list(objs),
            "ratios": round_ratios({p: float(o["conn_per_s"]) for p, o in objs.items()}),
            "phases": {p: dict(o) for p, o in objs.items()},
        }
        for rnd, objs in sorted(by_round.items())
    ]
    phases = list(dict.fromkeys(phase for _, phase, _ in runs))
    ratio_keys = list(dict.fromkeys(k for r in per_round for k in r["ratios"]))

    def over_rounds(phase: str, key: str) -> list[Any]:
        return [r["phases"][phase].get(key) for r in per_round if phase in r["phases"]]

    return {
        "count": len(per_round),
        "per_round": per_round,
        "median": {
            "ratios": {
                k: _rounded(median(r["ratios"].get(k) for r in per_round), 3) for k in ratio_keys
            },
            **{
                key: {p: _rounded(median(over_rounds(p, key)), 1) for p in phases}
                for key in MEDIAN_VALUES
            },
        },
        "connections_failed": {p: sum(over_rounds(p, "connections_failed")) for p in phases},
    }
