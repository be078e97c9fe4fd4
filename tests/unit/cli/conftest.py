"""The `felis` fixture: run the real command line in-process against a fresh datastore."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from cli_helpers import Felis, Result

from felis.cli import main


@pytest.fixture
def felis(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Felis:
    monkeypatch.setenv("FELIS_DATASTORE", f"sqlite:///{tmp_path}/felis.db")
    for name in ("DATASTORE_TYPE", "ETCD_ENDPOINTS", "CALICO_DATASTORE_TYPE"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str, stdin: bytes | None = None) -> Result:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = 0
        try:
            main(list(args))
        except SystemExit as done:
            code = int(done.code or 0)
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        return Result(code, captured.out, captured.err)

    return run
