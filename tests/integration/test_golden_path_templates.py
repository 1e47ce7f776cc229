"""The demo organisation's golden-path templates, as a developer meets them: each Template
parses, its form accepts good answers and refuses bad ones per field, its skeleton renders
through the real ``${{ }}`` sandbox and ``fetch:template``, and the project it makes is
valid for the catalog and passes its own tests (the web service also answers over HTTP
when started as ``python -m``). The demo catalog ingests the three Templates cleanly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.error import URLError

import pytest
from integration_support import DEMO_DIR, DEMO_ROOT, get, location_errors, relations, status

from pavedroad.catalog.localcheck import check_files
from pavedroad.core.plugins import plugin_manager
from pavedroad.core.safeyaml import load_document
from pavedroad.scaffolder.actions import ActionContext, ActionRegistry
from pavedroad.scaffolder.expressions import render_text, render_value
from pavedroad.scaffolder.template import (
    TemplateSpec,
    apply_defaults,
    fields,
    validate_parameters,
)
from pavedroad.scaffolder.workspace import Workspace
from pavedroad.settings import Settings

TEMPLATES_DIR = DEMO_DIR / "templates"
TEMPLATE_NAMES = ("python-web-service", "python-library", "docs-site")
REGISTRY = ActionRegistry.from_plugins(plugin_manager())
# The publishing actions the steps use, known here even where no plugin registers them.
KNOWN_ACTIONS = {*REGISTRY.ids(), "publish:git", "catalog:register"}

DESCRIPTION = 'Live "stock levels" per store, for the café\'s shelves.'
ANSWERS: dict[str, Any] = {
    "name": "stock-levels",
    "description": DESCRIPTION,
    "owner": "group:default/catalog-team",
    "system": "system:default/storefront",
    "repoUrl": "pavedroad?owner=catalog-team&repo=stock-levels",
}
REPO = "http://pavedroad.test/repos/catalog-team/stock-levels"
OUTPUTS = {
    "publish": {
        "output": {
            "remoteUrl": "http://pavedroad.test/git/catalog-team/stock-levels.git",
            "repoContentsUrl": f"{REPO}/blob",
            "commitHash": "0" * 40,
        }
    },
    "register": {
        "output": {
            "entityRef": "component:default/stock-levels",
            "catalogInfoUrl": f"{REPO}/blob/catalog-info.yaml",
        }
    },
}
# The form, page by page, as each template asks for it.
PAGES = {
    "python-web-service": [
        ("Service details", ["name", "description", "owner", "system", "port"]),
        ("Repository", ["repoUrl"]),
    ],
    "python-library": [
        ("Library details", ["name", "description", "owner", "system"]),
        ("Repository", ["repoUrl"]),
    ],
    "docs-site": [
        ("Site details", ["name", "description", "owner", "system"]),
        ("Repository", ["repoUrl"]),
    ],
}
TYPES = {"python-web-service": "service", "python-library": "library", "docs-site": "documentation"}
# Every file each template makes, names rendered.
COMMON_FILES = {".gitignore", ".pavedroad/pipeline.yaml", "README.md", "catalog-info.yaml"}
FILES = {
    "python-web-service": COMMON_FILES
    | {
        "Dockerfile",
        "docs/index.md",
        "mkdocs.yml",
        "pyproject.toml",
        "score.yaml",
        "src/stock_levels/__init__.py",
        "src/stock_levels/__main__.py",
        "src/stock_levels/app.py",
        "tests/test_app.py",
    },
    "python-library": COMMON_FILES
    | {
        "docs/index.md",
        "mkdocs.yml",
        "pyproject.toml",
        "src/stock_levels/__init__.py",
        "src/stock_levels/py.typed",
        "tests/test_slugify.py",
    },
    "docs-site": COMMON_FILES | {"docs/getting-started.md", "docs/index.md", "mkdocs.yml"},
}
PIPELINES = {
    "python-web-service": "python-service@1",
    "python-library": "python-library@1",
    "docs-site": "docs-site@1",
}


# -- helpers --------------------------------------------------------------------------------


def load_template(name: str) -> TemplateSpec:
    path = TEMPLATES_DIR / name / "template.yaml"
    entity = load_document(path.read_bytes(), str(path))
    return TemplateSpec.parse(entity, known_actions=KNOWN_ACTIONS)


def render_skeleton(text: str, values: Mapping[str, Any]) -> str:
    return render_text(text, {"values": values})


def render(name: str, answers: Mapping[str, Any], root: Path) -> Path:
    """Run the template's fetch step as the task runner would; the workspace's root."""
    spec = load_template(name)
    assert validate_parameters(spec, answers) == {}
    parameters = apply_defaults(spec, answers)
    fetch = next(step for step in spec.steps if step.action == "fetch:template")
    step_input = render_value(fetch.input, {"parameters": parameters})
    assert REGISTRY.validate_input("fetch:template", step_input) == []
    workspace = Workspace(root)
    log: list[str] = []
    ctx = ActionContext(
        input=step_input,
        workspace=workspace,
        log=log.append,
        render_text=render_skeleton,
        render_path=render_skeleton,
        template_dir=TEMPLATES_DIR / name,
    )
    assert REGISTRY.get("fetch:template").run(ctx) == {}
    assert log == [f"fetch:template wrote {len(FILES[name])} file(s) to ./"]
    return workspace.root


def files_of(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def load_yaml(path: Path) -> Any:
    return load_document(path.read_bytes(), str(path))


def child_env(project: Path) -> dict[str, str]:
    """This environment for a child process that imports ``project``'s ``src/``, without
    the variables of the pytest running this test."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(project / "src")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_project_tests(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=child_env(project),
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_catalog_info(project: Path, spec: Mapping[str, Any], tags: list[str]) -> None:
    """The project's catalog-info.yaml is what we expect and ingests without errors."""
    assert load_yaml(project / "catalog-info.yaml") == {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {
            "name": "stock-levels",
            "description": DESCRIPTION,
            "annotations": {"backstage.io/techdocs-ref": "dir:."},
            "tags": tags,
        },
        "spec": dict(spec),
    }
    [result] = check_files([project / "catalog-info.yaml"], Settings(home=project.parent / "home"))
    assert result.errors == []
    assert [entity["ref"] for entity in result.entities] == ["component:default/stock-levels"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=2) as response:
        return json.loads(response.read())


def wait_for_json(url: str, process: subprocess.Popen[str], seconds: float = 15) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return get_json(url)
        except (URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# -- the Template descriptors ------------------------------------------------------------------


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_template_parses_with_its_form_and_steps(name):
    spec = load_template(name)

    assert (spec.name, spec.type, spec.owner) == (name, TYPES[name], "group:platform-team")
    assert spec.title and spec.description
    assert "recommended" in spec.tags
    assert [(page.title, [f.name for f in page.fields]) for page in fields(spec)] == PAGES[name]
    form = {f.name: f for page in fields(spec) for f in page.fields}
    assert form["name"].ui["autofocus"] is True and form["name"].ui["help"]
    assert form["owner"].ui == {
        "field": "OwnerPicker",
        "options": {"catalogFilter": {"kind": "Group"}},
    }
    assert form["system"].ui == {
        "field": "EntityPicker",
        "options": {"catalogFilter": {"kind": "System"}},
    }
    assert not form["system"].required
    assert form["repoUrl"].ui == {
        "field": "RepoUrlPicker",
        "options": {"allowedHosts": ["pavedroad"]},
    }
    assert [(step.id, step.action) for step in spec.steps] == [
        ("fetch", "fetch:template"),
        ("publish", "publish:git"),
        ("register", "catalog:register"),
    ]
    for step in spec.steps:
        if step.action in REGISTRY.ids():  # the publishing actions are checked once they exist
            assert REGISTRY.validate_step(step.action, step.input) == [], step.id


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_steps_and_links_render_from_the_answers(name):
    spec = load_template(name)
    context = {"parameters": apply_defaults(spec, ANSWERS), "steps": OUTPUTS}
    steps = {step.id: render_value(step.input, context) for step in spec.steps}

    assert steps["fetch"]["url"] == "./skeleton"
    values = steps["fetch"]["values"]
    assert (values["name"], values["description"]) == ("stock-levels", DESCRIPTION)
    assert (values["owner"], values["system"]) == (ANSWERS["owner"], ANSWERS["system"])
    if name != "docs-site":
        assert values["module"] == "stock_levels"
    if name == "python-web-service":
        assert values["port"] == 8080
    assert steps["publish"] == {
        "repoUrl": "pavedroad?owner=catalog-team&repo=stock-levels",
        "description": DESCRIPTION,
        "defaultBranch": "main",
        "gitCommitMessage": f"Create stock-levels from the {name} template",
    }
    assert steps["register"] == {
        "repoContentsUrl": OUTPUTS["publish"]["output"]["repoContentsUrl"],
        "catalogInfoPath": "/catalog-info.yaml",
    }
    links = [
        render_value({"url": link.url, "entityRef": link.entity_ref}, context)
        for link in spec.links
    ]
    assert [(link.title, link.icon) for link in spec.links] == [
        ("Repository", None),
        ("Open in catalog", "catalog"),
    ]
    assert links == [
        {"url": OUTPUTS["publish"]["output"]["remoteUrl"], "entityRef": None},
        {"url": None, "entityRef": "component:default/stock-levels"},
    ]


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "Stock_Levels"}, "name"),
        ({"name": "s"}, "name"),
        ({"name": "9lives"}, "name"),
        ({"name": "a" * 42}, "name"),
        ({"owner": None}, "owner"),
        ({"description": None}, "description"),
        ({"repoUrl": None}, "repoUrl"),
    ],
)
def test_bad_answers_are_refused_on_their_field(name, change, field):
    answers = {key: value for key, value in {**ANSWERS, **change}.items() if value is not None}

    problems = validate_parameters(load_template(name), answers)

    assert list(problems) == [field]
    assert problems[field] == [
        "is required" if change[field] is None else "must match the pattern ^[a-z][a-z0-9-]{1,40}$"
    ]


@pytest.mark.parametrize("port", [80, 70000, "8080"])
def test_web_service_refuses_a_bad_port(port):
    problems = validate_parameters(load_template("python-web-service"), {**ANSWERS, "port": port})

    assert list(problems) == ["port"]


# -- what each template makes ----------------------------------------------------------------


def assert_fully_rendered(project: Path, name: str) -> None:
    assert files_of(project) == FILES[name]
    for path in project.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert "${{" not in text, path
            assert "values." not in text, path
    assert "stock-levels" in (project / "README.md").read_text()
    assert load_yaml(project / ".pavedroad" / "pipeline.yaml") == {"uses": PIPELINES[name]}
    mkdocs = load_yaml(project / "mkdocs.yml")
    assert (mkdocs["site_name"], mkdocs["site_description"]) == ("stock-levels", DESCRIPTION)
    for page in mkdocs["nav"]:
        assert (project / "docs" / next(iter(page.values()))).is_file()


def test_python_web_service_makes_a_tested_service_that_runs(tmp_path, isolated_env):
    project = render("python-web-service", ANSWERS, tmp_path / "workspace")

    assert_fully_rendered(project, "python-web-service")
    assert_catalog_info(
        project,
        {
            "type": "service",
            "lifecycle": "experimental",
            "owner": "group:default/catalog-team",
            "system": "system:default/storefront",
        },
        ["python"],
    )
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "stock-levels"
    assert pyproject["project"]["description"] == DESCRIPTION
    assert pyproject["project"]["requires-python"] == ">=3.11"
    assert pyproject["project"]["optional-dependencies"] == {"test": ["pytest>=8"]}
    assert pyproject["project"]["scripts"] == {"stock-levels": "stock_levels.__main__:main"}
    score_text = (project / "score.yaml").read_text()
    assert "${metadata.name}" in score_text  # Score's own placeholders stay as written
    assert load_yaml(project / "score.yaml") == {
        "apiVersion": "score.dev/v1b1",
        "metadata": {"name": "stock-levels"},
        "containers": {
            "main": {
                "image": ".",
                "command": ["python", "-m", "stock_levels"],
                "variables": {"PORT": "8080"},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
            }
        },
        "service": {"ports": {"web": {"port": 8080, "targetPort": 8080}}},
    }
    assert 'CMD ["python", "-m", "stock_levels"]' in (project / "Dockerfile").read_text()

    tests = run_project_tests(project)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "7 passed" in tests.stdout

    port = free_port()
    env = {**child_env(project), "PORT": str(port)}
    with subprocess.Popen(
        [sys.executable, "-m", "stock_levels"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as service:
        try:
            assert wait_for_json(f"http://127.0.0.1:{port}/healthz", service) == {"status": "ok"}
            assert get_json(f"http://127.0.0.1:{port}/") == {
                "service": "stock-levels",
                "message": "Hello from stock-levels!",
            }
        finally:
            service.terminate()
            service.communicate(timeout=10)


def test_python_library_makes_a_tested_library(tmp_path, isolated_env):
    project = render("python-library", ANSWERS, tmp_path / "workspace")

    assert_fully_rendered(project, "python-library")
    assert_catalog_info(
        project,
        {
            "type": "library",
            "lifecycle": "experimental",
            "owner": "group:default/catalog-team",
            "system": "system:default/storefront",
        },
        ["python"],
    )
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert (pyproject["project"]["name"], pyproject["project"]["description"]) == (
        "stock-levels",
        DESCRIPTION,
    )
    assert pyproject["tool"]["setuptools"]["dynamic"] == {
        "version": {"attr": "stock_levels.__version__"}
    }
    assert (project / "src" / "stock_levels" / "py.typed").read_text() == ""

    tests = run_project_tests(project)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "10 passed" in tests.stdout


def test_docs_site_makes_a_site(tmp_path, isolated_env):
    project = render("docs-site", ANSWERS, tmp_path / "workspace")

    assert_fully_rendered(project, "docs-site")
    assert_catalog_info(
        project,
        {
            "type": "documentation",
            "lifecycle": "experimental",
            "owner": "group:default/catalog-team",
            "system": "system:default/storefront",
        },
        ["docs"],
    )
    assert load_yaml(project / "mkdocs.yml")["nav"] == [
        {"Home": "index.md"},
        {"Getting started": "getting-started.md"},
    ]
    assert (project / "docs" / "index.md").read_text().startswith("# stock-levels\n")


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_without_a_system_the_component_names_none(name, tmp_path, isolated_env):
    answers = {key: value for key, value in ANSWERS.items() if key != "system"}

    project = render(name, answers, tmp_path / "workspace")

    spec = load_yaml(project / "catalog-info.yaml")["spec"]
    assert "system" not in spec
    assert spec["owner"] == "group:default/catalog-team"
    [result] = check_files([project / "catalog-info.yaml"], Settings(home=tmp_path / "home"))
    assert result.errors == []


# -- the demo catalog ---------------------------------------------------------------------------


def test_demo_catalog_ingests_the_three_templates(catalog):
    location, entities = catalog.register_location("file", str(DEMO_ROOT))

    assert location_errors(catalog, location.id) == []
    templates = sorted(e["metadata"]["name"] for e in entities if e["kind"] == "Template")
    assert templates == sorted(TEMPLATE_NAMES)
    for name in TEMPLATE_NAMES:
        ref = f"template:default/{name}"
        assert status(catalog, ref)["errors"] == []
        entity = get(catalog, ref)
        assert entity is not None
        assert entity["spec"]["type"] == TYPES[name]
        assert ("ownedBy", "group:default/platform-team") in relations(entity)
