import json
from pathlib import Path

import pytest

from felis.lab import firewall as fwmod
from felis.lab.chart import chart_series, render_chart
from felis.lab.errors import LabError
from felis.lab.firewall import Firewall, count_leftovers
from felis.lab.results import (
    PhaseResult,
    Sample,
    comparison_rows,
    results_document,
    verdict,
    write_results,
)
from felis.lab.run import parse_phases
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


def test_comparison_rows_and_verdict() -> None:
    doc = make_doc()
    rows = comparison_rows(doc)
    assert [r[0] for r in rows] == ["stateful", "donottrack", "baseline"]
    assert rows[0][1] == "410" and rows[0][3] == "256"
    lines = verdict(doc)
    assert "reached its max (4096/4096)" in lines[0]
    assert lines[1] == "donottrack: 0 failed connections, 0 conntrack entries for 12211"


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
