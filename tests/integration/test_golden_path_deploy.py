"""The whole golden path on the embedded default: a service made from the "Python web
service" template, its push built into a release by the standard pipeline, live in
development at its URL by itself; promoted to staging, then to production with another
team member's approval; a second release rolled back; a branch's own preview, gone
when the branch is deleted."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pavedroad.environments.directory import preview_name as preview_of

COMPONENT = "component:default/stock-levels"
ENDED = ("live", "replaced", "failed", "rejected", "expired", "cancelled", "removed")

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def database_seed() -> str:
    return "demo"


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def wait_for(what: str, check: Callable[[], Any], timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def platform(make_app: Any, make_settings: Any) -> Iterator[TestClient]:
    settings = make_settings()
    settings.deployments.drain_seconds = 0.2
    app = make_app(settings, background=True)
    with TestClient(app) as client:
        yield client
        runtime = app.state.deployments.runtime
        for instance in runtime.instances():
            runtime.stop([instance["id"]])


def live_deployment(client: TestClient, env: str, release: str | None = None) -> Any:
    items = client.get(
        "/api/v1/deployments", params={"component": COMPONENT, "environment": env}
    ).json()["items"]
    for item in items:
        if release is None or item["release"] == release:
            if item["status"] == "failed":
                detail = client.get(f"/api/v1/deployments/{item['id']}").json()
                raise AssertionError((detail["reason"], detail["logTail"]))
            if item["status"] == "live":
                return item
    return None


def answer(client: TestClient, env: str) -> dict[str, Any]:
    response = client.get("/", headers={"host": f"stock-levels.{env}.localhost:7070"})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def newest_release(client: TestClient, branch: str, not_id: str | None = None) -> Any:
    items = client.get(
        "/api/v1/releases", params={"component": COMPONENT, "branch": branch}
    ).json()["items"]
    return next((r for r in items if r["id"] != not_id), None)


def test_from_template_to_production_and_back(platform: TestClient, tmp_path: Path) -> None:
    created = platform.post(
        "/api/v1/scaffolder/tasks",
        json={
            "templateRef": "template:default/python-web-service",
            "values": {
                "name": "stock-levels",
                "description": "Stock per warehouse",
                "owner": "group:default/checkout-team",
                "repoUrl": "pavedroad?owner=checkout-team&repo=stock-levels",
            },
        },
    )
    assert created.status_code == 201, created.text

    # 1. the push builds a release, which goes live in development by itself
    first = wait_for("the first release", lambda: newest_release(platform, "main"))
    dev = wait_for("development", lambda: live_deployment(platform, "development", first["id"]))
    assert dev["kind"] == "auto" and dev["url"] == "http://stock-levels.development.localhost:7070/"
    assert answer(platform, "development")["message"] == "Hello from stock-levels!"

    # 2. the same release to staging, then to production once another owner approves
    staged = platform.post(
        "/api/v1/deployments/promote", json={"component": COMPONENT, "to": "staging"}
    ).json()
    wait_for("staging", lambda: live_deployment(platform, "staging", first["id"]), 60)
    waiting = platform.post(
        "/api/v1/deployments/promote", json={"component": COMPONENT, "to": "production"}
    ).json()
    assert staged["release"] == waiting["release"] == first["id"]
    assert waiting["status"] == "awaiting-approval"
    service = platform.app.state.deployments  # type: ignore[attr-defined]
    service.approve(waiting["id"], "user:default/alice")
    wait_for("production", lambda: live_deployment(platform, "production", first["id"]), 60)
    assert answer(platform, "production")["service"] == "stock-levels"

    # 3. a second release replaces the first in development; rollback brings it back
    bare = platform.app.state.git.root / "checkout-team" / "stock-levels.git"  # type: ignore[attr-defined]
    work = tmp_path / "work"
    git("clone", "-q", str(bare), str(work), cwd=tmp_path)
    (work / "CHANGELOG.md").write_text("# Changes\n\n- Stock per warehouse\n")
    git("add", "-A", cwd=work)
    git(
        "-c",
        "user.name=Bob",
        "-c",
        "user.email=bob@example.com",
        "commit",
        "-qm",
        "notes",
        cwd=work,
    )
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    second = wait_for("the second release", lambda: newest_release(platform, "main", first["id"]))
    wait_for("the second live", lambda: live_deployment(platform, "development", second["id"]))
    rolled = platform.post(
        "/api/v1/deployments/rollback", json={"component": COMPONENT, "environment": "development"}
    )
    assert rolled.status_code == 201, rolled.text
    assert rolled.json()["release"] == first["id"]
    wait_for("the rollback", lambda: live_deployment(platform, "development", first["id"]), 60)

    # 4. a branch gets its own preview, removed with the branch
    git("checkout", "-q", "-b", "Feature/Stock_Alerts", cwd=work)
    (work / "ALERTS.md").write_text("Alerts when stock runs low.\n")
    git("add", "-A", cwd=work)
    git(
        "-c",
        "user.name=Bob",
        "-c",
        "user.email=bob@example.com",
        "commit",
        "-qm",
        "alerts",
        cwd=work,
    )
    git("push", "-q", "origin", "HEAD:refs/heads/Feature/Stock_Alerts", cwd=work)
    preview_name = preview_of("Feature/Stock_Alerts")
    assert preview_name.startswith("preview-feature-stock-alerts-")  # + a hash: it was changed
    preview = wait_for("the preview", lambda: live_deployment(platform, preview_name), 240)
    assert preview["kind"] == "preview"
    assert preview_name.startswith("preview-") and len(preview_name) <= 63
    assert answer(platform, preview_name)["service"] == "stock-levels"
    env = platform.get(f"/api/v1/environments/{preview_name}").json()
    assert env["type"] == "preview" and env["branch"] == "Feature/Stock_Alerts"
    assert env["expiresAt"]
    built = newest_release(platform, "Feature/Stock_Alerts")
    run_page = platform.get(f"/pipelines/runs/{built['runId']}")  # the run shows its URL
    assert f"http://stock-levels.{preview_name}.localhost:7070/" in run_page.text
    tab = platform.get("/catalog/default/component/stock-levels/deployments")
    assert preview_name in tab.text  # and so does the component's Deployments tab

    git("push", "-q", "origin", ":refs/heads/Feature/Stock_Alerts", cwd=work)
    wait_for(
        "the preview to go",
        lambda: platform.get(f"/api/v1/environments/{preview_name}").status_code == 404,
        60,
    )
    gone = platform.get("/", headers={"host": f"stock-levels.{preview_name}.localhost"})
    assert gone.status_code == 404
    assert answer(platform, "development")["service"] == "stock-levels"
