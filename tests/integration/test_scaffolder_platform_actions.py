"""The scaffolder actions that act on the platform, with a real GitService, a real
catalog (the demo organisation) and real git: ``publish:git`` creates a hosted repository
and pushes the workspace with its provenance file, ``catalog:register`` registers what it
pushed, ``catalog:fetch`` reads it back and ``catalog:write`` writes an entity; every
refusal (an existing repository, someone else's group, another host) changes nothing."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from integration_support import get

from pavedroad.core import audit
from pavedroad.core.errors import ConflictError, ForbiddenError, NotFoundError
from pavedroad.core.plugins import plugin_manager
from pavedroad.git.service import ZERO_SHA
from pavedroad.identity.policy import Actor, Role
from pavedroad.scaffolder.actions import ActionContext, ActionRegistry
from pavedroad.scaffolder.platform import TaskPlatform, TemplateOrigin
from pavedroad.scaffolder.provenance import SOURCE_TEMPLATE_ANNOTATION, read_provenance
from pavedroad.scaffolder.workspace import ActionError, UnsafePathError, Workspace

TEMPLATE_REF = "template:default/python-web-service"
ORIGIN = TemplateOrigin(TEMPLATE_REF, "9" * 40, {"name": "orders-svc", "port": 8080})
REPO_URL = "pavedroad?owner=checkout-team&repo=orders-svc"
BOB = Actor("bob", Role.member, user_ref="user:default/bob")
DAVE = Actor("dave", Role.member, user_ref="user:default/dave")  # catalog-team, not checkout
COMPONENT = {
    "apiVersion": "backstage.io/v1alpha1",
    "kind": "Component",
    "metadata": {"name": "orders-svc", "description": "Takes orders"},
    "spec": {"type": "service", "lifecycle": "experimental", "owner": "checkout-team"},
}


@pytest.fixture
def database_seed() -> str:
    return "demo"  # bob and carol are in checkout-team, dave is not


def _identity(text: str, values: Mapping[str, Any]) -> str:
    return text


def run_git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


class Task:
    """One template task's workspace and platform, running steps as the runner does:
    input checked against the action's schema, then the action."""

    def __init__(self, app: Any, root: Path, actor: Actor = BOB, dry_run: bool = False) -> None:
        self.app = app
        self.registry = ActionRegistry.from_plugins(plugin_manager())
        self.workspace = Workspace(root / "workspace")
        self.template_dir = root / "template"
        self.template_dir.mkdir(parents=True, exist_ok=True)
        self.lines: list[str] = []
        self.dry_run = dry_run
        self.platform: TaskPlatform | None = TaskPlatform(
            settings=app.state.settings,
            db=app.state.db,
            git=app.state.git,
            catalog=app.state.catalog,
            actor=actor,
            task_id="task-1",
            origin=ORIGIN,
        )

    def run(self, action_id: str, step_input: dict[str, Any]) -> dict[str, Any]:
        assert self.registry.validate_step(action_id, step_input) == []
        ctx = ActionContext(
            input=step_input,
            workspace=self.workspace,
            log=self.lines.append,
            render_text=_identity,
            render_path=_identity,
            template_dir=self.template_dir,
            dry_run=self.dry_run,
            platform=self.platform,
        )
        return self.registry.get(action_id).run(ctx)

    def write_service(self, folder: str = ".") -> None:
        prefix = "" if folder == "." else folder + "/"
        self.workspace.write_text(prefix + "README.md", "# orders-svc\n")
        self.workspace.write_text(prefix + "src/app.py", "print('hello')\n")
        self.workspace.write_text(
            prefix + "catalog-info.yaml", yaml.safe_dump(COMPONENT, sort_keys=False)
        )
        self.workspace.write_bytes(prefix + "run.sh", b"#!/bin/sh\necho run\n", mode=0o755)


@pytest.fixture
def app(make_app: Any, make_settings: Any) -> Any:
    return make_app(make_settings())


@pytest.fixture
def task(app: Any, tmp_path: Path) -> Task:
    return Task(app, tmp_path / "task")


def _clone(app: Any, owner: str, name: str, into: Path) -> Path:
    bare = app.state.git.root / owner / f"{name}.git"
    run_git("clone", "-q", str(bare), str(into), cwd=into.parent)
    return into


def _files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(folder).parts
    )


def _audit(app: Any, action: str) -> list[dict[str, Any]]:
    return audit.search(app.state.db, action=action)


# --- publish:git -------------------------------------------------------------------------


def test_publish_creates_the_repository_and_pushes_the_workspace(
    task: Task, app: Any, tmp_path: Path
) -> None:
    task.write_service()

    outputs = task.run("publish:git", {"repoUrl": REPO_URL, "description": "Takes orders"})

    public = app.state.settings.public_url
    assert outputs["remoteUrl"] == f"{public}/git/checkout-team/orders-svc.git"
    assert outputs["repoContentsUrl"] == f"{public}/repos/checkout-team/orders-svc/blob"
    assert len(outputs["commitHash"]) == 40
    repo = app.state.git.describe(app.state.git.repo("checkout-team", "orders-svc"))
    assert (repo["ownerRef"], repo["createdBy"], repo["description"]) == (
        "group:default/checkout-team",
        "bob",
        "Takes orders",
    )

    clone = _clone(app, "checkout-team", "orders-svc", tmp_path / "clone")
    assert _files(clone) == [
        ".pavedroad/template.yaml",
        "README.md",
        "catalog-info.yaml",
        "run.sh",
        "src/app.py",
    ]
    assert read_provenance((clone / ".pavedroad/template.yaml").read_text()) == ORIGIN
    info = yaml.safe_load((clone / "catalog-info.yaml").read_text())
    assert info["metadata"]["annotations"] == {SOURCE_TEMPLATE_ANNOTATION: TEMPLATE_REF}
    assert os.access(clone / "run.sh", os.X_OK)
    log = run_git("log", "--format=%H|%an|%ae|%cn|%s|%D", cwd=clone).splitlines()
    assert log == [
        f"{outputs['commitHash']}|Bob Okafor|bob@acme-retail.example|Bob Okafor|Initial commit|"
        "HEAD -> main, origin/main, origin/HEAD"
    ]
    assert task.platform is not None and task.platform.published_paths == ["."]
    assert any("created the repository checkout-team/orders-svc" in line for line in task.lines)


def test_the_push_is_recorded_as_the_task_actor(task: Task, app: Any) -> None:
    task.write_service()

    outputs = task.run("publish:git", {"repoUrl": REPO_URL})

    [push] = app.state.git.pushes("checkout-team/orders-svc")
    assert (push["ref"], push["before"], push["after"], push["pusher"], push["source"]) == (
        "refs/heads/main",
        ZERO_SHA,
        outputs["commitHash"],
        "bob",
        "hosted",
    )
    assert not list(app.state.git.spool.glob("*.json"))  # imported, not left for later
    [event] = _audit(app, "git.repo.create")
    assert (event["actor"], event["target"], event["outcome"], event["requestId"]) == (
        "bob",
        "checkout-team/orders-svc",
        "success",
        "task:task-1",
    )


def test_publish_takes_a_source_folder_branch_message_and_author(
    task: Task, app: Any, tmp_path: Path
) -> None:
    task.write_service("service")
    task.workspace.write_text("notes.txt", "not published\n")

    task.run(
        "publish:git",
        {
            "repoUrl": f"{app.state.settings.public_url.split('://')[1]}?owner=checkout-team"
            "&repo=orders-svc",
            "sourcePath": "service",
            "defaultBranch": "trunk",
            "gitCommitMessage": "Made from a template",
            "gitAuthorName": "Scaffolder",
            "gitAuthorEmail": "scaffolder@example.com",
        },
    )

    clone = _clone(app, "checkout-team", "orders-svc", tmp_path / "clone")
    assert "notes.txt" not in _files(clone)
    assert ".pavedroad/template.yaml" in _files(clone)
    assert run_git("log", "--format=%an <%ae>|%s", cwd=clone).strip() == (
        "Scaffolder <scaffolder@example.com>|Made from a template"
    )
    assert run_git("rev-parse", "--abbrev-ref", "HEAD", cwd=clone).strip() == "trunk"
    assert task.workspace.exists("service/.pavedroad/template.yaml")
    assert not task.workspace.exists(".pavedroad")
    assert task.platform is not None and task.platform.published_paths == ["service"]


def test_publishing_over_an_existing_repository_is_refused_and_changes_nothing(
    app: Any, tmp_path: Path
) -> None:
    first = Task(app, tmp_path / "first")
    first.write_service()
    first.run("publish:git", {"repoUrl": REPO_URL})
    bare = app.state.git.root / "checkout-team" / "orders-svc.git"
    head = run_git("rev-parse", "refs/heads/main", cwd=bare)
    tree = run_git("ls-tree", "-r", "main", cwd=bare)

    second = Task(app, tmp_path / "second")
    second.workspace.write_text("catalog-info.yaml", "kind: Component\n")
    second.workspace.write_text("README.md", "# someone else's\n")
    with pytest.raises(ConflictError, match="exists already"):
        second.run("publish:git", {"repoUrl": REPO_URL})

    assert run_git("rev-parse", "refs/heads/main", cwd=bare) == head
    assert run_git("ls-tree", "-r", "main", cwd=bare) == tree
    assert len(app.state.git.pushes("checkout-team/orders-svc")) == 1
    assert not second.workspace.exists(".pavedroad")  # refused before anything was written
    assert second.workspace.read("catalog-info.yaml") == b"kind: Component\n"
    assert second.platform is not None and second.platform.published_paths == []
    outcomes = [e["outcome"] for e in _audit(app, "git.repo.create")]
    assert outcomes == ["failure", "success"]  # newest first


def test_a_left_over_repository_folder_is_not_overwritten_either(task: Task, app: Any) -> None:
    leftover = app.state.git.root / "checkout-team" / "orders-svc.git"
    leftover.mkdir(parents=True)
    (leftover / "HEAD").write_text("ref: refs/heads/main\n")
    task.write_service()

    with pytest.raises(ConflictError):
        task.run("publish:git", {"repoUrl": REPO_URL})

    assert sorted(p.name for p in leftover.iterdir()) == ["HEAD"]


def test_someone_outside_the_owning_group_is_refused(app: Any, tmp_path: Path) -> None:
    task = Task(app, tmp_path / "task", actor=DAVE)
    task.write_service()

    with pytest.raises(ForbiddenError) as refused:
        task.run("publish:git", {"repoUrl": REPO_URL})

    assert "git.repo.create needs membership of group:default/checkout-team" in (
        refused.value.detail
    )
    assert "dave is not a member" in refused.value.detail
    assert app.state.git.repos() == []
    assert not (app.state.git.root / "checkout-team").exists()
    assert not task.workspace.exists(".pavedroad")
    [event] = _audit(app, "git.repo.create")
    assert (event["actor"], event["outcome"], event["status"]) == ("dave", "denied", 403)


def test_a_viewer_is_refused_even_in_a_dry_run(app: Any, tmp_path: Path) -> None:
    task = Task(app, tmp_path / "task", actor=Actor("carol", Role.viewer, "user:default/carol"))
    task.dry_run = True
    task.write_service()

    with pytest.raises(ForbiddenError, match="viewers cannot change anything"):
        task.run("publish:git", {"repoUrl": REPO_URL})
    assert _audit(app, "git.repo.create") == []  # a dry run records nothing


@pytest.mark.parametrize(
    ("repo_url", "message"),
    [
        (
            "github.com?owner=checkout-team&repo=orders-svc",
            "publish:git publishes to Pavedroad's hosted repositories; github.com is not one",
        ),
        (
            "127.0.0.1:9999?owner=checkout-team&repo=orders-svc",
            "127.0.0.1:9999 is not one",
        ),
        ("pavedroad?owner=checkout-team", "is not of the form"),
        ("pavedroad?repo=orders-svc", "names no owner"),
        ("pavedroad?owner=checkout-team&repo=orders.git", "is not a valid repository name"),
        ("pavedroad?owner=checkout-team&repo=..", "is not a valid repository name"),
    ],
)
def test_bad_repository_urls_are_refused(task: Task, app: Any, repo_url: str, message: str) -> None:
    task.write_service()

    with pytest.raises(ActionError) as refused:
        task.run("publish:git", {"repoUrl": repo_url})

    assert message in refused.value.detail
    assert app.state.git.repos() == []
    assert not task.workspace.exists(".pavedroad")


def test_an_owner_that_is_not_in_the_catalog_is_not_found(task: Task, app: Any) -> None:
    with pytest.raises(NotFoundError, match="is not a group or user in the catalog"):
        task.run("publish:git", {"repoUrl": "pavedroad?owner=nobody-team&repo=orders-svc"})
    assert app.state.git.repos() == []


@pytest.mark.parametrize("source_path", ["../outside", "/etc", "README.md", "missing"])
def test_the_source_folder_must_be_a_folder_inside_the_workspace(
    task: Task, app: Any, source_path: str
) -> None:
    task.write_service()

    with pytest.raises(ActionError) as refused:
        task.run("publish:git", {"repoUrl": REPO_URL, "sourcePath": source_path})

    if ".." in source_path or source_path.startswith("/"):
        assert isinstance(refused.value, UnsafePathError)
    else:
        assert "is not a folder in the workspace" in refused.value.detail
    assert app.state.git.repos() == []


def test_a_bad_branch_name_is_refused_before_anything_is_made(task: Task, app: Any) -> None:
    task.write_service()
    with pytest.raises(ActionError, match="not a valid branch name"):
        task.run("publish:git", {"repoUrl": REPO_URL, "defaultBranch": "main..next"})
    assert app.state.git.repos() == []
    assert task.registry.validate_step("publish:git", {"repoUrl": REPO_URL, "defaultBranch": "-f"})


def test_a_dry_run_creates_nothing_and_says_what_would_be_made(app: Any, tmp_path: Path) -> None:
    task = Task(app, tmp_path / "task", dry_run=True)
    task.write_service()

    outputs = task.run("publish:git", {"repoUrl": REPO_URL})

    public = app.state.settings.public_url
    assert outputs == {
        "remoteUrl": f"{public}/git/checkout-team/orders-svc.git",
        "repoContentsUrl": f"{public}/repos/checkout-team/orders-svc/blob",
        "commitHash": ZERO_SHA,
    }
    assert app.state.git.repos() == []
    assert not (app.state.git.root / "checkout-team").exists()
    assert app.state.git.pushes() == []
    assert _audit(app, "git.repo.create") == []
    # The workspace shows what would be pushed: provenance and annotation included.
    assert read_provenance(task.workspace.read(".pavedroad/template.yaml")) == ORIGIN
    info = yaml.safe_load(task.workspace.read("catalog-info.yaml"))
    assert info["metadata"]["annotations"][SOURCE_TEMPLATE_ANNOTATION] == TEMPLATE_REF
    assert task.platform is not None and task.platform.published_paths == ["."]


def test_a_failure_after_the_repository_is_made_deletes_it_again(
    task: Task, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    task.write_service()

    def broken_import() -> int:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(app.state.git, "import_spool", broken_import)
    with pytest.raises(RuntimeError, match="went away"):
        task.run("publish:git", {"repoUrl": REPO_URL})

    assert app.state.git.repos() == []
    assert not (app.state.git.root / "checkout-team" / "orders-svc.git").exists()
    assert any("deleted checkout-team/orders-svc again" in line for line in task.lines)
    [event] = _audit(app, "git.repo.create")
    assert (event["outcome"], event["status"]) == ("failure", 500)


def test_platform_actions_need_a_task(task: Task) -> None:
    task.platform = None
    for action_id, step_input in [
        ("publish:git", {"repoUrl": REPO_URL}),
        ("catalog:register", {"catalogInfoUrl": "http://127.0.0.1:7070/x.yaml"}),
        ("catalog:fetch", {"entityRef": "group:checkout-team"}),
    ]:
        with pytest.raises(ActionError, match=f"{action_id} needs a task"):
            task.run(action_id, step_input)


# --- catalog:register, catalog:fetch --------------------------------------------------------


def test_register_after_publish_puts_the_entity_in_the_catalog(task: Task, app: Any) -> None:
    task.write_service()
    published = task.run("publish:git", {"repoUrl": REPO_URL})

    outputs = task.run(
        "catalog:register",
        {"repoContentsUrl": published["repoContentsUrl"], "catalogInfoPath": "/catalog-info.yaml"},
    )

    url = published["repoContentsUrl"] + "/catalog-info.yaml"
    assert outputs == {"entityRef": "component:default/orders-svc", "catalogInfoUrl": url}
    entity = get(app.state.catalog, "component:default/orders-svc")
    assert entity is not None
    assert entity["metadata"]["annotations"][SOURCE_TEMPLATE_ANNOTATION] == TEMPLATE_REF
    assert entity["metadata"]["annotations"]["backstage.io/managed-by-location"] == f"url:{url}"
    with app.state.catalog.reader() as reader:
        [location] = [row for row in reader.locations() if row.target == url]
    assert location.created_by == "bob"
    [event] = _audit(app, "catalog.location.create")
    assert (event["actor"], event["target"], event["outcome"]) == ("bob", f"url:{url}", "success")

    fetched = task.run("catalog:fetch", {"entityRef": outputs["entityRef"]})
    assert fetched["entity"]["metadata"]["name"] == "orders-svc"
    assert {"type": "ownedBy", "targetRef": "group:default/checkout-team"} in (
        fetched["entity"]["relations"]
    )


def test_register_takes_a_catalog_info_url(task: Task, app: Any) -> None:
    task.write_service()
    published = task.run("publish:git", {"repoUrl": REPO_URL})
    url = published["repoContentsUrl"] + "/catalog-info.yaml?ref=main"

    outputs = task.run("catalog:register", {"catalogInfoUrl": url})

    assert outputs == {"entityRef": "component:default/orders-svc", "catalogInfoUrl": url}


def test_register_refuses_a_viewer_and_a_missing_file_unless_optional(
    app: Any, tmp_path: Path
) -> None:
    viewer = Task(app, tmp_path / "viewer", actor=Actor("carol", Role.viewer))
    contents = f"{app.state.settings.public_url}/repos/checkout-team/orders-svc/blob"
    with pytest.raises(ForbiddenError, match="viewer"):
        viewer.run("catalog:register", {"repoContentsUrl": contents})

    task = Task(app, tmp_path / "task")
    task.write_service()
    task.run("publish:git", {"repoUrl": REPO_URL})
    with pytest.raises(NotFoundError, match="there is no file"):
        task.run("catalog:register", {"repoContentsUrl": contents, "catalogInfoPath": "nope.yaml"})
    outputs = task.run(
        "catalog:register",
        {"repoContentsUrl": contents, "catalogInfoPath": "nope.yaml", "optional": True},
    )
    assert outputs == {"catalogInfoUrl": f"{contents}/nope.yaml"}
    with app.state.catalog.reader() as reader:
        assert not [row for row in reader.locations() if "orders-svc" in row.target]


def test_registering_twice_is_a_conflict_unless_optional(task: Task, app: Any) -> None:
    task.write_service()
    published = task.run("publish:git", {"repoUrl": REPO_URL})
    step = {"repoContentsUrl": published["repoContentsUrl"]}
    task.run("catalog:register", step)

    with pytest.raises(ConflictError, match="already exists"):
        task.run("catalog:register", step)
    again = task.run("catalog:register", step | {"optional": True})
    assert again["entityRef"] == "component:default/orders-svc"


def test_a_file_that_gives_no_entity_is_not_left_registered(task: Task, app: Any) -> None:
    task.workspace.write_text(
        "catalog-info.yaml", "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
    )
    published = task.run("publish:git", {"repoUrl": REPO_URL})

    with pytest.raises(ActionError, match="the file gave no entity"):
        task.run("catalog:register", {"repoContentsUrl": published["repoContentsUrl"]})

    with app.state.catalog.reader() as reader:
        assert not [row for row in reader.locations() if "orders-svc" in row.target]


def test_a_dry_run_registers_nothing_and_reads_the_workspace(app: Any, tmp_path: Path) -> None:
    task = Task(app, tmp_path / "task", dry_run=True)
    task.write_service("service")
    published = task.run("publish:git", {"repoUrl": REPO_URL, "sourcePath": "service"})

    outputs = task.run("catalog:register", {"repoContentsUrl": published["repoContentsUrl"]})

    assert outputs == {
        "entityRef": "component:default/orders-svc",
        "catalogInfoUrl": published["repoContentsUrl"] + "/catalog-info.yaml",
    }
    assert get(app.state.catalog, "component:default/orders-svc") is None
    assert _audit(app, "catalog.location.create") == []


def test_fetch_reads_one_or_several_entities(task: Task) -> None:
    one = task.run("catalog:fetch", {"entityRef": "checkout-team", "defaultKind": "group"})
    assert one["entity"]["kind"] == "Group"
    assert one["entity"]["metadata"]["name"] == "checkout-team"

    several = task.run(
        "catalog:fetch",
        {
            "entityRefs": ["user:bob", "group:default/checkout-team", "user:nobody"],
            "optional": True,
        },
    )
    assert [e and e["metadata"]["name"] for e in several["entities"]] == [
        "bob",
        "checkout-team",
        None,
    ]
    assert "entity" not in several

    with pytest.raises(ActionError, match="no entity user:default/nobody in the catalog"):
        task.run("catalog:fetch", {"entityRefs": ["user:bob", "user:nobody"]})
    assert task.run("catalog:fetch", {"entityRef": "user:nobody", "optional": True}) == {
        "entity": None
    }
    with pytest.raises(ActionError, match="had missing or empty kind"):
        task.run("catalog:fetch", {"entityRef": "bob"})


# --- catalog:write ---------------------------------------------------------------------------


def test_write_puts_the_entity_in_the_workspace_with_the_template_annotation(
    task: Task,
) -> None:
    entity = COMPONENT | {"metadata": {"name": "orders-svc", "annotations": {"a": "b"}}}

    assert task.run("catalog:write", {"entity": entity}) == {}
    task.run("catalog:write", {"entity": COMPONENT, "filePath": "service/catalog-info.yaml"})

    written = yaml.safe_load(task.workspace.read("catalog-info.yaml"))
    assert written == entity | {
        "metadata": {
            "name": "orders-svc",
            "annotations": {"a": "b", SOURCE_TEMPLATE_ANNOTATION: TEMPLATE_REF},
        }
    }
    text = task.workspace.read("service/catalog-info.yaml").decode()
    assert text.startswith("apiVersion: backstage.io/v1alpha1\nkind: Component\n")
    assert "Takes orders" in text
    assert COMPONENT["metadata"] == {"name": "orders-svc", "description": "Takes orders"}


def test_write_without_a_platform_or_in_a_dry_run(task: Task) -> None:
    task.platform = None
    task.run("catalog:write", {"entity": COMPONENT})
    assert yaml.safe_load(task.workspace.read("catalog-info.yaml")) == COMPONENT

    task.dry_run = True
    task.run("catalog:write", {"entity": COMPONENT, "filePath": "dry.yaml"})
    assert task.workspace.exists("dry.yaml")
    with pytest.raises(UnsafePathError):
        task.run("catalog:write", {"entity": COMPONENT, "filePath": "../x.yaml"})


def test_templates_are_checked_against_the_schemas_at_ingestion(task: Task) -> None:
    check = task.registry.validate_step
    assert check("publish:git", {"repoUrl": "${{ parameters.repoUrl }}"}) == []
    assert check("publish:git", {}) == [
        "publish:git: input is missing the required property 'repoUrl'"
    ]
    assert check("publish:git", {"repoUrl": "x", "repoVisibility": "public"}) == [
        "publish:git: input has unknown properties 'repoVisibility' (allowed: defaultBranch, "
        "description, gitAuthorEmail, gitAuthorName, gitCommitMessage, repoUrl, sourcePath)"
    ]
    assert check("catalog:register", {"catalogInfoUrl": "${{ steps.x.output.url }}"}) == []
    assert check("catalog:register", {"optional": True}) == [
        "catalog:register: input is missing the required property 'repoContentsUrl'"
    ]
    assert check("catalog:fetch", {"entityRef": "x", "optional": "yes"}) == [
        "catalog:fetch: input.optional must be a boolean, not string 'yes'"
    ]
    assert check("catalog:write", {"entity": "x"}) == [
        "catalog:write: input.entity must be an object, not string 'x'"
    ]
