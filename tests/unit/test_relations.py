"""Relations derived from spec fields, as Backstage emits them.

Per ``plugins/catalog-backend/src/modules/core/BuiltinKindsEntityProcessor.ts`` (and
``plugins/scaffolder-backend/src/processor/ScaffolderEntitiesProcessor.ts`` for Template):
every reference yields the outgoing relation from the entity and the incoming one back to
it; a reference without a kind takes the field's default kind, and without a namespace the
entity's own namespace. ``dependsOn`` and ``dependencyOf`` have no default kind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pavedroad.catalog.processing import EntityValidationError, ProcessedEntity, Relation

from .entities import entity

Process = Callable[[dict[str, Any]], ProcessedEntity]

# (kind, spec field, outgoing relation, incoming relation, default kind or None)
FIELDS = [
    ("Component", "owner", "ownedBy", "ownerOf", "group"),
    ("Component", "subcomponentOf", "partOf", "hasPart", "component"),
    ("Component", "providesApis", "providesApi", "apiProvidedBy", "api"),
    ("Component", "consumesApis", "consumesApi", "apiConsumedBy", "api"),
    ("Component", "dependsOn", "dependsOn", "dependencyOf", None),
    ("Component", "dependencyOf", "dependencyOf", "dependsOn", None),
    ("Component", "system", "partOf", "hasPart", "system"),
    ("API", "owner", "ownedBy", "ownerOf", "group"),
    ("API", "system", "partOf", "hasPart", "system"),
    ("Resource", "owner", "ownedBy", "ownerOf", "group"),
    ("Resource", "dependsOn", "dependsOn", "dependencyOf", None),
    ("Resource", "dependencyOf", "dependencyOf", "dependsOn", None),
    ("Resource", "system", "partOf", "hasPart", "system"),
    ("User", "memberOf", "memberOf", "hasMember", "group"),
    ("Group", "parent", "childOf", "parentOf", "group"),
    ("Group", "children", "parentOf", "childOf", "group"),
    ("Group", "members", "hasMember", "memberOf", "user"),
    ("System", "owner", "ownedBy", "ownerOf", "group"),
    ("System", "domain", "partOf", "hasPart", "domain"),
    ("Domain", "owner", "ownedBy", "ownerOf", "group"),
    ("Domain", "subdomainOf", "partOf", "hasPart", "domain"),
    ("Template", "owner", "ownedBy", "ownerOf", "group"),
]
LIST_FIELDS = {
    "providesApis",
    "consumesApis",
    "dependsOn",
    "dependencyOf",
    "memberOf",
    "children",
    "members",
}


def _spec_with(kind: str, field: str, value: str) -> dict[str, Any]:
    spec = dict(entity(kind)["spec"])
    spec[field] = [value] if field in LIST_FIELDS else value
    return spec


def _relations_for(processed: ProcessedEntity, field_target: str) -> set[Relation]:
    return {r for r in processed.relations if field_target in (r.source, r.target)}


@pytest.mark.parametrize(("kind", "field", "outgoing", "incoming", "default_kind"), FIELDS)
def test_relation_both_directions_with_default_kind(
    process: Process, kind: str, field: str, outgoing: str, incoming: str, default_kind: str | None
) -> None:
    target = "thing" if default_kind else "resource:thing"
    processed = process(entity(kind, namespace="ops", spec=_spec_with(kind, field, target)))
    me = f"{kind.lower()}:ops/orders"
    expected_target = f"{default_kind or 'resource'}:ops/thing"
    assert _relations_for(processed, expected_target) == {
        Relation(me, outgoing, expected_target),
        Relation(expected_target, incoming, me),
    }


@pytest.mark.parametrize(("kind", "field", "outgoing", "incoming", "default_kind"), FIELDS)
def test_explicit_kind_and_namespace_win(
    process: Process, kind: str, field: str, outgoing: str, incoming: str, default_kind: str | None
) -> None:
    processed = process(
        entity(kind, namespace="ops", spec=_spec_with(kind, field, "Custom:Elsewhere/Thing"))
    )
    target = "custom:elsewhere/thing"
    assert _relations_for(processed, target) == {
        Relation(f"{kind.lower()}:ops/orders", outgoing, target),
        Relation(target, incoming, f"{kind.lower()}:ops/orders"),
    }


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("team-a", "group:ops/team-a"),  # the entity's namespace, not "default"
        ("default/team-a", "group:default/team-a"),
        ("user:jdoe", "user:ops/jdoe"),
        ("User:Default/JDoe", "user:default/jdoe"),
    ],
)
def test_refs_are_relative_to_the_entitys_namespace(
    process: Process, ref: str, expected: str
) -> None:
    processed = process(
        entity(
            "Component",
            namespace="ops",
            spec={"type": "service", "lifecycle": "production", "owner": ref},
        )
    )
    assert processed.relations == [
        Relation("component:ops/orders", "ownedBy", expected),
        Relation(expected, "ownerOf", "component:ops/orders"),
    ]


def test_default_namespace_entity(process: Process) -> None:
    processed = process(entity("Component"))
    assert processed.relations == [
        Relation("component:default/orders", "ownedBy", "group:default/team-a"),
        Relation("group:default/team-a", "ownerOf", "component:default/orders"),
    ]


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("Component", "dependsOn"),
        ("Component", "dependencyOf"),
        ("Resource", "dependsOn"),
        ("Resource", "dependencyOf"),
    ],
)
def test_dependency_without_kind_is_an_error(process: Process, kind: str, field: str) -> None:
    with pytest.raises(EntityValidationError) as caught:
        process(entity(kind, spec=_spec_with(kind, field, "orders-db")))
    assert caught.value.errors == [
        'Entity reference "orders-db" had missing or empty kind '
        '(e.g. did not start with "component:" or similar)'
    ]
    assert caught.value.ref == f"{kind.lower()}:default/orders"


def test_bad_reference_is_an_error(process: Process) -> None:
    with pytest.raises(EntityValidationError) as caught:
        process(entity("System", spec={"owner": "group:/team-a"}))
    assert "was not on the form" in caught.value.errors[0]


def test_full_component(process: Process) -> None:
    spec = {
        "type": "service",
        "lifecycle": "production",
        "owner": "team-a",
        "subcomponentOf": "monolith",
        "providesApis": ["orders-api"],
        "consumesApis": ["payments-api", "api:ops/stock-api"],
        "dependsOn": ["resource:orders-db"],
        "dependencyOf": ["component:web"],
        "system": "shop",
    }
    me = "component:default/orders"
    processed = process(entity("Component", spec=spec))
    outgoing = [(r.type, r.target) for r in processed.relations if r.source == me]
    incoming = [(r.source, r.type) for r in processed.relations if r.target == me]
    assert outgoing == [
        ("ownedBy", "group:default/team-a"),
        ("partOf", "component:default/monolith"),
        ("providesApi", "api:default/orders-api"),
        ("consumesApi", "api:default/payments-api"),
        ("consumesApi", "api:ops/stock-api"),
        ("dependsOn", "resource:default/orders-db"),
        ("dependencyOf", "component:default/web"),
        ("partOf", "system:default/shop"),
    ]
    assert incoming == [
        ("group:default/team-a", "ownerOf"),
        ("component:default/monolith", "hasPart"),
        ("api:default/orders-api", "apiProvidedBy"),
        ("api:default/payments-api", "apiConsumedBy"),
        ("api:ops/stock-api", "apiConsumedBy"),
        ("resource:default/orders-db", "dependencyOf"),
        ("component:default/web", "dependsOn"),
        ("system:default/shop", "hasPart"),
    ]


def test_group_hierarchy_and_members(process: Process) -> None:
    processed = process(
        entity(
            "Group",
            name="platform",
            spec={
                "type": "team",
                "parent": "engineering",
                "children": ["sre", "group:ops/dba"],
                "members": ["jdoe", "user:ops/asmith"],
            },
        )
    )
    me = "group:default/platform"
    assert set(processed.relations) == {
        Relation(me, "childOf", "group:default/engineering"),
        Relation("group:default/engineering", "parentOf", me),
        Relation(me, "parentOf", "group:default/sre"),
        Relation("group:default/sre", "childOf", me),
        Relation(me, "parentOf", "group:ops/dba"),
        Relation("group:ops/dba", "childOf", me),
        Relation(me, "hasMember", "user:default/jdoe"),
        Relation("user:default/jdoe", "memberOf", me),
        Relation(me, "hasMember", "user:ops/asmith"),
        Relation("user:ops/asmith", "memberOf", me),
    }


def test_user_member_of(process: Process) -> None:
    processed = process(
        entity(
            "User",
            name="jdoe",
            namespace="ops",
            spec={"memberOf": ["team-a", "group:default/everyone"]},
        )
    )
    assert processed.relations == [
        Relation("user:ops/jdoe", "memberOf", "group:ops/team-a"),
        Relation("group:ops/team-a", "hasMember", "user:ops/jdoe"),
        Relation("user:ops/jdoe", "memberOf", "group:default/everyone"),
        Relation("group:default/everyone", "hasMember", "user:ops/jdoe"),
    ]


@pytest.mark.parametrize("kind", ["Location", "User", "Group", "Template"])
def test_no_relations_without_references(process: Process, kind: str) -> None:
    assert process(entity(kind)).relations == []


def test_empty_lists_emit_nothing(process: Process) -> None:
    spec = {
        "type": "service",
        "lifecycle": "production",
        "owner": "team-a",
        "providesApis": [],
        "dependsOn": [],
    }
    assert len(process(entity("Component", spec=spec)).relations) == 2


def test_duplicate_relations_are_collapsed(process: Process) -> None:
    spec = {
        "type": "service",
        "lifecycle": "production",
        "owner": "team-a",
        "consumesApis": ["orders-api", "api:orders-api", "API:default/Orders-API"],
    }
    processed = process(entity("Component", spec=spec))
    consumes = [r for r in processed.relations if "consume" in r.type.lower()]
    assert consumes == [
        Relation("component:default/orders", "consumesApi", "api:default/orders-api"),
        Relation("api:default/orders-api", "apiConsumedBy", "component:default/orders"),
    ]


def test_relation_as_dict_is_backstages_shape() -> None:
    relation = Relation("component:default/a", "ownedBy", "group:default/b")
    assert relation.as_dict() == {"type": "ownedBy", "targetRef": "group:default/b"}
