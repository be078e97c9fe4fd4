"""Reading manifest input for `-f FILE|DIR|-` the way calicoctl does, with bounds.

The size bound is enforced here, before any parser sees the bytes: a 100 MB file is refused
after reading at most limit+1 bytes, so it costs nothing and fails in milliseconds.
"""

from __future__ import annotations

import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from felis.errors import FelisError

MAX_INPUT_BYTES = 10 * 1024 * 1024
"""calicoctl splits documents at 10 MB; felis bounds the whole file the same way."""

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Source:
    name: str
    data: bytes


def _read_bounded(stream_name: str, reader: object, limit: int) -> bytes:
    read = getattr(reader, "read")  # noqa: B009 - binary file objects and sys.stdin.buffer alike
    data: bytes = read(limit + 1)
    if len(data) > limit:
        raise FelisError(
            f"{stream_name}: input is larger than the {limit // (1024 * 1024)} MiB limit"
        )
    return data


def read_sources(
    filename: str, *, recursive: bool = False, limit: int = MAX_INPUT_BYTES
) -> list[Source]:
    """The manifest sources named by `-f`: stdin, one file, or the manifests of a directory."""
    if filename == "-":
        return [Source("<stdin>", _read_bounded("<stdin>", sys.stdin.buffer, limit))]
    path = Path(filename)
    try:
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(
                p for p in path.glob(pattern) if p.is_file() and p.suffix in MANIFEST_SUFFIXES
            )
            if not files:
                raise FelisError(f"no resources specified in directory {filename}")
            return [_read_file(p, limit) for p in files]
        return [_read_file(path, limit)]
    except OSError as err:
        raise FelisError(f"{filename}: cannot read: {err.strerror or err}") from None


def _read_file(path: Path, limit: int) -> Source:
    info = path.stat()
    # A FIFO or a device would block or never end; stdin is `-f -`.
    if not stat.S_ISREG(info.st_mode):
        raise FelisError(f"{path}: not a regular file (use -f - to read standard input)")
    # Check the size first so a huge file is refused without being read.
    size = info.st_size
    if size > limit:
        raise FelisError(
            f"{path}: file is {size} bytes, larger than the {limit // (1024 * 1024)} MiB limit"
        )
    with path.open("rb") as handle:
        return Source(str(path), _read_bounded(str(path), handle, limit))
