"""The one exception family felis shows to users.

Every error a user can cause (bad input, a conflict, an unreachable datastore, a kernel tool
failing) is a FelisError whose str() is a single line that is safe to print as is. The CLI turns
these into exit code 1 without a traceback; anything else is a bug.
"""


class FelisError(Exception):
    """A user-facing failure; str(err) is one line naming what and where."""
