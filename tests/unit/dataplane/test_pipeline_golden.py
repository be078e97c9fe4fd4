"""End to end through the pure stages: manifest → model → calc → both renderers' full text.

Two manifests: the seed (`examples/memcached-seed.yaml`, node memcached-node-1) and
`golden/pipeline-everything.yaml`, whose policies use every rule field felis supports
(protocol/notProtocol, icmp/notICMP, nets/notNets with several entries, selector/notSelector,
ports/notPorts with ranges and more than 15 ports, named ports, Log/Deny/Pass/Allow, ipVersion,
doNotTrack, preDNAT, applyOnForward, a second tier, a GlobalNetworkSet). The full texts for both
families and both backends are compared with `golden/pipeline-*` files; regenerate them with
`FELIS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/dataplane/test_pipeline_golden.py` and read
the diff. The nft goldens must also pass `nft -c -f` in a private network namespace, and every
iptables golden here (this file's and test_iptables_render.py's) `ipset restore`,
`iptables-restore --test` and a real restore in a network namespace the test creates and
deletes (root only).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from felis import sysexec
from felis.calc import compute
from felis.dataplane import iptables, nftables
from felis.dataplane.memo import RenderCache
from felis.dataplane.spec import DataplaneSpec, Family, SetKind, Table
from felis.model import load_documents

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("FELIS_UPDATE_GOLDEN") == "1"

CASES = {
    "seed": (ROOT / "examples" / "memcached-seed.yaml", "memcached-node-1"),
    "everything": (GOLDEN / "pipeline-everything.yaml", "node-1"),
    "catch-all": (GOLDEN / "pipeline-catch-all.yaml", "node-1"),
    "profile": (GOLDEN / "pipeline-profile.yaml", "node-1"),
}
FAMILIES = {Family.V4: "v4", Family.V6: "v6"}


def pipeline(case: str) -> DataplaneSpec:
    path, node = CASES[case]
    resources = load_documents(path.read_bytes(), str(path))
    return compute(resources, node, interfaces=None).spec


def iptables_text(plan: iptables.IptablesPlan) -> str:
    parts = []
    if plan.ipset_prepare:
        parts.append("# ipset restore\n" + plan.ipset_prepare)
    tool = iptables.restore_command(plan.family)
    parts += [f"# {tool} --noflush ({t.value})\n{text}" for t, text in plan.tables.items()]
    return "".join(parts)


def render(case: str, family: Family, backend: str, cache: RenderCache | None = None) -> str:
    ruleset = pipeline(case).ruleset(family)
    if backend == "iptables":
        return iptables_text(iptables.render_full(ruleset, cache=cache))
    return nftables.render_full(ruleset, cache=cache)


def golden_path(case: str, family: Family, backend: str) -> Path:
    return (
        GOLDEN
        / f"pipeline-{case}-{FAMILIES[family]}.{'nft' if backend == 'nftables' else 'iptables'}"
    )


def check_golden(path: Path, text: str) -> None:
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with FELIS_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path.name} differs from its golden file"


PARAMS = [
    (case, family, backend)
    for case in CASES
    for family in FAMILIES
    for backend in ("iptables", "nftables")
]


@pytest.mark.parametrize(("case", "family", "backend"), PARAMS)
def test_pipeline_matches_golden(case: str, family: Family, backend: str) -> None:
    check_golden(golden_path(case, family, backend), render(case, family, backend))


@pytest.mark.parametrize(("case", "family", "backend"), PARAMS)
def test_render_does_not_depend_on_memos(case: str, family: Family, backend: str) -> None:
    """The renderers memoise per chain and per match; a warm render must equal a cold one."""
    cache = RenderCache()
    cold = render(case, family, backend, cache)
    assert render(case, family, backend, cache) == cold  # equal values in new objects
    ruleset = pipeline(case).ruleset(family)
    if backend == "iptables":
        once = iptables_text(iptables.render_full(ruleset, cache=cache))
        assert iptables_text(iptables.render_full(ruleset, cache=cache)) == once == cold
    else:
        once = nftables.render_full(ruleset, cache=cache)
        assert nftables.render_full(ruleset, cache=cache) == once == cold  # the same objects


@pytest.mark.skipif(
    shutil.which("nft") is None or shutil.which("unshare") is None or os.geteuid() != 0,
    reason="needs nft, unshare and root",
)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_nft_golden_is_accepted_by_nft(case: str, family: Family) -> None:
    path = golden_path(case, family, "nftables")
    # `nft -c` changes nothing; the private network namespace makes that certain.
    proc = subprocess.run(
        ["unshare", "-n", "nft", "-c", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def iptables_golden_parts(path: Path) -> tuple[str, dict[str, str]]:
    """An iptables golden file's `ipset restore` input and each restore tool's input."""
    ipset_text = ""
    restores: dict[str, str] = {}
    tool = None
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("# "):
            tool = line.split()[1]  # "# ipset restore", "# iptables-restore --noflush (raw)"
        elif tool == "ipset":
            ipset_text += line
        elif tool is not None:
            restores[tool] = restores.get(tool, "") + line
    return ipset_text, restores


@pytest.fixture
def scratch_netns() -> Iterator[str]:
    """A network namespace of this test's own: what it creates there never reaches the host,
    and deleting it deletes the sets and rules with it."""
    name = f"felis-golden-{secrets.token_hex(3)}"
    sysexec.run(["ip", "netns", "add", name])
    try:
        yield name
    finally:
        sysexec.run(["ip", "netns", "delete", name], check=False)


IPTABLES_TOOLS = ("ip", "ipset", "iptables-restore", "ip6tables-restore")


@pytest.mark.skipif(
    os.geteuid() != 0 or any(shutil.which(tool) is None for tool in IPTABLES_TOOLS),
    reason="needs root, ip, ipset and iptables-restore",
)
@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.iptables")), ids=lambda p: p.name)
def test_iptables_golden_is_accepted_by_ipset_and_iptables_restore(
    path: Path, scratch_netns: str
) -> None:
    ipset_text, restores = iptables_golden_parts(path)
    assert ipset_text and restores, f"{path.name}: no ipset or restore section"
    created = {line.split()[1] for line in ipset_text.splitlines() if line.startswith("create ")}

    def run(argv: list[str], text: str | None = None) -> str:
        proc = sysexec.run(argv, netns=scratch_netns, input_text=text, check=False)
        assert proc.returncode == 0, f"{path.name}: {' '.join(argv)}: {proc.stderr}"
        return proc.stdout

    # ipset has no dry run, so the sets are really created (in the scratch namespace); the
    # restore needs them anyway: `--match-set` of a missing set is refused.
    run(["ipset", "restore"], ipset_text)
    assert set(run(["ipset", "list", "-n"]).split()) == created
    for tool, text in restores.items():
        run([tool, "--test", "--noflush"], text)
        # `--test` parses every rule but takes a jump to an undeclared chain on trust; the
        # kernel checks those when the text is really committed.
        run([tool, "--noflush"], text)


def test_seed_is_untracked_and_set_based() -> None:
    """The seed's rules reach raw (untracked) and refer to the client selector's IP set."""
    ruleset = pipeline("seed").ruleset(Family.V4)
    raw = ruleset.table(Table.RAW)
    assert "felis-pi-memcached-server" in raw.chains
    assert "felis-po-memcached-server" in raw.chains
    (client,) = [s for s in ruleset.sets.values() if s.kind is SetKind.NET]
    assert client.comment == 'memcached == "client"'
    text = render("seed", Family.V4, "iptables")
    assert f"-m set --match-set {client.name} src" in text
    assert "--dports 12211" in text
    assert "-j CT --notrack" in text


def test_everything_uses_every_field() -> None:
    """Guard the manifest: each rule field shows up in the rendered text."""
    v4 = render("everything", Family.V4, "iptables")
    v6 = render("everything", Family.V6, "iptables")
    nft4 = render("everything", Family.V4, "nftables")
    expected_v4 = [
        "! -p tcp",  # notProtocol
        "-m icmp --icmp-type 8/0",  # icmp type/code, ipVersion 4 only
        "! -s 192.0.2.128/25",  # single notNets entry stays inline
        "-m set ! --match-set felis4-s-",  # notSelector
        "hash:ip,port",  # named port set
        "dst,dst",  # matched on the destination (address, protocol, port)
        # > 15 negated ports: several multiport matches in one rule.
        "-m multiport ! --dports 1,3,5,7,9,11,13,15,17,19,21,23,25,27,29 "
        "-m multiport ! --dports 31,33,100:200",
        "-m multiport ! --dports 9000:9100,9200",
        "-j LOG --log-prefix",
        "-j CT --notrack",
        "*mangle",
        "felis-fhfw-eth0",
        "-m set --match-set felis4-c-",  # several nets → a CIDR set
    ]
    for needle in expected_v4:
        assert needle in v4, needle
    # > 15 destination port slots: one kernel rule per disjoint chunk.
    # (A port takes one multiport slot, a range two.)
    assert "--dports 22,80,443,1000:1010,2000,2002,2004,2006,2008,2010,2012,2014," in v4
    assert "--dports 2020,2022,2024,2026 " in v4
    assert "-m icmp6 ! --icmpv6-type 128" in v6
    assert "felis6-c-" in v6
    assert "icmp" + " type" not in v6  # the ICMP (v4) rule is absent from IPv6
    assert "icmpv6 type != 128" in render("everything", Family.V6, "nftables")
    assert "meta l4proto != tcp" in nft4
    assert "log prefix" in nft4
