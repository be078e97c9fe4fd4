"""The renderers' memo registry: per-object memos and one `clear_memos` for all of them.

The IR is immutable and calc hands the same Chain objects to every render while a chain is
unchanged, so expansion, hashes, checks and rendered text are computed once per chain object, not
once per render. Keys are object identities (hashing a chain by value would walk all its rules, the
very cost we avoid); each entry keeps its object alive, so an id cannot be reused while its entry
exists. The caches are bounded and dropped whole when full; they never change a result, only how
often it is computed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_MEMOS: list[Callable[[], None]] = []
"""`clear` of every memo of the renderers (identity memos and value-keyed lru caches)."""


def register_memo(clear: Callable[[], None]) -> None:
    _MEMOS.append(clear)


def clear_memos() -> None:
    """Forget everything memoised (benchmarks use it to measure a cold render)."""
    for clear in _MEMOS:
        clear()


class IdentityMemo(Generic[K, V]):
    """`get(obj, key, compute)`: compute(obj) once per (obj identity, key)."""

    def __init__(self, limit: int = 1 << 18) -> None:
        self._entries: dict[tuple[int, K], tuple[object, V]] = {}
        self._limit = limit
        register_memo(self.clear)

    def get(self, obj: object, key: K, compute: Callable[[], V]) -> V:
        slot = (id(obj), key)
        entry = self._entries.get(slot)
        if entry is not None and entry[0] is obj:
            return entry[1]
        value = compute()
        if len(self._entries) >= self._limit:
            # Drop the older half: mostly objects of superseded specs; a chain still in use
            # that goes with them is computed once more.
            for old in list(itertools.islice(self._entries, self._limit // 2)):
                del self._entries[old]
        self._entries[slot] = (obj, value)
        return value

    def clear(self) -> None:
        self._entries.clear()
