"""`felis plan` on the command line: exit codes 0/3/1/2, text and JSON, apply's checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from felis.cli import main
from felis.datastore import SqliteDatastore

NODE = "memcached-node-1"
SEED = Path(__file__).parents[3] / "examples" / "memcached-seed.yaml"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def store(tmp_path: Path) -> str:
    # plan only reads: the datastore must exist (empty here).
    SqliteDatastore(tmp_path / "felis.db").close()
    return f"sqlite:///{tmp_path}/felis.db"


def plan(store: str, path: Path | str, *extra: str) -> list[str]:
    return ["plan", "-f", str(path), "--node", NODE, "--datastore", store, *extra]


def test_exit_3_then_0_after_apply(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(plan(store, SEED), capsys)
    assert code == 3
    assert "becomes untracked" in out and "kernel delta:" in out
    assert run(["apply", "-f", str(SEED), "--datastore", store], capsys)[0] == 0
    code, out, _ = run(plan(store, SEED), capsys)
    assert code == 0
    assert out.endswith(f"no change on node {NODE}\n")


def test_json_output(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(plan(store, SEED, "-o", "json", "--backend", "iptables"), capsys)
    assert code == 3
    report = json.loads(out)
    assert report["changes"] is True and report["backend"] == "iptables"
    assert "# iptables-restore --noflush" in report["delta"]["ipv4"]
    assert {c["rules"][0] for c in report["untracked"]} == {
        "gnp/memcached-server ingress rule 0",
        "gnp/memcached-server egress rule 0",
    }


def test_invalid_input_is_one_line_per_problem(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SEED.read_text().replace("action: Allow", "action: Permit", 1))
    code, out, err = run(plan(store, bad), capsys)
    assert code == 1 and out == ""
    first = err.splitlines()[0]
    assert str(bad) in first and "GlobalNetworkPolicy memcached-server" in first
    assert "spec.ingress[0].action" in first


def test_missing_tier_is_refused_like_apply(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiered = tmp_path / "tiered.yaml"
    text = SEED.read_text().replace("name: memcached-server", "name: security.memcached-server")
    tiered.write_text(
        text.replace(
            "  selector: memcached == 'server'",
            "  tier: security\n  selector: memcached == 'server'",
        )
    )
    code, _, err = run(plan(store, tiered), capsys)
    assert code == 1
    assert err == (
        f"{tiered}: document 2 (GlobalNetworkPolicy security.memcached-server): spec.tier: "
        "resource does not exist: Tier(security)\n"
    )


def test_stale_resource_version_is_a_conflict(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["apply", "-f", str(SEED), "--datastore", store], capsys)[0] == 0
    stale = tmp_path / "stale.yaml"
    stale.write_text(
        SEED.read_text().replace(
            "  name: memcached-server", "  name: memcached-server\n  resourceVersion: '999'"
        )
    )
    code, _, err = run(plan(store, stale), capsys)
    assert code == 1
    assert "update conflict: GlobalNetworkPolicy(memcached-server)" in err
    assert len(err.strip().splitlines()) == 1


def test_bad_output_format(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(plan(store, SEED, "-o", "yaml"), capsys)
    assert code == 2 and "'yaml' is not one of 'text', 'json'" in err
