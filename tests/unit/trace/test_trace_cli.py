"""`felis trace` end to end in-process: datastore → calc → trace → text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from felis.cli.trace import register
from felis.datastore import open_datastore
from felis.errors import FelisError
from felis.model import load_documents, to_dict

ROOT = Path(__file__).resolve().parents[3]
CLIENT_HEP = b"""
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: client-1-eth0, labels: {memcached: client}}
spec: {interfaceName: eth0, node: client-1, expectedIPs: [10.128.0.50]}
"""


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path}/felis.db"
    seed = (ROOT / "examples" / "memcached-seed.yaml").read_bytes()
    store = open_datastore(url)
    store.ensure_initialized()
    store.apply([to_dict(r) for r in load_documents(seed + b"---\n" + CLIENT_HEP, "t")])
    store.close()
    app = typer.Typer()
    register(app)
    app.command("version")(lambda: None)

    def invoke(*args: str) -> tuple[int, str, BaseException | None]:
        result = CliRunner().invoke(
            app, ["trace", "--node", "memcached-node-1", "--datastore", url, *args]
        )
        return result.exit_code, result.stdout, result.exception

    return invoke


def test_request_and_reply_text(run) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(
        "--src", "10.128.0.50:40000", "--dst", "10.128.0.162:12211", "--proto", "tcp"
    )
    assert code == 0
    assert out.strip().splitlines()[-1] == "ACCEPT untracked by gnp/memcached-server ingress rule 0"
    assert "raw-felis-untracked-accept" in out  # nft names by default; the fast path
    code, out, _ = run(
        "--src",
        "10.128.0.162:12211",
        "--dst",
        "10.128.0.50:40000",
        "--proto",
        "tcp",
        "--backend",
        "iptables",
    )
    assert "direction egress" in out
    assert out.strip().splitlines()[-1] == "ACCEPT untracked by gnp/memcached-server egress rule 0"


def test_json(run) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(
        "--src", "10.128.0.50", "--dst", "10.128.0.162:8080", "--proto", "6", "-o", "json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["verdict"] == "DROP" and data["tracked"] is True
    assert data["decided_by"] == "Drop if no profiles matched"
    assert data["packet"]["sport"] == 40000 and data["packet"]["in_iface"] == "eth0"
    assert data["steps"][0]["kernel_chain"] == "raw-PREROUTING"  # the nft base chain


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--src", "10.128.0.50", "--dst", "10.128.0.162", "--proto", "tcp"], "destination port"),
        (["--src", "nope", "--dst", "10.128.0.162:1", "--proto", "tcp"], "--src"),
        (["--src", "10.0.0.1", "--dst", "10.0.0.2:1", "--proto", "tcp"], "pass --iface"),
        (["--src", "10.0.0.1", "--dst", "10.0.0.2:1", "--proto", "bogus"], "--proto"),
        (
            ["--src", "10.0.0.1", "--dst", "10.0.0.2", "--proto", "tcp", "--direction", "forward"],
            "destination port",
        ),
    ],
)
def test_errors_are_one_line(run, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    code, _, exc = run(*args)
    assert code != 0
    assert isinstance(exc, FelisError)
    assert message in str(exc) and "\n" not in str(exc)
