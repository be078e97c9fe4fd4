"""`felis lint` on the command line: scopes (file, datastore, both) and exit codes 0/3/1/2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from felis.cli import main

SEED = Path(__file__).parents[3] / "examples" / "memcached-seed.yaml"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_seed_file_is_clean_apart_from_notes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["lint", "-f", str(SEED)], capsys)
    assert code == 0
    assert out.splitlines()[-1] == f"{SEED}: 0 warning(s), 4 note(s)"
    assert out.startswith("note FL003 hep/memcached-node-1-eth0: ")


def test_warnings_exit_3_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(SEED.read_text().split("  egress:")[0])
    code, out, _ = run(["lint", "-f", str(broken), "-o", "json"], capsys)
    assert code == 3
    report = json.loads(out)
    assert report["warnings"] == 1
    [warning] = [f for f in report["findings"] if f["severity"] == "warning"]
    assert (warning["code"], warning["policy"], warning["rule"]) == (
        "FL001",
        "memcached-server",
        "ingress rule 0",
    )


def test_datastore_and_overlay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:///{tmp_path}/felis.db"
    assert run(["apply", "-f", str(SEED), "--datastore", store], capsys)[0] == 0
    # Stored: nothing carries memcached=client, and a datastore is the whole truth: warnings.
    code, out, _ = run(["lint", "--datastore", store], capsys)
    assert code == 3
    assert "the datastore: 2 warning(s)" in out
    client = tmp_path / "client.yaml"
    client.write_text(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\n"
        "metadata: {name: clients, labels: {memcached: client}}\n"
        "spec: {nets: [198.18.0.0/24]}\n"
    )
    code, out, _ = run(["lint", "-f", str(client), "--datastore", store], capsys)
    assert code == 0
    assert out.splitlines()[-1].endswith("applied on the datastore: 0 warning(s), 2 note(s)")


def test_errors_exit_1_usage_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["lint", "-f", str(tmp_path / "missing.yaml")], capsys)
    assert code == 1 and "missing.yaml: cannot read" in err
    code, _, err = run(["lint", "-f", str(SEED), "-o", "xml"], capsys)
    assert code == 2 and "'xml' is not one of 'text', 'json'" in err
