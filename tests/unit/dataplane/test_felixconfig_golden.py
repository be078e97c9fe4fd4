"""`felis render` of a node whose FelixConfigurations set custom failsafe ports, a log prefix, a
mark mask and Append, on both backends: the command's whole output compared with
`golden/felixconfig.{iptables,nft}` (regenerate with `FELIS_UPDATE_GOLDEN=1` and read the diff).
The nft golden must also pass `nft -c -f` in a private network namespace (root only)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from felis.cli import main

GOLDEN = Path(__file__).parent / "golden"
MANIFEST = GOLDEN / "felixconfig.yaml"
UPDATE = os.environ.get("FELIS_UPDATE_GOLDEN") == "1"
SUFFIX = {"iptables": "iptables", "nftables": "nft"}


def felis(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def applied(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FELIS_DATASTORE", f"sqlite:///{tmp_path}/felis.db")
    for name in list(os.environ):
        if name.upper().startswith(("FELIX_", "FELIS_FAILSAFE")):
            monkeypatch.delenv(name)
    code, out, err = felis(capsys, "apply", "-f", str(MANIFEST))
    assert code == 0, err
    assert out.startswith("Successfully applied 4 resource(s)")


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_render_matches_golden(
    applied: None, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    code, out, err = felis(capsys, "render", "--node", "node-1", "--backend", backend)
    assert code == 0, err
    path = GOLDEN / f"felixconfig.{SUFFIX[backend]}"
    if UPDATE:
        path.write_text(out)
    assert out == path.read_text(), f"{path.name} differs from its golden file"
    if backend == "nftables":
        assert err.splitlines() == [
            "# warning: chainInsertMode Append (from FelixConfiguration node.node-1) has no "
            "effect with the nftables backend: felis' base chains are its own"
        ]
    else:
        assert err == ""


def test_golden_shows_every_setting() -> None:
    """Guard the goldens: each setting is visible where it should be."""
    text = (GOLDEN / "felixconfig.iptables").read_text()
    nft = (GOLDEN / "felixconfig.nft").read_text()
    for rendered in (text, nft):
        assert "failsafe in tcp:2222" in rendered  # the node object's list wins
        assert "failsafe in tcp:198.18.0.0/24:22" in rendered
        assert "failsafe in udp:[fd00::/8]:53" in rendered
        assert "sctp" not in rendered  # the default object's list is replaced whole
        assert "failsafe out" not in rendered  # `[]`: no outbound entries
        assert "fw web" in rendered  # logPrefix with %n
    # Mark bits from iptablesMarkMask 0xff00 (lowest five bits) on iptables only.
    assert "--set-xmark 0x0/0x1b00" in text
    assert "meta mark & 0xe4ffffff" in nft and "0xffffe4ff" not in nft
    # Append: no insert anywhere, our hooks go after the rules already there.
    assert "-I " not in text
    assert "-A INPUT -m comment" in text
    assert "\n-A FORWARD" in text


@pytest.mark.skipif(
    shutil.which("nft") is None or shutil.which("unshare") is None or os.geteuid() != 0,
    reason="needs nft, unshare and root",
)
def test_nft_golden_is_accepted_by_nft() -> None:
    proc = subprocess.run(
        ["unshare", "-n", "nft", "-c", "-f", str(GOLDEN / "felixconfig.nft")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
