"""The client port range flag, run options, CPU accounting, and their one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from felis.cli.lab import app
from felis.lab.cpu import CpuTimes, parse_cpu_line, us_per_conn
from felis.lab.errors import LabError
from felis.lab.run import ALL_PHASES, RunOptions, intro, label_width, parse_phases
from felis.lab.topology import (
    DEFAULT_CLIENT_PORTS,
    LabConfig,
    format_port_range,
    parse_port_range,
)


def test_default_client_ports_are_the_widest_range() -> None:
    assert DEFAULT_CLIENT_PORTS == (1024, 65535)
    assert LabConfig().client_sysctls() == {
        "net.ipv4.ip_local_port_range": "1024 65535",
        "net.ipv4.tcp_tw_reuse": "1",
    }
    cfg = LabConfig(client_ports=(6000, 7000))
    assert cfg.client_sysctls()["net.ipv4.ip_local_port_range"] == "6000 7000"


@pytest.mark.parametrize(
    ("text", "ports"),
    [("1024-65535", (1024, 65535)), (" 6000-7000 ", (6000, 7000)), ("5000-5000", (5000, 5000))],
)
def test_parse_port_range(text: str, ports: tuple[int, int]) -> None:
    assert parse_port_range(text) == ports
    assert parse_port_range(format_port_range(ports)) == ports


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1024", "expected LOW-HIGH"),
        ("a-b", "expected LOW-HIGH"),
        ("-1-5", "expected LOW-HIGH"),
        ("1024:65535", "expected LOW-HIGH"),
        ("7000-6000", "1 <= LOW <= HIGH <= 65535"),
        ("0-100", "1 <= LOW <= HIGH <= 65535"),
        ("1024-65536", "1 <= LOW <= HIGH <= 65535"),
    ],
)
def test_bad_port_ranges_are_refused(text: str, message: str) -> None:
    with pytest.raises(LabError, match=message) as exc:
        parse_port_range(text)
    assert str(exc.value).startswith("--client-ports: ")
    assert "\n" not in str(exc.value)


def test_lab_config_checks_its_port_range() -> None:
    with pytest.raises(LabError, match="--client-ports"):
        LabConfig(client_ports=(2000, 1000))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--client-ports", "9-2"], "error: --client-ports: need 1 <= LOW <= HIGH <= 65535"),
        (["--rounds", "0"], "error: --rounds must be at least 1, not 0"),
        (["--phases", "handwritten,bogus"], "error: --phases: unknown phase 'bogus'"),
    ],
)
def test_bad_run_flags_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    # Wide enough that the terminal does not wrap the line.
    result = CliRunner(env={"COLUMNS": "300"}).invoke(
        app, ["run", "--run-dir", str(tmp_path), "--results", str(tmp_path / "r"), *args]
    )
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    out = result.output.strip()
    assert out.startswith(message) and "\n" not in out


def test_handwritten_is_a_phase_but_not_a_default_one() -> None:
    assert parse_phases("handwritten,donottrack,baseline") == [
        "handwritten",
        "donottrack",
        "baseline",
    ]
    assert "handwritten" in ALL_PHASES
    assert "handwritten" not in RunOptions().phases


def test_intro_and_progress_width_are_unchanged_for_the_demo() -> None:
    opts = RunOptions(phase_seconds=20, backend="nftables")
    assert intro(opts) == (
        "felis lab run: 3 phases (stateful, donottrack, baseline) of 20 s saturating memcached "
        "load each, about 1.4 min; felis programs the server namespace with the nftables backend."
    )
    assert label_width(opts) == 10


def test_intro_and_progress_width_with_rounds() -> None:
    opts = RunOptions(phase_seconds=8, rounds=6, phases=["handwritten", "donottrack", "baseline"])
    text = intro(opts)
    assert "3 phases (handwritten, donottrack, baseline) × 6 rounds" in text
    assert "about 4.5 min" in text and "the reference" in text
    assert label_width(opts) == len("handwritten 6")


def test_cpu_line_and_per_connection_cost() -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    line = "cpu  100 0 50 800 50 0 30 0 10 0"
    assert parse_cpu_line(line, clk_tck=100) == CpuTimes(busy=1.8, total=10.3, softirq=0.3)
    assert us_per_conn(0.5, 10_000) == 50.0
    assert us_per_conn(0.5, 0) is None
