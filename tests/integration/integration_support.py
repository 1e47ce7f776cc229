"""Helpers the integration tests share: writing descriptor files, registering them,
reading entities and errors back."""

from __future__ import annotations

import json
import re
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

DEMO_DIR = Path(__file__).resolve().parents[2] / "examples" / "demo"
DEMO_ROOT = DEMO_DIR / "catalog-info.yaml"

# What the demo organisation holds, by kind (the generated root Location included).
DEMO_KIND_COUNTS = {
    "API": 6,
    "Component": 12,
    "Domain": 2,
    "Environment": 3,
    "Group": 9,
    "Location": 2,
    "PipelineTemplate": 3,
    "Resource": 4,
    "System": 3,
    "Template": 3,
    "User": 12,
}
DEMO_TOTAL = sum(DEMO_KIND_COUNTS.values())

# Annotations Backstage (and so Pavedroad) puts on ingested entities.
MANAGED_BY = "backstage.io/managed-by-location"
MANAGED_BY_ORIGIN = "backstage.io/managed-by-origin-location"
SOURCE_LOCATION = "backstage.io/source-location"
ORPHAN_ANNOTATION = "backstage.io/orphan"

PROBLEM_JSON = "application/problem+json"
V1 = "/api/v1/catalog"
BS = "/api/catalog"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def write_docs(path: Path, *documents: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(list(documents), sort_keys=False))
    return path


def component(
    name: str,
    owner: str = "team-a",
    namespace: str | None = None,
    description: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    if description is not None:
        metadata["description"] = description
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": metadata,
        "spec": {"type": "service", "lifecycle": "production", "owner": owner, **spec},
    }


def entity_doc(
    kind: str,
    name: str,
    spec: dict[str, Any] | None = None,
    api_version: str = "backstage.io/v1alpha1",
    **metadata: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, **metadata},
        "spec": spec or {},
    }


def location_doc(name: str, *targets: str, presence: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"targets": list(targets)}
    if presence:
        spec["presence"] = presence
    return entity_doc("Location", name, spec)


def register(catalog: Any, path: Path | str) -> str:
    """Register a file location and ingest it; returns the location id."""
    location, _entities = catalog.register_location("file", str(path))
    return str(location.id)


def get(catalog: Any, ref: str) -> dict[str, Any] | None:
    with catalog.reader() as reader:
        return reader.get_many([ref])[0]  # type: ignore[no-any-return]


def refs(catalog: Any, location_id: str | None = None) -> set[str]:
    """The refs of every entity (of one location, if given)."""
    from pavedroad.catalog.queries import EntityQuery

    with catalog.reader() as reader:
        if location_id:
            return set(reader.entity_refs_of_location(location_id))
        page = reader.query(
            EntityQuery(limit=1000, fields=["kind", "metadata.namespace", "metadata.name"])
        )
    return {
        f"{e['kind']}:{e['metadata'].get('namespace', 'default')}/{e['metadata']['name']}".lower()
        for e in page.items
    }


def status(catalog: Any, ref: str) -> dict[str, Any]:
    with catalog.reader() as reader:
        return reader.status_of(ref)  # type: ignore[no-any-return]


def location_errors(catalog: Any, location_id: str) -> list[dict[str, Any]]:
    with catalog.reader() as reader:
        return reader.location_status(location_id)["errors"]  # type: ignore[no-any-return]


def error_text(errors: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(e, default=str) for e in errors)


def relations(entity: dict[str, Any] | None) -> list[tuple[str, str]]:
    assert entity is not None
    return [(r["type"], r["targetRef"]) for r in entity["relations"]]


# -- HTTP answers ------------------------------------------------------------------------


def assert_problem(response, status, *fragments):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body = response.json()
    assert body["status"] == status
    assert body["title"] and body["type"].startswith("https://")
    assert isinstance(body["detail"], str) and body["detail"]
    for fragment in fragments:
        assert fragment in body["detail"], body["detail"]
    return body


def assert_backstage_error(response, status, name, method, url, message=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "request", "response"}
    assert body["error"]["name"] == name
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if message is not None:
        assert body["error"]["message"] == message
    assert body["request"] == {"method": method, "url": url}
    assert body["response"] == {"statusCode": status}
    return body


def names(items):
    return [item["metadata"]["name"] for item in items]


def v1_list(client, **params):
    response = client.get(f"{V1}/entities", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# -- signing in as a browser does -------------------------------------------------------------

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_in(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = CSRF_FIELD.search(html)
    assert found, "no CSRF token in the page's forms"
    return found.group(1)


def sign_in(browser: Any, username: str, password: str, next_url: str | None = None) -> Any:
    """Post the sign-in form as a browser would (a TestClient or an httpx.Client): the
    page first, for its CSRF token and cookie. The answer is not followed."""
    data = {
        "username": username,
        "password": password,
        "csrf_token": csrf_in(browser.get("/sign-in").text),
    }
    if next_url is not None:
        data["next"] = next_url
    return browser.post(
        "/sign-in", data=data, headers={"accept": "text/html"}, follow_redirects=False
    )
