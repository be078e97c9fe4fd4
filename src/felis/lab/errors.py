"""The lab's error types: a one-line message, never a traceback."""

from __future__ import annotations

from felis.errors import FelisError
from felis.sysexec import CommandError


class LabError(FelisError):
    """The lab could not be built, run or removed; the message says which step failed."""


class LabCommandError(LabError, CommandError):
    """A command the lab ran failed; it carries the command, exit code and error output."""
