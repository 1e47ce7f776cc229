"""Catalog ingestion against real databases (SQLite and PostgreSQL): the demo
organisation, Backstage's relations, incremental refresh, errors per document, orphans,
placeholders, locations, rules and every bad-input class."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from integration_support import (
    DEMO_KIND_COUNTS,
    DEMO_ROOT,
    DEMO_TOTAL,
    MANAGED_BY,
    MANAGED_BY_ORIGIN,
    ORPHAN_ANNOTATION,
    component,
    entity_doc,
    error_text,
    get,
    location_doc,
    location_errors,
    refs,
    register,
    relations,
    status,
    wait_for,
    write,
    write_docs,
)

from pavedroad.core.errors import NotFoundError

# -- the demo organisation ---------------------------------------------------------------


def test_demo_organisation_ingests_without_errors(catalog):
    location, entities = catalog.register_location("file", str(DEMO_ROOT))

    assert Counter(e["kind"] for e in entities) == DEMO_KIND_COUNTS
    assert len(entities) == DEMO_TOTAL
    assert location_errors(catalog, location.id) == []
    with catalog.reader() as reader:
        summary = reader.location_status(location.id)
        assert summary["entities"] == DEMO_TOTAL
        # 15 targets of catalog-info.yaml plus catalog-info.yaml itself
        assert len(summary["sources"]) == 22
        assert reader.processing_summary()["sources_with_errors"] == 0
    for entity in entities:
        assert entity["metadata"]["uid"] and entity["metadata"]["etag"]
        assert (
            status(catalog, f"{entity['kind']}:default/{entity['metadata']['name']}")["errors"]
            == []
        )


def test_demo_relations_both_directions_like_backstage(catalog):
    register(catalog, DEMO_ROOT)

    assert relations(get(catalog, "component:default/orders-service")) == [
        ("consumesApi", "api:default/cart-api"),
        ("consumesApi", "api:default/inventory-api"),
        ("consumesApi", "api:default/payments-api"),
        ("dependsOn", "component:default/service-chassis"),
        ("dependsOn", "resource:default/order-events-queue"),
        ("dependsOn", "resource:default/orders-db"),
        ("ownedBy", "group:default/checkout-team"),
        ("partOf", "system:default/storefront"),
        ("providesApi", "api:default/order-events"),
        ("providesApi", "api:default/orders-api"),
    ]
    assert relations(get(catalog, "group:default/checkout-team")) == [
        ("childOf", "group:default/engineering"),
        ("hasMember", "user:default/bob"),
        ("hasMember", "user:default/carol"),
        ("ownerOf", "api:default/cart-api"),
        ("ownerOf", "api:default/order-events"),
        ("ownerOf", "api:default/orders-api"),
        ("ownerOf", "component:default/cart-service"),
        ("ownerOf", "component:default/legacy-checkout"),
        ("ownerOf", "component:default/orders-service"),
        ("ownerOf", "resource:default/order-events-queue"),
        ("ownerOf", "resource:default/orders-db"),
    ]
    # Emitted by both acme.children and engineering.parent, stitched once.
    assert (
        relations(get(catalog, "group:default/engineering")).count(
            ("childOf", "group:default/acme")
        )
        == 1
    )
    expectations = {
        "api:default/orders-api": [
            ("apiConsumedBy", "component:default/storefront-web"),
            ("apiProvidedBy", "component:default/orders-service"),
            ("ownedBy", "group:default/checkout-team"),
            ("partOf", "system:default/storefront"),
        ],
        "api:default/payments-api": [
            ("apiConsumedBy", "component:default/orders-service"),
            ("apiConsumedBy", "component:default/payments-web-sdk"),
            ("apiProvidedBy", "component:default/payments-service"),
            ("ownedBy", "group:default/payments-team"),
            ("partOf", "system:default/payments"),
        ],
        "resource:default/orders-db": [
            ("dependencyOf", "component:default/legacy-checkout"),
            ("dependencyOf", "component:default/orders-service"),
            ("ownedBy", "group:default/checkout-team"),
            ("partOf", "system:default/storefront"),
        ],
        "system:default/payments": [
            ("hasPart", "api:default/payments-api"),
            ("hasPart", "component:default/fraud-scoring"),
            ("hasPart", "component:default/payments-service"),
            ("hasPart", "component:default/payments-web-sdk"),
            ("hasPart", "resource:default/payments-db"),
            ("ownedBy", "group:default/payments-team"),
            ("partOf", "domain:default/commerce"),
        ],
        "domain:default/commerce": [
            ("hasPart", "system:default/payments"),
            ("hasPart", "system:default/storefront"),
            ("ownedBy", "group:default/engineering"),
        ],
        "user:default/kwame": [
            ("memberOf", "group:default/data-team"),
            ("memberOf", "group:default/payments-team"),
        ],
        "group:default/acme": [
            ("parentOf", "group:default/engineering"),
            ("parentOf", "group:default/product"),
        ],
        "group:default/product": [
            ("childOf", "group:default/acme"),
            ("parentOf", "group:default/design-team"),
        ],
        "environment:default/production": [("ownedBy", "group:default/platform-team")],
    }
    for ref, expected in expectations.items():
        assert relations(get(catalog, ref)) == expected, ref
    environment = get(catalog, "environment:default/production")
    assert environment is not None and environment["spec"]["owner"] == "group:platform-team"
    platform = relations(get(catalog, "group:default/platform-team"))
    assert ("ownerOf", "environment:default/production") in platform
    assert ("hasMember", "user:default/alice") in platform
    for entity_ref in [*expectations, "group:default/checkout-team"]:
        found = relations(get(catalog, entity_ref))
        assert found == sorted(found) and len(set(found)) == len(found)


def test_every_spec_relation_field_with_unresolved_targets(catalog, tmp_path):
    path = write_docs(
        tmp_path / "catalog-info.yaml",
        component(
            "api-gateway",
            owner="ghost-team",
            namespace="edge",
            system="edge-system",
            subcomponentOf="platform",
            providesApis=["gateway-api"],
            consumesApis=["default/auth-api"],
            dependsOn=["resource:cache"],
            dependencyOf=["component:default/storefront"],
        ),
        entity_doc(
            "API",
            "gateway-api",
            {
                "type": "openapi",
                "lifecycle": "beta",
                "owner": "user:bob",
                "definition": "openapi: 3.0.0",
                "system": "edge-system",
            },
            namespace="edge",
        ),
        entity_doc(
            "Resource",
            "cache",
            {
                "type": "redis",
                "owner": "ghost-team",
                "dependsOn": ["resource:default/vm"],
                "dependencyOf": ["component:api-gateway"],
            },
            namespace="edge",
        ),
        entity_doc(
            "Domain",
            "networking",
            {"owner": "ghost-team", "subdomainOf": "infrastructure"},
            namespace="edge",
        ),
        entity_doc(
            "System",
            "edge-system",
            {"owner": "ghost-team", "domain": "networking"},
            namespace="edge",
        ),
        entity_doc(
            "Group",
            "ghost-team",
            {"type": "team", "parent": "edge-org", "children": [], "members": ["zoe"]},
            namespace="edge",
        ),
        entity_doc(
            "User", "zoe", {"memberOf": ["ghost-team", "group:default/everyone"]}, namespace="edge"
        ),
    )
    register(catalog, path)

    # Targets default to the entity's own namespace, as in Backstage; unresolved ones stay.
    assert relations(get(catalog, "component:edge/api-gateway")) == [
        ("consumesApi", "api:default/auth-api"),
        ("dependencyOf", "component:default/storefront"),
        ("dependsOn", "resource:edge/cache"),
        ("ownedBy", "group:edge/ghost-team"),
        ("partOf", "component:edge/platform"),
        ("partOf", "system:edge/edge-system"),
        ("providesApi", "api:edge/gateway-api"),
    ]
    assert relations(get(catalog, "resource:edge/cache")) == [
        ("dependencyOf", "component:edge/api-gateway"),
        ("dependsOn", "resource:default/vm"),
        ("ownedBy", "group:edge/ghost-team"),
    ]
    assert relations(get(catalog, "api:edge/gateway-api")) == [
        ("apiProvidedBy", "component:edge/api-gateway"),
        ("ownedBy", "user:edge/bob"),
        ("partOf", "system:edge/edge-system"),
    ]
    assert relations(get(catalog, "domain:edge/networking")) == [
        ("hasPart", "system:edge/edge-system"),
        ("ownedBy", "group:edge/ghost-team"),
        ("partOf", "domain:edge/infrastructure"),
    ]
    assert relations(get(catalog, "group:edge/ghost-team")) == [
        ("childOf", "group:edge/edge-org"),
        ("hasMember", "user:edge/zoe"),
        ("ownerOf", "component:edge/api-gateway"),
        ("ownerOf", "domain:edge/networking"),
        ("ownerOf", "resource:edge/cache"),
        ("ownerOf", "system:edge/edge-system"),
    ]
    assert relations(get(catalog, "user:edge/zoe")) == [
        ("memberOf", "group:default/everyone"),
        ("memberOf", "group:edge/ghost-team"),
    ]
    # Relations of entities that do not exist are still recorded, queryable by filter.
    with catalog.reader() as reader:
        assert reader.get_many(["group:edge/edge-org", "api:default/auth-api"]) == [None, None]
        owned = reader.relations_of(
            ["group:edge/edge-org", "api:default/auth-api", "component:default/storefront"]
        )
    assert owned["group:edge/edge-org"] == [
        {"type": "parentOf", "targetRef": "group:edge/ghost-team"}
    ]
    assert owned["api:default/auth-api"] == [
        {"type": "apiConsumedBy", "targetRef": "component:edge/api-gateway"}
    ]
    assert owned["component:default/storefront"] == [
        {"type": "dependsOn", "targetRef": "component:edge/api-gateway"}
    ]


def test_relation_without_kind_where_backstage_needs_one_is_an_entity_error(catalog, tmp_path):
    path = write_docs(
        tmp_path / "c.yaml", component("needs-kind", dependsOn=["cache"]), component("fine")
    )
    location_id = register(catalog, path)
    assert get(catalog, "component:default/needs-kind") is None
    assert get(catalog, "component:default/fine") is not None
    assert "missing or empty kind" in error_text(location_errors(catalog, location_id))


# -- incremental refresh -------------------------------------------------------------------


def test_reingesting_unchanged_files_writes_nothing(catalog):
    location_id = register(catalog, DEMO_ROOT)
    before = {ref: get(catalog, ref)["metadata"]["etag"] for ref in refs(catalog)}

    report = catalog.refresh_location(location_id)

    assert report.written == 0
    assert report.orphaned == 0 and report.errors == 0
    assert report.unchanged == DEMO_TOTAL
    assert report.sources >= 16  # catalog-info.yaml and its 15 targets, each read again
    assert {ref: get(catalog, ref)["metadata"]["etag"] for ref in refs(catalog)} == before
    # Nothing is due afterwards: a background pass is a no-op.
    assert catalog.refresh_due().sources == 0


def test_editing_a_file_updates_only_that_entity(catalog, tmp_path):
    root = write_docs(tmp_path / "catalog-info.yaml", location_doc("root", "./a.yaml", "./b.yaml"))
    write_docs(tmp_path / "a.yaml", component("alpha", description="first"), component("beta"))
    write_docs(tmp_path / "b.yaml", component("gamma"))
    location_id = register(catalog, root)
    etags = {ref: get(catalog, ref)["metadata"]["etag"] for ref in refs(catalog)}
    uid = get(catalog, "component:default/alpha")["metadata"]["uid"]

    write_docs(tmp_path / "a.yaml", component("alpha", description="second"), component("beta"))
    report = catalog.refresh_location(location_id)

    assert report.written == 1
    alpha = get(catalog, "component:default/alpha")
    assert alpha["metadata"]["description"] == "second"
    assert alpha["metadata"]["uid"] == uid
    assert alpha["metadata"]["etag"] != etags["component:default/alpha"]
    for ref, etag in etags.items():
        if ref != "component:default/alpha":
            assert get(catalog, ref)["metadata"]["etag"] == etag, ref


def test_refresh_of_one_entity_rereads_its_source(catalog, tmp_path):
    path = write_docs(tmp_path / "a.yaml", component("alpha", description="one"))
    register(catalog, path)
    write_docs(tmp_path / "a.yaml", component("alpha", description="two"))
    report = catalog.refresh_entity("component:alpha")
    assert report.written == 1
    assert get(catalog, "component:default/alpha")["metadata"]["description"] == "two"


def test_invalid_edit_keeps_last_good_version_while_siblings_update(catalog, tmp_path):
    path = write_docs(
        tmp_path / "a.yaml",
        component("alpha", description="good"),
        component("beta", description="old"),
    )
    location_id = register(catalog, path)
    good = get(catalog, "component:default/alpha")

    broken = component("alpha", description="broken")
    del broken["spec"]["owner"]
    write_docs(path, broken, component("beta", description="new"))
    catalog.refresh_location(location_id)

    assert get(catalog, "component:default/alpha") == good
    assert get(catalog, "component:default/beta")["metadata"]["description"] == "new"
    alpha_status = status(catalog, "component:default/alpha")
    assert "/spec must have required property 'owner'" in error_text(alpha_status["errors"])
    assert alpha_status["orphan"] is False
    assert status(catalog, "component:default/beta")["errors"] == []

    write_docs(path, component("alpha", description="fixed"), component("beta", description="new"))
    catalog.refresh_location(location_id)
    assert get(catalog, "component:default/alpha")["metadata"]["description"] == "fixed"
    assert status(catalog, "component:default/alpha")["errors"] == []
    assert location_errors(catalog, location_id) == []


def test_brand_new_invalid_entity_never_becomes_visible(catalog, tmp_path):
    path = write_docs(tmp_path / "a.yaml", component("alpha"))
    location_id = register(catalog, path)
    invalid = component("newcomer")
    invalid["spec"]["lifecycle"] = 42
    write_docs(path, component("alpha"), invalid)
    catalog.refresh_location(location_id)

    assert get(catalog, "component:default/newcomer") is None
    with pytest.raises(NotFoundError), catalog.reader() as reader:
        reader.get_by_ref("component:default/newcomer")
    errors = location_errors(catalog, location_id)
    assert len(errors) == 1
    assert errors[0]["entityRef"] == "component:default/newcomer"
    assert "/spec/lifecycle must be string" in errors[0]["message"]
    assert errors[0]["line"] in (9, 10)  # the second document: its `---` or first key


def test_removed_entity_is_orphaned(catalog, tmp_path):
    path = write_docs(tmp_path / "a.yaml", component("alpha"), component("beta"))
    location_id = register(catalog, path)
    write_docs(path, component("alpha"))
    report = catalog.refresh_location(location_id)

    assert report.orphaned == 1
    beta = get(catalog, "component:default/beta")
    assert beta is not None
    assert beta["metadata"]["annotations"][ORPHAN_ANNOTATION] == "true"
    assert status(catalog, "component:default/beta")["orphan"] is True
    assert (
        ORPHAN_ANNOTATION not in get(catalog, "component:default/alpha")["metadata"]["annotations"]
    )
    with catalog.reader() as reader:
        from pavedroad.catalog.queries import EntityQuery, parse_filters

        page = reader.query(
            EntityQuery(filter=parse_filters([f"metadata.annotations.{ORPHAN_ANNOTATION}=true"]))
        )
    assert [e["metadata"]["name"] for e in page.items] == ["beta"]

    # Coming back adopts it again, without the orphan mark.
    write_docs(path, component("alpha"), component("beta"))
    catalog.refresh_location(location_id)
    beta = get(catalog, "component:default/beta")
    assert ORPHAN_ANNOTATION not in beta["metadata"]["annotations"]
    assert status(catalog, "component:default/beta")["orphan"] is False


def test_removed_entity_is_deleted_with_orphan_strategy_delete(make_settings, make_app, tmp_path):
    catalog = make_app(make_settings(orphan_strategy="delete")).state.catalog
    path = write_docs(
        tmp_path / "a.yaml", component("alpha"), component("beta", dependsOn=["resource:db"])
    )
    location_id = register(catalog, path)
    write_docs(path, component("alpha"))
    report = catalog.refresh_location(location_id)

    assert report.orphaned == 1
    assert get(catalog, "component:default/beta") is None
    with catalog.reader() as reader:
        assert reader.relations_of(["resource:default/db"]) == {}


def test_file_dropped_from_a_location_orphans_its_entities(catalog, tmp_path):
    root = write_docs(tmp_path / "catalog-info.yaml", location_doc("root", "./a.yaml", "./b.yaml"))
    write_docs(tmp_path / "a.yaml", component("alpha"))
    write_docs(tmp_path / "b.yaml", component("beta"))
    location_id = register(catalog, root)
    write_docs(root, location_doc("root", "./a.yaml"))
    catalog.refresh_location(location_id)
    assert (
        get(catalog, "component:default/beta")["metadata"]["annotations"][ORPHAN_ANNOTATION]
        == "true"
    )
    assert (
        ORPHAN_ANNOTATION not in get(catalog, "component:default/alpha")["metadata"]["annotations"]
    )
    assert status(catalog, "component:default/beta")["orphan"] is True


def test_file_dropped_from_a_location_counts_as_orphaned(catalog, tmp_path):
    root = write_docs(tmp_path / "catalog-info.yaml", location_doc("root", "./a.yaml", "./b.yaml"))
    write_docs(tmp_path / "a.yaml", component("alpha"))
    write_docs(tmp_path / "b.yaml", component("beta"))
    location_id = register(catalog, root)
    write_docs(root, location_doc("root", "./a.yaml"))
    assert catalog.refresh_location(location_id).orphaned == 1


def test_managed_by_annotations(catalog, tmp_path):
    root = write_docs(
        tmp_path / "catalog-info.yaml", location_doc("root", "./sub/a.yaml"), component("at-root")
    )
    write_docs(tmp_path / "sub" / "a.yaml", component("nested"))
    register(catalog, root)

    nested = get(catalog, "component:default/nested")["metadata"]["annotations"]
    assert nested[MANAGED_BY] == f"file:{tmp_path / 'sub' / 'a.yaml'}"
    assert nested[MANAGED_BY_ORIGIN] == f"file:{root}"
    at_root = get(catalog, "component:default/at-root")["metadata"]["annotations"]
    assert at_root[MANAGED_BY] == at_root[MANAGED_BY_ORIGIN] == f"file:{root}"
    with catalog.reader() as reader:
        generated = [
            e
            for e in reader.get_many(sorted(refs(catalog)))
            if e["metadata"]["name"].startswith("generated-")
        ]
    assert len(generated) == 1
    assert generated[0]["spec"] == {"type": "file", "target": str(root), "presence": "required"}
    assert generated[0]["metadata"]["annotations"][MANAGED_BY] == f"file:{root}"


def test_placeholders_resolve_relative_to_the_file(catalog, tmp_path):
    write(tmp_path / "team" / "defs" / "openapi.yaml", "openapi: 3.0.0\ninfo: {title: Shop}\n")
    write(tmp_path / "team" / "extra.json", '{"tier": 1, "tags": ["a", "b"]}')
    write(tmp_path / "team" / "links.yaml", "oncall: pager\nchannels: [ops, dev]\n")
    path = write(
        tmp_path / "team" / "catalog-info.yaml",
        """
        apiVersion: backstage.io/v1alpha1
        kind: API
        metadata:
          name: shop-api
        spec:
          type: openapi
          lifecycle: production
          owner: team-a
          definition:
            $text: defs/openapi.yaml
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata:
          name: shop
        spec:
          type: service
          lifecycle: production
          owner: team-a
          extra:
            $json: ./extra.json
          support:
            $yaml: links.yaml
          schema:
            $ref: "#/components/schemas/Shop"
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata:
          name: missing-text
        spec:
          type: service
          lifecycle: production
          owner: team-a
          notes:
            $text: ./nope.md
        """,
    )
    location_id = register(catalog, path)

    assert (
        get(catalog, "api:default/shop-api")["spec"]["definition"]
        == "openapi: 3.0.0\ninfo: {title: Shop}\n"
    )
    shop = get(catalog, "component:default/shop")["spec"]
    assert shop["extra"] == {"tier": 1, "tags": ["a", "b"]}
    assert shop["support"] == {"oncall": "pager", "channels": ["ops", "dev"]}
    assert shop["schema"] == {"$ref": "#/components/schemas/Shop"}  # not a placeholder
    assert get(catalog, "component:default/missing-text") is None
    errors = location_errors(catalog, location_id)
    assert len(errors) == 1
    assert errors[0]["entityRef"] == "component:default/missing-text"
    assert "nope.md" in errors[0]["message"]

    # The referenced file changing is picked up on refresh even though this file did not change.
    write(tmp_path / "team" / "defs" / "openapi.yaml", "openapi: 3.1.0\n")
    catalog.refresh_location(location_id)
    assert get(catalog, "api:default/shop-api")["spec"]["definition"] == "openapi: 3.1.0\n"


def test_malformed_document_does_not_hide_the_others(catalog, tmp_path):
    path = write(
        tmp_path / "multi.yaml",
        """
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {name: first}
        spec: {type: service, lifecycle: production, owner: team-a}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {name: broken
        spec: {type: service, lifecycle: production, owner: team-a}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {name: third}
        spec: {type: service, lifecycle: production, owner: team-a}
        """,
    )
    location_id = register(catalog, path)

    assert get(catalog, "component:default/first") is not None
    assert get(catalog, "component:default/third") is not None
    errors = location_errors(catalog, location_id)
    assert len(errors) == 1
    assert errors[0]["line"] in (8, 9)
    assert errors[0]["source"] == f"file:{path}"
    assert "column" in errors[0]["message"]


def test_location_glob_targets(catalog, tmp_path):
    root = write_docs(tmp_path / "catalog-info.yaml", location_doc("root", "./components/*.yaml"))
    for name in ("one", "two", "three"):
        write_docs(tmp_path / "components" / f"{name}.yaml", component(name))
    write_docs(tmp_path / "components" / "ignored.yml", component("not-matched"))
    location_id = register(catalog, root)

    assert {r for r in refs(catalog) if r.startswith("component:")} == {
        "component:default/one",
        "component:default/two",
        "component:default/three",
    }
    assert location_errors(catalog, location_id) == []
    with catalog.reader() as reader:
        keys = {s["key"] for s in reader.location_status(location_id)["sources"]}
    assert f"file:{tmp_path / 'components' / 'two.yaml'}" in keys


def test_location_cycle_is_an_error_and_does_not_loop(catalog, tmp_path):
    a = write_docs(tmp_path / "a.yaml", location_doc("a", "./b.yaml"), component("in-a"))
    write_docs(tmp_path / "b.yaml", location_doc("b", "./a.yaml"), component("in-b"))
    location, _ = catalog.register_location("file", str(a))

    assert catalog.ingester.run_until_idle().sources == 0
    assert get(catalog, "component:default/in-a") is not None
    assert get(catalog, "component:default/in-b") is not None
    text = error_text(location_errors(catalog, location.id))
    assert "cycle" in text.lower()
    assert str(a) in text and str(tmp_path / "b.yaml") in text
    report = catalog.refresh_location(location.id)
    assert report.sources <= 3


def test_missing_target_is_an_error_on_that_location_only(catalog, tmp_path):
    root = write_docs(
        tmp_path / "catalog-info.yaml", location_doc("root", "./present.yaml", "./missing.yaml")
    )
    write_docs(tmp_path / "present.yaml", component("present"))
    other = write_docs(tmp_path / "other" / "catalog-info.yaml", component("elsewhere"))
    location_id = register(catalog, root)
    other_id = register(catalog, other)

    assert get(catalog, "component:default/present") is not None
    errors = location_errors(catalog, location_id)
    assert len(errors) == 1
    assert errors[0]["source"] == f"file:{tmp_path / 'missing.yaml'}"
    assert "does not exist" in errors[0]["message"]
    assert location_errors(catalog, other_id) == []


def test_optional_missing_target_gives_no_error(catalog, tmp_path):
    root = write_docs(
        tmp_path / "catalog-info.yaml",
        location_doc("root", "./missing.yaml", "./present.yaml", presence="optional"),
    )
    write_docs(tmp_path / "present.yaml", component("present"))
    location_id = register(catalog, root)
    assert location_errors(catalog, location_id) == []
    assert get(catalog, "component:default/present") is not None


def test_catalog_rules_reject_other_kinds(make_settings, make_app, tmp_path):
    catalog = make_app(make_settings(rules=[{"allow": ["Component", "Location"]}])).state.catalog
    root = write_docs(tmp_path / "catalog-info.yaml", location_doc("root", "./things.yaml"))
    write_docs(
        tmp_path / "things.yaml",
        component("allowed"),
        entity_doc("System", "refused", {"owner": "team-a"}),
    )
    location_id = register(catalog, root)

    assert get(catalog, "component:default/allowed") is not None
    assert get(catalog, "system:default/refused") is None
    errors = location_errors(catalog, location_id)
    assert len(errors) == 1
    assert "'System'" in errors[0]["message"] and "rules" in errors[0]["message"]


def test_catalog_rules_do_not_apply_to_the_generated_root_location(
    make_settings, make_app, tmp_path
):
    # Backstage checks rules on entities read from a location; the Location entity it
    # generates for a registered target is not read from anywhere and always passes.
    catalog = make_app(make_settings(rules=[{"allow": ["Component"]}])).state.catalog
    path = write_docs(
        tmp_path / "catalog-info.yaml",
        component("allowed"),
        entity_doc("System", "refused", {"owner": "team-a"}),
    )
    location_id = register(catalog, path)
    assert get(catalog, "component:default/allowed") is not None, error_text(
        location_errors(catalog, location_id)
    )
    assert get(catalog, "system:default/refused") is None


def test_catalog_rules_scoped_to_locations(make_settings, make_app, tmp_path):
    special = tmp_path / "special.yaml"
    catalog = make_app(
        make_settings(
            rules=[
                {"allow": ["Component", "Location"]},
                {"allow": ["System"], "locations": [{"type": "file", "target": str(special)}]},
            ]
        )
    ).state.catalog
    write_docs(special, entity_doc("System", "allowed-here", {"owner": "team-a"}))
    elsewhere = write_docs(
        tmp_path / "elsewhere.yaml", entity_doc("System", "not-allowed-here", {"owner": "team-a"})
    )
    register(catalog, special)
    register(catalog, elsewhere)
    assert get(catalog, "system:default/allowed-here") is not None
    assert get(catalog, "system:default/not-allowed-here") is None


def _register_foo_twice(catalog, tmp_path):
    first = write_docs(tmp_path / "first.yaml", component("Foo", description="first"))
    second = write_docs(
        tmp_path / "second.yaml", component("foo", description="second"), component("bar")
    )
    return register(catalog, first), register(catalog, second)


def test_entity_refs_are_unique_case_insensitively_first_wins(catalog, tmp_path):
    first_id, second_id = _register_foo_twice(catalog, tmp_path)

    foo = get(catalog, "component:default/FOO")
    assert foo["metadata"]["name"] == "Foo"
    assert foo["metadata"]["description"] == "first"
    assert [r for r in refs(catalog) if r.endswith("/foo")] == ["component:default/foo"]
    assert get(catalog, "component:default/bar") is not None
    assert location_errors(catalog, first_id) == []
    # A refresh of the loser does not take the entity over either.
    report = catalog.refresh_location(second_id)
    assert report.errors == 1
    assert get(catalog, "component:default/foo")["metadata"]["description"] == "first"


def test_entity_ref_conflict_is_reported_on_the_losing_location(catalog, tmp_path):
    _first_id, second_id = _register_foo_twice(catalog, tmp_path)
    errors = location_errors(catalog, second_id)
    assert len(errors) == 1, errors
    assert "component:default/foo" in errors[0]["message"]
    assert "first.yaml" in errors[0]["message"]


def test_unregistering_a_location_deletes_its_entities(catalog, tmp_path):
    location_id = register(catalog, DEMO_ROOT)
    other = write_docs(tmp_path / "other.yaml", component("keeper", owner="checkout-team"))
    other_id = register(catalog, other)

    catalog.unregister_location(location_id)

    remaining = refs(catalog)
    assert "component:default/keeper" in remaining
    assert remaining == refs(catalog, other_id)
    assert len(remaining) == 2  # the component and its generated Location
    with catalog.reader() as reader:
        assert [r.id for r in reader.locations()] == [other_id]
        # Only the relations the remaining entity emitted are left.
        assert reader.relations_of(["group:default/checkout-team"])[
            "group:default/checkout-team"
        ] == [{"type": "ownerOf", "targetRef": "component:default/keeper"}]
    with pytest.raises(NotFoundError):
        catalog.unregister_location(location_id)


# -- bad input: each class fails its own document only ---------------------------------------

BILLION_LAUGHS = """
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: bomb
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
spec: {type: service, lifecycle: production, owner: team-a}
"""

GOOD = """
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: {name}
spec: {{type: service, lifecycle: production, owner: team-a}}
"""


def _named(name: str) -> str:
    return GOOD.format(name=name)


BAD_DOCUMENTS = {
    "alias-bomb": (BILLION_LAUGHS, r"alias|expands to more than"),
    "deep-flow-nesting": (
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: deep\n"
        "spec: " + "[" * 10_000 + "]" * 10_000 + "\n",
        r"nesting",
    ),
    "deep-block-nesting": (
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: deep\n"
        "spec:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 100)) + "  " * 100 + "v\n",
        r"nesting deeper than 64",
    ),
    "duplicate-keys": (
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: dup\n"
        "  name: dup2\nspec: {type: service, lifecycle: production, owner: team-a}\n",
        r"duplicate key 'name'",
    ),
    "python-object-tag": (
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n"
        "  name: !!python/object/apply:os.system ['touch /tmp/pwned']\n"
        "spec: {type: service, lifecycle: production, owner: team-a}\n",
        r"tag !!python/object/apply:os.system is not allowed",
    ),
    "python-name-tag": (
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n"
        "  name: !!python/name:os.system ''\n"
        "spec: {type: service, lifecycle: production, owner: team-a}\n",
        r"tag !!python/name:os.system is not allowed",
    ),
    "name-dot-dot": (_named("'..'"), r'"metadata.name" is not valid'),
    "name-slash": (_named("'a/b'"), r'"metadata.name" is not valid'),
    "name-path-traversal": (_named("'../../etc/passwd'"), r'"metadata.name" is not valid'),
    "name-nul-escaped": (_named('"a\\0b"'), r'"metadata.name" is not valid'),
    "name-64-chars": (_named("a" * 64), r'"metadata.name" is not valid'),
    "unknown-kind": (
        "apiVersion: backstage.io/v1alpha1\nkind: Frobnicator\nmetadata:\n  name: frob\nspec: {}\n",
        r"Unsupported kind 'Frobnicator'",
    ),
    "unknown-api-version": (
        "apiVersion: example.com/v9\nkind: Component\nmetadata:\n  name: frob\n"
        "spec: {type: service, lifecycle: production, owner: team-a}\n",
        r"Unsupported kind 'Component' with apiVersion 'example.com/v9'",
    ),
    "not-a-mapping": ("- just\n- a\n- list\n", r"must be a mapping"),
    "foreign-root-field": (
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: x\n"
        "spec: {type: service, lifecycle: production, owner: team-a}\nextra: 1\n",
        r'Unknown field "extra"',
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_bad_document_fails_alone(catalog, tmp_path, case):
    import re

    bad, pattern = BAD_DOCUMENTS[case]
    text = _named("before") + "---\n" + bad.lstrip("\n") + "---\n" + _named("after").lstrip("\n")
    path = tmp_path / "mixed.yaml"
    path.write_text(text)
    location_id = register(catalog, path)

    assert get(catalog, "component:default/before") is not None
    assert get(catalog, "component:default/after") is not None
    assert {r for r in refs(catalog) if r.startswith("component:")} == {
        "component:default/before",
        "component:default/after",
    }
    errors = location_errors(catalog, location_id)
    assert len(errors) == 1, errors
    assert re.search(pattern, errors[0]["message"]), errors[0]["message"]
    assert errors[0]["line"] is not None and errors[0]["line"] >= 7
    assert not Path("/tmp/pwned").exists()


def test_raw_nul_byte_fails_its_document_only(catalog, tmp_path):
    path = tmp_path / "nul.yaml"
    path.write_bytes(
        (
            _named("before")
            + "---\n"
            + _named("x\x00y").lstrip("\n")
            + "---\n"
            + _named("after").lstrip("\n")
        ).encode()
    )
    location_id = register(catalog, path)
    assert get(catalog, "component:default/before") is not None
    assert get(catalog, "component:default/after") is not None
    errors = location_errors(catalog, location_id)
    assert len(errors) == 1
    assert "control characters are not allowed" in errors[0]["message"]


def test_ten_megabyte_file_fails_alone(catalog, tmp_path):
    root = write_docs(
        tmp_path / "catalog-info.yaml", location_doc("root", "./big.yaml", "./small.yaml")
    )
    big = tmp_path / "big.yaml"
    big.write_text(_named("big") + "#" + "x" * (10 * 1024 * 1024) + "\n")
    write_docs(tmp_path / "small.yaml", component("small"))
    location_id = register(catalog, root)

    assert get(catalog, "component:default/small") is not None
    assert get(catalog, "component:default/big") is None
    errors = location_errors(catalog, location_id)
    assert len(errors) == 1
    assert errors[0]["source"] == f"file:{big}"
    assert "over the limit" in errors[0]["message"]


def test_invalid_utf8_fails_that_file(catalog, tmp_path):
    root = write_docs(
        tmp_path / "catalog-info.yaml", location_doc("root", "./latin1.yaml", "./ok.yaml")
    )
    (tmp_path / "latin1.yaml").write_bytes(_named("caf\xe9").encode("latin-1"))
    write_docs(tmp_path / "ok.yaml", component("ok"))
    location_id = register(catalog, root)
    assert get(catalog, "component:default/ok") is not None
    assert "not valid UTF-8" in error_text(location_errors(catalog, location_id))


def test_directory_as_target_is_a_clear_error(catalog, tmp_path):
    (tmp_path / "adir").mkdir()
    root = write_docs(tmp_path / "catalog-info.yaml", location_doc("root", "./adir"))
    location_id = register(catalog, root)
    assert "is a directory" in error_text(location_errors(catalog, location_id))


def test_location_file_registration_rejects_relative_and_control_characters(catalog):
    from pavedroad.core.errors import InputError

    with pytest.raises(InputError, match="control characters"):
        catalog.ingester.add_location("file", "/tmp/a\x00b.yaml")
    with pytest.raises(InputError, match="absolute"):
        catalog.ingester.add_location("file", "relative/path.yaml")
    with pytest.raises(InputError, match="unknown location type"):
        catalog.ingester.add_location("ftp", "ftp://example.com/x.yaml")


def test_registering_the_same_location_twice_conflicts(catalog, tmp_path):
    from pavedroad.core.errors import ConflictError

    path = write_docs(tmp_path / "a.yaml", component("alpha"))
    register(catalog, path)
    with pytest.raises(ConflictError, match="already exists"):
        register(catalog, path)


def test_status_lists_source_errors_of_entities_in_a_failing_file(catalog, tmp_path):
    path = write_docs(tmp_path / "a.yaml", component("alpha"))
    location_id = register(catalog, path)
    path.write_text(_named("alpha") + "---\nkey: [unclosed\n")
    catalog.refresh_location(location_id)
    state = status(catalog, "component:default/alpha")
    assert state["source"] == f"file:{path}"
    assert len(state["sourceErrors"]) == 1
    assert state["orphan"] is False  # an unparseable file orphans nothing
    assert json.dumps(state["sourceErrors"])


# -- more ingestion behaviour -----------------------------------------------------------


def test_unreadable_source_keeps_serving_its_entities(catalog, tmp_path):
    root = write_docs(tmp_path / "catalog-info.yaml", location_doc("root", "./a.yaml"))
    child = write_docs(tmp_path / "a.yaml", component("alpha"))
    location_id = register(catalog, root)
    before = get(catalog, "component:default/alpha")

    child.unlink()
    report = catalog.refresh_location(location_id)

    assert report.orphaned == 0 and report.errors == 1
    assert get(catalog, "component:default/alpha") == before
    state = status(catalog, "component:default/alpha")
    assert state["orphan"] is False
    assert "does not exist" in error_text(state["sourceErrors"])
    write_docs(child, component("alpha"))
    catalog.refresh_location(location_id)
    assert status(catalog, "component:default/alpha")["sourceErrors"] == []


def test_same_ref_twice_in_one_file_is_reported(catalog, tmp_path):
    path = write_docs(
        tmp_path / "twice.yaml",
        component("Twin", description="first"),
        component("twin", description="second"),
    )
    location_id = register(catalog, path)
    assert get(catalog, "component:default/twin")["metadata"]["description"] == "first"
    errors = location_errors(catalog, location_id)
    assert len(errors) == 1 and "component:default/twin" in errors[0]["message"]


@pytest.mark.parametrize(
    "reference", ["../outside/secret.txt", "{outside}/secret.txt", "./link.txt"]
)
def test_placeholders_cannot_read_outside_the_descriptor_folder(catalog, tmp_path, reference):
    # DESIGN: every file path derived from input goes through the containment helper.
    secret = write(tmp_path / "outside" / "secret.txt", "hunter2\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "link.txt").symlink_to(secret)
    path = write_docs(
        repo / "catalog-info.yaml",
        component("leaky", notes={"$text": reference.format(outside=tmp_path / "outside")}),
    )
    location_id = register(catalog, path)
    leaked = get(catalog, "component:default/leaky")
    assert leaked is None or "hunter2" not in json.dumps(leaked)
    assert location_errors(catalog, location_id), "reading outside the location must be an error"


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_migrations_build_a_fresh_database_and_are_idempotent(request, tmp_path, backend, make_app):
    # Other tests start from a migrated template; this one starts from nothing.
    from pavedroad.settings import Settings

    if backend == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'fresh' / 'pavedroad.db'}"
    settings = Settings(home=tmp_path / "home", database_url=url)
    first = make_app(settings)
    first.state.db.migrate()
    catalog = first.state.catalog
    register(catalog, write_docs(tmp_path / "c.yaml", component("fresh")))
    assert get(catalog, "component:default/fresh") is not None


def test_yaml_1_2_scalars_like_backstage(catalog, tmp_path):
    # Backstage reads YAML 1.2 (core schema): yes/no/on/off are strings, not booleans.
    path = write(
        tmp_path / "c.yaml",
        """
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata:
          name: yaml-12
          labels:
            feature: yes
            legacy: off
          annotations:
            example.com/enabled: no
        spec:
          type: service
          lifecycle: production
          owner: team-a
          replicas: 012
          ratio: 1.10
        """,
    )
    location_id = register(catalog, path)
    assert location_errors(catalog, location_id) == []
    entity = get(catalog, "component:default/yaml-12")
    assert entity["metadata"]["labels"] == {"feature": "yes", "legacy": "off"}
    assert entity["metadata"]["annotations"]["example.com/enabled"] == "no"
    assert entity["spec"]["replicas"] == 12
    assert entity["spec"]["ratio"] == 1.1


def test_orphan_is_adopted_by_another_source(catalog, tmp_path):
    first = write_docs(tmp_path / "first.yaml", component("wanderer", description="first"))
    first_id = register(catalog, first)
    write_docs(first, component("stays"))
    catalog.refresh_location(first_id)
    assert status(catalog, "component:default/wanderer")["orphan"] is True

    second = write_docs(tmp_path / "second.yaml", component("wanderer", description="second"))
    second_id = register(catalog, second)

    wanderer = get(catalog, "component:default/wanderer")
    assert wanderer["metadata"]["description"] == "second"
    assert ORPHAN_ANNOTATION not in wanderer["metadata"]["annotations"]
    assert wanderer["metadata"]["annotations"][MANAGED_BY] == f"file:{second}"
    assert status(catalog, "component:default/wanderer")["orphan"] is False
    assert location_errors(catalog, second_id) == []
    assert "component:default/wanderer" in refs(catalog, second_id)
    # Unregistering the old location no longer takes it away.
    catalog.unregister_location(first_id)
    assert get(catalog, "component:default/wanderer") is not None


def test_background_refresh_picks_up_changes(make_settings, make_app, tmp_path):
    from fastapi.testclient import TestClient

    app = make_app(make_settings(refresh_interval_seconds=5), background=True)
    catalog = app.state.catalog
    path = write_docs(tmp_path / "a.yaml", component("live", description="before"))
    with TestClient(app):
        register(catalog, path)
        write_docs(path, component("live", description="after"))
        assert wait_for(
            lambda: get(catalog, "component:default/live")["metadata"]["description"] == "after",
            timeout=15,
            interval=0.2,
        )


def test_glob_matching_the_location_file_itself_keeps_the_other_targets(catalog, tmp_path):
    write_docs(tmp_path / "all.yaml", location_doc("all", "./*.yaml"))
    for name in ("a", "b", "c"):
        write_docs(tmp_path / f"{name}.yaml", component(f"glob-{name}"))
    register(catalog, tmp_path / "all.yaml")
    assert {r for r in refs(catalog) if r.startswith("component:")} == {
        "component:default/glob-a",
        "component:default/glob-b",
        "component:default/glob-c",
    }
    assert get(catalog, "location:default/all") is not None


def test_entity_moving_between_files_of_a_location_settles(catalog, tmp_path):
    root = write_docs(tmp_path / "catalog-info.yaml", location_doc("root", "./a.yaml", "./b.yaml"))
    write_docs(tmp_path / "a.yaml", component("mover"), component("stay-a"))
    write_docs(tmp_path / "b.yaml", component("stay-b"))
    location_id = register(catalog, root)
    uid = get(catalog, "component:default/mover")["metadata"]["uid"]

    write_docs(tmp_path / "a.yaml", component("stay-a"))
    write_docs(tmp_path / "b.yaml", component("stay-b"), component("mover", description="moved"))
    for _ in range(2):  # whichever file is read first, two passes settle it
        catalog.refresh_location(location_id)

    mover = get(catalog, "component:default/mover")
    assert mover["metadata"]["description"] == "moved"
    assert mover["metadata"]["uid"] == uid
    assert mover["metadata"]["annotations"][MANAGED_BY] == f"file:{tmp_path / 'b.yaml'}"
    assert status(catalog, "component:default/mover")["orphan"] is False
    assert location_errors(catalog, location_id) == []


@pytest.mark.parametrize(
    "spec",
    [
        {"dependsOn": ["component:" + "x" * 500]},
        {"owner": "group:" + "n" * 63 + "/" + "o" * 400},
        {"system": "s" * 1000},
    ],
    ids=["long-dependsOn", "long-owner", "long-system"],
)
def test_overlong_relation_targets_fail_their_document_only(catalog, tmp_path, spec):
    bad = component("overlong")
    bad["spec"].update(spec)
    path = write_docs(tmp_path / "c.yaml", component("before"), bad, component("after"))
    location_id = register(catalog, path)
    assert get(catalog, "component:default/before") is not None
    assert get(catalog, "component:default/after") is not None
    assert get(catalog, "component:default/overlong") is None
    errors = location_errors(catalog, location_id)
    assert len(errors) == 1
    assert errors[0]["entityRef"] == "component:default/overlong"


def test_concurrent_refreshes_of_one_source_do_not_fail(request, catalog, database_url, tmp_path):
    # Two people pressing "refresh" at once, or a refresh next to the background worker.
    import threading

    path = write_docs(tmp_path / "a.yaml", component("anchor"))
    register(catalog, path)
    failures: list[str] = []
    for round_ in range(8):
        write_docs(path, component("anchor"), *[component(f"n{round_}-{i}") for i in range(30)])
        barrier = threading.Barrier(4)

        def refresh(barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                catalog.refresh_entity("component:default/anchor")
            except Exception as exc:  # any failure is the finding
                failures.append(f"{type(exc).__name__}: {exc}"[:300])

        threads = [threading.Thread(target=refresh) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert failures == []
    assert len([r for r in refs(catalog) if r.startswith("component:default/n7-")]) == 30


def test_concurrent_registrations_of_one_target_conflict_cleanly(
    request, catalog, database_url, tmp_path
):
    import threading

    from pavedroad.core.errors import ConflictError

    outcomes: list[str] = []
    for round_ in range(8):
        path = write_docs(tmp_path / f"r{round_}.yaml", component(f"r{round_}"))
        barrier = threading.Barrier(4)

        def add(barrier: threading.Barrier = barrier, path: Path = path) -> None:
            barrier.wait()
            try:
                catalog.ingester.add_location("file", str(path))
                outcomes.append("created")
            except ConflictError:
                outcomes.append("conflict")
            except Exception as exc:  # any other failure is the finding
                outcomes.append(f"{type(exc).__name__}: {exc}"[:300])

        threads = [threading.Thread(target=add) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert sorted(set(outcomes)) == ["conflict", "created"], outcomes
    assert outcomes.count("created") == 8
