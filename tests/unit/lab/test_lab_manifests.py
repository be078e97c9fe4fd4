from pathlib import Path

import yaml

from felis.lab.manifests import phase_documents, to_yaml
from felis.lab.topology import LabConfig
from felis.model import load_documents

SEED = Path(__file__).resolve().parents[3] / "examples" / "memcached-seed.yaml"
CFG = LabConfig()


def test_donottrack_phase_is_the_seed_with_lab_address() -> None:
    seed = list(yaml.safe_load_all(SEED.read_text()))
    seed[0]["spec"]["expectedIPs"] = ["198.18.0.1"]
    docs = phase_documents("donottrack", CFG)
    assert docs[:2] == seed
    assert docs[2]["kind"] == "GlobalNetworkSet"
    assert docs[2]["metadata"]["labels"] == {"memcached": "client"}
    assert docs[2]["spec"] == {"nets": ["198.18.0.0/24"]}


def test_stateful_phase_is_the_same_policy_tracked() -> None:
    stateful = phase_documents("stateful", CFG)
    dnt = phase_documents("donottrack", CFG)
    assert "doNotTrack" not in stateful[1]["spec"]
    dnt[1]["spec"].pop("doNotTrack")
    assert stateful == dnt


def test_baseline_has_no_rules() -> None:
    assert phase_documents("baseline", CFG) == []


def test_phase_manifests_validate_with_felis_model() -> None:
    for phase in ("stateful", "donottrack"):
        resources = load_documents(to_yaml(phase_documents(phase, CFG)).encode(), phase)
        assert len(resources) == 3
