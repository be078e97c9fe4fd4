import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from felis.lab import loadgen
from felis.lab.errors import LabError
from felis.lab.pyloadgen import percentile, reply_state
from felis.lab.safety import is_lab_address, require_lab_address


def test_lab_addresses() -> None:
    assert is_lab_address("198.18.0.1")
    assert is_lab_address("198.19.255.254")
    assert is_lab_address("127.0.0.1")
    for bad in ("198.20.0.1", "198.17.255.255", "10.0.0.1", "8.8.8.8", "::1", "nonsense"):
        assert not is_lab_address(bad)
    with pytest.raises(LabError, match=r"refusing destination '8\.8\.8\.8'"):
        require_lab_address("8.8.8.8")


def test_spec_refuses_non_lab_destination_and_source() -> None:
    with pytest.raises(LabError):
        loadgen.LoadSpec(dst="10.1.2.3")
    with pytest.raises(LabError):
        loadgen.LoadSpec(source_base="192.168.1.1")
    with pytest.raises(LabError):
        loadgen.LoadSpec(request="set")


def test_spec_args() -> None:
    spec = loadgen.LoadSpec(rate=2000, count=500, duration=2.5)
    args = spec.args()
    assert args[:4] == ["-a", "198.18.0.1", "-p", "12211"]
    assert args[4:8] == ["-s", "198.18.0.10", "-k", "32"]
    assert "-R" in args and args[args.index("-R") + 1] == "2000"
    assert args[args.index("-n") + 1] == "500"
    assert args[args.index("-d") + 1] == "2.5"
    assert "-R" not in loadgen.LoadSpec().args()


def test_parse_report_line() -> None:
    line = (
        '{"type":"interval","t":1.000,"completed":14432,"failed":1,"timed_out":2,'
        '"syn_retrans":3,"skipped":0,"p50_us":776,"p99_us":36352}'
    )
    r = loadgen.parse_report_line(line)
    assert r is not None
    assert (r.kind, r.completed, r.failed, r.timed_out, r.syn_retrans) == (
        "interval",
        14432,
        1,
        2,
        3,
    )
    assert (r.p50_us, r.p99_us) == (776, 36352)
    assert loadgen.parse_report_line("  \n") is None
    with pytest.raises(LabError, match="unreadable line"):
        loadgen.parse_report_line('{"type": "interval"}')


def test_python_fallback_command_when_no_compiler() -> None:
    cmd = loadgen.command(loadgen.LoadSpec(), None)
    assert cmd[:3] == [sys.executable, "-m", "felis.lab.pyloadgen"]
    assert cmd[3:5] == ["-a", "198.18.0.1"]


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_build_compiles_once_into_hash_keyed_cache(tmp_path: Path) -> None:
    first = loadgen.build(tmp_path)
    assert first is not None and first.is_file()
    assert first.name.startswith("loadgen-") and first.parent == tmp_path
    stamp = first.stat().st_mtime_ns
    # A second build with no usable compiler must reuse the cached binary.
    again = loadgen.build(tmp_path, compiler="/nonexistent/cc")
    assert again == first and again.stat().st_mtime_ns == stamp
    # The C client itself refuses a destination outside the lab ranges.
    proc = subprocess.run(
        [str(first), "-a", "10.0.0.1"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 3 and "refusing destination" in proc.stderr


def test_python_fallback_refuses_non_lab_address() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "felis.lab.pyloadgen", "-a", "10.0.0.1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 3 and "refusing destination" in proc.stderr


def test_reply_state() -> None:
    assert reply_state(b"END\r\n", False) == 1
    assert reply_state(b"VALUE k 0 1\r\nx\r\nEND\r\n", False) == 1
    assert reply_state(b"VALUE k 0 1\r\n", False) == 0
    assert reply_state(b"EN", False) == 0
    assert reply_state(b"ERROR\r\n", False) == -1
    assert reply_state(b"VERSION 1.6.18\r\n", True) == 1
    assert reply_state(b"ERROR\r\n", True) == -1


def test_percentile() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 51
    assert percentile(values, 0.99) == 100
    assert percentile([], 0.5) == 0
