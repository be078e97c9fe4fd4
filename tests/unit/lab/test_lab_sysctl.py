from pathlib import Path

import pytest

from felis.lab.errors import LabError
from felis.lab.sysctl import RECORD_NAME, ConntrackMaxGuard, restore_recorded


def make_sysctl(tmp_path: Path, value: int) -> Path:
    path = tmp_path / "nf_conntrack_max"
    path.write_text(f"{value}\n")
    return path


def test_guard_sets_records_and_restores_on_exception(tmp_path: Path) -> None:
    sysctl = make_sysctl(tmp_path, 262144)
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError), ConntrackMaxGuard(4096, run_dir, sysctl):
        assert sysctl.read_text().strip() == "4096"
        assert (run_dir / RECORD_NAME).read_text().strip() == "262144"
        raise RuntimeError("boom")
    assert sysctl.read_text().strip() == "262144"
    assert not (run_dir / RECORD_NAME).exists()


def test_guard_after_crash_keeps_true_original(tmp_path: Path) -> None:
    sysctl = make_sysctl(tmp_path, 4096)  # a crashed run left the low value
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / RECORD_NAME).write_text("262144\n")
    with ConntrackMaxGuard(2048, run_dir, sysctl):
        assert sysctl.read_text().strip() == "2048"
    assert sysctl.read_text().strip() == "262144"


def test_restore_recorded(tmp_path: Path) -> None:
    sysctl = make_sysctl(tmp_path, 4096)
    assert restore_recorded(tmp_path, sysctl) is None
    (tmp_path / RECORD_NAME).write_text("262144\n")
    assert restore_recorded(tmp_path, sysctl) == 262144
    assert sysctl.read_text().strip() == "262144"
    assert not (tmp_path / RECORD_NAME).exists()


def test_guard_rejects_nonsense(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="positive"):
        ConntrackMaxGuard(0, tmp_path)


def test_restore_is_idempotent(tmp_path: Path) -> None:
    sysctl = make_sysctl(tmp_path, 100)
    guard = ConntrackMaxGuard(10, tmp_path / "run", sysctl)
    with guard:
        guard.restore()
        sysctl.write_text("55\n")  # someone else changes it after our restore
    assert sysctl.read_text().strip() == "55"
