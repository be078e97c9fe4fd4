"""The load generator: build it, describe a load, run it in a namespace, read its reports.

The C client (`loadgen.c`, package data) is compiled on first use with the system `cc` into a
cache directory keyed by the source's hash and reused afterwards. Without a compiler the
pure-Python client (`felis.lab.pyloadgen`, same options and output) is used instead; it is
slower and competes harder for the CPU the server needs, which the results record.

Both print one JSON object per line: `{"type": "interval"|"summary", "t", "completed", "failed",
"timed_out", "syn_retrans", "skipped", "p50_us", "p99_us"}`.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from felis import compiled, sysexec
from felis.lab.errors import LabCommandError, LabError
from felis.lab.safety import require_lab_address

SOURCE_NAME = "loadgen.c"
"""Seconds a compile may take; generous, as the machine may be busy with a run."""
EXIT_TIMEOUT = 30.0
"""Seconds the client may take to exit once it has closed its output."""


@dataclass(frozen=True)
class LoadSpec:
    """One load: where to, how hard, how long. `rate` > 0 means open loop at that conn/s."""

    dst: str = "198.18.0.1"
    port: int = 12211
    source_base: str | None = "198.18.0.10"
    source_count: int = 32
    threads: int = 2
    concurrency: int = 64
    rate: float = 0.0
    count: int = 0  # 0 = bounded by duration only
    duration: float = 10.0
    deadline_ms: int = 3000
    request: str = "get"
    interval: float = 1.0

    def __post_init__(self) -> None:
        require_lab_address(self.dst)
        if self.source_base is not None:
            require_lab_address(self.source_base, "source address")
        if self.request not in {"get", "version"}:
            raise LabError(f"request must be 'get' or 'version', not {self.request!r}")
        if self.duration <= 0 or self.concurrency < 1 or self.threads < 1 or self.rate < 0:
            raise LabError("load: duration, concurrency and threads must be positive")

    def args(self) -> list[str]:
        """Options understood by both the C and the Python client."""
        out = ["-a", self.dst, "-p", str(self.port)]
        if self.source_base is not None:
            out += ["-s", self.source_base, "-k", str(self.source_count)]
        out += ["-t", str(self.threads), "-c", str(self.concurrency), "-d", f"{self.duration:g}"]
        out += ["-w", str(self.deadline_ms), "-m", self.request, "-i", f"{self.interval:g}"]
        if self.rate > 0:
            out += ["-R", f"{self.rate:g}"]
        if self.count > 0:
            out += ["-n", str(self.count)]
        return out


@dataclass(frozen=True)
class LoadReport:
    """One line of load-generator output."""

    kind: str  # "interval" or "summary"
    t: float
    completed: int
    failed: int
    timed_out: int
    syn_retrans: int
    skipped: int
    p50_us: int
    p99_us: int


def parse_report_line(line: str) -> LoadReport | None:
    """Parse one output line; None for blank lines. Malformed lines raise LabError."""
    line = line.strip()
    if not line:
        return None
    try:
        obj = json.loads(line)
        return LoadReport(
            kind=str(obj["type"]),
            t=float(obj["t"]),
            completed=int(obj["completed"]),
            failed=int(obj["failed"]),
            timed_out=int(obj["timed_out"]),
            syn_retrans=int(obj["syn_retrans"]),
            skipped=int(obj.get("skipped", 0)),
            p50_us=int(obj["p50_us"]),
            p99_us=int(obj["p99_us"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(f"load generator printed an unreadable line: {line[:80]!r}") from exc


def source_bytes() -> bytes:
    return compiled.source_bytes("felis.lab", SOURCE_NAME)


def binary_path(cache: Path | None = None) -> Path:
    return compiled.output_path("felis.lab", SOURCE_NAME, "loadgen", cache)


def build(cache: Path | None = None, compiler: str | None = None) -> Path | None:
    """Path of the compiled C client, compiling it if needed; None when there is no compiler."""
    cc = compiler or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    try:
        return compiled.build(
            "felis.lab",
            SOURCE_NAME,
            "loadgen",
            lambda src, out: [cc, "-O2", "-pthread", "-o", str(out), str(src)],
            cache=cache,
            error=LabCommandError,
        )
    except LabCommandError as err:
        raise LabError(f"compiling {SOURCE_NAME} failed: {err}") from None


def command(spec: LoadSpec, binary: Path | None) -> list[str]:
    if binary is None:
        return [sys.executable, "-m", "felis.lab.pyloadgen", *spec.args()]
    return [str(binary), *spec.args()]


class LoadProcess:
    """A running load generator; iterate `reports()` for its per-interval lines."""

    def __init__(self, spec: LoadSpec, netns: str | None, binary: Path | None) -> None:
        self.spec = spec
        self.kind = "c" if binary is not None else "python"
        self.summary: LoadReport | None = None
        self._proc = sysexec.Process(command(spec, binary), netns=netns, error=LabCommandError)

    @property
    def pid(self) -> int:
        """The client's PID (`ip netns exec` execs it, so the PID is the client's own)."""
        return self._proc.pid

    def reports(self) -> Iterator[LoadReport]:
        """Interval reports as they arrive; the summary is kept in `self.summary`."""
        stdout = self._proc.stdout
        assert stdout is not None
        for line in stdout:
            report = parse_report_line(line)
            if report is None:
                continue
            if report.kind == "summary":
                self.summary = report
            else:
                yield report
        self.wait()

    def wait(self) -> None:
        rc = self._proc.wait(EXIT_TIMEOUT)
        if rc is None:
            raise LabError(f"load generator did not exit within {EXIT_TIMEOUT:g} s of its end")
        if rc != 0:
            stderr = self._proc.error_output()
            raise LabError(f"load generator exited with {rc}: {sysexec.error_line(stderr)}")

    def stop(self) -> None:
        self._proc.stop(grace=10.0)

    def __enter__(self) -> LoadProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_load(
    spec: LoadSpec, netns: str | None, binary: Path | None
) -> tuple[list[LoadReport], LoadReport]:
    """Run a load to completion; returns the interval reports and the summary."""
    with LoadProcess(spec, netns, binary) as proc:
        intervals = list(proc.reports())
        if proc.summary is None:
            raise LabError("load generator ended without a summary line")
        return intervals, proc.summary
