import json
from pathlib import Path

import pytest
from rich.console import Console

from felis.lab import firewall as fwmod
from felis.lab.chart import chart_series, render_chart
from felis.lab.errors import LabError
from felis.lab.firewall import Firewall, count_leftovers
from felis.lab.results import (
    PhaseResult,
    Sample,
    comparison_rows,
    results_document,
    scale_note,
    verdict,
    write_results,
)
from felis.lab.run import ProgressView, parse_phases, print_report, restored_line
from felis.lab.topology import LabConfig


def sample(t: float, ok: int, failed: int = 0, timed_out: int = 0, ct: int = 0) -> Sample:
    return Sample(t, ok, failed, timed_out, 0, 100, 900, ct, 0)


def make_doc() -> dict[str, object]:
    st = PhaseResult("stateful", "nftables", 4096, duration_s=10.0, connections_ok=4096,
                     timed_out=256, kernel_drops=768, entries_port_end=4096)  # fmt: skip
    st.samples = [sample(1.0, 4000, ct=4096), sample(2.0, 96, timed_out=64, ct=4096),
                  sample(2.1, 0, timed_out=10, ct=4096)]  # fmt: skip
    dnt = PhaseResult("donottrack", "nftables", 4096, duration_s=10.0, connections_ok=170000)
    dnt.samples = [sample(1.0, 17000), sample(2.0, 17500)]
    base = PhaseResult("baseline", None, 4096, duration_s=10.0, connections_ok=200000)
    base.samples = [sample(1.0, 20000)]
    return results_document([st, dnt, base], {"backend": "nftables", "phase_seconds": 10})


def test_results_document_has_required_fields() -> None:
    doc = make_doc()
    assert doc["meta"]["phases"] == ["stateful", "donottrack", "baseline"]  # type: ignore[index]
    st = doc["stateful"]
    assert isinstance(st, dict)
    for key in ("conn_per_s", "connections_ok", "connections_failed", "conntrack_peak",
                "conntrack_max", "kernel_drops", "series"):  # fmt: skip
        assert key in st
    assert st["connections_failed"] == 256
    assert st["conn_per_s"] == 409.6
    assert st["conntrack_peak"] == 4096
    assert len(st["series"]) == 3 and st["series"][0]["conntrack_count"] == 4096


def test_write_results_round_trip(tmp_path: Path) -> None:
    doc = make_doc()
    path = write_results(tmp_path / "out", doc)
    assert json.loads(path.read_text()) == doc


def test_comparison_table_is_one_column_per_phase() -> None:
    header, rows = comparison_rows(make_doc())
    assert header == ["", "stateful", "donottrack", "baseline"]
    by_label = {r[0]: r[1:] for r in rows}
    assert by_label["conn/s (average)"] == ["410", "17,000", "20,000"]
    assert by_label["connections failed"] == ["256", "0", "0"]
    assert by_label["table full after"] == ["1 s", "never", "never"]
    # Fits an 80-column terminal: label + three phases + borders and padding.
    widest = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]
    assert sum(widest) + 3 * len(widest) + 1 <= 80


def test_table_full_and_rate_before_full() -> None:
    st = PhaseResult("stateful", "nftables", 100, duration_s=4.0, connections_ok=250)
    st.samples = [sample(1.0, 60, ct=60), sample(2.0, 40, ct=100), sample(3.0, 0, ct=100)]
    d = st.to_dict()
    assert d["table_full_after_s"] == 2.0
    assert d["conn_per_s_before_full"] == 60.0  # the partly blacked-out second is left out
    never = PhaseResult("donottrack", "nftables", 100, duration_s=1.0)
    never.samples = [sample(1.0, 500)]
    assert never.to_dict()["table_full_after_s"] is None
    assert never.to_dict()["conn_per_s_before_full"] is None


def test_verdict_passes_on_the_expected_outcome() -> None:
    ok, head, marks = verdict(make_doc())
    assert ok and head.startswith("Verdict: the stateful firewall ran out")
    assert [m for m, _ in marks] == ["ok", "ok", "ok", "ok"]
    assert "filled (4,096/4,096 entries within 1 s)" in marks[0][1]
    assert "768 drops" in marks[0][1] and "256 connections failed" in marks[0][1]
    assert marks[1][1].startswith("donottrack: 0 failed connections, 0 conntrack entries")


def test_verdict_fails_when_donottrack_fails_or_table_never_fills() -> None:
    doc = make_doc()
    doc["donottrack"]["connections_failed"] = 3  # type: ignore[index]
    doc["stateful"]["conntrack_peak"] = 4000  # type: ignore[index]
    ok, head, marks = verdict(doc)
    assert not ok and "did NOT show" in head
    assert [m for m, _ in marks][:2] == ["FAIL", "FAIL"]
    assert "did NOT fill" in marks[0][1]


def test_verdict_baseline_below_donottrack_is_only_a_note() -> None:
    doc = make_doc()
    doc["baseline"]["conn_per_s"] = 16000.0  # type: ignore[index]
    ok, _, marks = verdict(doc)
    assert ok and marks[-1][0] == "note" and "noise" in marks[-1][1]


def test_scale_note_relates_the_table_to_the_machine() -> None:
    doc = make_doc()
    assert scale_note(doc) is None  # no original recorded
    doc["meta"].update(conntrack_max_setting=4096, conntrack_max_original=262144)  # type: ignore[attr-defined]
    note = scale_note(doc)
    assert note is not None
    assert "lowered to 4,096" in note and "262,144" in note
    assert "2.2k new conn/s" in note


def test_chart_series_rates_and_cumulative_failures() -> None:
    series = {s.phase: s for s in chart_series(make_doc())}
    st = series["stateful"]
    assert st.t == [1.0, 2.0]  # the 0.1 s drain interval is not drawn as a rate
    assert st.conn_per_s == [4000.0, 96.0]
    assert st.failures_total == [0, 74]  # ...but its failures still count
    assert st.conntrack_max == 4096


def test_render_chart_writes_png(tmp_path: Path) -> None:
    path = render_chart(make_doc(), tmp_path / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parse_phases() -> None:
    assert parse_phases("stateful, baseline") == ["stateful", "baseline"]
    with pytest.raises(LabError, match="unknown phase 'bogus'"):
        parse_phases("stateful,bogus")
    with pytest.raises(LabError, match="once"):
        parse_phases("baseline,baseline")


def test_count_leftovers() -> None:
    assert count_leftovers('{"nftables": [{"metainfo": {}}]}') == 0
    text = json.dumps(
        {
            "nftables": [
                {"table": {"family": "ip", "name": "raw"}},
                {"chain": {"name": "PREROUTING", "policy": "accept"}},
                {"chain": {"name": "INPUT", "policy": "drop"}},
                {"rule": {"chain": "INPUT", "expr": []}},
            ]
        }
    )
    assert count_leftovers(text) == 2


def test_firewall_runs_felis_apply_then_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[list[str], str | None]] = []

    def fake_run(argv: list[str], *, netns: str | None = None, **kw: object) -> object:
        calls.append((list(argv), netns))
        return None

    monkeypatch.setattr(fwmod.ns, "run", fake_run)
    cfg = LabConfig(run_dir=tmp_path)
    fw = Firewall(cfg, "iptables", tmp_path, felis=["FELIS"])
    manifest = fw.program("donottrack")
    assert manifest is not None and "doNotTrack: true" in manifest.read_text()
    db_url = f"sqlite://{(tmp_path / 'donottrack' / 'lab.db').resolve()}"
    assert calls[0] == (["FELIS", "apply", "-f", str(manifest), "--datastore", db_url], None)
    assert calls[1] == (
        ["FELIS", "agent", "--node", "memcached-node-1", "--once", "--backend", "iptables",
         "--datastore", db_url],
        "memcached-node-1",
    )  # fmt: skip
    fw.cleanup()
    assert (
        calls[2][0][3:5] == ["memcached-node-1", "--cleanup"] and calls[2][1] == "memcached-node-1"
    )
    fw.cleanup()  # nothing programmed any more: no call
    assert len(calls) == 3
    assert fw.program("baseline") is None and len(calls) == 3
    with pytest.raises(LabError, match="--backend"):
        Firewall(cfg, "ebpf", tmp_path)


def test_report_fits_80_columns_and_says_what_was_restored() -> None:
    doc = make_doc()
    doc["meta"].update(  # type: ignore[attr-defined]
        conntrack_max_setting=4096,
        conntrack_max_original=262144,
        lab={"server_netns": "memcached-node-1", "client_netns": "felis-lab-client"},
        restored={"conntrack_max_now": 262144, "namespaces_left": [], "removed": []},
    )
    console = Console(width=80, record=True, color_system=None)
    assert print_report(doc, console, Path("lab-results")) is True
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "…" not in text  # nothing truncated
    assert "donottrack" in text and "baseline" in text
    assert "nf_conntrack_max back to 262144 (as before)" in text
    assert "Results: lab-results/results.json" in text
    assert "At 17.0k conn/s (the donottrack rate) a 262,144-entry table fills in about 15 s" in (
        " ".join(text.split())
    )


def test_report_flags_a_sysctl_that_was_not_restored(tmp_path: Path) -> None:
    doc = make_doc()
    doc["meta"].update(  # type: ignore[attr-defined]
        conntrack_max_setting=4096,
        conntrack_max_original=262144,
        restored={"conntrack_max_now": 4096, "namespaces_left": ["x-s"], "removed": []},
    )
    line = restored_line(doc)
    assert "WAS 262144" in line and "STILL PRESENT: x-s" in line


def test_progress_lines_are_aligned_and_ignore_the_drain_sliver() -> None:
    console = Console(width=80, record=True, color_system=None, force_terminal=False)
    with ProgressView(console) as view:
        view("stateful", Sample(1.0, 18000, 0, 0, 0, 1, 2, 18000, 0), 65536)
        view("stateful", Sample(2.0, 0, 0, 64, 64, 0, 0, 65536, 128), 65536)
        view("stateful", Sample(2.05, 3, 0, 0, 0, 0, 0, 65536, 130), 65536)
    lines = console.export_text().splitlines()
    assert lines[0].split() == ["phase", "t", "conn/s", "fail/s", "failed", "conntrack", "drops"]
    assert len({len(line) for line in lines}) == 1  # fixed-width columns
    assert lines[1].split()[2] == "18000"
    assert lines[2].split()[3:6] == ["64", "64", "65536/65536"]
    # 3 completions in 0.05 s are not a rate of 60/s: the last rate stands.
    assert lines[3].split()[2:5] == ["0", "64", "64"]
