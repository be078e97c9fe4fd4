"""The exit codes of every `felis` command (docs/cli.md), in one place.

A script must be able to tell "you called me wrongly" from "I ran and found something", so
usage errors (2, click's own code) never share a code with a finding.
"""

from __future__ import annotations

from felis.errors import FelisError

FAILURE = 1
"""Bad input, conflict, missing resource or datastore, anything that stopped the command."""
USAGE = 2
"""The command line itself is wrong: unknown kind or option value, missing arguments."""
FOUND = 3
"""The command ran and found something to act on: `lint` warnings, `plan` changes."""


class BadUsage(FelisError):
    """A command-line mistake only the command body can see (an unknown kind, a malformed
    address, arguments that exclude each other); one line, exit code USAGE."""


class CommandFailed(FelisError):
    """Errors were already printed line by line; only the exit code is left to set."""
