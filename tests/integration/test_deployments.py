"""Deployments on the embedded default, for real: releases made from a folder, deployed
to the demo's environments as supervised processes behind the router, promoted with an
approval, rolled back; and the faults: a process that exits at once, one never ready, an
invalid score file, a deploy whose worker dies."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

COMPONENT = "component:default/cart-service"
ENDED = ("live", "replaced", "failed", "rejected", "expired", "cancelled", "removed")

SERVICE = """\
import http.server, os, sys

VERSION = {version!r}
if os.environ.get("BEHAVIOUR") == "exit":
    print("cannot start: no database", flush=True)
    sys.exit(3)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz" and os.environ.get("BEHAVIOUR") == "never-ready":
            self.send_response(503)
            self.end_headers()
            return
        env = os.environ
        body = f"{{VERSION}} {{env.get('LOG_LEVEL')}} {{env.get('GREETING')}}".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


print("serving", VERSION, flush=True)
port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ["PORT"])
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

SCORE = """\
apiVersion: score.dev/v1b1
metadata:
  name: cart-service
containers:
  main:
    image: .
    command: ["python", "app.py"]
    variables:
      LOG_LEVEL: "${{resources.env.LOG_LEVEL}}"
      GREETING: "hello from ${{metadata.name}}"
      BEHAVIOUR: "{behaviour}"
    readinessProbe:
      httpGet:
        path: /healthz
        port: 8080
service:
  ports:
    web:
      port: 80
      targetPort: 8080
resources:
  env:
    type: environment
"""


def bundle(version: str, behaviour: str = "", score: str | None = None) -> bytes:
    files = {
        "app.py": SERVICE.format(version=version),
        "requirements.txt": "# the standard library is enough\n",
        "score.yaml": score if score is not None else SCORE.format(behaviour=behaviour),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# the first test runs on PostgreSQL too; the rest on the embedded default only
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def database_seed() -> str:
    return "demo"


@pytest.fixture
def platform(make_app: Any, make_settings: Any) -> Iterator[TestClient]:
    settings = make_settings()
    settings.deployments.ready_timeout_seconds = 10
    settings.deployments.drain_seconds = 0.2
    settings.runtime.restart_backoff_initial_seconds = 0.2
    app = make_app(settings, background=True)
    with TestClient(app) as client:
        yield client
        runtime = app.state.deployments.runtime
        for instance in runtime.instances():
            runtime.stop([instance["id"]])


def release(client: TestClient, version: str, **kwargs: Any) -> dict[str, Any]:
    response = client.post(
        "/api/v1/releases",
        params={"component": COMPONENT},
        content=bundle(version, **kwargs),
        headers={"content-type": "application/gzip"},
    )
    assert response.status_code == 201, response.text
    return response.json()


def finished(client: TestClient, deployment: dict[str, Any], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = client.get(f"/api/v1/deployments/{deployment['id']}").json()
        if current["status"] in ENDED:
            return current
        time.sleep(0.2)
    raise AssertionError(f"deployment still {current['status']}: {current['timeline']}")


def deploy(client: TestClient, env: str, release_id: str) -> dict[str, Any]:
    response = client.post(
        "/api/v1/deployments",
        json={"component": COMPONENT, "environment": env, "release": release_id},
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def through_router(client: TestClient, env: str) -> str:
    response = client.get("/", headers={"host": f"cart-service.{env}.localhost:7070"})
    assert response.status_code == 200, response.text
    return response.text


def test_a_release_goes_live_at_its_url_and_a_new_one_replaces_it(platform: TestClient) -> None:
    first = release(platform, "v1")
    done = finished(platform, deploy(platform, "development", first["id"]))
    assert done["status"] == "live", (done["reason"], done["timeline"], done["logTail"])
    assert [e["step"] for e in done["timeline"] if e["status"] == "succeeded"] == [
        "resolve",
        "provision",
        "prepare",
        "start",
        "ready",
        "switch",
        "drain",
        "live",
    ]
    assert done["url"] == "http://cart-service.development.localhost:7070/"
    assert through_router(platform, "development") == "v1 debug hello from cart-service"
    path_based = platform.get("/r/development/cart-service/")
    assert path_based.text.startswith("v1 ")

    second = release(platform, "v2")
    again = finished(platform, deploy(platform, "development", second["id"]))
    assert again["status"] == "live"
    assert through_router(platform, "development").startswith("v2 ")
    assert platform.get(f"/api/v1/deployments/{done['id']}").json()["status"] == "replaced"
    instances = platform.get("/api/v1/instances", params={"component": COMPONENT}).json()
    assert [i["releaseId"] for i in instances["items"]] == [second["id"]]

    # the same release again joins what is live instead of deploying twice
    joined = platform.post(
        "/api/v1/deployments",
        json={"component": COMPONENT, "environment": "development", "release": second["id"]},
    )
    assert joined.status_code == 200 and joined.json()["joined"] is True


@sqlite_only
def test_a_release_that_exits_at_once_leaves_the_old_one_serving(platform: TestClient) -> None:
    good = release(platform, "v1")
    assert finished(platform, deploy(platform, "development", good["id"]))["status"] == "live"
    bad = release(platform, "v2", behaviour="exit")
    failed = finished(platform, deploy(platform, "development", bad["id"]))
    assert failed["status"] == "failed"
    assert "exited with code 3" in failed["reason"]
    assert "cannot start: no database" in "\n".join(failed["logTail"])
    assert any(e["step"] == "rollback" and good["id"] in e["message"] for e in failed["timeline"])
    assert through_router(platform, "development").startswith("v1 ")


@sqlite_only
def test_a_release_never_ready_fails_after_the_timeout(platform: TestClient) -> None:
    stuck = release(platform, "v1", behaviour="never-ready")
    failed = finished(platform, deploy(platform, "development", stuck["id"]))
    assert failed["status"] == "failed" and "not ready after" in failed["reason"]
    assert platform.get("/api/v1/instances").json()["items"] == []
    assert (
        platform.get("/", headers={"host": "cart-service.development.localhost"}).status_code == 404
    )


@sqlite_only
def test_an_invalid_score_file_is_refused_with_its_line(platform: TestClient) -> None:
    response = platform.post(
        "/api/v1/releases",
        params={"component": COMPONENT},
        content=bundle(
            "v1",
            score=(
                "apiVersion: score.dev/v1b1\nmetadata:\n  name: x\n"
                "containers:\n  main:\n    command: [a]\n"
            ),
        ),
        headers={"content-type": "application/gzip"},
    )
    assert response.status_code == 400, response.text
    assert "score.yaml:5" in response.text and "image" in response.text


@sqlite_only
def test_promotion_needs_the_release_live_before_and_production_an_approval(
    platform: TestClient,
) -> None:
    first = release(platform, "v1")
    refused = platform.post(
        "/api/v1/deployments/promote", json={"component": COMPONENT, "to": "staging"}
    )
    assert refused.status_code == 400 and "nothing of" in refused.text
    direct = platform.post(
        "/api/v1/deployments",
        json={"component": COMPONENT, "environment": "production", "release": first["id"]},
    )
    assert direct.status_code == 400 and "live in staging first" in direct.text

    assert finished(platform, deploy(platform, "development", first["id"]))["status"] == "live"
    staged = platform.post(
        "/api/v1/deployments/promote", json={"component": COMPONENT, "to": "staging"}
    )
    assert staged.status_code == 201, staged.text
    assert finished(platform, staged.json())["status"] == "live"
    assert through_router(platform, "staging") == "v1 info hello from cart-service"

    waiting = platform.post(
        "/api/v1/deployments/promote", json={"component": COMPONENT, "to": "production"}
    ).json()
    assert waiting["status"] == "awaiting-approval"
    service = platform.app.state.deployments  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="someone else"):
        service.approve(waiting["id"], waiting["requestedBy"])
    service.approve(waiting["id"], "alice")
    live = finished(platform, waiting)
    assert live["status"] == "live" and live["approvals"][0]["approver"] == "alice"
    assert through_router(platform, "production").startswith("v1 warning")


@sqlite_only
def test_rollback_redeploys_the_release_before(platform: TestClient) -> None:
    first, second = release(platform, "v1"), release(platform, "v2")
    finished(platform, deploy(platform, "development", first["id"]))
    finished(platform, deploy(platform, "development", second["id"]))
    rolled = platform.post(
        "/api/v1/deployments/rollback",
        json={"component": COMPONENT, "environment": "development"},
    )
    assert rolled.status_code == 201, rolled.text
    done = finished(platform, rolled.json())
    assert done["status"] == "live" and done["kind"] == "rollback"
    assert done["release"] == first["id"]
    assert through_router(platform, "development").startswith("v1 ")


@sqlite_only
def test_logs_of_what_serves(platform: TestClient, tmp_path: Path) -> None:
    first = release(platform, "v1")
    finished(platform, deploy(platform, "development", first["id"]))
    logs = platform.get(
        "/api/v1/environments/development/components/cart-service/logs", params={"tail": 10}
    ).json()
    assert any("serving v1" in line for line in logs["lines"])


@sqlite_only
def test_a_release_bound_to_a_port_in_use_fails_with_its_error(platform: TestClient) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        score = SCORE.format(behaviour="").replace(
            'command: ["python", "app.py"]', f'command: ["python", "app.py"]\n    args: ["{port}"]'
        )
        fixed = release(platform, "v1", score=score)
        failed = finished(platform, deploy(platform, "development", fixed["id"]))
    finally:
        taken.close()
    assert failed["status"] == "failed", failed
    assert "Address already in use" in "\n".join(failed["logTail"])
    assert platform.get("/api/v1/instances").json()["items"] == []


@sqlite_only
def test_environments_made_at_run_time_and_removed_with_what_runs_in_them(
    platform: TestClient,
) -> None:
    made = platform.post(
        "/api/v1/environments",
        json={
            "name": "load-test",
            "type": "staging",
            "owner": "group:platform-team",
            "variables": {"LOG_LEVEL": "error"},
        },
    )
    assert made.status_code == 201, made.text
    again = platform.post(
        "/api/v1/environments", json={"name": "load-test", "owner": "group:platform-team"}
    )
    assert again.status_code == 409
    for bad in ("Load_Test", "a" * 64, "../etc", "-x"):
        refused = platform.post(
            "/api/v1/environments", json={"name": bad, "owner": "group:platform-team"}
        )
        assert refused.status_code in (400, 422), (bad, refused.text)
    first = release(platform, "v1")
    assert finished(platform, deploy(platform, "load-test", first["id"]))["status"] == "live"
    assert through_router(platform, "load-test") == "v1 error hello from cart-service"
    declared = platform.delete("/api/v1/environments/production")
    assert declared.status_code == 409 and "catalog" in declared.text
    removed = platform.delete("/api/v1/environments/load-test")
    assert removed.json()["removed"] == [COMPONENT]
    assert platform.get("/api/v1/instances").json()["items"] == []
    assert platform.get("/api/v1/environments/load-test").status_code == 404
    gone = platform.get("/", headers={"host": "cart-service.load-test.localhost"})
    assert gone.status_code == 404


@sqlite_only
def test_an_expired_preview_is_removed(platform: TestClient) -> None:
    from datetime import timedelta

    from pavedroad.core.timeutil import utcnow

    service = platform.app.state.deployments  # type: ignore[attr-defined]
    automation = platform.app.state.automation  # type: ignore[attr-defined]
    base = service.environments.preview_base()
    assert base is not None and base.name == "development"
    preview = automation.ensure_preview(base, "feature/old")
    assert preview.name == "preview-feature-old-" + preview.name.rsplit("-", 1)[1]
    first = release(platform, "v1")
    assert finished(platform, deploy(platform, preview.name, first["id"]))["status"] == "live"
    service.environments.extend(preview.name, utcnow() - timedelta(seconds=1))  # never shortens
    assert service.environments.get(preview.name).expires_at > utcnow()
    with service.db.session() as session:
        from pavedroad.environments.models import EnvironmentRow

        session.get(EnvironmentRow, preview.name).expires_at = utcnow() - timedelta(seconds=1)
    assert automation.remove_expired() == 1
    assert platform.get(f"/api/v1/environments/{preview.name}").status_code == 404
    assert platform.get("/api/v1/instances").json()["items"] == []


@sqlite_only
def test_bad_requests_say_what_is_wrong(platform: TestClient) -> None:
    unknown_env = platform.post(
        "/api/v1/deployments",
        json={"component": COMPONENT, "environment": "nowhere", "release": "x" * 10},
    )
    assert unknown_env.status_code == 404 and "nowhere" in unknown_env.text
    unknown_release = platform.post(
        "/api/v1/deployments",
        json={"component": COMPONENT, "environment": "development", "release": "nope"},
    )
    assert unknown_release.status_code == 404
    escaping = platform.post(
        "/api/v1/deployments",
        json={"component": "../../etc", "environment": "development", "release": "x"},
    )
    assert escaping.status_code in (400, 404, 422)
    not_gzip = platform.post(
        "/api/v1/releases",
        params={"component": COMPONENT},
        content=b"plain text",
        headers={"content-type": "application/gzip"},
    )
    assert not_gzip.status_code == 400 and "not a .tar.gz" in not_gzip.text
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = b"owned"
        info = tarfile.TarInfo("../outside.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    hostile = platform.post(
        "/api/v1/releases",
        params={"component": COMPONENT},
        content=buffer.getvalue(),
        headers={"content-type": "application/gzip"},
    )
    assert hostile.status_code == 400, hostile.text
    assert platform.get("/api/v1/releases").json()["items"] == []


@sqlite_only
def test_a_pipeline_deploys_what_it_built(platform: TestClient, tmp_path: Path) -> None:
    """The ``deploy`` step: the release this run built goes live, the step follows it
    and fails when the deployment does."""
    import subprocess

    from test_pipeline_executor import log_text, run_job

    app = platform.app
    git = app.state.git  # type: ignore[attr-defined]
    repo = git.create("checkout-team", "cart", "user:default/bob")
    bare = git.path(git.repo("checkout-team", "cart"))
    work = tmp_path / "cart"
    work.mkdir()

    def commit(version: str, behaviour: str = "") -> str:
        (work / "app.py").write_text(SERVICE.format(version=version))
        (work / "requirements.txt").write_text("")
        (work / "score.yaml").write_text(SCORE.format(behaviour=behaviour))
        for args in (
            ["init", "-q", "--initial-branch=main"],
            ["add", "-A"],
            ["-c", "user.name=B", "-c", "user.email=b@x", "commit", "-qm", version],
            ["push", "-q", str(bare), "main"],
        ):
            subprocess.run(["git", *args], cwd=work, check=True, capture_output=True)
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True)
        return head.stdout.decode().strip()

    steps = [
        {"uses": "checkout"},
        {"id": "release", "uses": "release/build"},
        {"id": "deploy", "uses": "deploy", "with": {"environment": "development"}},
    ]
    repository = f"{repo['owner']}/{repo['name']}"
    settings, db = app.state.settings, app.state.db  # type: ignore[attr-defined]
    job, result = run_job(
        settings, db, steps, repository=repository, commit=commit("v1"), entity_ref=COMPONENT
    )
    assert result.status == "succeeded", log_text(db, job)
    assert "Live in development: http://cart-service.development.localhost" in log_text(db, job, 2)
    assert through_router(platform, "development").startswith("v1 ")

    job, result = run_job(
        settings,
        db,
        steps,
        repository=repository,
        commit=commit("v2", behaviour="exit"),
        entity_ref=COMPONENT,
    )
    assert result.status == "failed"
    text = log_text(db, job, 2)
    assert "exited with code 3" in text and "| cannot start: no database" in text
    assert through_router(platform, "development").startswith("v1 ")


@sqlite_only
def test_a_deployment_waiting_its_turn_is_not_queued_again(make_app, make_settings) -> None:
    """One deployment at a time per component and environment: the next one's message
    comes back while it waits, so recovery does not add messages for it."""
    from datetime import timedelta

    from pavedroad.core.jobs import worker_name
    from pavedroad.core.timeutil import utcnow
    from pavedroad.environments.models import DeploymentRow

    settings = make_settings()
    app = make_app(settings)  # nothing consumes the queue: its messages stay countable
    client = TestClient(app)
    service = app.state.deployments
    first, second = release(client, "v1"), release(client, "v2")
    running = deploy(client, "development", first["id"])
    waiting = deploy(client, "development", second["id"])
    with service.db.session() as session:
        row = session.get(DeploymentRow, running["id"])
        row.status, row.worker, row.heartbeat_at = "running", worker_name(), utcnow()
        session.get(DeploymentRow, waiting["id"]).created_at = utcnow() - timedelta(hours=1)
    service.execute(waiting["id"])  # its turn has not come: it waits (a delayed message)
    assert service.get(waiting["id"]).status == "queued"
    before = service.queue.pending()
    service.recover()
    assert service.queue.pending() == before  # seen waiting just now: its message lives
    with service.db.session() as session:
        session.get(DeploymentRow, waiting["id"]).heartbeat_at = utcnow() - timedelta(hours=1)
    service.recover()
    assert service.queue.pending() == before + 1  # not seen for long: queued again
