"""The load generator against the real memcached in the lab (root, own namespaces)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from felis.lab import loadgen
from felis.lab.errors import LabError
from felis.lab.topology import LabConfig, Topology

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabConfig]:
    tag = secrets.token_hex(3)
    cfg = LabConfig(
        server_netns=f"flg-{tag}-s",
        client_netns=f"flg-{tag}-c",
        run_dir=tmp_path_factory.mktemp("lab") / "run",
    )
    with Topology(cfg):
        yield cfg


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = loadgen.build(tmp_path_factory.mktemp("cache"))
    if built is None:
        pytest.skip("no C compiler")
    return built


def test_c_client_completes_connections(lab: LabConfig, binary: Path) -> None:
    spec = loadgen.LoadSpec(count=3000, duration=60, concurrency=32)
    intervals, summary = loadgen.run_load(spec, lab.client_netns, binary)
    assert summary.completed == 3000
    assert summary.failed == summary.timed_out == 0
    assert sum(r.completed for r in intervals) == 3000
    assert 0 < summary.p50_us <= summary.p99_us


def test_c_client_open_loop_and_version_request(lab: LabConfig, binary: Path) -> None:
    spec = loadgen.LoadSpec(rate=1000, count=200, duration=60, request="version")
    _, summary = loadgen.run_load(spec, lab.client_netns, binary)
    assert summary.completed == 200 and summary.failed == 0


def test_python_fallback_completes_connections(lab: LabConfig) -> None:
    spec = loadgen.LoadSpec(count=300, duration=60, concurrency=16)
    _, summary = loadgen.run_load(spec, lab.client_netns, None)
    assert summary.completed == 300 and summary.failed == 0


def test_refuses_non_lab_address(lab: LabConfig, binary: Path) -> None:
    with pytest.raises(LabError, match="refusing"):
        loadgen.LoadSpec(dst="10.0.0.1")
    for argv in ([str(binary)], [sys.executable, "-m", "felis.lab.pyloadgen"]):
        proc = subprocess.run(
            ["ip", "netns", "exec", lab.client_netns, *argv, "-a", "192.0.2.1", "-n", "1"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode == 3, proc.stderr
        assert "refusing destination" in proc.stderr
        assert proc.stdout == ""  # no report: it never started
