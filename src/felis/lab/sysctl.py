"""The one global sysctl the lab changes: net.netfilter.nf_conntrack_max.

It is global (read-only inside a namespace) and every namespace's own count is compared against
it, so a small table for the demo needs a brief global change. The original value is written to
the run directory *before* the change, so `felis lab down` can put it back after a crash, and it
is restored in `finally`, by an atexit hook and (through `cleanup_on_signals`) on SIGTERM/SIGINT.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path
from types import TracebackType

from felis.lab.errors import LabError

CONNTRACK_MAX = Path("/proc/sys/net/netfilter/nf_conntrack_max")
RECORD_NAME = "conntrack_max.orig"


def read_conntrack_max(path: Path = CONNTRACK_MAX) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise LabError(f"cannot read {path}: {exc}") from exc


def write_conntrack_max(value: int, path: Path = CONNTRACK_MAX) -> None:
    try:
        path.write_text(f"{value}\n")
    except OSError as exc:
        raise LabError(f"cannot set {path} to {value}: {exc}") from exc


def restore_recorded(run_dir: Path, path: Path = CONNTRACK_MAX) -> int | None:
    """Put back a value recorded by an earlier (possibly crashed) run; returns it, or None."""
    record = run_dir / RECORD_NAME
    try:
        original = int(record.read_text().strip())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise LabError(f"{record}: not an integer; restore nf_conntrack_max by hand") from exc
    write_conntrack_max(original, path)
    record.unlink(missing_ok=True)
    return original


class ConntrackMaxGuard:
    """Context manager: set nf_conntrack_max to `value`, always restore the original."""

    def __init__(self, value: int, run_dir: Path, path: Path = CONNTRACK_MAX) -> None:
        if value < 1:
            raise LabError(f"--conntrack-max must be a positive number, not {value}")
        self.value = value
        self.run_dir = run_dir
        self.path = path
        self.original: int | None = None

    @property
    def record(self) -> Path:
        return self.run_dir / RECORD_NAME

    def __enter__(self) -> ConntrackMaxGuard:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.record.exists():
            # A crashed run left its record: that, not the current (lowered) value, is the
            # machine's real setting.
            self.original = int(self.record.read_text().strip())
        else:
            self.original = read_conntrack_max(self.path)
            tmp = self.record.with_suffix(".tmp")
            tmp.write_text(f"{self.original}\n")
            os.replace(tmp, self.record)
        atexit.register(self.restore)
        write_conntrack_max(self.value, self.path)
        return self

    def restore(self) -> None:
        """Idempotent: write the original back and forget the record."""
        if self.original is None:
            return
        write_conntrack_max(self.original, self.path)
        self.record.unlink(missing_ok=True)
        self.original = None
        atexit.unregister(self.restore)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.restore()
