"""`uv build` makes a wheel and an sdist; pip installs the wheel into a fresh venv, and the
`felis` it puts on PATH works outside the checkout.

The dependencies go into the fresh venv first, at the versions of uv.lock (the versions every
other test runs with), installed by uv; pip then installs felis itself with `--no-index` from
the built wheel alone, so it must find every requirement the wheel declares already met, which
`pip check` confirms. uv works offline first, from the cache `scripts/bootstrap.sh` has filled
(the build backend and the locked wheels), and reaches PyPI only for what that cache lacks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import ROOT, VENV, exec_start

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
VERSION = PROJECT["version"]
SEED = ROOT / "examples" / "memcached-seed.yaml"


def uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    if not Path(found).exists():
        pytest.fail("uv not found: run scripts/bootstrap.sh")
    return found


def run_uv(args: list[str], **kwargs: Any) -> str:
    """uv from its cache alone if it can, else with PyPI."""
    try:
        return run([uv(), "--offline", *args], **kwargs)
    except AssertionError:
        return run([uv(), *args], **kwargs)


def run(argv: list[str], **kwargs: Any) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False, **kwargs)
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0, f"{' '.join(argv)} failed ({proc.returncode}):\n{output[-2000:]}"
    return proc.stdout.strip()


@pytest.mark.network
def test_wheel_installs_into_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    # Without --wheel or --sdist, uv builds the sdist and then the wheel from it, so the sdist
    # is proved complete too.
    run_uv(["build", "--out-dir", str(dist)], cwd=ROOT)
    built = {p.name for p in dist.iterdir() if p.suffix in {".whl", ".gz"}}
    wheel_name = f"felis-{VERSION}-py3-none-any.whl"
    assert built == {f"felis-{VERSION}.tar.gz", wheel_name}
    with zipfile.ZipFile(dist / wheel_name) as wheel:
        names = set(wheel.namelist())
        entry_points = wheel.read(f"felis-{VERSION}.dist-info/entry_points.txt").decode()
    assert {"felis/__init__.py", "felis/py.typed", "felis/lab/loadgen.c"} <= names
    assert not any(name.startswith("tests/") for name in names)
    assert "felis = felis.cli:main" in entry_points

    venv = tmp_path / "venv"
    python3 = shutil.which("python3")
    assert python3, "python3 not found"
    run([python3, "-m", "venv", str(venv)])
    requirements = tmp_path / "requirements.txt"
    run_uv(
        ["export", "--frozen", "--no-dev", "--no-emit-project", "-q", "-o", str(requirements)],
        cwd=ROOT,
    )
    run_uv(["pip", "install", "-q", "--python", str(venv / "bin" / "python"),
            "-r", str(requirements)])  # fmt: skip
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "install", "-q", "--no-index", "--find-links", str(dist), f"felis=={VERSION}"])
    run([*pip, "check"])

    # Outside the checkout, with only the venv and the system on PATH: the console script,
    # importing the installed package, not src/.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "FELIS_", "VIRTUAL"))}
    env["PATH"] = f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    work = tmp_path / "elsewhere"
    work.mkdir()

    def felis(*args: str) -> str:
        return run(["felis", *args], cwd=work, env=env)

    assert shutil.which("felis", path=env["PATH"]) == str(venv / "bin" / "felis")
    assert felis("--version") == VERSION
    assert felis("version") == VERSION
    assert "Successfully validated 2 resource(s)" in felis("validate", "-f", str(SEED))
    location = run(["python", "-c", "import felis; print(felis.__file__)"], cwd=work, env=env)
    assert Path(location).is_relative_to(venv), location
    # The systemd unit runs the same console script in the venv docs/operations.md creates.
    unit_program = Path(exec_start()[0]).relative_to(VENV)
    assert (venv / unit_program).is_file()
