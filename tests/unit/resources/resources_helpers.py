"""Helpers of the resource-service tests (unique module name: imported via sys.path, like
conftest). tests/cluster imports them too, so nothing here assumes the SQLite backend."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from felis.datastore import ApplyResult, Datastore, DeleteKey, ReadView, WriteCheck
from felis.datastore.objects import JSONObject
from felis.model import Located
from felis.resources import parse

POLICY_KINDS = (
    "GlobalNetworkPolicy",
    "NetworkPolicy",
    "StagedGlobalNetworkPolicy",
    "StagedNetworkPolicy",
)


@dataclass(frozen=True)
class Text:
    name: str
    data: bytes


def items(*documents: str, source: str = "in.yaml") -> list[Located]:
    return parse([Text(source, "---\n".join(documents).encode())])


def tier(name: str, order: int = 100) -> str:
    return (
        "apiVersion: projectcalico.org/v3\nkind: Tier\n"
        f"metadata: {{name: {name}}}\nspec: {{order: {order}}}\n"
    )


def policy(name: str, tier_name: str | None = None, kind: str = "GlobalNetworkPolicy") -> str:
    """A policy of `kind` named `<tier>.<name>` in tier `tier_name` (the default tier if None)."""
    full = f"{tier_name}.{name}" if tier_name else name
    namespace = ", namespace: team" if kind in ("NetworkPolicy", "StagedNetworkPolicy") else ""
    tier_line = f"  tier: {tier_name}\n" if tier_name else ""
    return (
        f"apiVersion: projectcalico.org/v3\nkind: {kind}\n"
        f"metadata: {{name: {full}{namespace}}}\n"
        f"spec:\n{tier_line}  order: 10\n  selector: all()\n  types: [Ingress]\n"
    )


def gns(name: str, version: str | None = None) -> str:
    rv = f", resourceVersion: '{version}'" if version else ""
    return (
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\n"
        f"metadata: {{name: {name}{rv}}}\nspec: {{nets: [198.18.0.0/24]}}\n"
    )


class Interleaved:
    """A datastore whose next checked write runs `meanwhile` (another client's write) inside
    its checks, once they have read: exactly the moment two writers race in.

    `runs` counts how often the checks ran; `outcome` is what `meanwhile` returned or raised.
    """

    def __init__(self, store: Datastore, meanwhile: Callable[[], object]) -> None:
        self.store = store
        self.meanwhile: Callable[[], object] | None = meanwhile
        self.runs = 0
        self.outcome: object = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def _wrap(self, checks: WriteCheck | None) -> WriteCheck:
        def wrapped(view: ReadView) -> None:
            self.runs += 1
            if checks is not None:
                checks(view)
            if self.meanwhile is not None:
                run, self.meanwhile = self.meanwhile, None
                try:
                    self.outcome = run()
                except Exception as err:
                    self.outcome = err

        return wrapped

    def create_all(
        self, objs: Sequence[JSONObject], *, checks: WriteCheck | None = None
    ) -> builtins.list[JSONObject]:
        return self.store.create_all(objs, checks=self._wrap(checks))

    def apply(
        self, objs: Sequence[JSONObject], *, checks: WriteCheck | None = None
    ) -> builtins.list[ApplyResult]:
        return self.store.apply(objs, checks=self._wrap(checks))

    def delete_all(
        self, keys: Sequence[DeleteKey], *, checks: WriteCheck | None = None
    ) -> builtins.list[JSONObject]:
        return self.store.delete_all(keys, checks=self._wrap(checks))

    def as_store(self) -> Datastore:
        return cast(Datastore, self)
