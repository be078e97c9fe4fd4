"""The lab's one error type: a one-line message, never a traceback."""

from __future__ import annotations

from felis.errors import FelisError


class LabError(FelisError):
    """The lab could not be built, run or removed; the message says which step failed."""
