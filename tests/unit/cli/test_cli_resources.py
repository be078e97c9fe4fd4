"""The calicoctl-style commands, end to end in-process: exit codes, messages, all-or-nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cli_helpers import GNS, SEED, write


def test_validate_seed(felis) -> None:  # type: ignore[no-untyped-def]
    result = felis("validate", "-f", str(SEED))
    assert result.code == 0
    assert result.out.strip() == "Successfully validated 2 resource(s)"


def test_apply_get_apply_changes_nothing(felis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert felis("apply", "-f", str(SEED)).code == 0
    got = felis("get", "gnp", "memcached-server", "-o", "yaml")
    assert got.code == 0
    first = yaml.safe_load(got.out)
    assert first["spec"]["types"] == ["Ingress", "Egress"]
    assert first["metadata"]["labels"] == {"projectcalico.org/tier": "default"}
    path = write(tmp_path, "got.yaml", got.out)
    assert felis("apply", "-f", path).code == 0
    again = yaml.safe_load(felis("get", "gnp", "memcached-server", "-o", "yaml").out)
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert felis("apply", "-f", str(SEED)).code == 0
    third = yaml.safe_load(felis("get", "gnp", "memcached-server", "-o", "yaml").out)
    assert third == first


def test_multi_document_apply_is_all_or_nothing(felis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = SEED.read_text() + "---\n" + GNS.replace("198.18.0.0/24", "198.18.0.0/33")
    result = felis("apply", "-f", write(tmp_path, "bad.yaml", bad))
    assert result.code == 1
    assert len(result.err_lines) >= 1
    line = result.err_lines[0]
    assert "bad.yaml" in line and "document 3" in line and "GlobalNetworkSet clients" in line
    assert "spec.nets[0]" in line
    assert not (tmp_path / "felis.db").exists(), "nothing written, not even an empty datastore"


def test_conflicting_document_writes_nothing(felis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert felis("apply", "-f", str(SEED)).code == 0
    stored = yaml.safe_load(felis("get", "gnp", "memcached-server", "-o", "yaml").out)
    stale = dict(stored)
    stale["metadata"] = dict(stored["metadata"], resourceVersion="1")
    text = GNS + "---\n" + yaml.safe_dump(stale)
    result = felis("apply", "-f", write(tmp_path, "stale.yaml", text))
    assert result.code == 1
    assert "update conflict" in result.err and "GlobalNetworkPolicy(memcached-server)" in result.err
    assert felis("get", "gns", "clients").code == 1, "the valid document was not written either"


def test_every_problem_gets_its_own_line(felis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = """apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  ingress:
    - action: allow
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h}
spec: {interfaceName: eth0, bogus: 1}
"""
    result = felis("validate", "-f", write(tmp_path, "many.yaml", text))
    assert result.code == 1
    assert len(result.err_lines) >= 2
    assert any("spec.ingress[0].action" in line for line in result.err_lines)
    assert any("spec.bogus" in line for line in result.err_lines)


def test_bad_selector_names_its_field_and_position(felis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = SEED.read_text().replace("memcached == 'client'", "memcached == client")
    result = felis("validate", "-f", write(tmp_path, "sel.yaml", text))
    assert result.code == 1
    assert len(result.err_lines) == 2  # the same bad selector in two rules
    assert "spec.ingress[0].source.selector" in result.err_lines[0]
    assert "position" in result.err_lines[0]


@pytest.mark.parametrize(
    ("kind", "column"),
    [
        ("hostendpoint", "NODE"),
        ("hostendpoints", "NODE"),
        ("hep", "NODE"),
        ("heps", "NODE"),
        ("globalnetworkpolicy", "TIER"),
        ("globalnetworkpolicies", "TIER"),
        ("gnp", "TIER"),
        ("GNP", "TIER"),
        ("globalnetworksets", "NAME"),
        ("gns", "NAME"),
        ("tiers", "ORDER"),
    ],
)
def test_kind_aliases(felis, kind: str, column: str) -> None:  # type: ignore[no-untyped-def]
    felis("apply", "-f", str(SEED))
    result = felis("get", kind)
    assert result.code == 0
    assert column in result.out.splitlines()[0]


def test_get_output_formats(felis) -> None:  # type: ignore[no-untyped-def]
    felis("apply", "-f", str(SEED))
    wide = felis("get", "hep", "-o", "wide").out
    assert "memcached-node-1-eth0" in wide and "eth0" in wide and "10.128.0.162" in wide
    assert felis("get", "gnp", "-o", "name").out == "memcached-server\n"
    listing = json.loads(felis("get", "gnp", "-o", "json").out)
    assert listing["kind"] == "GlobalNetworkPolicyList"
    assert listing["items"][0]["metadata"]["name"] == "memcached-server"
    single = json.loads(felis("get", "gnp", "memcached-server", "-o", "json").out)
    assert single["kind"] == "GlobalNetworkPolicy"
    bad = felis("get", "gnp", "-o", "xml")
    assert bad.code == 2 and "'xml' is not one of" in bad.err
    unknown = felis("get", "widgets")
    assert unknown.code == 2 and "resource type 'widgets' is not supported" in unknown.err


def test_get_missing_name_fails(felis) -> None:  # type: ignore[no-untyped-def]
    felis("apply", "-f", str(SEED))
    result = felis("get", "gnp", "memcached-server", "nope")
    assert result.code == 1
    assert "memcached-server" in result.out
    assert "resource does not exist: GlobalNetworkPolicy(nope)" in result.err


def test_delete_by_name_and_by_file(felis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    felis("apply", "-f", str(SEED))
    assert felis("delete", "gnp", "memcached-server").code == 0
    assert felis("get", "gnp", "memcached-server").code == 1
    missing = felis("delete", "gnp", "memcached-server")
    assert missing.code == 1 and "resource does not exist" in missing.err
    assert felis("delete", "gnp", "memcached-server", "--skip-not-exists").code == 0
    assert felis("delete", "-f", str(SEED), "-s").code == 0
    assert felis("get", "hep", "memcached-node-1-eth0").code == 1


def test_create_and_replace_semantics(felis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert felis("replace", "-f", str(SEED)).code == 1
    assert felis("create", "-f", str(SEED)).code == 0
    again = felis("create", "-f", str(SEED))
    assert again.code == 1 and "resource already exists" in again.err
    assert felis("create", "-f", str(SEED), "--skip-exists").code == 0
    exported = felis("get", "gnp", "memcached-server", "-o", "yaml").out
    with_version = felis("create", "-f", write(tmp_path, "e.yaml", exported))
    assert with_version.code == 1 and "resourceVersion" in with_version.err
    assert felis("replace", "-f", str(SEED)).code == 0


def test_tier_rules(felis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    policy = SEED.read_text().split("---")[1].replace("spec:\n", "spec:\n  tier: security\n", 1)
    missing_tier = felis("apply", "-f", write(tmp_path, "p.yaml", policy))
    assert missing_tier.code == 1 and "Tier(security)" in missing_tier.err
    tier = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\n"
    tier += "spec: {order: 100}\n---\n"
    assert felis("apply", "-f", write(tmp_path, "tp.yaml", tier + policy)).code == 0
    busy = felis("delete", "tier", "security")
    assert busy.code == 1 and "non-empty tier" in busy.err
    builtin = felis("delete", "tier", "default")
    assert builtin.code == 1 and "Cannot delete default tier" in builtin.err


def test_stdin_input(felis) -> None:  # type: ignore[no-untyped-def]
    result = felis("apply", "-f", "-", stdin=GNS.encode())
    assert result.code == 0
    assert "clients" in felis("get", "gns").out


def test_directory_input(felis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "a.yaml").write_text(GNS)
    (folder / "b.yml").write_text(SEED.read_text())
    (folder / "notes.txt").write_text("not a manifest")
    result = felis("apply", "-f", str(folder))
    assert result.code == 0 and "3 resource(s)" in result.out


def _bomb() -> bytes:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    return ("\n".join(lines) + "\n").encode()


BAD_INPUTS = {
    "yaml-bomb": _bomb(),
    "binary-junk": bytes(range(256)) * 64,
    "invalid-utf8": b"apiVersion: projectcalico.org/v3\nkind: \xff\xfe\n",
    "deep-nesting": b"[" * 10000 + b"]" * 10000,
    "not-a-mapping": b"42\n",
    "malformed-yaml": b"apiVersion: [unclosed\n",
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_gets_one_line(felis, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(BAD_INPUTS[name])
    started = time.monotonic()
    result = felis("apply", "-f", str(path))
    elapsed = time.monotonic() - started
    assert result.code == 1
    assert len(result.err_lines) == 1, result.err
    assert str(path) in result.err_lines[0]
    print(f"{name}: {elapsed * 1000:.0f} ms")  # figure for the record, not an assertion


@pytest.mark.timeout(30)
def test_huge_file_is_refused_without_reading_it(felis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.truncate(100 * 1024 * 1024)
    result = felis("validate", "-f", str(path))
    assert result.code == 1
    assert len(result.err_lines) == 1 and "limit" in result.err_lines[0]


def test_unreachable_datastores_are_one_line_errors(felis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = felis("get", "gnp", "--datastore", f"sqlite:///{blocker}/sub/felis.db")
    assert result.code == 1 and len(result.err_lines) == 1
    result = felis("get", "gnp", "--datastore", "etcd://127.0.0.1:1")
    assert result.code == 1 and len(result.err_lines) == 1
    result = felis("get", "gnp", "--datastore", "mongodb://x")
    assert result.code == 1 and len(result.err_lines) == 1


def test_python_dash_m_is_the_same_command(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "felis", "validate", "-f", str(SEED)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == "Successfully validated 2 resource(s)"
