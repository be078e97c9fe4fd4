"""Subprocess side of the multi-process cluster tests (run as a script, not collected).

usage: _ds_worker.py MODE DATASTORE_URL READY GO ARGS…
The datastore worker is one script for both backends: this runs
tests/unit/datastore/_worker.py, whose docstring lists the modes.
"""

from __future__ import annotations

import runpy
from pathlib import Path

WORKER = Path(__file__).resolve().parents[1] / "unit" / "datastore" / "_worker.py"

if __name__ == "__main__":
    runpy.run_path(str(WORKER), run_name="__main__")
