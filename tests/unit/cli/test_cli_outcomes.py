"""The CLI never reports success for something that did not happen (one test per finding of
issue 11): node names, datastore paths, problems against the datastore, duplicates, counts,
exit codes, piped output, small input holes, and the conveniences (--version, --dry-run)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import GNS, NODE, SEED, Felis, gnp, gns, write

from felis.calc import HostInterface
from felis.conntrack import kernel as conntrack_kernel
from felis.dataplane import kernel as dataplane_kernel

TRACE = ["--src", "10.128.0.50:40000", "--dst", "10.128.0.162:12211", "--proto", "tcp"]
TRACE_TO = ["trace", "--node", NODE, "--proto", "tcp", "--dst"]


# 1. A node name with a typo -----------------------------------------------------------------


def test_a_node_without_host_endpoints_is_an_error_unless_allowed(felis: Felis) -> None:
    assert felis("apply", "-f", str(SEED)).code == 0
    typo = "memcahced-node-1"
    render = felis("render", "--node", typo)
    assert render.code == 1 and render.out == ""
    [line] = render.err_lines
    assert f"no HostEndpoint has spec.node '{typo}'" in line
    assert f"nodes with HostEndpoints: {NODE}" in line and f"did you mean '{NODE}'?" in line
    assert "--allow-empty" in line
    allowed = felis("render", "--node", typo, "--allow-empty")
    assert allowed.code == 0 and "table ip felis" in allowed.out
    assert allowed.err_lines[0].startswith(f"# warning: no HostEndpoint has spec.node '{typo}'")
    assert felis("render", "--node", NODE).err == ""

    trace = felis("trace", "--node", typo, *TRACE)
    assert trace.code == 1 and trace.out == "" and "no HostEndpoint" in trace.err
    traced = felis("trace", "--node", typo, *TRACE, "--allow-empty", "--iface", "eth0")
    assert traced.code == 0
    assert f"warning: no HostEndpoint has spec.node '{typo}'" in traced.out

    empty = felis("render", "--node", "")
    assert empty.code == 2 and "--node" in empty.err and "must not be empty" in empty.err


class _FakeDataplane:
    def drift(self, spec: object) -> list[str]:
        return []

    def counters(self, spec: object) -> list[object]:
        return []


def test_status_shows_the_node_warning(felis: Felis, monkeypatch: pytest.MonkeyPatch) -> None:
    # status reads the kernel; the fakes stand in for it, the warning comes from the datastore.
    monkeypatch.setattr(dataplane_kernel, "open_dataplane", lambda backend: _FakeDataplane())
    eth0 = [HostInterface("eth0", ("10.128.0.162",))]
    monkeypatch.setattr("felis.agent.interfaces.read_interfaces", lambda: eth0)
    monkeypatch.setattr(conntrack_kernel, "read_count", lambda: 1)
    monkeypatch.setattr(conntrack_kernel, "read_max", lambda: 10)
    monkeypatch.setattr(conntrack_kernel, "read_stats", dict)
    assert felis("apply", "-f", str(SEED)).code == 0
    report = felis("status", "--node", "nodo-1", "-o", "json")
    assert report.code == 0
    warning = json.loads(report.out)["warnings"][0]
    assert warning.startswith("no HostEndpoint has spec.node 'nodo-1'") and NODE in warning
    table = felis("status", "--node", "nodo-1")
    assert "warning: no HostEndpoint has spec.node 'nodo-1'" in table.out
    assert json.loads(felis("status", "--node", NODE, "-o", "json").out)["warnings"] == []


# 2. Datastore paths ---------------------------------------------------------------------------


def test_reading_commands_never_create_a_datastore(felis: Felis, tmp_path: Path) -> None:
    missing = tmp_path / "x" / "nope" / "none.db"
    url = f"sqlite:///{missing}"
    manifest = str(SEED)
    for args in (
        ["get", "gnp"],
        ["render", "--node", NODE],
        ["trace", "--node", NODE, *TRACE],
        ["status", "--node", NODE],
        ["plan", "-f", manifest, "--node", NODE],
        ["lint"],
        ["delete", "gnp", "memcached-server"],
    ):
        result = felis(*args, "--datastore", url)
        assert result.code == 1, args
        assert result.err_lines == [
            f"sqlite datastore {missing}: does not exist (the first write creates it)"
        ], args
    assert not (tmp_path / "x").exists()

    blank = felis("get", "gnp", "--datastore", "")
    assert blank.code == 1 and blank.err_lines[0].startswith("empty datastore URL")
    assert not (tmp_path / "felis.db").exists(), "no fallback to the default datastore"


def test_another_programs_sqlite_file_is_refused(felis: Felis, tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.commit()
    conn.close()
    result = felis("apply", "-f", str(SEED), "--datastore", f"sqlite:///{path}")
    assert result.code == 1
    assert result.err_lines == [
        f"sqlite datastore {path}: cannot open: not a felis datastore "
        "(it holds other tables: users)"
    ]
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["users"]
    conn.close()


# 3. Problems found against the datastore --------------------------------------------------------


def test_every_datastore_problem_names_its_document(felis: Felis, tmp_path: Path) -> None:
    assert felis("apply", "-f", write(tmp_path, "a.yaml", gns("a") + "---\n" + gns("b"))).code == 0
    policies = write(tmp_path, "p.yaml", gnp("sec.p1", "sec") + "---\n" + gnp("ops.p2", "ops"))
    tiers = felis("apply", "-f", policies)
    assert tiers.code == 1
    assert tiers.err_lines == [
        f"{policies}: document 1 (GlobalNetworkPolicy sec.p1): spec.tier: "
        "resource does not exist: Tier(sec)",
        f"{policies}: document 2 (GlobalNetworkPolicy ops.p2): spec.tier: "
        "resource does not exist: Tier(ops)",
    ]

    mixed = write(tmp_path, "m.yaml", gns("new") + "---\n" + gns("a") + "---\n" + gns("b"))
    created = felis("create", "-f", mixed)
    assert created.code == 1
    assert created.err_lines == [
        f"{mixed}: document 2 (GlobalNetworkSet a): resource already exists: GlobalNetworkSet(a)",
        f"{mixed}: document 3 (GlobalNetworkSet b): resource already exists: GlobalNetworkSet(b)",
    ]
    replaced = felis("replace", "-f", mixed)
    assert replaced.code == 1
    assert replaced.err_lines == [
        f"{mixed}: document 1 (GlobalNetworkSet new): resource does not exist: "
        "GlobalNetworkSet(new)"
    ]
    gone = write(tmp_path, "g.yaml", gns("x1") + "---\n" + gns("a") + "---\n" + gns("y1"))
    deleted = felis("delete", "-f", gone)
    assert deleted.code == 1
    assert [line.split(": ", 1)[1] for line in deleted.err_lines] == [
        "document 1 (GlobalNetworkSet x1): resource does not exist: GlobalNetworkSet(x1)",
        "document 3 (GlobalNetworkSet y1): resource does not exist: GlobalNetworkSet(y1)",
    ]
    names = felis("delete", "gns", "x1", "a", "y1")
    assert names.code == 1
    assert names.err_lines == [
        "resource does not exist: GlobalNetworkSet(x1)",
        "resource does not exist: GlobalNetworkSet(y1)",
    ]
    assert felis("get", "gns", "-o", "name").out == "a\nb\n", "nothing was written or deleted"


# 4. The same resource twice in one input --------------------------------------------------------


def test_a_resource_given_twice_is_an_error_naming_both(felis: Felis, tmp_path: Path) -> None:
    twice = write(tmp_path, "twice.yaml", gns("b1") + "---\n" + gns("b1", "198.19.0.0/24"))
    result = felis("apply", "-f", twice)
    assert result.code == 1 and result.out == ""
    assert result.err_lines == [
        f"{twice}: document 2 (GlobalNetworkSet b1): also given in document 1; "
        "each resource may appear only once"
    ]
    assert felis("validate", "-f", twice).code == 1
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "a.yaml").write_text(gns("b1"))
    (folder / "b.yaml").write_text(gns("b1", "198.19.0.0/24"))
    across = felis("apply", "-f", str(folder))
    assert across.code == 1
    assert across.err_lines == [
        f"{folder / 'b.yaml'}: document 1 (GlobalNetworkSet b1): also given in "
        f"{folder / 'a.yaml'} document 1; each resource may appear only once"
    ]
    assert not (tmp_path / "felis.db").exists()


# 5. Counts that say what happened ---------------------------------------------------------------


def test_counts_say_what_happened(felis: Felis, tmp_path: Path) -> None:
    assert felis("apply", "-f", write(tmp_path, "a.yaml", gns("a"))).code == 0
    both = write(tmp_path, "ab.yaml", gns("a") + "---\n" + gns("b"))
    assert felis("create", "-f", both, "--skip-exists").out_lines == [
        "Successfully created 1 'GlobalNetworkSet' resource(s); 1 skipped (already exist)"
    ]
    changed = write(tmp_path, "ab2.yaml", gns("a") + "---\n" + gns("b", "198.19.0.0/24"))
    assert felis("replace", "-f", changed).out_lines == [
        "Successfully replaced 2 'GlobalNetworkSet' resource(s): 1 updated, 1 unchanged"
    ]
    new = write(tmp_path, "abc.yaml", gns("a") + "---\n" + gns("c"))
    assert felis("apply", "-f", new).out_lines == [
        "Successfully applied 2 'GlobalNetworkSet' resource(s): 1 created, 1 unchanged"
    ]
    assert felis("delete", "gnetsets", "b", "b").out_lines == [
        "Successfully deleted 1 'GlobalNetworkSet' resource(s)"
    ]
    assert felis("delete", "gns", "c", "b", "-s").out_lines == [
        "Successfully deleted 1 'GlobalNetworkSet' resource(s); 1 skipped (did not exist)"
    ]
    assert felis("get", "gns", "-o", "name").out == "a\n"


# 6. Exit codes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["get", "widgets"], "resource type 'widgets' is not supported"),
        (["delete", "widgets", "w"], "resource type 'widgets' is not supported"),
        (["get", "gnp", "-o", "xml"], "'xml' is not one of"),
        (["lint", "-o", "xml"], "'xml' is not one of"),
        (["plan", "-f", str(SEED), "--node", NODE, "-o", "yaml"], "'yaml' is not one of"),
        (["status", "--node", NODE, "-o", "yaml"], "'yaml' is not one of"),
        (["render", "--node", NODE, "--family", "5"], "'5' is not one of"),
        ([*TRACE_TO, "10.0.0.2:1", "--src", "10.0.0"], "--src"),
        ([*TRACE_TO, "10.0.0.2", "--src", "10.0.0.1"], "--dst"),
        (["trace", "--node", NODE, *TRACE[:4], "--proto", "bogus"], "--proto"),
        (["delete"], "delete: give KIND NAME... or -f FILE"),
        (["delete", "gnp"], "delete gnp: give at least one NAME"),
        (["delete", "gnp", "x", "-f", str(SEED)], "not both"),
        (["apply"], "Missing option '--filename'"),
        (["bogus-command"], "No such command"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2(felis: Felis, args: list[str], message: str) -> None:
    assert felis("apply", "-f", str(SEED)).code == 0
    result = felis(*args)
    assert result.code == 2, result.err
    assert message in result.err


def test_lint_findings_have_their_own_exit_code(felis: Felis, tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.yaml", SEED.read_text().split("  egress:")[0])
    result = felis("lint", "-f", broken)
    assert result.code == 3 and "1 warning(s)" in result.out
    assert felis("lint", "-f", str(SEED)).code == 0
    plan = felis(
        "plan", "-f", str(SEED), "--node", NODE, "--datastore", f"sqlite:///{tmp_path}/p.db"
    )
    assert plan.code == 1, "the datastore must exist"
    assert felis("apply", "-f", write(tmp_path, "gns.yaml", GNS)).code == 0
    assert felis("plan", "-f", str(SEED), "--node", NODE).code == 3
    assert felis("apply", "-f", str(SEED)).code == 0
    assert felis("plan", "-f", str(SEED), "--node", NODE).code == 0


# 7. Output that survives a pipe -------------------------------------------------------------------


def test_piped_trace_lines_never_wrap_and_help_is_complete(felis: Felis, tmp_path: Path) -> None:
    long_name = "memcached-server-" + "x" * 80
    seed = SEED.read_text().replace("name: memcached-server", f"name: {long_name}")
    client = GNS.replace("198.18.0.0/24", "10.128.0.50/32")
    assert felis("apply", "-f", write(tmp_path, "long.yaml", seed + "---\n" + client)).code == 0
    result = felis("trace", "--node", NODE, *TRACE)
    assert result.code == 0
    verdict = f"ACCEPT untracked by gnp/{long_name} ingress rule 0"
    assert len(verdict) > 100
    assert result.out.splitlines()[-1] == verdict
    assert all(len(line) <= 80 for line in felis("render", "-h").out.splitlines())
    helped = felis("render", "-h").out
    assert "sqlite:///var/lib/felis/felis.db" in helped and "…" not in helped


# 8. Small input holes -----------------------------------------------------------------------------


def test_small_input_holes(felis: Felis, tmp_path: Path) -> None:
    numeric = write(tmp_path, "n.yaml", gns("x").replace("name: x", "name: 12345"))
    result = felis("validate", "-f", numeric)
    assert result.code == 1
    assert result.err_lines == [
        f"{numeric}: document 1 (GlobalNetworkSet): metadata.name: "
        "expected a string, got a number 12345"
    ]
    quoted = write(tmp_path, "q.yaml", gns("x").replace("name: x", "name: '12345'"))
    assert felis("validate", "-f", quoted).code == 0

    assert felis("apply", "-f", str(SEED)).code == 0
    icmp = ["trace", "--node", NODE, "--src", "10.128.0.50", "--dst", "10.128.0.162"]
    bad_type = felis(*icmp, "--proto", "icmp", "--icmp-type", "999")
    assert bad_type.code == 2 and "--icmp-type" in bad_type.err
    bad_code = felis(*icmp, "--proto", "icmp", "--icmp-code", "300")
    assert bad_code.code == 2 and "--icmp-code" in bad_code.err
    assert felis(*icmp, "--proto", "icmp", "--icmp-type", "255").code == 0


@pytest.mark.timeout(10)
def test_a_fifo_is_refused_instead_of_hanging(felis: Felis, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    # Should the check ever regress, the open blocks: a writer then unblocks it so the test
    # fails on its assertion instead of at the timeout.
    guard = threading.Timer(5.0, lambda: fifo.write_text(GNS))
    guard.start()
    try:
        result = felis("validate", "-f", str(fifo))
    finally:
        guard.cancel()
    assert result.code == 1
    assert result.err_lines == [f"{fifo}: not a regular file (use -f - to read standard input)"]
    assert felis("validate", "-f", "-", stdin=GNS.encode()).code == 0


# 9. Conveniences ----------------------------------------------------------------------------------


def test_version(felis: Felis) -> None:
    expected = importlib.metadata.version("felis")
    assert felis("--version").out == f"{expected}\n"
    assert felis("version").out == f"{expected}\n"


def _revision(path: Path) -> Any:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0]
    finally:
        conn.close()


def test_apply_dry_run_reports_and_writes_nothing(felis: Felis, tmp_path: Path) -> None:
    first = felis("apply", "--dry-run", "-f", str(SEED))
    assert first.code == 0
    assert first.out_lines == [
        "HostEndpoint memcached-node-1-eth0: would be created",
        "GlobalNetworkPolicy memcached-server: would be created",
        "Dry run: 2 resource(s) would be applied: 2 created; nothing was written",
    ]
    assert not (tmp_path / "felis.db").exists()
    assert felis("apply", "-f", str(SEED)).code == 0
    before = _revision(tmp_path / "felis.db")
    changed = SEED.read_text().replace("12211", "12212")
    again = felis("apply", "--dry-run", "-f", write(tmp_path, "c.yaml", changed + "---\n" + GNS))
    assert again.out_lines[-1] == (
        "Dry run: 3 resource(s) would be applied: 1 created, 1 updated, 1 unchanged; "
        "nothing was written"
    )
    assert "GlobalNetworkPolicy memcached-server: would be updated" in again.out_lines
    refused = felis("apply", "--dry-run", "-f", write(tmp_path, "t.yaml", gnp("sec.p", "sec")))
    assert refused.code == 1 and "resource does not exist: Tier(sec)" in refused.err
    assert _revision(tmp_path / "felis.db") == before
