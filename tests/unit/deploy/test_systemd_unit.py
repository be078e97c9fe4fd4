"""deploy/felis-agent.service runs the installed entry point with options `felis agent` has and
settings deploy/felis.env.example provides."""

from __future__ import annotations

import re

import typer.main
from deploy_helpers import ENV_EXAMPLE, OPERATIONS, VENV, exec_start

from felis.cli import load_commands


def test_unit_runs_the_console_script_of_the_documented_venv() -> None:
    argv = exec_start()
    assert argv[:2] == [f"{VENV}/bin/felis", "agent"]
    install = OPERATIONS.read_text()
    assert f"python3.11 -m venv {VENV}" in install
    assert f"{VENV}/bin/pip install" in install


def test_unit_options_exist() -> None:
    agent = typer.main.get_command(load_commands()).commands["agent"]  # type: ignore[attr-defined]
    known = {opt for param in agent.params for opt in param.opts}
    used = {word for word in exec_start() if word.startswith("--")}
    assert used and used <= known, used - known


def test_unit_variables_are_set_in_the_env_example() -> None:
    used = set(re.findall(r"\$\{(\w+)\}", " ".join(exec_start())))
    lines = ENV_EXAMPLE.read_text().splitlines()
    defined = {line.split("=", 1)[0] for line in lines if re.match(r"^[A-Z_]+=", line)}
    assert used and used <= defined, used - defined
