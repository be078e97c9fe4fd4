"""Interleaved rounds: order, within-round ratios, medians, results.json, report and chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from felis.lab.chart import ratio_series, render_chart
from felis.lab.results import (
    PhaseResult,
    Sample,
    combine_runs,
    comparison_rows,
    results_document,
    rounds_rows,
    verdict,
)
from felis.lab.rounds import median, round_order, round_ratios
from felis.lab.run import print_report

PHASES = ["handwritten", "donottrack", "baseline"]


def test_each_round_starts_one_phase_later() -> None:
    orders = [round_order(PHASES, rnd) for rnd in range(1, 5)]
    assert orders == [
        ["handwritten", "donottrack", "baseline"],
        ["donottrack", "baseline", "handwritten"],
        ["baseline", "handwritten", "donottrack"],
        ["handwritten", "donottrack", "baseline"],
    ]
    # Over len(phases) rounds every phase takes every position once.
    for position in range(3):
        assert sorted(o[position] for o in orders[:3]) == sorted(PHASES)
    assert round_order(["baseline"], 7) == ["baseline"]


def test_round_ratios_for_the_phases_that_ran() -> None:
    both = round_ratios({"handwritten": 20_000.0, "donottrack": 18_000.0, "baseline": 21_000.0})
    assert both == {
        "donottrack/handwritten": 0.9,
        "donottrack/baseline": 0.857,
        "handwritten/baseline": 0.952,
    }
    assert round_ratios({"donottrack": 1.0, "stateful": 2.0}) == {}
    assert round_ratios({"donottrack": 5.0, "baseline": 0.0}) == {"donottrack/baseline": None}


def test_median_ignores_missing_values() -> None:
    assert median([3.0, None, 1.0, 2.0]) == 2.0
    assert median([1.0, 2.0]) == 1.5
    assert median([None]) is None


# conn/s of (handwritten, donottrack, baseline) per round; 10 s phases.
RATES = [(20_000, 18_000, 21_000), (19_000, 19_000, 20_000), (22_000, 19_800, 23_000)]


def runs(rates: list[tuple[int, int, int]] = RATES, failed: int = 0) -> list[PhaseResult]:
    out = []
    for rnd, conn in enumerate(rates, start=1):
        by_phase = dict(zip(PHASES, conn, strict=True))
        for name in round_order(PHASES, rnd):
            ok = by_phase[name] * 10
            r = PhaseResult(name, None if name == "baseline" else "nftables", 4096,
                            duration_s=10.0, connections_ok=ok, round=rnd,
                            timed_out=failed if name == "donottrack" else 0,
                            cpu_busy_s=ok * 70e-6)  # fmt: skip
            r.samples = [Sample(t, ok // 10, 0, 0, 0, 100, 900, 0, 0) for t in range(1, 11)]
            out.append(r)
    return out


def make_doc(rates: list[tuple[int, int, int]] = RATES, failed: int = 0) -> dict[str, Any]:
    meta = {"backend": "nftables", "phase_seconds": 10, "rounds": len(rates)}
    return results_document(runs(rates, failed), meta)


def test_results_document_has_a_rounds_section() -> None:
    doc = make_doc(failed=2)
    assert doc["meta"]["phases"] == PHASES  # the first round's order
    rounds = doc["rounds"]
    assert rounds["count"] == 3
    assert [r["order"] for r in rounds["per_round"]] == [round_order(PHASES, n) for n in (1, 2, 3)]
    first = rounds["per_round"][0]
    assert first["round"] == 1
    assert first["ratios"] == {
        "donottrack/handwritten": 0.9,
        "donottrack/baseline": 0.857,
        "handwritten/baseline": 0.952,
    }
    # Each run is kept whole, series included.
    assert first["phases"]["donottrack"]["conn_per_s"] == 18_000.0
    assert first["phases"]["donottrack"]["cpu_us_per_conn"] == 70.0
    assert len(first["phases"]["donottrack"]["series"]) == 10
    assert rounds["median"]["ratios"] == {
        "donottrack/handwritten": 0.9,
        "donottrack/baseline": 0.861,
        "handwritten/baseline": 0.952,
    }
    assert rounds["median"]["conn_per_s"] == {
        "handwritten": 20_000.0,
        "donottrack": 19_000.0,
        "baseline": 21_000.0,
    }
    assert rounds["median"]["cpu_us_per_conn"]["baseline"] == 70.0
    assert rounds["connections_failed"] == {"handwritten": 0, "donottrack": 6, "baseline": 0}


def test_phase_objects_sum_their_runs() -> None:
    doc = make_doc(failed=2)
    dnt = doc["donottrack"]
    assert dnt["connections_ok"] == 10 * (18_000 + 19_000 + 19_800)
    assert dnt["connections_failed"] == 6
    assert dnt["duration_s"] == 30.0
    assert dnt["conn_per_s"] == round((18_000 + 19_000 + 19_800) / 3, 1)
    assert dnt["cpu_us_per_conn"] == 70.0
    assert dnt["series"] == doc["rounds"]["per_round"][0]["phases"]["donottrack"]["series"]


def test_a_single_run_is_kept_as_it_is() -> None:
    r = runs(RATES[:1])[0]
    assert combine_runs([r.to_dict()]) == r.to_dict()
    doc = make_doc(RATES[:1])
    assert doc["handwritten"] == r.to_dict()
    assert doc["rounds"]["count"] == 1


def test_combined_worst_and_earliest() -> None:
    a = PhaseResult("stateful", "nftables", 100, duration_s=2.0, connections_ok=100, p99_us=900)
    a.samples = [Sample(1.0, 60, 0, 0, 0, 1, 1, 60, 0), Sample(2.0, 40, 0, 0, 0, 1, 1, 100, 0)]
    b = PhaseResult("stateful", "nftables", 100, duration_s=2.0, connections_ok=50, p99_us=5000,
                    entries_port_end=100)  # fmt: skip
    b.samples = [Sample(1.0, 50, 0, 0, 0, 1, 1, 100, 0)]
    out = combine_runs([a.to_dict(), b.to_dict()])
    assert out["p99_us"] == 5000 and out["entries_12211_end"] == 100
    assert out["conntrack_peak"] == 100
    assert out["table_full_after_s"] == 1.0
    assert out["conn_per_s_before_full"] == 60.0  # only a's table filled after a clean second
    assert out["conn_per_s"] == 37.5


def test_comparison_and_rounds_tables() -> None:
    doc = make_doc()
    header, rows = comparison_rows(doc)
    assert header == ["", *PHASES]
    by_label = {r[0]: r[1:] for r in rows}
    assert by_label["conn/s (median round)"] == ["20,000", "19,000", "21,000"]
    assert by_label["CPU µs/conn (median)"] == ["70", "70", "70"]
    tables = list(rounds_rows(doc).values())
    (values_header, values), (ratio_header, ratios) = tables
    assert values_header == ["round", *PHASES]
    assert values[0] == ["1", "20,000 · 70", "18,000 · 70", "21,000 · 70"]
    assert values[-1][0] == "median"
    assert ratio_header == [
        "round",
        "donottrack/\nhandwritten",
        "donottrack/\nbaseline",
        "handwritten/\nbaseline",
    ]
    assert ratios[0] == ["1", "0.900", "0.857", "0.952"]
    assert ratios[-1] == ["median", "0.900", "0.861", "0.952"]


def test_single_round_report_has_no_round_tables() -> None:
    doc = make_doc(RATES[:1])
    _, rows = comparison_rows(doc)
    assert "conn/s (median round)" not in {r[0] for r in rows}
    console = Console(width=80, record=True, color_system=None)
    print_report(doc, console, Path("res"))
    assert "rounds:" not in console.export_text()


def test_report_with_rounds_fits_80_columns() -> None:
    doc = make_doc(failed=2)
    doc["meta"]["restored"] = {"conntrack_max_now": 1, "namespaces_left": [], "removed": []}
    console = Console(width=80, record=True, color_system=None)
    ok, _, _ = verdict(doc)
    assert not ok  # donottrack failed connections: visible, and required
    assert print_report(doc, console, Path("res")) is False
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "…" not in text
    assert "rounds: conn/s ratios" in text and "handwritten/" in text
    assert "0.861" in text  # the median of donottrack/baseline
    assert "donottrack: 6 failed connections" in text
    assert "handwritten (the reference ruleset): 0 failed connections" in text
    assert "reached 0.86 of it (median of 3 rounds)" in " ".join(text.split())
    assert "the hand-written ones by the lab" in " ".join(text.split())


@pytest.mark.parametrize("rounds", [1, 3])
def test_chart_with_and_without_rounds(tmp_path: Path, rounds: int) -> None:
    doc = make_doc(RATES[:rounds])
    series = ratio_series(doc)
    assert [s.name for s in series] == [
        "donottrack/handwritten",
        "donottrack/baseline",
        "handwritten/baseline",
    ]
    assert series[0].rounds == list(range(1, rounds + 1))
    assert series[1].median == doc["rounds"]["median"]["ratios"]["donottrack/baseline"]
    path = render_chart(doc, tmp_path / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
