"""URL locations against a real local HTTP server: the host allowlist, private-network
protection, redirects re-checked at every hop, and relative targets and placeholders
resolved against the URL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from integration_support import (
    MANAGED_BY,
    MANAGED_BY_ORIGIN,
    PROBLEM_JSON,
    SOURCE_LOCATION,
    component,
    entity_doc,
    get,
    location_doc,
    write,
    write_docs,
)


@pytest.fixture
def url_client(make_settings, make_app):
    """A TestClient factory for apps with the given catalog settings."""
    clients = []

    def make(**catalog):
        client = TestClient(make_app(make_settings(**catalog)))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _serve_org(server):
    write_docs(
        server.root / "catalog-info.yaml",
        location_doc("remote-org", "./components/shop.yaml", "apis/shop-api.yaml"),
    )
    write_docs(
        server.root / "components" / "shop.yaml", component("shop", providesApis=["shop-api"])
    )
    write(
        server.root / "apis" / "shop-api.yaml",
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
            $text: ./defs/openapi.yaml
        """,
    )
    write(server.root / "apis" / "defs" / "openapi.yaml", "openapi: 3.0.0\n")


def test_url_location_ingests_with_relative_targets_and_text(http_server, url_client):
    server = http_server()
    _serve_org(server)
    client = url_client(allowed_hosts=[server.host], allow_private_network=True)

    response = client.post(
        "/api/v1/catalog/locations", json={"type": "url", "target": server.url("catalog-info.yaml")}
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["errors"] == []
    names = sorted(e["metadata"]["name"] for e in body["entities"])
    assert names[0].startswith("generated-") and names[1:] == ["remote-org", "shop", "shop-api"]
    catalog = client.app.state.catalog
    api = get(catalog, "api:default/shop-api")
    assert api["spec"]["definition"] == "openapi: 3.0.0\n"
    annotations = api["metadata"]["annotations"]
    assert annotations[MANAGED_BY] == f"url:{server.url('apis/shop-api.yaml')}"
    assert annotations[MANAGED_BY_ORIGIN] == f"url:{server.url('catalog-info.yaml')}"
    assert annotations[SOURCE_LOCATION] == f"url:{server.url('apis/')}"
    assert ("apiProvidedBy", "component:default/shop") in [
        (r["type"], r["targetRef"]) for r in api["relations"]
    ]
    assert "/apis/defs/openapi.yaml" in server.requests


def test_url_target_not_found_is_an_error_on_that_source(http_server, url_client):
    server = http_server()
    write_docs(
        server.root / "catalog-info.yaml", location_doc("remote", "./missing.yaml", "./ok.yaml")
    )
    write_docs(server.root / "ok.yaml", component("ok"))
    client = url_client(allowed_hosts=[server.host], allow_private_network=True)

    body = client.post(
        "/api/v1/catalog/locations", json={"type": "url", "target": server.url("catalog-info.yaml")}
    ).json()

    assert "ok" in [e["metadata"]["name"] for e in body["entities"]]
    assert len(body["errors"]) == 1
    assert body["errors"][0]["source"] == f"url:{server.url('missing.yaml')}"
    assert "404" in body["errors"][0]["message"]


def test_host_not_on_the_allowlist_is_refused_at_registration(http_server, url_client):
    server = http_server()
    _serve_org(server)
    client = url_client(allowed_hosts=["github.com", "*.example.com"], allow_private_network=True)

    response = client.post(
        "/api/v1/catalog/locations", json={"type": "url", "target": server.url("catalog-info.yaml")}
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert "not in the allowed hosts" in response.json()["detail"]

    backstage = client.post(
        "/api/catalog/locations", json={"type": "url", "target": server.url("catalog-info.yaml")}
    )
    assert backstage.status_code == 400
    assert backstage.json()["error"]["name"] == "InputError"
    assert "not in the allowed hosts" in backstage.json()["error"]["message"]
    assert backstage.json()["response"] == {"statusCode": 400}
    assert server.requests == []
    assert client.get("/api/v1/catalog/locations").json() == []


def test_redirect_to_a_host_not_on_the_allowlist_is_refused(http_server, url_client):
    allowed = http_server()
    other = http_server()
    write_docs(other.root / "catalog-info.yaml", component("smuggled"))
    allowed.redirects["/catalog-info.yaml"] = other.url("catalog-info.yaml")
    write_docs(allowed.root / "fine.yaml", component("fine"))
    client = url_client(allowed_hosts=[allowed.host], allow_private_network=True)

    response = client.post(
        "/api/v1/catalog/locations",
        json={"type": "url", "target": allowed.url("catalog-info.yaml")},
    )
    fine = client.post(
        "/api/v1/catalog/locations", json={"type": "url", "target": allowed.url("fine.yaml")}
    )

    # A target that cannot be read is refused at registration: nothing is registered.
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "not in the allowed hosts" in response.json()["detail"]
    assert other.requests == []  # the disallowed host was never contacted
    assert get(client.app.state.catalog, "component:default/smuggled") is None
    targets = [row["target"] for row in client.get("/api/v1/catalog/locations").json()]
    assert allowed.url("catalog-info.yaml") not in targets
    # The refusal is that location's alone.
    assert fine.status_code == 201 and fine.json()["errors"] == []


def test_redirect_within_the_allowlist_is_followed(http_server, url_client):
    server = http_server()
    write_docs(server.root / "real.yaml", component("moved"))
    server.redirects["/old.yaml"] = "/real.yaml"
    client = url_client(allowed_hosts=[server.host], allow_private_network=True)
    body = client.post(
        "/api/v1/catalog/locations", json={"type": "url", "target": server.url("old.yaml")}
    ).json()
    assert body["errors"] == []
    assert "moved" in [e["metadata"]["name"] for e in body["entities"]]


def test_loopback_is_refused_without_allow_private_network(http_server, url_client):
    server = http_server()
    _serve_org(server)
    client = url_client(allowed_hosts=[server.host], allow_private_network=False)

    response = client.post(
        "/api/v1/catalog/locations", json={"type": "url", "target": server.url("catalog-info.yaml")}
    )

    assert response.status_code == 400
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert "loopback or private" in response.json()["detail"]
    assert "allow_private_network" in response.json()["detail"]
    assert server.requests == []


def test_text_placeholder_on_a_disallowed_host_fails_that_entity_only(tmp_path, catalog):
    # No network: the allowlist refuses before any connection is attempted.
    path = write_docs(
        tmp_path / "apis.yaml",
        entity_doc(
            "API",
            "remote-def",
            {
                "type": "openapi",
                "lifecycle": "production",
                "owner": "team-a",
                "definition": {"$text": "https://api.example.net/openapi.json"},
            },
        ),
        component("local"),
    )
    location, _ = catalog.register_location("file", str(path))
    assert get(catalog, "api:default/remote-def") is None
    assert get(catalog, "component:default/local") is not None
    with catalog.reader() as reader:
        errors = reader.location_status(location.id)["errors"]
    assert len(errors) == 1
    assert "api.example.net" in errors[0]["message"]
    assert "not in the allowed hosts" in errors[0]["message"]


def test_non_http_schemes_are_refused(url_client):
    client = url_client(allowed_hosts=["*"], allow_private_network=True)
    for target in ("file:///etc/passwd", "ftp://example.com/x.yaml", "gopher://x/"):
        response = client.post("/api/v1/catalog/locations", json={"type": "url", "target": target})
        assert response.status_code == 400, target
        assert "http" in response.json()["detail"]


def test_remote_catalog_cannot_pull_in_server_files(http_server, url_client, tmp_path):
    private = write_docs(
        tmp_path / "server-local" / "private.yaml",
        component("private-thing", description="only on the server's disk"),
    )
    server = http_server()
    write_docs(
        server.root / "catalog-info.yaml",
        entity_doc("Location", "sneaky", {"type": "file", "target": str(private)}),
    )
    client = url_client(allowed_hosts=[server.host], allow_private_network=True)
    body = client.post(
        "/api/v1/catalog/locations", json={"type": "url", "target": server.url("catalog-info.yaml")}
    ).json()
    assert get(client.app.state.catalog, "component:default/private-thing") is None
    assert body["errors"], "a file target from a URL location must be refused with an error"


def test_file_catalog_pointing_at_a_url_obeys_the_allowlist(catalog, tmp_path):
    path = write_docs(
        tmp_path / "catalog-info.yaml",
        entity_doc(
            "Location",
            "remote",
            {"type": "url", "target": "https://github.com/acme/x/catalog.yaml"},
        ),
        component("local"),
    )
    location, _ = catalog.register_location("file", str(path))
    assert get(catalog, "component:default/local") is not None
    with catalog.reader() as reader:
        errors = reader.location_status(location.id)["errors"]
    assert len(errors) == 1
    assert "github.com" in errors[0]["message"]
    assert "not in the allowed hosts" in errors[0]["message"]
