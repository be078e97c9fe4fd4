"""The one error type the selector language raises for bad input."""

from __future__ import annotations

from felis.errors import FelisError

# Longer selectors are shown as an excerpt around the failure so the message stays readable.
_MAX_SHOWN = 160
_EXCERPT_RADIUS = 60


def _quote(text: str) -> str:
    """Double-quote ``text`` for a message, escaping anything that could break the line."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    out.append('"')
    return "".join(out)


def _shown(text: str, position: int) -> str:
    if len(text) <= _MAX_SHOWN:
        return _quote(text)
    start = max(0, position - _EXCERPT_RADIUS)
    end = min(len(text), position + _EXCERPT_RADIUS)
    head = "…" if start > 0 else ""
    tail = "…" if end < len(text) else ""
    return f"{head}{_quote(text[start:end])}{tail}"


class SelectorError(FelisError, ValueError):
    """A selector string that Calico's parser would reject.

    ``position`` is the 0-based character offset where the text stopped making sense
    (``len(text)`` when the selector ended too early).
    """

    text: str
    position: int
    reason: str

    def __init__(self, text: str, position: int, reason: str) -> None:
        self.text = text
        self.position = position
        self.reason = reason
        super().__init__(
            f"invalid selector {_shown(text, position)} at position {position}: {reason}"
        )

    def __reduce__(self) -> tuple[type[SelectorError], tuple[str, int, str]]:
        return (type(self), (self.text, self.position, self.reason))
