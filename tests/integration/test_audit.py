"""Every change through the API, successful or not, leaves an audit event."""

from __future__ import annotations

import json

from integration_support import V1, component, write_docs

BS = "/api/catalog"


def test_changes_and_failures_are_recorded(client, tmp_path):
    path = write_docs(tmp_path / "catalog-info.yaml", component("audited"))
    created = client.post(
        f"{V1}/locations",
        json={"type": "file", "target": str(path)},
        headers={"x-request-id": "req-123"},
    )
    assert created.status_code == 201
    location_id = created.json()["location"]["id"]
    missing = client.post(f"{V1}/locations", json={"type": "file", "target": str(tmp_path / "no")})
    assert missing.status_code == 404
    client.post(f"{V1}/refresh", json={"entityRef": "component:default/audited"})
    client.post(f"{V1}/validate", json={"entity": {}})  # a read: not audited
    client.get(f"{V1}/entities")  # a read: not audited
    assert client.delete(f"{BS}/locations/{location_id}").status_code == 204

    events = client.get("/api/v1/audit").json()["items"]
    assert [e["action"] for e in events] == [
        "catalog.location.delete",
        "catalog.entity.refresh",
        "catalog.location.create",
        "catalog.location.create",
    ]
    deleted, refreshed, failed, first = events
    assert first["outcome"] == "success" and first["status"] == 201
    assert first["requestId"] == "req-123" and first["actor"] == "anonymous"
    assert first["sourceIp"]
    assert failed["outcome"] == "failure" and failed["status"] == 404
    assert deleted["target"] == f"location_id={location_id}"
    assert refreshed["outcome"] == "success"


def test_filters_and_json_lines_export(client, tmp_path):
    for name in ("one", "two"):
        path = write_docs(tmp_path / f"{name}.yaml", component(name))
        client.post(f"{V1}/locations", json={"type": "file", "target": str(path)})
    client.post(f"{V1}/refresh", json={"entityRef": "component:default/one"})

    locations = client.get("/api/v1/audit", params={"action": "catalog.location.*"}).json()
    assert len(locations["items"]) == 2
    failures = client.get("/api/v1/audit", params={"outcome": "failure"}).json()
    assert failures["items"] == []
    newest = client.get("/api/v1/audit", params={"limit": 1}).json()["items"][0]
    older = client.get("/api/v1/audit", params={"before": newest["id"]}).json()["items"]
    assert len(older) == 2 and all(e["at"] <= newest["at"] for e in older)
    assert newest["id"] not in {e["id"] for e in older}

    export = client.get("/api/v1/audit", params={"format": "jsonl"})
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert lines[0]["action"] == "catalog.entity.refresh"
    assert len(lines) == 3

    bad = client.get("/api/v1/audit", params={"outcome": "maybe"})
    assert bad.status_code == 400
