"""Errors of manifest loading: one line per problem, naming document, field and reason."""

from __future__ import annotations

from dataclasses import dataclass

from felis.errors import FelisError
from felis.model.paths import printable


@dataclass(frozen=True, slots=True)
class DocumentError:
    """One problem in one document; any part that is not known is None and left out."""

    source: str
    index: int | None
    kind: str | None
    name: str | None
    path: str | None
    reason: str

    def __str__(self) -> str:
        where = printable(self.source)
        if self.index is not None:
            where += f": document {self.index}"
        label = " ".join(printable(part) for part in (self.kind, self.name) if part)
        if label:
            where += f" ({label})"
        if self.path:
            where += f": {printable(self.path)}"
        return f"{where}: {printable(self.reason)}"


class ManifestError(FelisError):
    """Loading failed; `errors` holds every problem found, in document order."""

    def __init__(self, errors: list[DocumentError]) -> None:
        if not errors:
            raise ValueError("ManifestError needs at least one DocumentError")
        self.errors = list(errors)
        super().__init__(self._summary())

    def _summary(self) -> str:
        first = str(self.errors[0])
        more = len(self.errors) - 1
        return f"{first} (and {more} more)" if more else first

    def lines(self) -> list[str]:
        """Every problem, one printable line each."""
        return [str(error) for error in self.errors]

    def __str__(self) -> str:
        return self._summary()
