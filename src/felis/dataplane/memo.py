"""The render cache: what the renderers remember between renders, owned by whoever renders.

The IR is immutable (`felis.dataplane.spec`) and calc hands the same Chain objects to every
render while a chain is unchanged, so expansion, hashes, checks and rendered text are computed
once per chain object, not once per render. That memory lives in a `RenderCache`: each
`IptablesDataplane` / `NftablesDataplane` creates one and passes it to every render, and the pure
render functions take it as `cache=`. Without one they start from an empty cache of their own,
so `felis render`, `felis plan` and tests get the same text, only without the memory of earlier
calls. Nothing here is global: two dataplanes in one process share nothing, and dropping a
dataplane drops everything it remembered.

Two kinds of memo, each declared once at module level by the code that uses it (the
declaration holds no entries; the entries are in each cache):

- `PerObject`: keyed by an IR object's *identity* plus a small key (hashing a chain by value
  would walk all its rules, the very cost we avoid). Each entry keeps its object alive, so an id
  cannot be reused while its entry exists; the identity is only a sound key because the object
  can never change.
- `PerValue`: a pure function of hashable values (a `Match`, a members frozenset), memoised by
  argument value with `functools.lru_cache` (a ruleset has far fewer distinct matches than rules).

Both are bounded; they never change a result, only how often it is computed.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar

K = TypeVar("K")
V = TypeVar("V")
P = ParamSpec("P")
R = TypeVar("R")


class IdentityMemo(Generic[K, V]):
    """`get(obj, key, compute, *args)`: compute(*args) once per (obj identity, key)."""

    __slots__ = ("_entries", "_limit")

    def __init__(self, limit: int = 1 << 18) -> None:
        self._entries: dict[tuple[int, K], tuple[object, V]] = {}
        self._limit = limit

    def get(self, obj: object, key: K, compute: Callable[..., V], *args: object) -> V:
        # `args` rather than a closure: a hit, by far the common case, then allocates nothing.
        slot = (id(obj), key)
        entry = self._entries.get(slot)
        if entry is not None and entry[0] is obj:
            return entry[1]
        value = compute(*args)
        if len(self._entries) >= self._limit:
            # Drop the older half: mostly objects of superseded specs; a chain still in use
            # that goes with them is computed once more.
            for old in list(itertools.islice(self._entries, self._limit // 2)):
                del self._entries[old]
        self._entries[slot] = (obj, value)
        return value

    def __len__(self) -> int:
        return len(self._entries)


class PerObject(Generic[K, V]):
    """Declares a memo keyed by object identity: each `RenderCache` holds one `IdentityMemo` of
    it (`cache.objects(memo)`)."""

    __slots__ = ("limit",)

    def __init__(self, limit: int = 1 << 18) -> None:
        self.limit = limit


class PerValue(Generic[P, R]):
    """Declares a pure function memoised by argument value: each `RenderCache` holds its own
    `functools.lru_cache` of it (`cache.values(memo)`)."""

    __slots__ = ("fn", "maxsize")

    def __init__(self, fn: Callable[P, R], maxsize: int) -> None:
        self.fn = fn
        self.maxsize = maxsize


class RenderCache:
    """Every memo of the renderers, for one owner (a dataplane instance, or one render call).

    Not thread-safe: an owner renders from one thread at a time, as the kernel layer does.
    """

    __slots__ = ("_objects", "_values")

    def __init__(self) -> None:
        # Typed loosely on purpose: each entry matches its own declaration's types, which a
        # dict cannot say; no `typing.cast`, a function call on every lookup of a hot path.
        self._objects: dict[PerObject[Any, Any], IdentityMemo[Any, Any]] = {}
        self._values: dict[PerValue[..., Any], Callable[..., Any]] = {}

    def objects(self, memo: PerObject[K, V]) -> IdentityMemo[K, V]:
        table = self._objects.get(memo)
        if table is None:
            table = self._objects[memo] = IdentityMemo(memo.limit)
        return table

    def values(self, memo: PerValue[P, R]) -> Callable[P, R]:
        """`memo`'s function, memoised in this cache (a `functools.lru_cache` wrapper, so its
        `cache_info()` is there for tests)."""
        fn = self._values.get(memo)
        if fn is None:
            wrapper: Callable[..., Any] = functools.lru_cache(maxsize=memo.maxsize)(memo.fn)
            fn = self._values[memo] = wrapper
        return fn

    def clear(self) -> None:
        """Forget everything (the next render of any object computes it again)."""
        self._objects.clear()
        self._values.clear()


def cache_or_new(cache: RenderCache | None) -> RenderCache:
    """`cache`, or a fresh one for a caller that has none (it lives as long as the call)."""
    return cache if cache is not None else RenderCache()


def by_value(cache: RenderCache | None, memo: PerValue[P, R]) -> Callable[P, R]:
    """`memo`'s function memoised in `cache`, or the bare function when there is no cache (for a
    single value a fresh cache would only add its own cost)."""
    return memo.fn if cache is None else cache.values(memo)
