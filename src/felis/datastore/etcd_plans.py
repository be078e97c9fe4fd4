"""What an etcd write round (felis.datastore.etcd_round) plans into its slots: puts, applies and
deletes with Calico's resourceVersion checks, and the revision stamped on the results at commit.
Pure: no etcd call happens here."""

from __future__ import annotations

import builtins
import copy
from collections.abc import Sequence

from felis.datastore.base import ApplyAction, ApplyResult
from felis.datastore.errors import Conflict, NotFound
from felis.datastore.etcd_codec import canonical
from felis.datastore.etcd_round import Slot, without_rv
from felis.datastore.objects import (
    JSONObject,
    given_resource_version,
    new_stored_form,
    updated_stored_form,
)


def finish_round(slots: dict[tuple[str, str], Slot], revision: int) -> None:
    for slot in slots.values():
        for obj in slot.pending:
            obj["metadata"]["resourceVersion"] = str(revision)


def plan_put(slot: Slot, stored: JSONObject) -> JSONObject:
    """Plan writing `stored`; the returned copy gets its resourceVersion at commit."""
    planned = dict(stored)
    planned["metadata"] = {**stored["metadata"], "resourceVersion": ""}
    slot.state = canonical(planned)
    slot.dirty = True
    result = copy.deepcopy(slot.state)
    slot.pending.append(result)
    return result


def plan_apply(
    keyed: Sequence[tuple[tuple[str, str], JSONObject]],
    slots: dict[tuple[str, str], Slot],
) -> builtins.list[ApplyResult]:
    results: builtins.list[ApplyResult] = []
    for (kind, name), obj in keyed:
        slot = slots[(kind, name)]
        action: ApplyAction
        if slot.state is None:
            action, stored = "created", plan_put(slot, new_stored_form(obj))
        else:
            latest = str(slot.version)
            given = given_resource_version(obj)
            if given is not None and given != latest:
                raise Conflict(kind, name, given, latest)
            wanted = canonical(updated_stored_form(obj, slot.state))
            if wanted == without_rv(slot.state):
                action, stored = "unchanged", copy.deepcopy(slot.state)
                if slot.dirty:
                    slot.pending.append(stored)
            else:
                action, stored = "updated", plan_put(slot, wanted)
        results.append(ApplyResult(action, stored))
    return results


def plan_delete(
    checked: Sequence[tuple[str, str, str | None]], slots: dict[tuple[str, str], Slot]
) -> builtins.list[JSONObject]:
    deleted = []
    for kind, name, guard in checked:
        slot = slots[(kind, name)]
        if slot.state is None:
            raise NotFound(kind, name)
        latest = str(slot.version)
        if guard is not None and guard != latest:
            raise Conflict(kind, name, guard, latest)
        deleted.append(copy.deepcopy(slot.state))
        slot.state = None
        slot.dirty = True
    return deleted
