"""One write round of the etcd backend (felis.datastore.etcd): the slots it read and plans to
write, the view a write's `checks` read through, and what the commit pins of what was read."""

from __future__ import annotations

import builtins
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from felis.datastore.base import Key, Listing
from felis.datastore.etcd_client import b64, prefix_end
from felis.datastore.etcd_codec import kind_prefix
from felis.datastore.objects import JSONObject


@dataclass
class Slot:
    """One (kind, name) during a write round."""

    kind: str
    name: str
    key: str  # the etcd key that holds the object (or will)
    reads: dict[str, int]  # every key looked at → mod_revision read (0 = absent)
    stored: JSONObject | None  # felis view as read, with resourceVersion
    state: JSONObject | None = None  # planned content (felis view, no resourceVersion)
    dirty: bool = False
    pending: builtins.list[JSONObject] = field(default_factory=list)  # results awaiting an rv

    def __post_init__(self) -> None:
        if self.stored is not None:
            self.state = copy.deepcopy(self.stored)

    @property
    def version(self) -> str | None:
        """resourceVersion of the planned state (None if absent, "" if not yet committed)."""
        if self.state is None:
            return None
        return str(self.state["metadata"].get("resourceVersion", ""))


class RoundView:
    """The `ReadView` of one write round: it remembers every slot it read, which the round
    then writes through, and the revision of every listing, which the commit pins."""

    def __init__(
        self,
        read_slots: Callable[[builtins.list[Key]], dict[Key, Slot]],
        list_prefix: Callable[[str], Listing],
    ) -> None:
        self._read_slots = read_slots
        self._list_prefix = list_prefix
        self.slots: dict[Key, Slot] = {}
        self.listed: dict[str, int] = {}  # kind prefix -> revision of the listing

    def read(self, keys: Sequence[Key]) -> dict[Key, Slot]:
        missing = [key for key in dict.fromkeys(keys) if key not in self.slots]
        if missing:
            self.slots.update(self._read_slots(missing))
        return self.slots

    def get_all(self, keys: Sequence[Key]) -> dict[Key, JSONObject | None]:
        slots = self.read(keys)
        return {key: copy.deepcopy(slots[key].stored) for key in keys}

    def list(self, kind: str) -> builtins.list[JSONObject]:
        prefix = kind_prefix(kind)
        listing = self._list_prefix(prefix)
        self.listed[prefix] = min(listing.revision, self.listed.get(prefix, listing.revision))
        return listing.items


def listing_compares(listed: dict[str, int]) -> builtins.list[dict[str, Any]]:
    """Every key of each listed range still at most as new as its listing: nothing created or
    changed there since (a deletion alone passes, as ReadView.list says)."""
    return [
        {
            "key": b64(prefix),
            "range_end": prefix_end(prefix),
            "target": "MOD",
            "result": "LESS",
            "mod_revision": revision + 1,
        }
        for prefix, revision in listed.items()
    ]


def without_rv(obj: JSONObject) -> JSONObject:
    out = dict(obj)
    out["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
    return out


MARK_PREFIX = "/felis/marks/"
"""Where felis keeps its marks (`base.Mark`): outside Calico's prefix, so that neither Calico
nor a felis listing or watch ever sees them."""


@dataclass(frozen=True)
class MarkWrite:
    """The mark a round writes along with its objects: pinned to the version (mod_revision,
    0 = absent) it must still have, set to `body` or removed when None."""

    key: str
    expect: int
    body: str | None

    def compares(self) -> builtins.list[dict[str, Any]]:
        return [
            {"key": b64(self.key), "target": "MOD", "result": "EQUAL", "mod_revision": self.expect}
        ]

    def ops(self) -> builtins.list[dict[str, Any]]:
        if self.body is None:
            return [{"request_delete_range": {"key": b64(self.key)}}] if self.expect else []
        return [{"request_put": {"key": b64(self.key), "value": b64(self.body)}}]
