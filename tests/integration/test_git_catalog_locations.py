"""Catalog ``url`` locations naming files in hosted repositories, with real git: read
from the bare repository (no HTTP, no allowlist), relative targets, patterns and
placeholders inside the repository, a push re-reading them before the refresh interval,
per-source errors for missing files and refs, and hostile URLs refused."""

from __future__ import annotations

import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

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

from pavedroad.catalog import ingestion
from pavedroad.catalog.ingestion import PARALLEL_MIN_SOURCES
from pavedroad.core import events
from pavedroad.git.catalog_reader import glob_match

LOCATIONS = "/api/v1/catalog/locations"


@pytest.fixture
def database_seed() -> str:
    return "demo"  # the groups that own repositories


def run_git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


class HostedRepo:
    """A hosted repository, a working copy of it, and the app that hosts it."""

    def __init__(self, app: Any, owner: str, name: str, work: Path) -> None:
        self.app = app
        self.owner, self.name = owner, name
        app.state.git.create(owner, name, "bob")
        self.bare = app.state.git.root / owner / f"{name}.git"
        self.work = work
        run_git("init", "-q", "-b", "main", str(work), cwd=work.parent)

    def url(self, path: str, ref: str | None = "main") -> str:
        """The file's URL as the portal links to it (``ref=None``: the default branch)."""
        public = self.app.state.settings.public_url
        query = "?" + urlencode({"ref": ref}) if ref else ""
        return f"{public}/repos/{self.owner}/{self.name}/blob/{path}{query}"

    def push(self, message: str = "change", ref: str = "main") -> int:
        """Commit everything in the working copy, push it to the bare repository with
        git, and record the push as the platform does; returns the ref updates recorded."""
        run_git("add", "-A", cwd=self.work)
        run_git(
            "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qm", message,
            cwd=self.work,
        )  # fmt: skip
        run_git("push", "-q", str(self.bare), f"HEAD:refs/heads/{ref}", cwd=self.work)
        return int(self.app.state.git.import_spool())


@pytest.fixture
def hosted(make_app, make_settings, tmp_path):
    """A factory of (TestClient, HostedRepo) on one app; the first call builds the app
    with the given catalog settings."""
    made: dict[str, Any] = {}
    clients: list[TestClient] = []

    def make(name: str = "svc", owner: str = "checkout-team", **catalog: Any):
        if "app" not in made:
            made["app"] = make_app(make_settings(**catalog))
            clients.append(TestClient(made["app"]))
        work = tmp_path / f"work-{owner}-{name}"
        return clients[0], HostedRepo(made["app"], owner, name, work)

    yield make
    for client in clients:
        client.close()


def _write_service(repo: HostedRepo, description: str = "first") -> None:
    root = repo.work
    write_docs(
        root / "catalog-info.yaml",
        component("hosted-svc", owner="checkout-team", description=description),
        location_doc("hosted-parts", "./*.yaml", "./components/*.yaml", "apis/hosted-api.yaml"),
    )
    write_docs(root / "extra.yaml", component("hosted-extra", owner="checkout-team"))
    write_docs(root / "components" / "a.yaml", component("hosted-a", owner="checkout-team"))
    write_docs(root / "components" / "b.yaml", component("hosted-b", owner="checkout-team"))
    write_docs(root / "components" / ".c.yaml", component("hosted-hidden", owner="checkout-team"))
    write(
        root / "apis" / "hosted-api.yaml",
        """
        apiVersion: backstage.io/v1alpha1
        kind: API
        metadata:
          name: hosted-api
        spec:
          type: openapi
          lifecycle: production
          owner: checkout-team
          definition:
            $text: ./defs/openapi.yaml
        """,
    )
    write(root / "apis" / "defs" / "openapi.yaml", "openapi: 3.0.0\n")


def _errors(client: TestClient, location_id: str) -> list[dict[str, Any]]:
    response = client.get(f"{LOCATIONS}/{location_id}")
    assert response.status_code == 200, response.text
    return list(response.json()["status"]["errors"])


def test_a_hosted_file_is_read_with_relative_targets_patterns_and_placeholders(hosted):
    client, repo = hosted()  # no allowed_hosts, no allow_private_network
    _write_service(repo)
    repo.push("first")

    response = client.post(LOCATIONS, json={"type": "url", "target": repo.url("catalog-info.yaml")})

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["errors"] == []
    names = sorted(e["metadata"]["name"] for e in body["entities"] if e["kind"] != "Location")
    assert names == ["hosted-a", "hosted-api", "hosted-b", "hosted-extra", "hosted-svc"]
    catalog = repo.app.state.catalog
    api = get(catalog, "api:default/hosted-api")
    assert api is not None and api["spec"]["definition"] == "openapi: 3.0.0\n"
    annotations = api["metadata"]["annotations"]
    assert annotations[MANAGED_BY] == "url:" + repo.url("apis/hosted-api.yaml")
    assert annotations[MANAGED_BY_ORIGIN] == "url:" + repo.url("catalog-info.yaml")
    assert annotations[SOURCE_LOCATION] == "url:" + repo.url("apis/", ref=None)
    component_a = get(catalog, "component:default/hosted-a")
    assert component_a is not None
    assert component_a["metadata"]["annotations"][MANAGED_BY] == "url:" + repo.url(
        "components/a.yaml"
    )


def test_a_push_re_reads_the_locations_of_that_repository_at_the_next_round(hosted):
    client, repo = hosted()
    _, other = hosted("other")
    _write_service(repo)
    repo.push("first")
    write_docs(other.work / "catalog-info.yaml", component("other-svc", owner="checkout-team"))
    other.push("first")
    # the default branch's file, as the portal links to it without a ref
    for target in (repo.url("catalog-info.yaml", ref=None), other.url("catalog-info.yaml")):
        assert client.post(LOCATIONS, json={"type": "url", "target": target}).status_code == 201
    catalog = repo.app.state.catalog
    assert catalog.refresh_due().sources == 0  # the refresh interval is minutes away

    _write_service(repo, description="second")
    assert repo.push("second") == 1

    round_ = catalog.refresh_due()
    svc = client.get("/api/v1/catalog/entities/component/default/hosted-svc")
    assert svc.status_code == 200, svc.text
    assert svc.json()["metadata"]["description"] == "second"
    # Every file of the pushed repository was due (the unchanged ones cheaply), and
    # nothing of the other repository.
    assert round_.sources == 5
    read = {e.data["repository"] for e in events.since(repo.app.state.db, type="GitPushed")}
    assert read == {"checkout-team/svc", "checkout-team/other"}
    assert catalog.refresh_due().sources == 0


def test_a_push_to_another_branch_is_read_from_that_branch(hosted):
    client, repo = hosted()
    write_docs(repo.work / "catalog-info.yaml", component("on-main", owner="checkout-team"))
    repo.push("main")
    write_docs(
        repo.work / "catalog-info.yaml",
        component("on-feature", owner="checkout-team"),
        location_doc("feature-parts", "./parts/*.yaml"),
    )
    write_docs(repo.work / "parts" / "p.yaml", component("feature-part", owner="checkout-team"))
    repo.push("feature", ref="feature/x")

    response = client.post(
        LOCATIONS, json={"type": "url", "target": repo.url("catalog-info.yaml", "feature/x")}
    )

    assert response.status_code == 201, response.text
    assert response.json()["errors"] == []
    names = {e["metadata"]["name"] for e in response.json()["entities"]}
    assert {"on-feature", "feature-part"} <= names and "on-main" not in names
    part = get(repo.app.state.catalog, "component:default/feature-part")
    assert part is not None  # read from feature/x: relative targets keep the ref
    assert part["metadata"]["annotations"][MANAGED_BY] == "url:" + repo.url(
        "parts/p.yaml", "feature/x"
    )
    commit = run_git(f"--git-dir={repo.bare}", "rev-parse", "refs/heads/main", cwd=repo.work)
    commit = commit.strip()
    pinned = client.post(
        LOCATIONS, json={"type": "url", "target": repo.url("catalog-info.yaml", commit)}
    )
    assert pinned.status_code == 201, pinned.text
    assert "on-main" in {e["metadata"]["name"] for e in pinned.json()["entities"]}


def test_missing_files_and_refs_are_errors_of_their_source(hosted):
    client, repo = hosted()
    write_docs(
        repo.work / "catalog-info.yaml",
        location_doc(
            "hosted-parts",
            "./present.yaml",
            "./missing.yaml",
            repo.url("present.yaml", ref="no-such-branch"),
            "./folder",
        ),
    )
    write_docs(repo.work / "present.yaml", component("present", owner="checkout-team"))
    write_docs(repo.work / "folder" / "x.yaml", component("in-folder", owner="checkout-team"))
    repo.push("first")

    response = client.post(LOCATIONS, json={"type": "url", "target": repo.url("catalog-info.yaml")})

    assert response.status_code == 201, response.text
    location_id = response.json()["location"]["id"]
    by_source = {e["source"]: e["message"] for e in _errors(client, location_id)}
    assert len(by_source) == 3
    assert "there is no file missing.yaml at main" in by_source["url:" + repo.url("missing.yaml")]
    assert (
        "no branch, tag or commit 'no-such-branch'"
        in by_source["url:" + repo.url("present.yaml", ref="no-such-branch")]
    )
    assert "folder at main" in by_source["url:" + repo.url("folder")]
    assert "is a folder, not a file" in by_source["url:" + repo.url("folder")]
    catalog = repo.app.state.catalog
    assert get(catalog, "component:default/present") is not None

    # A file deleted by a push: its entity stays, its source shows the error.
    (repo.work / "present.yaml").unlink()
    repo.push("delete present.yaml")
    catalog.refresh_due()
    errors = _errors(client, location_id)
    assert any(
        e["source"] == "url:" + repo.url("present.yaml")
        and "there is no file present.yaml" in e["message"]
        for e in errors
    )
    assert get(catalog, "component:default/present") is not None


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("repos/checkout-team/svc/blob/../../../../etc/passwd", 400, "'..'"),
        ("repos/checkout-team/svc/blob/%2e%2e/x.yaml?ref=main", 400, "'..'"),
        ("repos/checkout-team/svc/blob/a%2fb.yaml", 400, "segments"),
        ("repos/checkout-team/svc/blob/catalog-info.yaml?ref=-x", 400, "not starting with '-'"),
        ("repos/checkout-team/svc/blob/catalog-info.yaml?ref=main..x", 400, "without '..'"),
        ("repos/checkout-team/svc/blob/catalog-info.yaml?ref=main@{1}", 400, "not a branch"),
        ("repos/checkout-team/svc/blob/--upload-pack=x", 400, "cannot start with '-'"),
        ("repos/checkout-team/nope/blob/catalog-info.yaml", 404, "no hosted repository"),
        ("repos/.spool/x/blob/catalog-info.yaml", 400, "not a valid repository name"),
        ("repos/checkout-team/svc/blob/catalog-info.yaml?ref=nope", 404, "no branch, tag or"),
        ("repos/checkout-team/svc/blob/missing.yaml", 404, "no file missing.yaml at the default"),
        ("repos/checkout-team/svc/blob/components?ref=main", 400, "is a folder"),
        ("repos/checkout-team/svc/tree/catalog-info.yaml", 400, "/blob/<path>?ref=<ref>"),
        ("repos/checkout-team/svc/blob/catalog-info.yaml?view=source", 400, "only query"),
        ("repos/checkout-team/svc/blob/catalog-info.yaml?ref=main&ref=x", 400, "only query"),
        ("repos/checkout-team/svc/blob/catalog-info.yaml#top", 400, "#fragment"),
        ("git/checkout-team/svc.git/catalog-info.yaml", 400, "/blob/<path>?ref=<ref>"),
        ("api/v1/catalog/entities", 400, "does not name a file in a hosted repository"),
    ],
)
def test_hostile_and_wrong_hosted_urls_are_refused(hosted, path, status, message):
    client, repo = hosted()
    _write_service(repo)
    repo.push("first")
    target = f"{repo.app.state.settings.public_url}/{path}"

    response = client.post(LOCATIONS, json={"type": "url", "target": target})

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert message in response.json()["detail"]
    assert target not in [location["target"] for location in client.get(LOCATIONS).json()]


def test_this_server_means_the_public_url_exactly(hosted):
    client, repo = hosted()
    _write_service(repo)
    repo.push("first")
    public = repo.app.state.settings.public_url
    assert public.startswith("http://127.0.0.1:")
    as_localhost = repo.url("catalog-info.yaml").replace("127.0.0.1", "localhost")

    response = client.post(LOCATIONS, json={"type": "url", "target": as_localhost})

    assert response.status_code == 400  # read over HTTP, so the allowlist applies
    assert "not in the allowed hosts" in response.json()["detail"]


def test_a_file_read_over_http_cannot_point_at_hosted_files(hosted, http_server):
    server = http_server()
    client, repo = hosted(allowed_hosts=[server.host], allow_private_network=True)
    write_docs(repo.work / "secret.yaml", component("hosted-secret", owner="checkout-team"))
    write(repo.work / "secret.txt", "hosted text\n")
    repo.push("first")
    write_docs(
        server.root / "catalog-info.yaml",
        location_doc("remote", repo.url("secret.yaml")),
        entity_doc(
            "API",
            "remote-api",
            {
                "type": "openapi",
                "lifecycle": "production",
                "owner": "checkout-team",
                "definition": {"$text": repo.url("secret.txt")},
            },
        ),
        component("remote-fine", owner="checkout-team"),
    )

    response = client.post(
        LOCATIONS, json={"type": "url", "target": server.url("catalog-info.yaml")}
    )

    assert response.status_code == 201, response.text
    catalog = repo.app.state.catalog
    assert get(catalog, "component:default/remote-fine") is not None
    assert get(catalog, "component:default/hosted-secret") is None
    assert get(catalog, "api:default/remote-api") is None
    messages = [e["message"] for e in response.json()["errors"]]
    assert len(messages) == 2
    assert all("cannot point at" in m for m in messages), messages


def test_hosted_files_are_read_in_ingestion_worker_processes(hosted, monkeypatch):
    count = PARALLEL_MIN_SOURCES + 5  # enough due at once for worker processes
    pools: list[ProcessPoolExecutor] = []

    def counted_pool(*args: Any, **kwargs: Any) -> ProcessPoolExecutor:
        pools.append(ProcessPoolExecutor(*args, **kwargs))
        return pools[-1]

    monkeypatch.setattr(ingestion, "ProcessPoolExecutor", counted_pool)
    client, repo = hosted(ingest_processes=1)
    write_docs(repo.work / "catalog-info.yaml", location_doc("many", "./parts/**/*.yaml"))
    for index in range(count):
        folder = "parts" if index % 2 else f"parts/sub{index % 3}"
        write_docs(
            repo.work / folder / f"c{index}.yaml",
            component(f"part-{index}", owner="checkout-team"),
        )
    repo.push("many")

    response = client.post(LOCATIONS, json={"type": "url", "target": repo.url("catalog-info.yaml")})

    assert response.status_code == 201, response.text
    assert response.json()["errors"] == []
    names = {e["metadata"]["name"] for e in response.json()["entities"]}
    assert {f"part-{i}" for i in range(count)} <= names
    assert len(pools) == 1  # they were read there, not in this process


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.yaml", "a.yaml", True),
        ("*.yaml", "sub/a.yaml", False),
        ("*.yaml", ".hidden.yaml", False),
        (".*.yaml", ".hidden.yaml", True),
        ("**/*.yaml", "a.yaml", True),
        ("**/*.yaml", "x/y/a.yaml", True),
        ("**/*.yaml", ".git/y/a.yaml", False),
        ("c[0-9].yaml", "c7.yaml", True),
        ("parts/**", "parts/x/y", True),
    ],
)
def test_patterns_match_as_glob_does(pattern, path, matches):
    assert glob_match(pattern.split("/"), path.split("/")) is matches
