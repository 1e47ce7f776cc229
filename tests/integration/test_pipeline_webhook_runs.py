"""Pipeline runs from GitHub and GitLab webhook pushes, end to end: a real git server over
HTTP (``git http-backend`` behind a small threaded HTTP server) stands in for GitHub and
GitLab, signed push deliveries go to the platform's webhook endpoints, and the platform
fetches the pushed commit into a mirror, runs the pipeline file it holds on its workers,
and the ``checkout`` step clones that commit. Hosts the outbound policy does not allow
(not listed, or loopback without ``allow_private_network``) give a failed run that says
why, and nothing is fetched; git runs without the user's git configuration."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from integration_support import register, wait_for
from pydantic import SecretStr
from test_git_webhooks import GITHUB_SECRET, GITHUB_URL, GITLAB_TOKEN, GITLAB_URL, sign

from pavedroad.git.mirrors import MirrorError, pinned_ref, repository_identity
from pavedroad.pipelines.runs import PipelineService

ZERO = "0" * 40
FINISHED = ("succeeded", "failed", "cancelled")

PIPELINE = """\
on:
  push:
    branches: [main]
jobs:
  build:
    steps:
      - id: checkout
        uses: checkout
      - run: |
          echo "the word is $(cat word.txt)"
          echo "repository $PAVEDROAD_REPOSITORY at $PAVEDROAD_SHA"
"""


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- a git forge over smart HTTP --------------------------------------------------------------


class Forge:
    """Bare repositories under ``root`` served over git's smart HTTP protocol on
    127.0.0.1, as GitHub or GitLab serve them; every request's headers are kept."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[dict[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_GitHandler, self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return f"http://{self.host}/{path}.git"

    def create(self, path: str) -> ForgeRepo:
        bare = self.root / f"{path}.git"
        bare.parent.mkdir(parents=True, exist_ok=True)
        git("init", "-q", "--bare", "--initial-branch=main", str(bare), cwd=self.root)
        return ForgeRepo(self, path, bare)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class ForgeRepo:
    """A repository on the forge and a working copy that pushes to it."""

    def __init__(self, forge: Forge, path: str, bare: Path) -> None:
        self.forge = forge
        self.path = path
        self.url = forge.url(path)
        self.work = bare.parent / f"{bare.name}-work"
        git("clone", "-q", str(bare), str(self.work), cwd=bare.parent)
        self.head = ZERO

    def push(self, files: dict[str, str], branch: str = "main") -> tuple[str, str]:
        """Commit and push ``files``; the commits before and after."""
        for name, text in files.items():
            target = self.work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(text))
        git("checkout", "-q", "-B", branch, cwd=self.work)
        git("add", "-A", cwd=self.work)
        git("-c", "user.name=Bob", "-c", "user.email=b@x", "commit", "-qm", "change", cwd=self.work)
        git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
        before, self.head = self.head, git("rev-parse", "HEAD", cwd=self.work).strip()
        return before, self.head


class _GitHandler(BaseHTTPRequestHandler):
    """Runs ``git http-backend`` as a CGI program for each request."""

    def __init__(self, forge: Forge, *args: Any) -> None:
        self.forge = forge
        super().__init__(*args)

    def do_GET(self) -> None:
        self._backend()

    def do_POST(self) -> None:
        self._backend()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = bytearray()
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return bytes(body)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _backend(self) -> None:
        self.forge.requests.append({name.lower(): value for name, value in self.headers.items()})
        path, _, query = self.path.partition("?")
        body = self._body()
        env = {
            "PATH": "/usr/bin:/bin",
            "GIT_PROJECT_ROOT": str(self.forge.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.forge.root),
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
        }
        for header, variable in (
            ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
            ("Git-Protocol", "HTTP_GIT_PROTOCOL"),
        ):
            if self.headers.get(header):
                env[variable] = self.headers[header]
        result = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60
        )
        separator = b"\r\n\r\n" if b"\r\n\r\n" in result.stdout else b"\n\n"
        head, _, payload = result.stdout.partition(separator)
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def forge(tmp_path: Path) -> Iterator[Forge]:
    started = Forge(tmp_path / "forge")
    yield started
    started.stop()


# -- the platform -------------------------------------------------------------------------------


def platform_settings(make_settings: Any, allowed: list[str], private: bool = True) -> Any:
    settings = make_settings(allowed_hosts=allowed, allow_private_network=private)
    settings.git.github_webhook_secret = SecretStr(GITHUB_SECRET)
    settings.git.gitlab_webhook_token = SecretStr(GITLAB_TOKEN)
    return settings


def github_delivery(repo: ForgeRepo, before: str, after: str, delivery: str) -> dict[str, Any]:
    """What GitHub posts for a push (the fields the platform reads, and a few more)."""
    owner, name = repo.path.split("/")
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "before": before,
            "after": after,
            "repository": {
                "full_name": repo.path,
                "name": name,
                "owner": {"login": owner},
                "clone_url": repo.url,
                "html_url": repo.url.removesuffix(".git"),
            },
            "pusher": {"name": "bob", "email": "bob@acme.example"},
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(body),
    }
    return {"content": body, "headers": headers}


def gitlab_delivery(repo: ForgeRepo, before: str, after: str, delivery: str) -> dict[str, Any]:
    body = json.dumps(
        {
            "object_kind": "push",
            "ref": "refs/heads/main",
            "before": before,
            "after": after,
            "user_username": "carol",
            "project": {"path_with_namespace": repo.path, "git_http_url": repo.url},
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Gitlab-Event": "Push Hook",
        "X-Gitlab-Token": GITLAB_TOKEN,
        "Idempotency-Key": delivery,
    }
    return {"content": body, "headers": headers}


def register_component(app: Any, tmp_path: Path, name: str, annotations: dict[str, str]) -> None:
    path = tmp_path / f"{name}-catalog-info.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "backstage.io/v1alpha1",
                "kind": "Component",
                "metadata": {"name": name, "annotations": annotations},
                "spec": {"type": "service", "lifecycle": "production", "owner": "someone"},
            }
        )
    )
    register(app.state.catalog, path)


def finished_runs(service: PipelineService, count: int) -> bool:
    runs = service.runs()
    return len(runs) >= count and all(run.status in FINISHED for run in runs)


def job_log(client: TestClient, service: PipelineService, run_id: str) -> str:
    [job] = service.jobs(run_id)
    return client.get(f"/api/v1/pipelines/jobs/{job.id}/log.txt").text


def test_a_github_push_runs_the_pipeline_of_the_pushed_commit(
    make_app, make_settings, forge, tmp_path, monkeypatch
):
    # a user configuration the platform's git must not read: it would add a header
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / ".gitconfig").write_text('[http]\n\textraHeader = "X-Leak: yes"\n')
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    repo = forge.create("acme/orders")
    app = make_app(platform_settings(make_settings, [forge.host]), background=True)
    service: PipelineService = app.state.pipelines
    identity = f"{forge.host}/acme/orders"
    register_component(
        app,
        tmp_path,
        "orders",
        {"backstage.io/source-location": f"url:http://{identity}/tree/main/"},
    )
    register_component(  # the same path elsewhere is another repository
        app, tmp_path, "impostor", {"backstage.io/source-location": f"url:http://{identity}-x/"}
    )
    with TestClient(app) as client:
        before, after = repo.push({".pavedroad/pipeline.yaml": PIPELINE, "word.txt": "paved\n"})
        answer = client.post(GITHUB_URL, **github_delivery(repo, before, after, "delivery-1"))
        assert answer.json() == {"recorded": 1}, answer.text

        assert wait_for(lambda: finished_runs(service, 1), timeout=60), service.runs()
        [run] = service.runs()
        described = service.describe(run, with_jobs=True)
        log = job_log(client, service, run.id)

    assert described["status"] == "succeeded", described
    assert (run.repository, run.commit, run.branch, run.event) == (identity, after, "main", "push")
    assert run.created_by == "bob" and run.number == 1
    assert run.entity_ref == "component:default/orders"
    assert "the word is paved" in log
    assert f"repository {identity} at {after}" in log
    checkout = described["jobs"][0]["steps"][0]
    assert checkout["status"] == "succeeded" and checkout["outputs"]["commit"] == after
    mirror = app.state.settings.home / "mirrors" / forge.host / "acme" / "orders.git"
    assert (
        git("--git-dir", str(mirror), "rev-parse", "refs/heads/main", cwd=tmp_path).strip() == after
    )
    assert forge.requests and not any("x-leak" in headers for headers in forge.requests)


def test_a_gitlab_push_runs_too_and_finds_its_component_by_project_slug(
    make_app, make_settings, forge, tmp_path
):
    repo = forge.create("acme/billing")
    app = make_app(platform_settings(make_settings, [forge.host]))
    service: PipelineService = app.state.pipelines
    service.queues = None  # the jobs wait: this test looks at the run only
    register_component(app, tmp_path, "billing", {"gitlab.com/project-slug": "acme/billing"})
    with TestClient(app) as client:
        before, first = repo.push({".pavedroad/pipeline.yaml": PIPELINE, "word.txt": "one\n"})
        _, second = repo.push({"word.txt": "two\n"})
        client.post(GITLAB_URL, **gitlab_delivery(repo, before, first, "gl-1"))
        client.post(GITLAB_URL, **gitlab_delivery(repo, first, second, "gl-2"))
        assert service.start_pushed() == 2
        assert service.start_pushed() == 0  # each push once

    second_run, first_run = service.runs()
    assert (first_run.commit, second_run.commit) == (first, second)
    assert (first_run.number, second_run.number) == (1, 2)
    assert first_run.repository == f"{forge.host}/acme/billing"
    assert first_run.entity_ref == "component:default/billing" and first_run.created_by == "carol"
    assert [job.key for job in service.jobs(first_run.id)] == ["build"]


def test_a_push_without_a_pipeline_file_runs_nothing(make_app, make_settings, forge, tmp_path):
    repo = forge.create("acme/docs")
    app = make_app(platform_settings(make_settings, [forge.host]))
    service: PipelineService = app.state.pipelines
    with TestClient(app) as client:
        before, after = repo.push({"README.md": "docs\n"})
        client.post(GITHUB_URL, **github_delivery(repo, before, after, "docs-1"))
        assert service.start_pushed() == 0
    assert service.runs() == []


@pytest.mark.parametrize(
    ("allowed", "private", "reason"),
    [
        ([], True, "is not in the allowed hosts"),
        (["github.com"], True, "is not in the allowed hosts"),
        (["{host}"], False, "a loopback or private address"),
    ],
    ids=["no-hosts", "other-host", "loopback"],
)
def test_a_push_from_a_host_the_policy_refuses_gives_a_failed_run_saying_why(
    make_app, make_settings, forge, tmp_path, allowed, private, reason
):
    repo = forge.create("acme/orders")
    hosts = [host.format(host=forge.host) for host in allowed]
    app = make_app(platform_settings(make_settings, hosts, private))
    service: PipelineService = app.state.pipelines
    with TestClient(app) as client:
        before, after = repo.push({".pavedroad/pipeline.yaml": PIPELINE, "word.txt": "x\n"})
        client.post(GITHUB_URL, **github_delivery(repo, before, after, "refused-1"))
        service.start_pushed()
        [run] = service.runs()
        described = client.get(f"/api/v1/pipelines/runs/{run.id}").json()

    assert run.status == "failed" and service.jobs(run.id) == []
    assert run.repository == f"{forge.host}/acme/orders" and run.commit == after
    [problem] = described["problems"]
    assert reason in problem["message"] and repo.url in problem["message"], problem
    assert forge.requests == []  # nothing was fetched
    assert not (app.state.settings.home / "mirrors" / forge.host).exists()


def test_a_repository_url_with_credentials_is_not_fetched(make_app, make_settings, forge):
    repo = forge.create("acme/orders")
    app = make_app(platform_settings(make_settings, [forge.host]))
    service: PipelineService = app.state.pipelines
    repo.url = repo.url.replace("http://", "http://someone:hunter2@")
    with TestClient(app) as client:
        before, after = repo.push({".pavedroad/pipeline.yaml": PIPELINE})
        client.post(GITHUB_URL, **github_delivery(repo, before, after, "creds-1"))
        service.start_pushed()
    [run] = service.runs()
    assert run.status == "failed" and "must not hold a user name or password" in str(run.problems)
    assert "hunter2" not in run.repository + json.dumps(run.problems)
    assert forge.requests == []


def test_checkout_fetches_a_commit_its_mirror_lost_under_the_same_policy(
    make_app, make_settings, forge, tmp_path
):
    """A worker's mirror without the run's commit (a mirror made again, another machine's
    PAVEDROAD_HOME restored) fetches it from the URL the mirror records."""
    repo = forge.create("acme/orders")
    app = make_app(platform_settings(make_settings, [forge.host]), background=True)
    service: PipelineService = app.state.pipelines
    with TestClient(app) as client:
        service.queues, queues = None, service.queues  # plan the run, run it later
        before, after = repo.push({".pavedroad/pipeline.yaml": PIPELINE, "word.txt": "kept\n"})
        client.post(GITHUB_URL, **github_delivery(repo, before, after, "lost-1"))
        assert wait_for(lambda: bool(service.runs()), timeout=30)
        mirror = service.mirrors.path(f"{forge.host}/acme/orders")
        for ref in ("refs/heads/main", pinned_ref(after)):
            git("--git-dir", str(mirror), "update-ref", "-d", ref, cwd=tmp_path)
        git("--git-dir", str(mirror), "gc", "-q", "--prune=now", cwd=tmp_path)
        assert not service.mirrors.has(mirror, after)
        service.queues = queues
        [run] = service.runs()
        [job] = service.jobs(run.id)
        service._enqueue(job)
        assert wait_for(lambda: finished_runs(service, 1), timeout=60)
        log = job_log(client, service, run.id)
    assert service.run(run.id).status == "succeeded", log
    assert "the word is kept" in log
    assert os.path.isdir(mirror) and service.mirrors.has(mirror, after)


@pytest.mark.parametrize(
    ("url", "identity"),
    [
        ("https://github.com/acme/orders.git", "github.com/acme/orders"),
        ("https://GitHub.com:443/acme/orders/", "github.com/acme/orders"),
        ("http://127.0.0.1:8080/acme/orders.git", "127.0.0.1:8080/acme/orders"),
        ("https://gitlab.example.com/group/sub/proj.git", "gitlab.example.com/group/sub/proj"),
    ],
)
def test_a_repository_is_known_by_its_host_and_path(url, identity):
    assert repository_identity(url) == identity


@pytest.mark.parametrize(
    "url",
    [
        "ssh://git@github.com/acme/orders.git",
        "https://github.com/orders.git",
        "https://github.com/acme/../../etc",
        "https://github.com/acme/-orders",
        "https://github.com/acme/orders?ref=x",
        "https://bob:secret@github.com/acme/orders.git",
        "https://github.com:99999/acme/orders",
    ],
)
def test_a_url_that_names_no_repository_to_fetch_is_refused(url):
    with pytest.raises(MirrorError):
        repository_identity(url)
