"""The value checks every kind's metadata (and a rule's metadata) goes through: labels,
annotations, RFC 3339 timestamps (docs/calico-semantics.md#metadata), and the `(path, reason)`
problem type all of felis.model's validation appends to."""

from __future__ import annotations

import re
from datetime import datetime

from felis.model import checks
from felis.model.paths import join, printable

Problem = tuple[str, str]

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _q(value: object) -> str:
    return printable(str(value))


def _is_rfc3339(text: str) -> bool:
    if not _RFC3339.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def check_labels(labels: dict[str, str], path: str, problems: list[Problem]) -> None:
    """Labels (docs/calico-semantics.md#metadata): keys are qualified names, values label values."""
    for key, value in labels.items():
        key_path = join(path, key)
        problems.extend(
            (key_path, f"invalid label key: {r}") for r in checks.qualified_name_reasons(key)
        )
        problems.extend(
            (key_path, f"invalid label value '{_q(value)}': {r}")
            for r in checks.label_value_reasons(value)
        )


def check_annotations(annotations: dict[str, str], path: str, problems: list[Problem]) -> None:
    """Annotations (docs/calico-semantics.md#metadata): keys are qualified names once lower-cased;
    keys+values at most 256 KiB."""
    total = 0
    for key, value in annotations.items():
        problems.extend(
            (join(path, key), f"invalid annotation key: {r}")
            for r in checks.qualified_name_reasons(key.lower())
        )
        total += len(key.encode("utf-8", "surrogatepass"))
        total += len(value.encode("utf-8", "surrogatepass"))
    if total > checks.ANNOTATIONS_MAX_BYTES:
        problems.append(
            (
                path,
                "total size of annotations is too large by "
                f"{total - checks.ANNOTATIONS_MAX_BYTES} bytes",
            )
        )
