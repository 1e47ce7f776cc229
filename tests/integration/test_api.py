"""The catalog's HTTP APIs on SQLite and PostgreSQL: Pavedroad's own ``/api/v1/catalog``
(problem+json errors) and the Backstage-compatible ``/api/catalog`` with the shapes
Backstage's catalog backend answers with."""

from __future__ import annotations

import base64
import json
from collections import Counter

import pytest
from integration_support import (
    BS,
    DEMO_KIND_COUNTS,
    DEMO_ROOT,
    DEMO_TOTAL,
    V1,
    assert_backstage_error,
    assert_problem,
    component,
    names,
    v1_list,
    write_docs,
)


@pytest.fixture
def database_seed():
    """Every test here starts from its own copy of a database holding the demo organisation."""
    return "demo"


@pytest.fixture
def demo(catalog):
    """The demo organisation's location id (ingested into this test's database)."""
    with catalog.reader() as reader:
        locations = reader.locations()
    assert [row.target for row in locations] == [str(DEMO_ROOT)]
    return locations[0].id


# -- /api/v1/catalog: listing, filters, search, fields ------------------------------------


def test_list_all(client, demo):
    body = v1_list(client, limit=100)
    assert body["totalItems"] == DEMO_TOTAL
    assert len(body["items"]) == DEMO_TOTAL
    assert Counter(e["kind"] for e in body["items"]) == DEMO_KIND_COUNTS
    assert body["pageInfo"] == {}
    first = v1_list(client)
    assert len(first["items"]) == 50 and "nextCursor" in first["pageInfo"]
    assert "prevCursor" not in first["pageInfo"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["kind=component,spec.lifecycle=experimental"], ["fraud-scoring", "search-service"]),
        (["kind=COMPONENT,spec.lifecycle=Experimental"], ["fraud-scoring", "search-service"]),
        (
            ["kind=domain", "kind=system"],
            ["commerce", "developer-platform", "payments", "platform", "storefront"],
        ),
        (["kind=component,spec.type=website"], ["legacy-checkout", "storefront-web"]),
        (
            ["kind=component,spec.type=website,spec.type=library"],
            [
                "legacy-checkout",
                "payments-web-sdk",
                "service-chassis",
                "shared-pipelines",
                "storefront-web",
            ],
        ),
        (
            ["spec.providesApis"],
            [
                "cart-service",
                "catalog-service",
                "inventory-service",
                "orders-service",
                "payments-service",
            ],
        ),
        (
            ["metadata.annotations.backstage.io/techdocs-ref=dir:."],
            [
                "cart-service",
                "catalog-service",
                "fraud-scoring",
                "inventory-service",
                "orders-service",
                "payments-service",
                "payments-web-sdk",
                "search-service",
                "service-chassis",
                "shared-pipelines",
                "storefront-web",
            ],
        ),
        (["metadata.labels.compliance=pci-dss"], ["payments-db", "payments-service"]),
        (
            ["metadata.tags=pci-dss"],
            ["payments", "payments-api", "payments-db", "payments-service", "payments-web-sdk"],
        ),
        (
            ["relations.ownedBy=group:default/checkout-team"],
            [
                "cart-api",
                "cart-service",
                "legacy-checkout",
                "order-events",
                "order-events-queue",
                "orders-api",
                "orders-db",
                "orders-service",
            ],
        ),
        (
            ["relations.ownedby=GROUP:default/Checkout-Team,kind=resource"],
            ["order-events-queue", "orders-db"],
        ),
        (["relations.memberOf=group:default/payments-team"], ["frank", "grace", "kwame"]),
        (["relations.hasPart=component:default/fraud-scoring"], ["payments"]),
        (["spec.environment=nowhere"], []),
        (["metadata.name' OR '1'='1"], []),
        (["spec.%=%"], []),
        (["spec._ype=service"], []),
        (["a" * 300 + "=x"], []),
        (["metadata.name=ORDERS-SERVICE"], ["orders-service"]),
    ],
)
def test_filters(client, demo, filters, expected):
    body = v1_list(client, filter=filters, order="metadata.name", limit=100)
    assert names(body["items"]) == expected
    assert body["totalItems"] == len(expected)


def test_full_text_search(client, demo):
    assert names(v1_list(client, q="opensearch")["items"]) == ["search-service"]
    assert "fraud-scoring" in names(v1_list(client, q="FRAUD")["items"])
    assert names(v1_list(client, q="Kwame Mensah")["items"]) == []  # profile is not searched
    assert names(v1_list(client, q="machine learning engineer")["items"]) == ["kwame"]
    # LIKE wildcards are literal characters, not patterns.
    assert names(v1_list(client, q="%")["items"]) == ["search-service"]  # "10% of traffic"
    assert names(v1_list(client, q="10%")["items"]) == ["search-service"]
    assert v1_list(client, q="1_%")["totalItems"] == 0
    assert v1_list(client, q="_")["totalItems"] == 0
    assert names(v1_list(client, q="ÉVÉNEMENTS")["items"]) == []
    combined = v1_list(client, q="postgres", filter="kind=resource", order="metadata.name")
    assert names(combined["items"]) == ["orders-db", "payments-db"]


def test_fields_keep_only_named_paths(client, demo):
    body = v1_list(
        client,
        filter="kind=component",
        fields="metadata.name,spec.owner",
        order="metadata.name",
        limit=2,
    )
    assert body["items"] == [
        {"metadata": {"name": "cart-service"}, "spec": {"owner": "group:checkout-team"}},
        {"metadata": {"name": "catalog-service"}, "spec": {"owner": "group:catalog-team"}},
    ]
    users = v1_list(client, filter="kind=user", fields=["metadata.name", "spec.owner"], limit=1)
    assert users["items"] == [{"metadata": {"name": users["items"][0]["metadata"]["name"]}}]


def test_ordering(client, demo):
    ascending = names(v1_list(client, filter="kind=group", order="metadata.name")["items"])
    assert ascending == sorted(ascending)
    descending = names(v1_list(client, filter="kind=group", order="metadata.name,desc")["items"])
    assert descending == list(reversed(ascending))
    by_lifecycle = v1_list(
        client,
        filter="kind=component",
        order=["spec.lifecycle", "metadata.name,desc"],
        fields="metadata.name,spec.lifecycle",
        limit=3,
    )["items"]
    assert by_lifecycle == [
        {"metadata": {"name": "legacy-checkout"}, "spec": {"lifecycle": "deprecated"}},
        {"metadata": {"name": "search-service"}, "spec": {"lifecycle": "experimental"}},
        {"metadata": {"name": "fraud-scoring"}, "spec": {"lifecycle": "experimental"}},
    ]


def _walk(client, path, params, cursor_param="cursor"):
    """Follow nextCursor to the end, then prevCursor back; return both page lists.
    A cursor carries the query; limit and fields are given again with it."""
    sticky = {k: v for k, v in params.items() if k in ("limit", "fields")}
    forward = []
    response = client.get(path, params=params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        forward.append(body)
        cursor = body["pageInfo"].get("nextCursor")
        if not cursor:
            break
        response = client.get(path, params={cursor_param: cursor, **sticky})
        assert len(forward) < 100
    backward = [forward[-1]]
    while cursor := backward[-1]["pageInfo"].get("prevCursor"):
        response = client.get(path, params={cursor_param: cursor, **sticky})
        assert response.status_code == 200, response.text
        backward.append(response.json())
        assert len(backward) < 100
    return forward, backward


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 7},
        {"limit": 7, "order": "metadata.name,desc"},
        {"limit": 5, "order": "spec.lifecycle"},  # many ties and NULLs
        {"limit": 4, "order": ["spec.type,desc", "metadata.name"], "filter": "kind=component"},
        {"limit": 3, "q": "team"},
        {"limit": 1, "filter": ["kind=domain", "kind=system"]},
        {"limit": 2, "filter": "kind=domain"},  # exactly one full page: no nextCursor
    ],
)
def test_cursor_paging_forward_and_back(client, demo, params):
    forward, backward = _walk(client, f"{V1}/entities", {**params, "fields": "metadata.name,kind"})
    everything = v1_list(client, **{**params, "limit": 1000, "fields": "metadata.name,kind"})
    seen = [(e["kind"], e["metadata"]["name"]) for page in forward for e in page["items"]]
    expected = [(e["kind"], e["metadata"]["name"]) for e in everything["items"]]
    assert seen == expected  # same order, no duplicates, no gaps
    assert len(set(seen)) == len(seen) == everything["totalItems"]
    assert all(page["totalItems"] == everything["totalItems"] for page in forward)
    assert "prevCursor" not in forward[0]["pageInfo"]
    if len(forward) > 1:
        assert all("prevCursor" in page["pageInfo"] for page in forward[1:])
    # Walking back visits the same pages in reverse.
    assert [p["items"] for p in backward] == [p["items"] for p in reversed(forward)]


def test_cursor_keeps_its_query(client, demo):
    first = v1_list(client, filter="kind=user", limit=5, order="metadata.name")
    second = client.get(
        f"{V1}/entities", params={"cursor": first["pageInfo"]["nextCursor"], "limit": 5}
    ).json()
    assert all(e["kind"] == "User" for e in second["items"])
    assert second["totalItems"] == 12
    assert names(first["items"] + second["items"]) == sorted(
        names(first["items"] + second["items"])
    )


# -- /api/v1/catalog: one entity, many, uid, graph, ancestry, facets, kinds ------------------


def test_get_entity_and_by_uid(client, demo):
    entity = client.get(f"{V1}/entities/component/default/orders-service").json()
    assert entity["metadata"]["name"] == "orders-service"
    assert {"type": "ownedBy", "targetRef": "group:default/checkout-team"} in entity["relations"]
    same = client.get(f"{V1}/entities/Component/DEFAULT/Orders-Service").json()
    assert same == entity
    by_uid = client.get(f"{V1}/entities/by-uid/{entity['metadata']['uid']}")
    assert by_uid.status_code == 200 and by_uid.json() == entity
    trimmed = client.get(
        f"{V1}/entities/by-uid/{entity['metadata']['uid']}", params={"fields": "metadata.uid"}
    ).json()
    assert trimmed == {"metadata": {"uid": entity["metadata"]["uid"]}}
    assert_problem(client.get(f"{V1}/entities/by-uid/not-a-uid"), 404, "not-a-uid")
    assert_problem(
        client.get(f"{V1}/entities/component/default/nope"),
        404,
        "No entity named 'nope' found, with kind 'component' in namespace 'default'",
    )


def test_status_endpoint(client, demo):
    body = client.get(f"{V1}/entities/component/default/orders-service/status").json()
    assert body["errors"] == [] and body["sourceErrors"] == []
    assert body["orphan"] is False
    assert body["source"] == f"file:{DEMO_ROOT.parent / 'components' / 'storefront.yaml'}"
    assert body["updatedAt"].endswith("Z") and body["nextRefreshAt"].endswith("Z")


def test_by_refs_in_request_order_with_null(client, demo):
    response = client.post(
        f"{V1}/entities/by-refs",
        json={
            "refs": [
                "api:orders-api",
                "component:default/nope",
                "component:default/orders-service",
                "not a :/ ref/",
                "group:checkout-team",
            ],
            "fields": ["metadata.name", "kind"],
        },
    )
    assert response.status_code == 200
    assert response.json() == {
        "items": [
            {"kind": "API", "metadata": {"name": "orders-api"}},
            None,
            {"kind": "Component", "metadata": {"name": "orders-service"}},
            None,
            {"kind": "Group", "metadata": {"name": "checkout-team"}},
        ]
    }
    assert_problem(client.post(f"{V1}/entities/by-refs", json={"refs": ["x"] * 1001}), 400)


def test_every_demo_relation_resolves(client, demo):
    entities = v1_list(client, limit=1000)["items"]
    present = {
        f"{e['kind']}:{e['metadata'].get('namespace', 'default')}/{e['metadata']['name']}".lower()
        for e in entities
    }
    targets = {r["targetRef"] for e in entities for r in e["relations"]}
    assert targets <= present, targets - present


def test_relation_graph_depth(client, demo):
    path = f"{V1}/entities/component/default/orders-service/relations"
    zero = client.get(path, params={"depth": 0}).json()
    assert [n["ref"] for n in zero["nodes"]] == ["component:default/orders-service"]
    assert zero["edges"] == []
    one = client.get(path).json()
    assert one["root"] == "component:default/orders-service"
    refs_one = {n["ref"]: n for n in one["nodes"]}
    assert refs_one["component:default/orders-service"]["distance"] == 0
    assert refs_one["system:default/storefront"]["distance"] == 1
    assert refs_one["api:default/orders-api"]["resolved"] is True
    assert refs_one["api:default/orders-api"]["title"] == "Orders API"
    assert "domain:default/commerce" not in refs_one
    assert {
        "source": "component:default/orders-service",
        "type": "ownedBy",
        "target": "group:default/checkout-team",
    } in one["edges"]
    assert all(e["source"] == "component:default/orders-service" for e in one["edges"])
    two = client.get(path, params={"depth": 2}).json()
    refs_two = {n["ref"]: n for n in two["nodes"]}
    assert refs_two["domain:default/commerce"]["distance"] == 2
    assert set(refs_one) < set(refs_two)
    assert_problem(client.get(path, params={"depth": 6}), 400, "depth")
    assert_problem(client.get(f"{V1}/entities/component/default/nope/relations"), 404)


def test_graph_shows_unresolved_nodes(client, catalog, tmp_path):
    path = write_docs(tmp_path / "c.yaml", component("lonely", owner="ghosts"))
    catalog.register_location("file", str(path))
    graph = client.get(f"{V1}/entities/component/default/lonely/relations").json()
    ghost = next(n for n in graph["nodes"] if n["ref"] == "group:default/ghosts")
    assert ghost["resolved"] is False and ghost["kind"].lower() == "group"


def test_ancestry(client, demo):
    body = client.get(f"{V1}/entities/component/default/orders-service/ancestry").json()
    assert body["rootEntityRef"] == "component:default/orders-service"
    chain = [(i["entity"]["metadata"]["name"], i["parentEntityRefs"]) for i in body["items"]]
    assert chain[0] == ("orders-service", ["location:default/demo-organisation"])
    assert chain[1][0] == "demo-organisation"
    assert len(chain[1][1]) == 1 and chain[1][1][0].startswith("location:default/generated-")
    assert chain[2] == (chain[1][1][0].split("/", 1)[1], [])
    assert len(chain) == 3


def test_facets(client, demo):
    body = client.get(f"{V1}/facets", params={"facet": ["kind", "spec.lifecycle"]}).json()
    assert body["facets"]["kind"] == [
        {"value": k, "count": c} for k, c in sorted(DEMO_KIND_COUNTS.items())
    ]
    assert body["facets"]["spec.lifecycle"] == [
        {"value": "deprecated", "count": 1},
        {"value": "experimental", "count": 2},
        {"value": "production", "count": 15},
    ]
    components = client.get(
        f"{V1}/facets", params={"facet": "spec.lifecycle", "filter": "kind=component"}
    ).json()
    assert components["facets"]["spec.lifecycle"] == [
        {"value": "deprecated", "count": 1},
        {"value": "experimental", "count": 2},
        {"value": "production", "count": 9},
    ]
    owners = client.get(
        f"{V1}/facets", params={"facet": "relations.ownedBy", "filter": "kind=resource"}
    ).json()
    assert owners["facets"]["relations.ownedBy"] == [
        {"value": "group:default/catalog-team", "count": 1},
        {"value": "group:default/checkout-team", "count": 2},
        {"value": "group:default/payments-team", "count": 1},
    ]
    searched = client.get(f"{V1}/facets", params={"facet": "kind", "q": "pci"}).json()
    assert (
        sum(f["count"] for f in searched["facets"]["kind"])
        == v1_list(client, q="pci")["totalItems"]
    )
    assert_problem(client.get(f"{V1}/facets"), 400, "facet")


# -- errors and operations ---------------------------------------------------------------


def _cursor(payload):
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "%%%",
        "eyJ",  # a truncated base64 JSON object
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
        _cursor([1, 2, 3]),
        _cursor({"query": {}}),
        _cursor({"query": {}, "after": ["a", "b", "c"]}),
        _cursor({"query": {"filter": "kind=component"}, "after": ["x"]}),
        _cursor({"query": {"filter": {"$bogus": 1}}, "after": ["x"]}),
        _cursor({"query": {}, "after": "abc"}),
        _cursor({"query": {"order": "metadata.name"}, "after": ["x"]}),
        _cursor({"query": {"order": [["metadata.name"]]}, "after": ["x", "y"]}),
        _cursor({"query": {}, "after": [{"a": 1}]}),
        _cursor({"query": {}, "after": [[1, 2]]}),
        _cursor({"query": [], "after": ["x"]}),
        _cursor({"query": {"fullText": 5}, "after": ["x"]}),
    ],
)
def test_malformed_cursor_is_400_not_500(client, demo, cursor):
    body = assert_problem(client.get(f"{V1}/entities", params={"cursor": cursor}), 400)
    assert "cursor" in body["detail"].lower() or "filter" in body["detail"].lower()
    backstage = client.get(f"{BS}/entities/by-query", params={"cursor": cursor})
    assert backstage.status_code == 400
    assert backstage.json()["error"]["name"] == "InputError"


def test_healthz_metrics_and_docs(client, demo):
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    client.get(f"{V1}/entities")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert "# TYPE pavedroad_http_requests_total counter" in text
    assert (
        'pavedroad_http_requests_total{method="GET",route="/api/v1/catalog/entities",status="200"}'
        in text
    )
    assert 'pavedroad_catalog_entities{kind="Component"} 12.0' in text
    assert "pavedroad_catalog_locations 1.0" in text
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = client.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/catalog/entities" in spec["paths"]
    assert "/api/catalog/entities/by-query" in spec["paths"]


# -- /api/catalog: Backstage-compatible ----------------------------------------------------------


def test_backstage_entities_is_a_bare_array(client, demo):
    response = client.get(
        f"{BS}/entities", params={"filter": "kind=group", "fields": "metadata.name,relations"}
    )
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, list) and len(body) == 9
    assert all(set(item) == {"metadata", "relations"} for item in body)
    assert all(set(item["metadata"]) == {"name"} for item in body)
    checkout = next(i for i in body if i["metadata"]["name"] == "checkout-team")
    assert checkout["relations"][0] == {"type": "childOf", "targetRef": "group:default/engineering"}
    assert len(client.get(f"{BS}/entities").json()) == DEMO_TOTAL
    limited = client.get(
        f"{BS}/entities",
        params={"limit": 5, "order": "asc:metadata.name", "fields": "metadata.name"},
    )
    assert len(limited.json()) == 5
    assert names(limited.json()) == sorted(names(limited.json()))


def test_backstage_by_query_shape_and_paging(client, demo):
    first = client.get(
        f"{BS}/entities/by-query",
        params={
            "limit": 2,
            "filter": "kind=component,spec.type=service",
            "fields": "metadata.name,spec.owner",
        },
    )
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"items", "totalItems", "pageInfo"}
    assert body["totalItems"] == 7
    assert len(body["items"]) == 2
    assert all(
        set(i) == {"metadata", "spec"} and set(i["spec"]) == {"owner"} for i in body["items"]
    )
    assert set(body["pageInfo"]) == {"nextCursor"}
    assert isinstance(body["pageInfo"]["nextCursor"], str)
    second = client.get(
        f"{BS}/entities/by-query", params={"cursor": body["pageInfo"]["nextCursor"], "limit": 2}
    ).json()
    assert set(second["pageInfo"]) == {"nextCursor", "prevCursor"}
    assert second["totalItems"] == 7
    assert not set(names(second["items"])) & set(names(body["items"]))
    forward, backward = _walk(
        client,
        f"{BS}/entities/by-query",
        {"limit": 3, "filter": "kind=component", "fields": "metadata.name"},
    )
    seen = [n for page in forward for n in names(page["items"])]
    assert len(seen) == len(set(seen)) == 12
    assert [p["items"] for p in backward] == [p["items"] for p in reversed(forward)]
    default = client.get(f"{BS}/entities/by-query").json()
    assert len(default["items"]) == 20 and default["totalItems"] == DEMO_TOTAL


def test_backstage_by_query_order_and_full_text(client, demo):
    ordered = client.get(
        f"{BS}/entities/by-query",
        params={"orderField": "metadata.name,desc", "limit": 2, "fields": "metadata.name"},
    ).json()
    assert ordered["items"] == [
        {"metadata": {"name": "storefront-web"}},
        {"metadata": {"name": "storefront"}},
    ]
    searched = client.get(
        f"{BS}/entities/by-query",
        params={
            "fullTextFilterTerm": "payments-",
            "fullTextFilterFields": "metadata.name",
            "fields": "metadata.name",
            "orderField": "metadata.name,asc",
        },
    ).json()
    assert names(searched["items"]) == [
        "payments-api",
        "payments-db",
        "payments-service",
        "payments-team",
        "payments-web-sdk",
    ]
    assert searched["totalItems"] == 5


def test_backstage_by_name_and_404_shape(client, demo):
    entity = client.get(f"{BS}/entities/by-name/component/default/orders-service").json()
    assert entity["metadata"]["name"] == "orders-service"
    missing = client.get(f"{BS}/entities/by-name/component/default/nope")
    assert missing.json() == {
        "error": {
            "name": "NotFoundError",
            "message": "No entity named 'nope' found, with kind 'component' in namespace 'default'",
        },
        "request": {"method": "GET", "url": "/entities/by-name/component/default/nope"},
        "response": {"statusCode": 404},
    }
    assert missing.status_code == 404


def test_backstage_stitched_entity_shape(client, demo):
    entity = client.get(f"{BS}/entities/by-name/component/default/orders-service").json()
    assert set(entity) == {"apiVersion", "kind", "metadata", "spec", "relations"}
    metadata = entity["metadata"]
    assert metadata["namespace"] == "default"
    assert len(metadata["etag"]) == 40 and len(metadata["uid"]) == 36
    assert metadata["annotations"]["backstage.io/managed-by-origin-location"] == f"file:{DEMO_ROOT}"
    refs = [(r["type"], r["targetRef"]) for r in entity["relations"]]
    assert refs == sorted(refs)
    assert all(
        set(r) == {"type", "targetRef"} and r["targetRef"] == r["targetRef"].lower()
        for r in entity["relations"]
    )


def test_backstage_by_refs(client, demo):
    response = client.post(
        f"{BS}/entities/by-refs",
        json={
            "entityRefs": ["component:default/orders-service", "component:default/nope"],
            "fields": ["metadata.name"],
        },
    )
    assert response.status_code == 200
    assert response.json() == {"items": [{"metadata": {"name": "orders-service"}}, None]}
    via_query = client.post(
        f"{BS}/entities/by-refs", params={"fields": "kind"}, json={"entityRefs": ["group:acme"]}
    ).json()
    assert via_query == {"items": [{"kind": "Group"}]}


def test_backstage_entity_facets(client, demo):
    body = client.get(f"{BS}/entity-facets", params={"facet": ["kind", "spec.lifecycle"]}).json()
    assert body == {
        "facets": {
            "kind": [{"value": k, "count": c} for k, c in sorted(DEMO_KIND_COUNTS.items())],
            "spec.lifecycle": [
                {"value": "deprecated", "count": 1},
                {"value": "experimental", "count": 2},
                {"value": "production", "count": 15},
            ],
        }
    }
    filtered = client.get(
        f"{BS}/entity-facets", params={"facet": "spec.type", "filter": "kind=resource"}
    ).json()
    assert filtered == {
        "facets": {
            "spec.type": [
                {"value": "database", "count": 2},
                {"value": "queue", "count": 1},
                {"value": "s3-bucket", "count": 1},
            ]
        }
    }
    assert_backstage_error(
        client.get(f"{BS}/entity-facets"), 400, "InputError", "GET", "/entity-facets"
    )


def test_backstage_ancestry(client, demo):
    body = client.get(f"{BS}/entities/by-name/component/default/orders-service/ancestry").json()
    assert body["rootEntityRef"] == "component:default/orders-service"
    assert body["items"][0]["parentEntityRefs"] == ["location:default/demo-organisation"]
    assert all(set(i) == {"entity", "parentEntityRefs"} for i in body["items"])
    assert body["items"][-1]["parentEntityRefs"] == []
    assert_backstage_error(
        client.get(f"{BS}/entities/by-name/component/default/nope/ancestry"),
        404,
        "NotFoundError",
        "GET",
        "/entities/by-name/component/default/nope/ancestry",
    )


def test_backstage_error_shape_for_bad_input(client, demo):
    response = client.get(f"{BS}/entities/by-query", params={"cursor": "garbage"})
    body = assert_backstage_error(
        response, 400, "InputError", "GET", "/entities/by-query?cursor=garbage"
    )
    assert "cursor" in body["error"]["message"].lower()
    assert_backstage_error(
        client.get(f"{BS}/entities/by-uid/nope"),
        404,
        "NotFoundError",
        "GET",
        "/entities/by-uid/nope",
    )


def test_backstage_by_uid_get_and_delete(client, demo):
    entity = client.get(f"{BS}/entities/by-name/component/default/orders-service").json()
    uid = entity["metadata"]["uid"]
    assert client.get(f"{BS}/entities/by-uid/{uid}").json() == entity


def test_backstage_delete_by_uid_removes_only_that_entity(client, demo):
    uid = client.get(f"{BS}/entities/by-name/component/default/orders-service").json()["metadata"][
        "uid"
    ]
    assert client.delete(f"{BS}/entities/by-uid/{uid}").status_code == 204
    assert client.get(f"{BS}/entities/by-uid/{uid}").status_code == 404
    assert len(client.get(f"{BS}/entities").json()) == DEMO_TOTAL - 1
    # The relations it emitted went with it ...
    team = client.get(f"{BS}/entities/by-name/group/default/checkout-team").json()
    assert {"type": "ownerOf", "targetRef": "component:default/orders-service"} not in team[
        "relations"
    ]
    # ... and, still being in its file, it comes back with the next refresh (as in Backstage).
    refreshed = client.post(f"{V1}/refresh", json={"locationId": demo})
    assert refreshed.status_code == 200
    back = client.get(f"{BS}/entities/by-name/component/default/orders-service")
    assert back.status_code == 200
    assert len(client.get(f"{BS}/entities").json()) == DEMO_TOTAL


def test_backstage_entities_offset(client, demo):
    every = names(
        client.get(
            f"{BS}/entities", params={"order": "asc:metadata.name", "fields": "metadata.name"}
        ).json()
    )
    assert every == sorted(every) and len(every) == DEMO_TOTAL
    window = client.get(
        f"{BS}/entities",
        params={"order": "asc:metadata.name", "fields": "metadata.name", "limit": 5, "offset": 10},
    ).json()
    assert names(window) == every[10:15]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            {"kind": "component", "spec.lifecycle": {"$in": ["experimental", "deprecated"]}},
            ["fraud-scoring", "legacy-checkout", "search-service"],
        ),
        (
            {"$all": [{"kind": "resource"}, {"$not": {"spec.type": "database"}}]},
            ["order-events-queue", "product-images"],
        ),
        (
            {"$any": [{"kind": "domain"}, {"metadata.name": {"$hasPrefix": "payments-w"}}]},
            ["commerce", "payments-web-sdk", "platform"],
        ),
        ({"kind": "component", "metadata.tags": {"$contains": "rabbitmq"}}, ["orders-service"]),
        ({"kind": "user", "relations.memberOf": "group:default/data-team"}, ["heidi", "kwame"]),
        ({"kind": "system", "spec.domain": {"$exists": False}}, []),
    ],
)
def test_backstage_predicate_query(client, demo, query, expected):
    response = client.post(
        f"{BS}/entities/by-query",
        json={
            "query": query,
            "fields": ["metadata.name"],
            "limit": 100,
            "orderBy": [{"field": "metadata.name", "order": "asc"}],
        },
    )
    assert response.status_code == 200, response.text
    assert names(response.json()["items"]) == expected
    assert response.json()["totalItems"] == len(expected)


def test_backstage_predicate_facets_and_errors(client, demo):
    facets = client.post(
        f"{BS}/entity-facets", json={"facets": ["spec.type"], "query": {"kind": "resource"}}
    ).json()
    assert facets == {
        "facets": {
            "spec.type": [
                {"value": "database", "count": 2},
                {"value": "queue", "count": 1},
                {"value": "s3-bucket", "count": 1},
            ]
        }
    }
    bad = client.post(f"{BS}/entities/by-query", json={"query": {"$nope": []}})
    assert_backstage_error(bad, 400, "InputError", "POST", "/entities/by-query")
    bad_matcher = client.post(f"{BS}/entities/by-query", json={"query": {"kind": {"$in": "x"}}})
    assert bad_matcher.status_code == 400


def test_backstage_entities_after_cursor_and_link_header(client, demo):
    first = client.get(
        f"{BS}/entities", params={"limit": 5, "filter": "kind=user", "fields": "metadata.name"}
    )
    link = first.headers["link"]
    assert link.startswith("<?after=") and link.endswith('>; rel="next"')
    after = link[len("<?after=") : link.index(">")]
    second = client.get(
        f"{BS}/entities", params={"after": after, "limit": 5, "fields": "metadata.name"}
    )
    assert second.status_code == 200
    seen = names(first.json()) + names(second.json())
    assert len(seen) == len(set(seen)) == 10
    everything = client.get(f"{BS}/entities", params={"filter": "kind=user"}).json()
    assert "link" not in client.get(f"{BS}/entities", params={"filter": "kind=user"}).headers
    assert seen == names(everything)[:10]


def test_full_text_search_is_unicode_aware(client, catalog, tmp_path):
    path = write_docs(
        tmp_path / "c.yaml", component("creperie", description="Crêpes, café crème and naïve Ærø")
    )
    catalog.register_location("file", str(path))
    for term in ("CAFÉ", "crème", "NAÏVE", "ærø"):
        assert names(v1_list(client, q=term)["items"]) == ["creperie"], term
