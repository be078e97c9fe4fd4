"""Optional dependencies stay optional: the agent's command loads none of them, and a missing
extra is one clear line, not an ImportError traceback."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from felis.errors import FelisError

_PROBE = """
import sys
from felis.cli import load_commands
load_commands("agent")
heavy = ("matplotlib", "etcd3gw", "felis.lab", "felis.conntrack", "felis.trace",
         "felis.lint", "felis.plan", "felis.cli.lab", "felis.cli.trace")
print(" ".join(sorted(m for m in sys.modules if m.startswith(heavy))))
"""


def test_the_agent_command_loads_only_what_it_runs() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", _PROBE], check=True, capture_output=True, text=True, timeout=60
    ).stdout.split()
    assert loaded == []


@pytest.mark.parametrize(
    ("blocked", "module", "extra"),
    [
        ("etcd3gw", "felis.datastore.etcd_client", "felis[etcd]"),
        ("requests", "felis.datastore.etcd_client", "felis[etcd]"),
    ],
)
def test_a_missing_extra_names_itself(
    monkeypatch: pytest.MonkeyPatch, blocked: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, blocked, None)  # makes `import blocked` fail
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(FelisError, match=extra.replace("[", r"\[").replace("]", r"\]")):
        importlib.import_module(module)


def test_the_chart_without_matplotlib_names_the_lab_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from felis.lab.chart import render_chart

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(FelisError, match=r"felis\[lab\]"):
        render_chart({}, tmp_path / "chart.png")  # type: ignore[operator]
