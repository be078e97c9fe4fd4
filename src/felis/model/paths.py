"""Field paths in error messages: `spec.ingress[0].destination.ports[1]`, Calico's JSON names."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def join(base: str, key: str | int) -> str:
    """Append one step: `.name`, `[3]`, or `["app.kubernetes.io/name"]` for awkward keys."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    if _PLAIN_KEY.fullmatch(key):
        return f"{base}.{key}" if base else key
    quoted = json.dumps(key, ensure_ascii=True)
    return f"{base}[{quoted}]"


def from_parts(parts: Iterable[str | int]) -> str:
    path = ""
    for part in parts:
        path = join(path, part)
    return path


def printable(text: str) -> str:
    """Keep user-supplied text on one line: escape anything that is not printable."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
