"""The `checks` of a multi-object write (felis.datastore.base): what the view shows, and a
refusal writes nothing. Run against SQLite here and, through
tests/cluster/test_datastore_contract.py, against etcd too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from dstest_helpers import GNP, gnp, names, rv

from felis.datastore import Datastore, ReadView
from felis.errors import FelisError


def test_the_view_shows_what_is_stored_before_the_write(store: Datastore) -> None:
    a = store.create(gnp("a"))
    store.create(gnp("b"))
    seen: dict[str, Any] = {}

    def look(view: ReadView) -> None:
        seen["keys"] = view.get_all([(GNP, "a"), (GNP, "c")])
        seen["listed"] = view.list(GNP)
        seen["tiers"] = view.list("Tier")

    store.apply([gnp("c"), gnp("a", order=5)], checks=look)
    assert seen["keys"] == {(GNP, "a"): a, (GNP, "c"): None}
    assert names(seen["listed"]) == ["a", "b"] and seen["listed"][0] == a
    assert seen["tiers"] == []
    assert store.get(GNP, "a")["spec"]["order"] == 5 and rv(store.get(GNP, "c"))


def _refuse(view: ReadView) -> None:
    view.list(GNP)
    raise FelisError("refused by the checks")


@pytest.mark.parametrize(
    "write",
    [
        lambda store: store.create_all([gnp("new")], checks=_refuse),
        lambda store: store.apply([gnp("old", order=1), gnp("new")], checks=_refuse),
        lambda store: store.delete_all([(GNP, "old")], checks=_refuse),
    ],
    ids=["create_all", "apply", "delete_all"],
)
def test_a_refusing_check_writes_nothing(
    store: Datastore, write: Callable[[Datastore], object]
) -> None:
    old = store.create(gnp("old"))
    before = store.revision()
    with pytest.raises(FelisError, match="refused by the checks"):
        write(store)
    assert store.revision() == before
    assert store.list(GNP).items == [old]
