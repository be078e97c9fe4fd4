"""The resource service's checks against the datastore, one rule at a time, on SQLite."""

from __future__ import annotations

import pytest
from resources_helpers import POLICY_KINDS, Text, gns, items, policy, tier

from felis.datastore import SqliteDatastore
from felis.model.constants import BUILTIN_TIER_NAMES
from felis.resources import (
    DeleteTarget,
    MappingView,
    Problems,
    ResourceService,
    check_write,
    parse,
    preview_apply,
)


def refused(run: object) -> list[str]:
    with pytest.raises(Problems) as err:
        run()  # type: ignore[operator]
    return err.value.lines()


def stored_keys(store: SqliteDatastore) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in store.list().items if o["kind"] != "Tier"]


# -- a policy's tier --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", POLICY_KINDS)
@pytest.mark.parametrize("verb", ["apply", "create"])
def test_a_policy_of_every_kind_needs_its_tier(
    store: SqliteDatastore, kind: str, verb: str
) -> None:
    store.ensure_initialized()
    before = store.revision()
    service = ResourceService(store)
    write = service.apply if verb == "apply" else service.create
    lines = refused(lambda: write(items(policy("p", "sec", kind))))
    assert lines == [
        f"in.yaml: document 1 ({kind} sec.p): spec.tier: resource does not exist: Tier(sec)"
    ]
    assert store.revision() == before, "nothing was written"


def test_replace_checks_the_tier_too(store: SqliteDatastore) -> None:
    service = ResourceService(store)
    service.apply(items(tier("sec"), policy("p", "sec")))
    lines = refused(lambda: service.replace(items(policy("p", "ops"), source="r.yaml")))
    assert lines == [
        "r.yaml: document 1 (GlobalNetworkPolicy ops.p): resource does not exist: "
        "GlobalNetworkPolicy(ops.p)",
        "r.yaml: document 1 (GlobalNetworkPolicy ops.p): spec.tier: resource does not exist: "
        "Tier(ops)",
    ]


def test_a_tier_is_there_when_built_in_stored_or_created_alongside(store: SqliteDatastore) -> None:
    service = ResourceService(store)
    service.apply(items(tier("sec"), policy("p", "sec")))  # created by the same write
    service.apply(items(policy("q", "sec")))  # stored
    service.create(items(policy("r", "kube-admin"), policy("s")))  # built in, default
    assert sorted(name for _, name in stored_keys(store)) == ["kube-admin.r", "s", "sec.p", "sec.q"]


def test_built_in_tiers_exist_without_being_stored() -> None:
    nothing = MappingView({})
    for name in sorted(BUILTIN_TIER_NAMES):
        check_write(items(policy("p", name)), nothing)
    with pytest.raises(Problems, match=r"Tier\(sec\)"):
        check_write(items(policy("p", "sec")), nothing)


# -- existence and versions ---------------------------------------------------------------------


def test_create_refuses_what_exists_and_a_resource_version(store: SqliteDatastore) -> None:
    service = ResourceService(store)
    service.create(items(gns("a")))
    lines = refused(lambda: service.create(items(gns("a"), gns("b", version="7"))))
    assert lines == [
        "in.yaml: document 1 (GlobalNetworkSet a): resource already exists: GlobalNetworkSet(a)",
        "in.yaml: document 2 (GlobalNetworkSet b): metadata.resourceVersion: field must not be "
        "set for a Create request (use apply or replace)",
    ]
    assert stored_keys(store) == [("GlobalNetworkSet", "a")]


def test_create_can_skip_what_exists(store: SqliteDatastore) -> None:
    service = ResourceService(store)
    service.create(items(gns("a")))
    done = service.create(items(gns("a"), gns("b")), skip_existing=True)
    assert [i.resource.metadata.name for i in done.created] == ["b"] and done.skipped == 1


def test_replace_refuses_what_does_not_exist(store: SqliteDatastore) -> None:
    service = ResourceService(store)
    service.create(items(gns("a")))
    lines = refused(lambda: service.replace(items(gns("a"), gns("b"))))
    assert lines == [
        "in.yaml: document 2 (GlobalNetworkSet b): resource does not exist: GlobalNetworkSet(b)"
    ]


def test_a_stale_resource_version_is_a_conflict(store: SqliteDatastore) -> None:
    service = ResourceService(store)
    [created] = service.apply(items(gns("a")))
    old = created.object["metadata"]["resourceVersion"]
    service.apply(items(gns("a").replace("198.18.0.0/24", "198.18.1.0/24")))
    latest = store.get("GlobalNetworkSet", "a")["metadata"]["resourceVersion"]
    conflict = (
        f"update conflict: GlobalNetworkSet(a): resource version '{old}' is out of date "
        f"(latest: {latest})"
    )
    for write in (service.apply, service.replace):
        lines = refused(lambda: write(items(gns("a", version=old))))  # noqa: B023
        assert lines == [
            f"in.yaml: document 1 (GlobalNetworkSet a): metadata.resourceVersion: {conflict}"
        ]
    target = DeleteTarget("GlobalNetworkSet", "a", old)
    assert refused(lambda: service.delete([target])) == [conflict]
    assert store.get("GlobalNetworkSet", "a")["metadata"]["resourceVersion"] == latest


# -- deleting -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILTIN_TIER_NAMES))
def test_a_built_in_tier_cannot_be_deleted(store: SqliteDatastore, name: str) -> None:
    store.ensure_initialized()
    assert refused(lambda: ResourceService(store).delete([DeleteTarget("Tier", name)])) == [
        f"Cannot delete {name} tier"
    ]
    assert store.get("Tier", name)


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_a_tier_holding_a_policy_cannot_be_deleted(store: SqliteDatastore, kind: str) -> None:
    service = ResourceService(store)
    service.apply(items(tier("sec"), policy("p", "sec", kind)))
    held = "team/sec.p" if kind in ("NetworkPolicy", "StagedNetworkPolicy") else "sec.p"
    assert refused(lambda: service.delete([DeleteTarget("Tier", "sec")])) == [
        f"Cannot delete a non-empty tier: Tier(sec) still holds {kind}({held})"
    ]
    # Deleting the policy with it empties the tier: both go.
    done = service.delete([DeleteTarget(kind, held), DeleteTarget("Tier", "sec")])
    assert len(done.deleted) == 2
    assert "sec" not in [t["metadata"]["name"] for t in store.list("Tier").items]


def test_delete_refuses_what_does_not_exist_unless_skipped(store: SqliteDatastore) -> None:
    service = ResourceService(store)
    service.create(items(gns("a")))
    targets = [DeleteTarget("GlobalNetworkSet", name) for name in ("x", "a")]
    assert refused(lambda: service.delete(targets)) == [
        "resource does not exist: GlobalNetworkSet(x)"
    ]
    assert stored_keys(store) == [("GlobalNetworkSet", "a")]
    done = service.delete(targets, skip_missing=True)
    assert [t.name for t in done.deleted] == ["a"] and done.skipped == 1
    assert stored_keys(store) == []


def test_every_problem_is_reported_at_once(store: SqliteDatastore) -> None:
    service = ResourceService(store)
    service.create(items(gns("a")))
    lines = refused(lambda: service.create(items(gns("a"), policy("p", "sec"), policy("q", "ops"))))
    assert [line.split(": ", 2)[2] for line in lines] == [
        "resource already exists: GlobalNetworkSet(a)",
        "spec.tier: resource does not exist: Tier(sec)",
        "spec.tier: resource does not exist: Tier(ops)",
    ]


# -- previews and parsing -------------------------------------------------------------------


def test_a_preview_says_what_apply_would_do_and_writes_nothing(store: SqliteDatastore) -> None:
    service = ResourceService(store)
    service.apply(items(gns("same"), gns("changed")))
    before = store.revision()
    wanted = items(gns("same"), gns("changed").replace("0.0/24", "1.0/24"), gns("new"))
    assert service.preview_apply(wanted) == ["unchanged", "updated", "created"]
    assert preview_apply(wanted, MappingView({})) == ["created"] * 3
    with pytest.raises(Problems, match=r"Tier\(sec\)"):
        service.preview_apply(items(policy("p", "sec")))
    assert store.revision() == before


def test_a_resource_given_twice_is_refused_naming_both() -> None:
    with pytest.raises(Problems) as err:
        parse([Text("a.yaml", gns("x").encode()), Text("b.yaml", gns("x").encode())])
    assert err.value.lines() == [
        "b.yaml: document 1 (GlobalNetworkSet x): also given in a.yaml document 1; each "
        "resource may appear only once"
    ]
