"""The catalog APIs that change things or refuse input, on SQLite and PostgreSQL, each
test starting from an empty catalog: registering, refreshing and deleting locations,
validation, input errors, body limits, and the Backstage-compatible equivalents."""

from __future__ import annotations

import pytest
from integration_support import (
    BS,
    V1,
    assert_backstage_error,
    assert_problem,
    component,
    names,
    v1_list,
    write_docs,
)


def test_kinds(client):
    kinds = {k["kind"]: k for k in client.get(f"{V1}/kinds").json()}
    assert {
        "Component",
        "API",
        "Resource",
        "System",
        "Domain",
        "Group",
        "User",
        "Location",
        "Template",
        "Environment",
    } <= set(kinds)
    assert kinds["Environment"]["apiVersions"] == ["pavedroad.dev/v1alpha1"]
    assert kinds["Component"]["schema"]["type"] == "object"


# -- /api/v1/catalog: locations, refresh, validate -------------------------------------------


def test_locations_register_get_refresh_delete(client, tmp_path):
    path = write_docs(tmp_path / "catalog-info.yaml", component("svc-a"), component("svc-b"))

    dry = client.post(
        f"{V1}/locations", params={"dryRun": "true"}, json={"type": "file", "target": str(path)}
    )
    assert dry.status_code == 200
    assert sorted(names(dry.json()["entities"]))[1:] == ["svc-a", "svc-b"]
    assert client.get(f"{V1}/locations").json() == []
    assert v1_list(client)["totalItems"] == 0

    created = client.post(f"{V1}/locations", json={"type": "file", "target": str(path)})
    assert created.status_code == 201, created.text
    body = created.json()
    location = body["location"]
    assert location["type"] == "file" and location["target"] == str(path)
    assert location["origin"] == "api" and location["createdAt"].endswith("Z")
    assert body["errors"] == []
    assert sorted(names(body["entities"]))[1:] == ["svc-a", "svc-b"]

    listed = client.get(f"{V1}/locations").json()
    assert [item["id"] for item in listed] == [location["id"]]
    assert listed[0]["status"]["entities"] == 3
    one = client.get(f"{V1}/locations/{location['id']}").json()
    assert one["status"]["errors"] == []
    assert [s["key"] for s in one["status"]["sources"]] == [f"file:{path}"]

    duplicate = assert_problem(
        client.post(f"{V1}/locations", json={"type": "file", "target": str(path)}),
        409,
        "already exists",
    )
    assert duplicate["locationId"] == location["id"]

    write_docs(path, component("svc-a", description="changed"))
    refreshed = client.post(f"{V1}/refresh", json={"locationId": location["id"]}).json()
    assert refreshed["written"] == 1 and refreshed["orphaned"] == 1 and refreshed["errors"] == 0
    by_entity = client.post(f"{V1}/refresh", json={"entityRef": "component:default/svc-a"}).json()
    assert by_entity == {"sources": 1, "written": 0, "unchanged": 1, "orphaned": 0, "errors": 0}
    assert_problem(client.post(f"{V1}/refresh", json={}), 400, "entityRef")
    assert_problem(client.post(f"{V1}/refresh", json={"entityRef": "component:nope"}), 404)
    assert_problem(client.post(f"{V1}/refresh", json={"locationId": "nope"}), 404)

    deleted = client.delete(f"{V1}/locations/{location['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert v1_list(client)["totalItems"] == 0
    assert_problem(client.get(f"{V1}/locations/{location['id']}"), 404, location["id"])
    assert_problem(client.delete(f"{V1}/locations/{location['id']}"), 404)


def test_relative_file_target_is_refused_by_the_api(client):
    assert_problem(
        client.post(f"{V1}/locations", json={"type": "file", "target": "relative.yaml"}),
        400,
        "absolute",
    )


def test_location_input_errors(client, tmp_path):
    assert_problem(client.post(f"{V1}/locations", json={"type": "ftp", "target": "x"}), 400, "type")
    assert_problem(
        client.post(f"{V1}/locations", json={"type": "file", "target": ""}), 400, "target"
    )
    assert_problem(
        client.post(
            f"{V1}/locations", content=b"{not json", headers={"content-type": "application/json"}
        ),
        400,
    )
    before = client.get(f"{V1}/locations").json()
    missing = client.post(
        f"{V1}/locations", json={"type": "file", "target": str(tmp_path / "nope.yaml")}
    )
    assert_problem(missing, 404, "does not exist")
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (2 * 1024 * 1024))
    assert_problem(client.post(f"{V1}/locations", json={"type": "file", "target": str(big)}), 413)
    assert client.get(f"{V1}/locations").json() == before  # nothing half-registered


def test_validate(client):
    good = component("checked")
    response = client.post(f"{V1}/validate", json={"entity": good})
    assert response.status_code == 200
    assert response.json()["valid"] is True
    assert response.json()["entity"]["metadata"]["namespace"] == "default"

    bad = component("Not Valid!")
    del bad["spec"]["owner"]
    problem = assert_problem(
        client.post(f"{V1}/validate", json={"entity": bad}), 400, "metadata.name"
    )
    assert any("metadata.name" in e for e in problem["errors"])
    wrong_kind = assert_problem(
        client.post(
            f"{V1}/validate",
            json={
                "entity": {
                    "apiVersion": "backstage.io/v1alpha1",
                    "kind": "Gizmo",
                    "metadata": {"name": "g"},
                }
            },
        ),
        400,
    )
    assert "Gizmo" in wrong_kind["detail"]
    assert_problem(client.post(f"{V1}/validate", json={"entity": [1, 2]}), 400, "mapping")
    placeholder = dict(good, spec={**good["spec"], "extra": {"$text": "./x"}})
    assert_problem(client.post(f"{V1}/validate", json={"entity": placeholder}), 400, "placeholder")


# -- errors, limits, operations -----------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"filter": "=component"},
        {"limit": -1},
        {"limit": 100000},
        {"order": "metadata.name,sideways"},
        {"q": "x" * 201},
    ],
)
def test_bad_list_parameters_are_problems(client, params):
    assert_problem(client.get(f"{V1}/entities", params=params), 400)


def test_unknown_paths_and_methods_are_problems(client):
    assert_problem(client.get("/api/v1/catalog/nothing-here"), 404, "/api/v1/catalog/nothing-here")
    assert_problem(client.put(f"{V1}/locations"), 405)


def test_huge_request_body_is_413(client, settings):
    payload = b'{"entity": "' + b"x" * (settings.max_request_bytes + 1) + b'"}'
    response = client.post(
        f"{V1}/validate", content=payload, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "over the limit")
    backstage = client.post(
        f"{BS}/validate-entity", content=payload, headers={"content-type": "application/json"}
    )
    assert backstage.status_code == 413
    assert backstage.json()["response"] == {"statusCode": 413}


def test_huge_chunked_request_body_is_413(client, settings):
    # No Content-Length: the limit must hold for the bytes actually sent.
    def chunks():
        yield b'{"entity": "'
        for _ in range(settings.max_request_bytes // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    response = client.post(
        f"{V1}/validate", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)


# -- /api/catalog: Backstage-compatible ----------------------------------------------------


def test_backstage_locations(client, tmp_path):
    assert client.get(f"{BS}/locations").json() == []
    path = write_docs(tmp_path / "catalog-info.yaml", component("from-backstage-api"))
    created = client.post(f"{BS}/locations", json={"type": "file", "target": str(path)})
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) >= {"location", "entities"}
    location = body["location"]
    assert set(location) == {"id", "type", "target"}
    assert location["type"] == "file" and location["target"] == str(path)
    assert "from-backstage-api" in names(body["entities"])

    assert client.get(f"{BS}/locations").json() == [{"data": location}]
    assert client.get(f"{BS}/locations/{location['id']}").json() == location
    assert (
        client.get(f"{BS}/locations/by-entity/component/default/from-backstage-api").json()
        == location
    )
    dry = client.post(
        f"{BS}/locations", params={"dryRun": "true"}, json={"type": "file", "target": str(path)}
    )
    assert dry.status_code == 200 and dry.json()["exists"] is False

    refreshed = client.post(
        f"{BS}/refresh", json={"entityRef": "component:default/from-backstage-api"}
    )
    assert refreshed.status_code == 200
    assert_backstage_error(
        client.post(f"{BS}/refresh", json={"entityRef": "component:default/nope"}),
        404,
        "NotFoundError",
        "POST",
        "/refresh",
    )

    assert client.delete(f"{BS}/locations/{location['id']}").status_code == 204
    assert client.get(f"{BS}/locations").json() == []
    assert_backstage_error(
        client.get(f"{BS}/locations/{location['id']}"),
        404,
        "NotFoundError",
        "GET",
        f"/locations/{location['id']}",
        f"Found no location with ID {location['id']}",
    )


def test_backstage_locations_of_a_type_not_allowed(make_settings, make_app, tmp_path):
    from fastapi.testclient import TestClient

    app = make_app(make_settings(allowed_location_types=["url"]))
    with TestClient(app) as client:
        path = write_docs(tmp_path / "c.yaml", component("x"))
        response = client.post(f"{BS}/locations", json={"type": "file", "target": str(path)})
        assert_backstage_error(
            response,
            400,
            "InputError",
            "POST",
            "/locations",
            'Registered locations must be of an allowed type ["url"]',
        )


def test_backstage_validate_entity(client):
    bad = component("x")
    del bad["spec"]["owner"]
    response = client.post(
        f"{BS}/validate-entity", json={"entity": bad, "location": "url:http://x/y.yaml"}
    )
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"errors"}
    assert len(body["errors"]) == 1
    error = body["errors"][0]
    assert error["name"] == "InputError"
    assert "/spec must have required property 'owner'" in error["message"]
    assert set(error["cause"]) >= {"name", "message"}
    assert "/spec must have required property 'owner'" in error["cause"]["message"]
    ok = client.post(
        f"{BS}/validate-entity", json={"entity": component("x"), "location": "url:http://x/y.yaml"}
    )
    assert ok.status_code == 200
    missing_location = client.post(f"{BS}/validate-entity", json={"entity": component("x")})
    assert_backstage_error(missing_location, 400, "InputError", "POST", "/validate-entity")


def test_backstage_entities_without_limit_returns_everything(client, catalog, tmp_path):
    many = [component(f"c{i:05d}") for i in range(1205)]
    catalog.register_location("file", str(write_docs(tmp_path / "many.yaml", *many)))
    response = client.get(f"{BS}/entities", params={"fields": "metadata.name"})
    assert response.status_code == 200
    assert len(response.json()) == 1206  # and the generated Location


def test_special_files_and_disallowed_types_are_refused(make_app, make_settings, tmp_path):
    from fastapi.testclient import TestClient

    client = TestClient(make_app(make_settings(allowed_location_types=["url"])))
    plain = write_docs(tmp_path / "plain.yaml", component("plain"))
    refused = client.post(f"{V1}/locations", json={"type": "file", "target": str(plain)})
    assert_problem(refused, 400, "allowed type")
    assert client.get(f"{V1}/locations").json() == []


def test_device_files_are_not_read(client):
    response = client.post(f"{V1}/locations", json={"type": "file", "target": "/dev/zero"})
    assert_problem(response, 400, "not a regular file")
