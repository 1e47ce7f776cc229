"""Exporting pipelines to GitHub Actions as a user does it: ``POST
/api/v1/pipelines/export`` resolving a service file against the catalog's templates, and
``pave pipeline export`` as a real process, against a real ``pave server`` for a file
that uses a template and without any server for a full pipeline."""

from __future__ import annotations

import textwrap

import pytest
import yaml
from test_cli import DEMO_DIR, assert_one_line_error, cli_env, pave, running_server

SERVICE = textwrap.dedent(
    """\
    uses: python-service@1
    with:
      python-version: "3.13"
    jobs:
      smoke:
        needs: [build]
        runs-on: [linux]
        steps:
          - run: echo "$PAVEDROAD_SHA"
    """
)

FULL = textwrap.dedent(
    """\
    name: Library CI
    on:
      push: {branches: [main]}
      manual:
        inputs:
          level: {type: choice, options: [quick, full], default: quick}
    jobs:
      test:
        steps:
          - uses: checkout
          - run: echo "level=${{ inputs.level }}" >> "$PAVEDROAD_OUTPUT"
    """
)


@pytest.fixture
def database_seed() -> str:
    return "demo"  # the demo organisation, with its pipeline templates


# --- the API -----------------------------------------------------------------------------


def test_the_api_exports_a_service_file_resolved_against_the_catalog(client):
    response = client.post(
        "/api/v1/pipelines/export",
        json={"text": SERVICE, "source": ".pavedroad/pipeline.yaml", "format": "github-actions"},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["filename"] == ".github/workflows/python-service.yml"
    assert (body["format"], body["uses"]) == ("github-actions", "python-service@1")
    workflow = yaml.safe_load(body["content"])
    assert list(workflow["jobs"]) == ["lint", "test", "build", "smoke"]
    setup = workflow["jobs"]["lint"]["steps"][1]
    assert setup["with"] == {"python-version": "3.13"}
    assert workflow["jobs"]["lint"]["steps"][-1]["run"] == "python -m compileall -q src"
    assert workflow["jobs"]["smoke"]["steps"][0]["run"] == 'echo "$GITHUB_SHA"'
    assert "inputs." not in body["content"] and "PAVEDROAD_" not in body["content"]
    assert "which uses the pipeline template python-service@1" in body["content"]


def test_the_api_exports_a_full_pipeline_and_keeps_manual_inputs(client):
    response = client.post("/api/v1/pipelines/export", json={"text": FULL})

    assert response.status_code == 200, response.text
    workflow = yaml.safe_load(response.json()["content"])
    assert workflow["on"]["workflow_dispatch"]["inputs"]["level"]["options"] == ["quick", "full"]
    step = workflow["jobs"]["test"]["steps"][1]
    assert step["run"] == 'echo "level=${{ inputs.level }}" >> "$GITHUB_OUTPUT"'
    assert response.json()["filename"] == ".github/workflows/library-ci.yml"


def test_the_api_refuses_other_formats(client):
    response = client.post("/api/v1/pipelines/export", json={"text": FULL, "format": "gitlab-ci"})

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "the formats are: github-actions" in response.json()["detail"]


def test_an_invalid_file_is_a_problem_with_its_lines(client):
    text = "uses: python-service@1\nwith:\n  python-versoin: '3.13'\n"

    response = client.post("/api/v1/pipelines/export", json={"text": text})

    assert response.status_code == 400
    problems = response.json()["problems"]
    assert [(p["line"], p["path"]) for p in problems] == [(3, "with.python-versoin")]
    assert "did you mean 'python-version'" in problems[0]["message"]


def test_an_unknown_template_is_a_problem(client):
    response = client.post("/api/v1/pipelines/export", json={"text": "uses: nothing-here@1\n"})

    assert response.status_code == 400
    assert "no pipeline template 'nothing-here@1'" in response.json()["problems"][0]["message"]


# --- the CLI -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``pave server`` whose catalog holds the demo python-service pipeline template."""
    home = tmp_path_factory.mktemp("export-home")
    env = cli_env(home) | {"PAVEDROAD_AUTH__REQUIRED": "false"}
    with running_server(home, env) as url:
        template = DEMO_DIR / "pipelines" / "python-service.yaml"
        registered = pave(
            "catalog", "register", str(template), env=env | {"PAVEDROAD_URL": url}, cwd=home
        )
        assert registered.returncode == 0, registered.stderr
        yield url


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "project"
    (folder / ".pavedroad").mkdir(parents=True)
    return folder


def test_pave_pipeline_export_resolves_a_template_through_the_server(server, project, tmp_path):
    (project / ".pavedroad" / "pipeline.yaml").write_text(SERVICE)
    env = cli_env(tmp_path / "client", server)

    printed = pave("pipeline", "export", "--format", "github-actions", env=env, cwd=project)

    assert printed.returncode == 0, printed.stderr
    workflow = yaml.safe_load(printed.stdout)
    assert list(workflow["jobs"]) == ["lint", "test", "build", "smoke"]
    assert "from .pavedroad/pipeline.yaml, which uses the pipeline template python-service@1" in (
        printed.stdout
    )

    written = pave("pipeline", "export", "-o", ".github/workflows/ci.yml", env=env, cwd=project)

    assert written.returncode == 0, written.stderr
    assert written.stderr.strip() == "wrote .github/workflows/ci.yml"
    assert (project / ".github" / "workflows" / "ci.yml").read_text() == printed.stdout


def test_pave_pipeline_export_prints_a_template_files_problems(server, project, tmp_path):
    (project / ".pavedroad" / "pipeline.yaml").write_text(
        "uses: python-service@1\nwith:\n  nope: 1\n"
    )
    env = cli_env(tmp_path / "client", server)

    result = pave("pipeline", "export", env=env, cwd=project)

    assert result.returncode == 1
    assert result.stdout.startswith(".pavedroad/pipeline.yaml:3:3: with.nope: ")
    assert "Traceback" not in result.stderr


def test_pave_pipeline_export_needs_no_server_for_a_full_pipeline(project, tmp_path):
    (project / "ci.yaml").write_text(FULL)
    env = cli_env(tmp_path / "client", "http://127.0.0.1:9")  # nothing listens there

    result = pave("pipeline", "export", "ci.yaml", "--output", "out.yml", env=env, cwd=project)

    assert result.returncode == 0, result.stderr
    assert (
        "GitHub reads workflows in .github/workflows/, e.g. .github/workflows/library-ci.yml"
        in (result.stderr)
    )
    workflow = yaml.safe_load((project / "out.yml").read_text())
    assert workflow["on"]["push"] == {"branches": ["main"]}


def test_pave_pipeline_export_refuses_other_formats(project, tmp_path):
    (project / "ci.yaml").write_text(FULL)
    env = cli_env(tmp_path / "client")

    result = pave("pipeline", "export", "ci.yaml", "--format", "gitlab-ci", env=env, cwd=project)

    assert_one_line_error(result, "cannot export a pipeline as 'gitlab-ci'", "github-actions")
    assert result.stdout == ""


def test_pave_pipeline_export_reports_a_missing_file(project, tmp_path):
    env = cli_env(tmp_path / "client")

    result = pave("pipeline", "export", "missing.yaml", env=env, cwd=project)

    assert_one_line_error(result, "cannot read missing.yaml")
