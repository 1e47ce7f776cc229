"""Filters answer the same whichever plan the catalog picks for them.

A kind named at the top of a filter narrows every other condition to that kind's
search rows and may stand in for the kind condition itself; broad filters walk
entities in ref order while narrow ones collect and sort. These tests compare each
filter with an equivalent one the optimisations do not apply to (wrapped in ``$any``)
and with the answer computed from the entities themselves.
"""

from __future__ import annotations

from typing import Any

import pytest

from pavedroad.catalog.queries import EntityQuery


@pytest.fixture
def database_seed() -> str:
    return "demo"


def _refs(catalog: Any, predicate: Any, limit: int = 1000) -> list[str]:
    with catalog.reader() as reader:
        page = reader.query(EntityQuery(filter=predicate, limit=limit))
        assert page.total == len(page.items)
        return [_ref(e) for e in page.items]


def _all(catalog: Any) -> list[dict[str, Any]]:
    with catalog.reader() as reader:
        return reader.query(EntityQuery(limit=1000)).items


def _spec(entity: dict[str, Any], key: str) -> Any:
    return (entity.get("spec") or {}).get(key)


def _ref(entity: dict[str, Any]) -> str:
    metadata = entity["metadata"]
    return f"{entity['kind']}:{metadata['namespace']}/{metadata['name']}".lower()


PREDICATES = [
    {"kind": "component", "spec.type": "service"},
    {"kind": "Component", "spec.lifecycle": {"$in": ["production", "experimental"]}},
    {"$all": [{"kind": "component"}, {"spec.type": "library"}]},
    {"kind": "component", "$not": {"spec.type": "service"}},
    {"kind": "component", "spec.system": {"$exists": False}},
    {"kind": {"$in": ["component", "api"]}, "spec.lifecycle": "production"},
    {"kind": "api", "spec.type": {"$hasPrefix": "open"}},
    {"kind": "component", "metadata.tags": {"$contains": "python"}},
    {"kind": "user", "relations.memberof": "group:default/checkout-team"},
    {"kind": "group"},
    {"kind": "component", "spec.type": "nothing-has-this"},
]


@pytest.mark.parametrize("predicate", PREDICATES, ids=[str(p) for p in PREDICATES])
def test_optimised_and_plain_plans_agree(catalog, predicate):
    assert _refs(catalog, predicate) == _refs(catalog, {"$any": [predicate]})


def test_kind_with_negation_matches_the_entities(catalog):
    entities = _all(catalog)
    expected = sorted(
        _ref(e) for e in entities if e["kind"] == "Component" and _spec(e, "type") != "service"
    )
    assert _refs(catalog, {"kind": "component", "$not": {"spec.type": "service"}}) == expected
    assert expected  # the demo has non-service components


def test_kind_with_missing_field_matches_the_entities(catalog):
    entities = _all(catalog)
    expected = sorted(_ref(e) for e in entities if e["kind"] == "API" and not _spec(e, "system"))
    assert _refs(catalog, {"kind": "api", "spec.system": {"$exists": False}}) == expected


def test_facets_within_a_kind_count_only_that_kind(catalog):
    entities = _all(catalog)
    services = [e for e in entities if e["kind"] == "Component"]
    expected: dict[str, int] = {}
    for entity in services:
        expected[_spec(entity, "lifecycle")] = expected.get(_spec(entity, "lifecycle"), 0) + 1
    with catalog.reader() as reader:
        counts = reader.facets(["spec.lifecycle"], {"kind": "component"})["spec.lifecycle"]
        both = reader.facets(["spec.lifecycle", "spec.type"], {"kind": "component"})
    assert {c["value"]: c["count"] for c in counts} == expected
    assert both["spec.lifecycle"] == counts


def test_pages_of_a_broad_filter_cover_every_match_once(catalog):
    predicate = {"kind": "component"}
    expected = _refs(catalog, predicate)
    seen: list[str] = []
    with catalog.reader() as reader:
        page = reader.query(EntityQuery(filter=predicate, limit=5))
        while True:
            seen.extend(_ref(e) for e in page.items)
            assert page.total == len(expected)
            if not page.next_cursor:
                break
            page = reader.query(EntityQuery(limit=5), page.next_cursor)
    assert seen == expected


NEGATED = [
    {"kind": "component", "metadata.tags": {"$contains": {"$not": "python"}}},
    {"kind": "component", "spec.system": {"$exists": 0}},
    {"kind": "component", "$all": [{"kind": "api"}], "spec.lifecycle": "production"},
]


@pytest.mark.parametrize("predicate", NEGATED, ids=[str(p) for p in NEGATED])
def test_negated_conditions_never_stand_in_for_the_kind(catalog, predicate):
    refs = _refs(catalog, predicate)
    assert all(ref.startswith("component:") for ref in refs), refs
    assert refs == _refs(catalog, {"$any": [predicate]})
    with catalog.reader() as reader:
        ordered = reader.query(EntityQuery(filter=predicate, order=[("metadata.name", "asc")]))
    assert sorted(_ref(e) for e in ordered.items) == sorted(refs)
    assert ordered.total == len(refs)


def test_facets_for_a_kind_matcher_that_names_no_kind(catalog):
    entities = _all(catalog)
    expected = sum(1 for e in entities if e["kind"] == "Component" and _spec(e, "type"))
    with catalog.reader() as reader:
        counts = reader.facets(["spec.type"], {"kind": {"$hasPrefix": "comp"}})["spec.type"]
    assert sum(c["count"] for c in counts) == expected


def test_deeply_nested_input_is_a_clear_error(client):
    import base64

    cursor = base64.urlsafe_b64encode(b"[" * 5000).decode()
    response = client.get("/api/v1/catalog/entities", params={"cursor": cursor})
    assert response.status_code == 400
    nested: dict = {"kind": "component"}
    for _ in range(200):
        nested = {"$not": nested}
    response = client.post("/api/catalog/entities/by-query", json={"query": nested})
    assert response.status_code == 400, response.text
    contains: dict = {"$not": "x"}
    for _ in range(200):
        contains = {"$not": contains}
    response = client.post(
        "/api/catalog/entities/by-query", json={"query": {"x": {"$contains": contains}}}
    )
    assert response.status_code == 400, response.text


def test_full_text_fields_must_be_a_list(client):
    response = client.post(
        "/api/catalog/entities/by-query", json={"fullTextFilter": {"term": "x", "fields": 5}}
    )
    assert response.status_code == 400
