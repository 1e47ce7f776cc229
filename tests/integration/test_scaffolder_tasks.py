"""Scaffolder tasks end to end, with the job queue consuming in the app and every task in
a child process of its own: create a project (clone it over HTTP, find the files and the
entity), dry runs, per-field errors, secrets kept out of storage and logs, cancel, retry,
the running-task limit, a lost worker, the live log, and template updates merged into a
branch."""

from __future__ import annotations

import base64
import json
import subprocess
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from integration_support import wait_for
from sqlalchemy import text, update

from pavedroad.scaffolder.models import TaskRow

TASKS = "/api/v1/scaffolder/tasks"
FINISHED = ("completed", "failed", "cancelled")


@pytest.fixture
def database_seed() -> str:
    return "demo"  # the groups that own the new repositories


TEMPLATE = """
apiVersion: scaffolder.backstage.io/v1beta3
kind: Template
metadata:
  name: {name}
  title: Tiny service
  tags: [python, test]
spec:
  owner: group:default/platform-team
  type: service
  parameters:
    - title: Service
      required: [name, owner]
      properties:
        name:
          type: string
          pattern: "^[a-z][a-z0-9-]{{1,30}}$"
        owner:
          type: string
          ui:field: OwnerPicker
        port:
          type: integer
          default: 8080
        token:
          type: string
          ui:field: Secret
  steps:
    - id: fetch
      name: Fetch the skeleton
      action: fetch:template
      input:
        url: ./skeleton
        values:
          name: ${{{{ parameters.name }}}}
          owner: ${{{{ parameters.owner }}}}
          port: ${{{{ parameters.port }}}}
    - id: say
      name: Say the token
      action: debug:log
      input:
        message: "token is ${{{{ secrets.token }}}}"
    - id: publish
      name: Publish
      action: publish:git
      input:
        repoUrl: pavedroad?owner=${{{{ parameters.owner }}}}&repo=${{{{ parameters.name }}}}
        description: ${{{{ parameters.name }}}}
    - id: register
      name: Register
      action: catalog:register
      input:
        repoContentsUrl: ${{{{ steps['publish'].output.repoContentsUrl }}}}
        catalogInfoPath: /catalog-info.yaml
  output:
    links:
      - title: Repository
        url: ${{{{ steps['publish'].output.remoteUrl }}}}
      - title: Open in catalog
        entityRef: ${{{{ steps['register'].output.entityRef }}}}
"""

CATALOG_INFO = """\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: ${{ values.name }}
spec:
  type: service
  lifecycle: experimental
  owner: ${{ values.owner }}
"""

APP = """\
PORT = ${{ values.port }}


def hello():
    return "hello from ${{ values.name }}"
"""


def write(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


class Scaffolder:
    """An app that runs its job queue, a template registered from a folder, and helpers
    to run tasks through the API."""

    def __init__(self, client: TestClient, root: Path) -> None:
        self.client = client
        self.root = root
        self.app: Any = client.app

    def template(self, name: str = "tiny", *, body: str | None = None, **files: str) -> Path:
        folder = self.root / name
        write(folder / "template.yaml", body or TEMPLATE.format(name=name))
        if not files:
            files = {"catalog-info.yaml": CATALOG_INFO, "app.py": APP}
        for relative, content in files.items():
            write(folder / "skeleton" / relative, content)
        response = self.client.post(
            "/api/v1/catalog/locations",
            json={"type": "file", "target": str(folder / "template.yaml")},
        )
        assert response.status_code == 201, response.text
        return folder

    def refresh(self, name: str = "tiny") -> None:
        response = self.client.post(f"/api/v1/catalog/entities/template/default/{name}/refresh")
        assert response.status_code in (200, 202, 204), response.text

    def start(self, values: dict[str, Any], name: str = "tiny", **extra: Any) -> dict[str, Any]:
        response = self.client.post(
            TASKS, json={"templateRef": f"template:default/{name}", "values": values, **extra}
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def wait(self, task_id: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task = self.client.get(f"{TASKS}/{task_id}").json()
            if task["status"] in FINISHED:
                return dict(task)
            time.sleep(0.1)
        raise AssertionError(f"task {task_id} did not finish: {task}")

    def run(self, values: dict[str, Any], name: str = "tiny", **extra: Any) -> dict[str, Any]:
        return self.wait(self.start(values, name, **extra)["id"])

    def log(self, task_id: str) -> list[str]:
        events = self.client.get(f"{TASKS}/{task_id}/events").json()["items"]
        return [e["body"]["message"] for e in events if e["type"] == "log"]


@pytest.fixture
def scaffolder(make_app, make_settings, tmp_path) -> Any:
    settings = make_settings()
    app = make_app(settings, background=True)
    with TestClient(app) as client:
        yield Scaffolder(client, tmp_path / "templates")


def git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": str(cwd or "/tmp")},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- creating a project ----------------------------------------------------------------------


def test_a_task_publishes_a_repository_and_registers_its_entity(scaffolder, tmp_path):
    scaffolder.template()

    task = scaffolder.run({"name": "orders-api", "owner": "checkout-team", "token": "s3cr3t-v4lue"})

    assert task["status"] == "completed", (task["error"], scaffolder.log(task["id"]))
    assert [step["status"] for step in task["steps"]] == ["completed"] * 4
    links = {link["title"]: link for link in task["output"]["links"]}
    assert links["Repository"]["url"].endswith("/git/checkout-team/orders-api.git")
    assert links["Open in catalog"]["entityRef"] == "component:default/orders-api"
    assert len(task["templateVersion"]) == 40

    # the repository: cloned with real git straight from its bare folder
    bare = scaffolder.app.state.git.root / "checkout-team" / "orders-api.git"
    clone = tmp_path / "clone"
    git("clone", "-q", str(bare), str(clone))
    assert 'return "hello from orders-api"' in (clone / "app.py").read_text()
    assert "PORT = 8080" in (clone / "app.py").read_text()
    provenance = (clone / ".pavedroad" / "template.yaml").read_text()
    assert "template:default/tiny" in provenance and task["templateVersion"] in provenance
    assert "s3cr3t" not in provenance

    # the entity, with the template that made it
    entity = scaffolder.client.get("/api/v1/catalog/entities/component/default/orders-api")
    assert entity.status_code == 200, entity.text
    annotations = entity.json()["metadata"]["annotations"]
    assert annotations["backstage.io/source-template"] == "template:default/tiny"

    # the push was recorded, and the project is known with its version
    pushes = scaffolder.client.get("/api/v1/git/repos/checkout-team/orders-api/pushes").json()
    assert [p["ref"] for p in pushes["items"]] == ["refs/heads/main"]
    projects = scaffolder.client.get("/api/v1/scaffolder/templates/default/tiny/projects").json()
    assert [(p["repository"], p["behind"]) for p in projects["items"]] == [
        ("checkout-team/orders-api", 0)
    ]


def test_secret_answers_are_masked_in_the_log_and_never_stored(scaffolder):
    scaffolder.template()
    secret = "very-secret-token-value"

    task = scaffolder.run({"name": "svc-secret", "owner": "checkout-team", "token": secret})

    assert task["status"] == "completed", (task["error"], scaffolder.log(task["id"]))
    assert "token is ***" in scaffolder.log(task["id"])
    assert "token" not in task["values"] and task["secretNames"] == ["token"]
    forms = [secret, base64.b64encode(secret.encode()).decode()]
    db = scaffolder.app.state.db
    with db.read_session() as session:
        rows = session.execute(text("SELECT * FROM scaffolder_tasks")).all()
        events = session.execute(text("SELECT body FROM scaffolder_task_events")).all()
        sealed = session.execute(text("SELECT sealed_secrets FROM scaffolder_tasks")).all()
    stored = json.dumps([list(map(str, row)) for row in rows + events])
    assert not any(form in stored for form in forms)
    assert sealed == [(None,)]  # the sealed copy went when the task ended


def test_a_dry_run_shows_the_files_and_publishes_nothing(scaffolder):
    scaffolder.template()

    task = scaffolder.run({"name": "dry-svc", "owner": "checkout-team"}, dryRun=True)

    assert task["status"] == "completed", (task["error"], scaffolder.log(task["id"]))
    files = {entry["path"]: entry for entry in task["output"]["files"]}
    assert {"app.py", "catalog-info.yaml", ".pavedroad/template.yaml"} <= set(files)
    assert "hello from dry-svc" in files["app.py"]["content"]
    assert scaffolder.client.get("/api/v1/git/repos/checkout-team/dry-svc").status_code == 404
    entity = scaffolder.client.get("/api/v1/catalog/entities/component/default/dry-svc")
    assert entity.status_code == 404


def test_invalid_answers_get_per_field_errors_and_no_task(scaffolder):
    scaffolder.template()

    response = scaffolder.client.post(
        TASKS,
        json={"templateRef": "template:default/tiny", "values": {"name": "Bad Name", "port": "x"}},
    )

    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body["errors"]) == {"name", "owner", "port"}
    assert body["errors"]["owner"] == ["is required"]
    assert body["errors"]["port"] == ["must be of type integer"]
    assert scaffolder.client.get(TASKS).json()["items"] == []


def test_unknown_templates_and_refs_are_clear_errors(scaffolder):
    missing = scaffolder.client.post(
        TASKS, json={"templateRef": "template:default/nope", "values": {}}
    )
    assert missing.status_code == 404
    assert "template:default/nope" in missing.json()["detail"]
    wrong_type = scaffolder.client.post(TASKS, json={"templateRef": "x", "values": []})
    assert wrong_type.status_code == 400
    assert "values" in wrong_type.text


def test_a_template_with_an_unknown_action_or_a_bad_input_is_refused_at_ingestion(scaffolder):
    body = TEMPLATE.format(name="broken").replace("action: debug:log", "action: debug:shout")
    body = body.replace("catalogInfoPath: /catalog-info.yaml", "catalogInfoPath: 42")
    folder = scaffolder.root / "broken"
    write(folder / "template.yaml", body)

    response = scaffolder.client.post(
        "/api/v1/catalog/locations", json={"type": "file", "target": str(folder / "template.yaml")}
    )

    assert response.status_code == 201, response.text
    location = response.json()["location"]["id"]
    errors = scaffolder.client.get(f"/api/v1/catalog/locations/{location}").json()["status"]
    text = json.dumps(errors["errors"])
    assert "spec.steps[1].action: unknown action 'debug:shout'" in text
    assert "spec.steps[3] (register)" in text and "catalogInfoPath" in text
    missing = scaffolder.client.post(
        TASKS, json={"templateRef": "template:default/broken", "values": {}}
    )
    assert missing.status_code == 404  # never entered the catalog


def test_publishing_over_an_existing_repository_is_refused_and_nothing_is_overwritten(
    scaffolder, tmp_path
):
    scaffolder.template()
    first = scaffolder.run({"name": "taken", "owner": "checkout-team"})
    assert first["status"] == "completed"
    bare = scaffolder.app.state.git.root / "checkout-team" / "taken.git"
    head = git("--git-dir", str(bare), "rev-parse", "refs/heads/main").strip()

    second = scaffolder.run({"name": "taken", "owner": "checkout-team", "port": 9999})

    assert second["status"] == "failed"
    assert "step publish" in second["error"] and "exists already" in second["error"]
    assert git("--git-dir", str(bare), "rev-parse", "refs/heads/main").strip() == head
    shown = git("--git-dir", str(bare), "show", "refs/heads/main:app.py")
    assert "PORT = 8080" in shown


def test_cancel_stops_a_running_task(scaffolder):
    scaffolder.template(
        "slow",
        body=textwrap.dedent(
            """
            apiVersion: scaffolder.backstage.io/v1beta3
            kind: Template
            metadata: {name: slow}
            spec:
              owner: group:default/platform-team
              type: service
              parameters: []
              steps:
                - id: wait
                  action: debug:wait
                  input: {seconds: 60}
                - id: after
                  action: debug:log
                  input: {message: never}
            """
        ),
    )
    task = scaffolder.start({}, "slow")
    assert wait_for(
        lambda: scaffolder.client.get(f"{TASKS}/{task['id']}").json()["steps"], timeout=30
    )

    response = scaffolder.client.post(f"{TASKS}/{task['id']}/cancel")

    assert response.status_code == 200, response.text
    started = time.monotonic()
    ended = scaffolder.wait(task["id"])
    assert ended["status"] == "cancelled"
    assert time.monotonic() - started < 10
    assert "never" not in scaffolder.log(task["id"])
    again = scaffolder.client.post(f"{TASKS}/{task['id']}/cancel")
    assert again.status_code == 409


def test_retry_runs_a_new_task_and_asks_for_secret_answers_again(scaffolder):
    scaffolder.template()
    failed = scaffolder.run({"name": "retried", "owner": "no-such-team", "token": "abcdef-123"})
    assert failed["status"] == "failed", failed

    refused = scaffolder.client.post(f"{TASKS}/{failed['id']}/retry", json={})
    assert refused.status_code == 400
    assert refused.json()["errors"] == {"token": ["is required"]}

    retried = scaffolder.client.post(
        f"{TASKS}/{failed['id']}/retry", json={"secrets": {"token": "abcdef-123"}}
    )
    assert retried.status_code == 201, retried.text
    again = scaffolder.wait(retried.json()["id"])
    assert again["retryOf"] == failed["id"] and again["values"] == failed["values"]
    assert again["status"] == "failed"  # the owner still does not exist


def test_at_most_the_configured_number_of_tasks_run_at_once(make_app, make_settings, tmp_path):
    settings = make_settings()
    settings.scaffolder.max_running_tasks = 1
    app = make_app(settings, background=True)
    with TestClient(app) as client:
        helper = Scaffolder(client, tmp_path / "templates")
        helper.template(
            "pause",
            body=textwrap.dedent(
                """
                apiVersion: scaffolder.backstage.io/v1beta3
                kind: Template
                metadata: {name: pause}
                spec:
                  owner: group:default/platform-team
                  type: service
                  parameters: []
                  steps:
                    - id: wait
                      action: debug:wait
                      input: {seconds: 1}
                """
            ),
        )
        ids = [helper.start({}, "pause")["id"] for _ in range(3)]
        most = 0
        while not all(helper.client.get(f"{TASKS}/{i}").json()["status"] in FINISHED for i in ids):
            most = max(most, app.state.scaffolder.running())
            time.sleep(0.05)
        tasks = [helper.client.get(f"{TASKS}/{i}").json() for i in ids]
    assert [t["status"] for t in tasks] == ["completed"] * 3
    assert most == 1
    spans = sorted((t["startedAt"], t["finishedAt"]) for t in tasks)
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(2))  # one after the other


def test_a_task_whose_worker_died_is_failed_not_left_running(scaffolder):
    db = scaffolder.app.state.db
    scaffolder.template()
    task = scaffolder.run({"name": "lost", "owner": "checkout-team"}, dryRun=True)
    # a task a dead worker claimed: processing, its heartbeat a while ago
    with db.session() as session:
        session.execute(
            update(TaskRow)
            .where(TaskRow.id == task["id"])
            .values(status="processing", heartbeat_at=datetime(2020, 1, 1, tzinfo=UTC))
        )

    assert scaffolder.app.state.scaffolder.recover() == 1

    ended = scaffolder.client.get(f"{TASKS}/{task['id']}").json()
    assert ended["status"] == "failed" and "worker" in ended["error"]


def test_the_live_log_streams_as_server_sent_events_and_resumes(scaffolder):
    scaffolder.template()
    task = scaffolder.run({"name": "streamed", "owner": "checkout-team"}, dryRun=True)

    with scaffolder.client.stream("GET", f"{TASKS}/{task['id']}/eventstream") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    ids = [int(line[4:]) for line in body.splitlines() if line.startswith("id: ")]
    assert "event: completion" in body and ids == sorted(ids)

    with scaffolder.client.stream(
        "GET", f"{TASKS}/{task['id']}/eventstream", headers={"Last-Event-ID": str(ids[-3])}
    ) as response:
        resumed = "".join(response.iter_text())
    assert [int(line[4:]) for line in resumed.splitlines() if line.startswith("id: ")] == ids[-2:]


# -- template updates ------------------------------------------------------------------------


def test_a_template_update_merges_the_templates_change_into_a_branch(scaffolder, tmp_path):
    folder = scaffolder.template()
    made = scaffolder.run({"name": "updated-svc", "owner": "checkout-team"})
    assert made["status"] == "completed", made
    bare = scaffolder.app.state.git.root / "checkout-team" / "updated-svc.git"

    # the team changes its service; the platform team changes the template
    work = tmp_path / "work"
    git("clone", "-q", str(bare), str(work))
    app_py = work / "app.py"
    app_py.write_text(app_py.read_text() + "\n\ndef team_code():\n    return 42\n")
    (work / "NOTES.md").write_text("ours\n")
    git("add", "-A", cwd=work)
    git("-c", "user.name=T", "-c", "user.email=t@x", "commit", "-qm", "team", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    skeleton = folder / "skeleton"
    (skeleton / "app.py").write_text(
        APP.replace("PORT = ${{ values.port }}", "PORT = int(${{ values.port }})")
    )
    write(skeleton / "Makefile", "test:\n\tpytest\n")

    projects = scaffolder.client.get("/api/v1/scaffolder/templates/default/tiny/projects").json()
    assert projects["items"][0]["behind"] == 1

    response = scaffolder.client.post(
        "/api/v1/scaffolder/updates", json={"entityRef": "component:default/updated-svc"}
    )
    assert response.status_code == 201, response.text
    task = scaffolder.wait(response.json()["id"])

    assert task["status"] == "completed", (task, scaffolder.log(task["id"]))
    output = task["output"]
    assert output["branch"].startswith("template-update/") and output["conflicts"] == []
    assert set(output["changedFiles"]) >= {"app.py", "Makefile", ".pavedroad/template.yaml"}
    git("fetch", "-q", "origin", cwd=work)
    merged = git("show", f"origin/{output['branch']}:app.py", cwd=work)
    assert "PORT = int(8080)" in merged and "def team_code" in merged  # both kept
    assert git("show", f"origin/{output['branch']}:NOTES.md", cwd=work) == "ours\n"
    assert "test:" in git("show", f"origin/{output['branch']}:Makefile", cwd=work)
    main = git("show", "origin/main:app.py", cwd=work)
    assert "PORT = 8080" in main  # the default branch is untouched


def test_a_conflicting_update_keeps_both_sides_marked(scaffolder, tmp_path):
    folder = scaffolder.template()
    assert scaffolder.run({"name": "clash", "owner": "checkout-team"})["status"] == "completed"
    bare = scaffolder.app.state.git.root / "checkout-team" / "clash.git"
    work = tmp_path / "work"
    git("clone", "-q", str(bare), str(work))
    (work / "app.py").write_text((work / "app.py").read_text().replace("PORT = 8080", "PORT = 1"))
    git("-c", "user.name=T", "-c", "user.email=t@x", "commit", "-qam", "ours", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    (folder / "skeleton" / "app.py").write_text(APP.replace("PORT = ", "PORT = 2 * "))

    response = scaffolder.client.post(
        "/api/v1/scaffolder/updates", json={"repository": "checkout-team/clash"}
    )
    task = scaffolder.wait(response.json()["id"])

    assert task["status"] == "completed", (task, scaffolder.log(task["id"]))
    assert task["output"]["conflicts"] == ["app.py"]
    git("fetch", "-q", "origin", cwd=work)
    merged = git("show", f"origin/{task['output']['branch']}:app.py", cwd=work)
    assert "<<<<<<<" in merged and "PORT = 1" in merged and "PORT = 2 * 8080" in merged


def test_an_update_of_a_project_at_the_newest_version_changes_nothing(scaffolder):
    scaffolder.template()
    assert scaffolder.run({"name": "current", "owner": "checkout-team"})["status"] == "completed"

    response = scaffolder.client.post(
        "/api/v1/scaffolder/updates", json={"repository": "checkout-team/current"}
    )
    task = scaffolder.wait(response.json()["id"])

    assert task["status"] == "completed" and task["output"]["upToDate"] is True
    repos = scaffolder.client.get("/api/v1/git/repos/checkout-team/current/pushes").json()
    assert len(repos["items"]) == 1  # no branch pushed


def test_a_template_in_a_hosted_repository_runs_at_its_commit(scaffolder, tmp_path):
    app = scaffolder.app
    app.state.git.create("platform-team", "templates", "alice")
    bare = app.state.git.root / "platform-team" / "templates.git"
    work = tmp_path / "templates-work"
    git("clone", "-q", str(bare), str(work))
    write(work / "tiny" / "template.yaml", TEMPLATE.format(name="hosted-tiny"))
    write(work / "tiny" / "skeleton" / "catalog-info.yaml", CATALOG_INFO)
    write(work / "tiny" / "skeleton" / "app.py", APP)
    git("add", "-A", cwd=work)
    git("-c", "user.name=T", "-c", "user.email=t@x", "commit", "-qm", "template", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    commit = git("rev-parse", "HEAD", cwd=work).strip()
    public = app.state.settings.public_url
    response = scaffolder.client.post(
        "/api/v1/catalog/locations",
        json={
            "type": "url",
            "target": f"{public}/repos/platform-team/templates/blob/tiny/template.yaml",
        },
    )
    assert response.status_code == 201, response.text

    task = scaffolder.run({"name": "from-hosted", "owner": "checkout-team"}, "hosted-tiny")

    assert task["status"] == "completed", (task["error"], scaffolder.log(task["id"]))
    assert task["templateVersion"] == commit
    shown = git("--git-dir", str(app.state.git.root / "checkout-team" / "from-hosted.git"),
                "show", "main:app.py")  # fmt: skip
    assert "hello from from-hosted" in shown
