"""C sources shipped as package data, compiled on first use into a cache keyed by their hash.

The lab's load generator and flooder, and the BPF programs (felis' XDP blocklist, the
flooder's frame generator) are all built this way: the source travels in
the wheel, the machine's own compiler builds it once, and a changed source gets a new file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from felis import sysexec

COMPILE_TIMEOUT = 300.0


def cache_dir() -> Path:
    if env := os.environ.get("FELIS_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "felis"


def source_bytes(package: str, name: str) -> bytes:
    return (resources.files(package) / name).read_bytes()


def output_path(package: str, name: str, stem: str, cache: Path | None = None) -> Path:
    digest = hashlib.sha256(source_bytes(package, name)).hexdigest()[:16]
    return (cache or cache_dir()) / f"{stem}-{digest}"


def build(
    package: str,
    name: str,
    stem: str,
    compile_argv: Callable[[Path, Path], list[str]],
    *,
    cache: Path | None = None,
    error: type[sysexec.CommandError] = sysexec.CommandError,
) -> Path:
    """The compiled output of `package`/`name`, compiling it if needed with
    `compile_argv(source, output)`; a failed compile raises `error`."""
    target = output_path(package, name, stem, cache)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        src = Path(tmp) / name
        src.write_bytes(source_bytes(package, name))
        out = Path(tmp) / stem
        sysexec.run(compile_argv(src, out), timeout=COMPILE_TIMEOUT, error=error)
        # Atomic: a concurrent build or a reader never sees a half-written file.
        os.replace(out, target)
    return target


def build_bpf(
    package: str,
    name: str,
    stem: str,
    *,
    cache: Path | None = None,
    error: type[sysexec.CommandError] = sysexec.CommandError,
    missing: type[Exception] = sysexec.CommandError,
) -> Path:
    """A BPF object compiled from `package`/`name` with clang, on first use; `missing` is
    raised (one line) when there is no clang."""
    clang = shutil.which("clang")
    if clang is None:
        raise missing(f"building {name} needs clang (Debian: apt-get install clang)")
    return build(
        package,
        name,
        stem,
        # The multiarch include dir holds asm/types.h, which linux/bpf.h needs.
        lambda src, out: [clang, "-O2", "-g", "-Wall", "-target", "bpf",
                          "-I/usr/include/x86_64-linux-gnu", "-c", str(src), "-o", str(out)],
        cache=cache,
        error=error,
    )  # fmt: skip
