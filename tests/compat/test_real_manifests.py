"""Real Calico manifests, as their authors wrote them, against felis' loader and validation.

corpus.yaml says where each file of manifests/ comes from and what Calico makes of it: what
Calico accepts must load; what it rejects must be rejected at the same field, and for nothing
else; a kind felis does not handle must get one line naming it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from felis.model import KINDS, ManifestError, from_dict, load_documents, to_dict

HERE = Path(__file__).parent
MANIFESTS = HERE / "manifests"
CORPUS: list[dict[str, Any]] = yaml.safe_load((HERE / "corpus.yaml").read_text())

# Kinds whose models other work adds: a file expected valid that holds one of them is an
# expected failure (strict, so it turns into a failure once the model exists) until then.
PARALLEL_KINDS = frozenset({"Profile", "FelixConfiguration"})


def _kinds_in(text: str) -> set[str]:
    return {
        doc["kind"]
        for doc in yaml.safe_load_all(text)
        if isinstance(doc, dict) and isinstance(doc.get("kind"), str)
    }


def _cases() -> list[Any]:
    cases = []
    for entry in CORPUS:
        marks = []
        if not entry.get("rejects") and not entry.get("unsupported"):
            kinds = _kinds_in((MANIFESTS / entry["file"]).read_text())
            missing = sorted(kinds & (PARALLEL_KINDS - set(KINDS)))
            if missing:
                reason = f"the {', '.join(missing)} model is being added in parallel"
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
        cases.append(pytest.param(entry, id=entry["file"], marks=marks))
    return cases


@pytest.mark.parametrize("entry", _cases())
def test_manifest(entry: dict[str, Any]) -> None:
    name = entry["file"]
    data = (MANIFESTS / name).read_bytes()
    rejects = entry.get("rejects") or []
    unsupported = entry.get("unsupported") or []
    if not rejects and not unsupported:
        resources = load_documents(data, name)
        assert resources
        for resource in resources:
            # What felis would store reads back as the same resource.
            assert from_dict(to_dict(resource)) == resource
        return
    with pytest.raises(ManifestError) as info:
        load_documents(data, name)
    errors = info.value.errors
    expected = {(r["document"], r["field"]) for r in rejects}
    expected |= {(u["document"], "kind") for u in unsupported}
    assert {(e.index, e.path) for e in errors} == expected, info.value.lines()
    per_document = Counter(e.index for e in errors)
    for item in unsupported:
        (line,) = [e for e in errors if e.index == item["document"]]
        assert per_document[item["document"]] == 1
        assert line.kind == item["kind"]
        assert line.reason.startswith(f"resource type '{item['kind']}'")
        assert line.reason.endswith("is not supported")
    for line in info.value.lines():
        assert "\n" not in line and name in line


def test_every_manifest_is_listed_once_with_a_pinned_source() -> None:
    listed = [entry["file"] for entry in CORPUS]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(p.name for p in MANIFESTS.glob("*.yaml"))
    for entry in CORPUS:
        assert entry["source"].startswith("https://github.com/"), entry
        assert "/blob/" in entry["source"], entry


def test_the_corpus_covers_what_a_calico_bundle_holds() -> None:
    """At least 40 files, from more than Calico's own documentation, covering the kinds and the
    host-endpoint policy flags felis cares about."""
    assert len(CORPUS) >= 40
    repositories = {"/".join(entry["source"].split("/")[3:5]) for entry in CORPUS}
    assert len(repositories) >= 3, repositories
    kinds: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    foreign: Counter[str] = Counter()
    for entry in CORPUS:
        for doc in yaml.safe_load_all((MANIFESTS / entry["file"]).read_text()):
            if not isinstance(doc, dict):
                continue
            if str(doc.get("apiVersion", "")).startswith("projectcalico.org/"):
                kinds[doc["kind"]] += 1
                spec = doc.get("spec") or {}
                flags.update(f for f in ("doNotTrack", "preDNAT", "applyOnForward") if spec.get(f))
            else:
                foreign[doc["kind"]] += 1
    for kind in (
        "HostEndpoint",
        "GlobalNetworkPolicy",
        "GlobalNetworkSet",
        "NetworkPolicy",
        "NetworkSet",
        "Tier",
        "Profile",
        "FelixConfiguration",
        "StagedGlobalNetworkPolicy",
        "StagedNetworkPolicy",
        "StagedKubernetesNetworkPolicy",
    ):
        assert kinds[kind] >= 1, kind
    assert set(flags) == {"doNotTrack", "preDNAT", "applyOnForward"}
    assert {"Pod", "Deployment", "NetworkPolicy"} <= set(foreign)
