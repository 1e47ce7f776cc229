"""Export to GitHub Actions: a service's resolved pipeline (the demo python-service
template with the service's additions) and a full pipeline with every feature, written as
workflows that GitHub reads: the structure checked after yaml.safe_load, every job with a
runner and steps, every action pinned, no template input or PAVEDROAD_ variable left."""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from pavedroad.core.errors import InputError
from pavedroad.core.safeyaml import load_document
from pavedroad.pipelines.export import (
    FORMATS,
    InputValues,
    check_format,
    export_pipeline,
    rename_variables,
    to_github_actions,
    workflow_filename,
)
from pavedroad.pipelines.library import (
    ResolvedPipeline,
    TemplateLibrary,
    load_pipeline_file,
)
from pavedroad.pipelines.steps import StepRegistry

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "pipelines"
REGISTRY = StepRegistry.from_plugins()


@pytest.fixture(scope="module")
def demo_library() -> TemplateLibrary:
    entities = [load_document(path.read_bytes(), str(path)) for path in sorted(DEMO.glob("*.yaml"))]
    return TemplateLibrary.from_entities(entities)


def resolve(text: str, library: TemplateLibrary | None = None) -> ResolvedPipeline:
    return load_pipeline_file(
        textwrap.dedent(text).lstrip("\n"),
        library or TemplateLibrary(),
        ".pavedroad/pipeline.yaml",
        known_step=REGISTRY.known,
    )


def steps_of(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return workflow["jobs"][job]["steps"]


def strings(value: Any) -> list[str]:
    """Every string in a loaded workflow, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for k, v in value.items() for text in (*strings(k), *strings(v))]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return []


def check_workflow(text: str, template_inputs: Sequence[str] = ()) -> dict[str, Any]:
    """What a workflow must be for GitHub to read it; actionlint too when it is installed."""
    workflow = yaml.safe_load(text)
    assert isinstance(workflow, dict) and workflow["jobs"]
    assert set(workflow) <= {
        "name",
        "on",
        "permissions",
        "env",
        "concurrency",
        "defaults",
        "jobs",
    }
    assert workflow["on"], "a workflow needs a trigger"
    for job_id, job in workflow["jobs"].items():
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", job_id)
        assert job["runs-on"] == "ubuntu-latest", job_id
        assert job["steps"], job_id
        ids = [step["id"] for step in job["steps"] if "id" in step]
        assert len(ids) == len(set(ids)), f"step ids repeat in {job_id}"
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step
            uses = step.get("uses")
            if uses and not uses.startswith("./"):
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", uses), uses
            if "working-directory" in step or "shell" in step:
                assert "run" in step, "GitHub takes working-directory and shell on run only"
    found = strings(workflow)
    for name in template_inputs:
        leftover = [t for t in found if re.search(rf"inputs\s*(\.|\[')\s*{re.escape(name)}", t)]
        assert not leftover, leftover
    assert not [t for t in found if "PAVEDROAD_" in t], "a PAVEDROAD_ variable is left"
    actionlint = shutil.which("actionlint")
    if actionlint is not None:
        result = subprocess.run(
            [actionlint, "-no-color", "-"], input=text, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
    return workflow


# --- a service using the demo template ---------------------------------------------------

SERVICE = """
uses: python-service@1
with:
  python-version: "3.13"
  source-folder: app
env:
  LOG_LEVEL: debug
jobs:
  smoke:
    needs: [build]
    runs-on: [linux, big]
    retries: 2
    steps:
      - run: ./smoke.sh "${{ needs.build.outputs.release }}"
        env:
          TOKEN: ${{ secrets.SMOKE_TOKEN }}
extend:
  test:
    before:
      - name: System packages
        run: sudo apt-get install -y libpq-dev
    after:
      - uses: artifact/upload
        with: {name: coverage, path: htmlcov}
"""


@pytest.fixture(scope="module")
def service_export(demo_library: TemplateLibrary) -> tuple[str, dict[str, Any]]:
    text = to_github_actions(resolve(SERVICE, demo_library))
    template_inputs = list(demo_library.find("python-service", 1).inputs)  # type: ignore[union-attr]
    return text, check_workflow(text, template_inputs)


def test_the_header_names_the_file_and_the_template_version(service_export):
    text, _ = service_export
    header = [line for line in text.splitlines() if line.startswith("#")][:8]
    assert "from .pavedroad/pipeline.yaml" in header[1]
    assert "python-service@1" in header[1]
    assert any("python-version=3.13" in line and "test-extra=test" in line for line in header)
    assert any("secrets" in line for line in header)  # the smoke job reads one
    assert text.startswith("# GitHub Actions workflow exported by Pavedroad")


def test_the_template_jobs_and_the_services_additions_are_all_there(service_export):
    _, workflow = service_export
    assert workflow["name"] == "python-service"
    assert list(workflow["jobs"]) == ["lint", "test", "build", "smoke"]
    assert workflow["jobs"]["build"]["needs"] == ["lint", "test"]
    assert workflow["jobs"]["smoke"]["needs"] == ["build"]
    assert workflow["env"] == {"LOG_LEVEL": "debug"}
    assert workflow["on"] == {"push": {}, "workflow_dispatch": {}}
    assert workflow["concurrency"] == {
        "group": "${{ github.repository }}-${{ github.ref }}",
        "cancel-in-progress": True,
    }
    assert workflow["defaults"] == {"run": {"shell": "bash"}}  # -eo pipefail, as on Pavedroad
    assert [job["timeout-minutes"] for job in workflow["jobs"].values()] == [10, 30, 15, 60]


def test_template_inputs_become_their_values(service_export):
    _, workflow = service_export
    lint = steps_of(workflow, "lint")
    assert lint[1] == {
        "name": "Set up Python",
        "uses": "actions/setup-python@v5",
        "with": {"python-version": "3.13"},
    }
    assert lint[-1]["run"] == "python -m compileall -q app"
    install = steps_of(workflow, "test")[2]
    assert "pip install --progress-bar off '.[test]'" in install["run"]
    assert 'echo "$PWD/.venv/bin" >> "$GITHUB_PATH"' in install["run"]


def test_built_in_steps_become_github_actions(service_export):
    _, workflow = service_export
    test = steps_of(workflow, "test")
    assert [step.get("uses") or step["name"] for step in test] == [
        "actions/checkout@v4",
        "actions/setup-python@v5",
        "Install the project",
        "System packages",  # the service's before: right before the required test step
        "Run the tests",
        "actions/upload-artifact@v4",  # the JUnit report
        "actions/upload-artifact@v4",  # the service's after: step
    ]
    assert test[0]["with"] == {"fetch-depth": 0}
    pytest_step = test[4]
    assert pytest_step["id"] == "test"
    assert pytest_step["run"].startswith("python -m pytest --junitxml=")
    report = test[5]
    assert report["if"] == "${{ !cancelled() }}"
    assert report["with"]["path"].endswith(".xml")
    assert report["with"]["path"].rsplit("/", 1)[1] in pytest_step["run"]
    assert test[6]["with"] == {"name": "coverage", "path": "htmlcov", "if-no-files-found": "error"}

    build = steps_of(workflow, "build")
    release = build[1]
    assert release["id"] == "release"
    assert "git ls-files -z | tar" in release["run"]
    assert "Pavedroad" in release["run"] and "records" in release["run"]
    assert '>> "$GITHUB_OUTPUT"' in release["run"]
    assert build[2]["uses"] == "actions/upload-artifact@v4"
    assert build[2]["with"]["name"] == "release"


def test_runs_on_labels_and_retries_stay_in_a_comment(service_export):
    text, workflow = service_export
    assert workflow["jobs"]["smoke"]["runs-on"] == "ubuntu-latest"
    [line] = [line for line in text.splitlines() if "Pavedroad runs-on" in line]
    assert line.strip().startswith("runs-on: ubuntu-latest  # Pavedroad runs-on: linux, big")
    assert "retries: 2" in line


def test_every_demo_template_exports(demo_library):
    for name in ("python-service", "python-library", "docs-site"):
        resolved = resolve(f"uses: {name}@1\n", demo_library)
        inputs = list(demo_library.find(name, 1).inputs)  # type: ignore[union-attr]
        check_workflow(to_github_actions(resolved), inputs)


def test_the_library_template_matrix_keeps_artifact_names_unique(demo_library):
    workflow = yaml.safe_load(to_github_actions(resolve("uses: python-library@1\n", demo_library)))
    test = workflow["jobs"]["test"]
    assert test["strategy"] == {
        "matrix": {"python": ["3.11", "3.12", "3.13"]},
        "fail-fast": False,
    }
    assert test["steps"][1]["with"] == {"python-version": "${{ matrix.python }}"}
    report = next(s for s in test["steps"] if s.get("name") == "Keep the test report")
    assert report["with"]["name"].endswith("-${{ strategy.job-index }}")


def test_the_output_is_the_same_every_time(demo_library):
    first = to_github_actions(resolve(SERVICE, demo_library))
    assert first == to_github_actions(resolve(SERVICE, demo_library))
    assert list(yaml.safe_load(first)) == [
        "name",
        "on",
        "permissions",
        "env",
        "concurrency",
        "defaults",
        "jobs",
    ]
    assert "\n'on':\n" in first  # quoted: a bare on is the boolean true in YAML 1.1


# --- a full pipeline with every feature ---------------------------------------------------

FULL = """
name: Orders CI
on:
  push:
    branches: [main, "release/**"]
    tags: ["v*"]
    paths-ignore: ["docs/**"]
  manual:
    inputs:
      target: {type: environment, description: Where to deploy, required: true}
      verbose: {type: boolean, default: false}
      shards: {type: number, default: 2}
      level: {type: choice, options: [quick, full], default: quick}
      note: {description: Free text}
  schedule:
    - cron: "0 3 * * 1-5"
env:
  TZ: UTC
  LEVEL: ${{ inputs.level }}
concurrency:
  group: orders-${{ github.ref }}
  cancel-in-progress: true
jobs:
  test:
    name: Test on ${{ matrix.python }}
    runs-on: [linux, python]
    timeout-minutes: 20
    retries: 1
    continue-on-error: ${{ inputs.verbose }}
    strategy:
      fail-fast: false
      max-parallel: 2
      matrix:
        python: ["3.11", "3.12"]
        os: [debian]
        include:
          - {python: "3.13", experimental: true}
        exclude:
          - {python: "3.11", os: debian}
    env:
      SHARDS: ${{ inputs.shards }}
    outputs:
      version: ${{ steps.version.outputs.version }}
    steps:
      - uses: checkout
        with: {path: src}
      - uses: python/setup
        with: {python: "${{ matrix.python }}", path: src}
      - id: version
        name: Read the version
        run: |
          echo "version=$(cat VERSION)" >> "$PAVEDROAD_OUTPUT"
          echo "BUILT_AT=$PAVEDROAD_SHA" >> "$PAVEDROAD_ENV"
          echo "${PAVEDROAD_REF} in $PAVEDROAD_WORKSPACE, CI=$PAVEDROAD"
      - uses: python/test
        id: tests
        if: ${{ !inputs.verbose }}
        continue-on-error: true
        timeout-minutes: 15
        with: {args: ["-x", "-k", "not slow"], path: src}
      - name: A Python step
        shell: python
        working-directory: src
        env: {GREETING: hi}
        run: |
          import os
          print(os.environ["PAVEDROAD_OUTPUT"])
      - uses: artifact/upload
        with: {name: dist, path: src/dist}
  deploy:
    needs: [test]
    if: github.ref == 'refs/heads/main' && needs.test.result == 'success'
    concurrency: deploy-${{ inputs.target }}
    steps:
      - uses: artifact/download
        with: {name: dist, path: dist}
      - uses: deploy
        with: {environment: "${{ inputs.target }}"}
      - shell: sh
        run: echo "deployed ${{ needs.test.outputs.version }}"
      - id: deps
        uses: cache/restore
        with:
          key: deps-${{ hashFiles('requirements.txt') }}
          path: .cache
          restore-keys: [deps-]
      - uses: cache/save
        if: steps.deps.outputs.cache-hit != 'true'
        with: {key: "deps-${{ hashFiles('requirements.txt') }}", path: .cache}
"""


@pytest.fixture(scope="module")
def full_export() -> tuple[str, dict[str, Any]]:
    text = to_github_actions(resolve(FULL))
    return text, check_workflow(text)


def test_triggers_keep_their_filters_inputs_and_schedule(full_export):
    _, workflow = full_export
    on = workflow["on"]
    assert on["push"] == {
        "branches": ["main", "release/**"],
        "tags": ["v*"],
        "paths-ignore": ["docs/**"],
    }
    assert on["workflow_dispatch"]["inputs"] == {
        "target": {"description": "Where to deploy", "required": True, "type": "environment"},
        "verbose": {"type": "boolean", "default": False},
        "shards": {"type": "number", "default": 2},
        "level": {"type": "choice", "default": "quick", "options": ["quick", "full"]},
        "note": {"description": "Free text", "type": "string"},
    }
    assert on["schedule"] == [{"cron": "0 3 * * 1-5"}]
    assert workflow["env"] == {"TZ": "UTC", "LEVEL": "${{ inputs.level }}"}  # manual: kept
    assert workflow["concurrency"] == {
        "group": "orders-${{ github.ref }}",
        "cancel-in-progress": True,
    }


def test_jobs_keep_needs_if_timeouts_matrix_env_outputs(full_export):
    text, workflow = full_export
    test, deploy = workflow["jobs"]["test"], workflow["jobs"]["deploy"]
    assert test["name"] == "Test on ${{ matrix.python }}"
    assert test["timeout-minutes"] == 20
    assert test["continue-on-error"] == "${{ inputs.verbose }}"
    assert test["strategy"] == {
        "matrix": {
            "python": ["3.11", "3.12"],
            "os": ["debian"],
            "include": [{"python": "3.13", "experimental": True}],
            "exclude": [{"python": "3.11", "os": "debian"}],
        },
        "fail-fast": False,
        "max-parallel": 2,
    }
    assert test["env"] == {"SHARDS": "${{ inputs.shards }}"}
    assert test["outputs"] == {"version": "${{ steps.version.outputs.version }}"}
    assert deploy["needs"] == ["test"]
    assert deploy["if"] == "github.ref == 'refs/heads/main' && needs.test.result == 'success'"
    assert deploy["concurrency"] == {
        "group": "deploy-${{ inputs.target }}",
        "cancel-in-progress": False,
    }
    assert "runs-on: ubuntu-latest  # Pavedroad runs-on: linux, python; retries: 1" in text
    assert "deploy" in workflow["jobs"] and "runs-on: ubuntu-latest\n" in text


def test_steps_keep_their_fields(full_export):
    _, workflow = full_export
    steps = steps_of(workflow, "test")
    assert steps[0] == {"uses": "actions/checkout@v4", "with": {"fetch-depth": 0, "path": "src"}}
    assert steps[1]["with"] == {"python-version": "${{ matrix.python }}"}
    assert steps[2]["working-directory"] == "src"
    version = steps[3]
    assert (version["id"], version["name"]) == ("version", "Read the version")
    tests = steps[4]
    assert tests == {
        "id": "tests",
        "if": "${{ !inputs.verbose }}",
        "run": tests["run"],
        "working-directory": "src",
        "timeout-minutes": 15,
        "continue-on-error": True,
    }
    assert tests["run"].endswith(" -x -k 'not slow'")
    python = steps[6]
    assert python == {
        "name": "A Python step",
        "run": 'import os\nprint(os.environ["GITHUB_OUTPUT"])\n',
        "shell": "python",
        "working-directory": "src",
        "env": {"GREETING": "hi"},
    }
    assert steps[7]["with"] == {"name": "dist", "path": "src/dist", "if-no-files-found": "error"}
    assert steps_of(workflow, "deploy")[2]["shell"] == "sh"


def test_pavedroad_variables_become_githubs(full_export):
    _, workflow = full_export
    script = steps_of(workflow, "test")[3]["run"]
    assert script == (
        'echo "version=$(cat VERSION)" >> "$GITHUB_OUTPUT"\n'
        'echo "BUILT_AT=$GITHUB_SHA" >> "$GITHUB_ENV"\n'
        'echo "${GITHUB_REF} in $GITHUB_WORKSPACE, CI=$GITHUB_ACTIONS"\n'
    )


def test_artifacts_and_the_deploy_placeholder(full_export):
    text, workflow = full_export
    download, deploy, _, restore, save = steps_of(workflow, "deploy")
    assert download == {
        "uses": "actions/download-artifact@v4",
        "with": {"name": "dist", "path": "dist"},
    }
    assert deploy["run"].startswith("# Placeholder for the Pavedroad step `uses: deploy`")
    assert deploy["run"].rstrip().endswith("exit 1")
    assert "::error::" in deploy["run"]
    assert "${{" not in deploy["run"]  # the with: shown in a comment is not evaluated
    assert "jobs.deploy.steps[1] (deploy): a placeholder that fails" in text
    report = steps_of(workflow, "test")[5]
    assert report["with"]["name"] == "test-results-test-3-${{ strategy.job-index }}"
    assert restore == {
        "id": "deps",
        "uses": "actions/cache/restore@v4",
        "with": {
            "key": "deps-${{ hashFiles('requirements.txt') }}",
            "path": ".cache",
            "restore-keys": "deps-",
        },
    }
    assert save == {
        "if": "steps.deps.outputs.cache-hit != 'true'",
        "uses": "actions/cache/save@v4",
        "with": {"key": "deps-${{ hashFiles('requirements.txt') }}", "path": ".cache"},
    }


def test_a_full_pipeline_has_no_template_line_in_its_header(full_export):
    text, _ = full_export
    assert "pipeline template" not in text.split("\nname:", 1)[0]
    assert "from .pavedroad/pipeline.yaml." in text


# --- the pieces --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("${{ inputs.version }}", "3.12"),
        ("python ${{ inputs.version }}!", "python 3.12!"),
        ("${{ inputs['version'] }}", "3.12"),
        ("${{ format('v{0}', inputs.version) }}", "${{ format('v{0}', '3.12') }}"),
        ("${{ Inputs.Flag }}", True),
        ("${{ inputs.flag && inputs.count > 2 }}", "${{ true && 3 > 2 }}"),
        ("${{ inputs.quote }}-x", "it's-x"),
        ("${{ startsWith(inputs.quote, 'i') }}", "${{ startsWith('it''s', 'i') }}"),
        ("${{ inputs.later }}", "${{ github.ref_name }}"),
        ("${{ inputs.later == 'main' }}", "${{ (github.ref_name) == 'main' }}"),
        (
            "${{ contains(inputs.both, 'x') }}",
            "${{ contains(format('v-{0}-{{x}}', (github.sha)), 'x') }}",
        ),
        ("${{ inputs.unset }}", None),
        ("a${{ inputs.unset }}b", "ab"),
        # not template inputs: the manual trigger's, a property named inputs, other text
        ("${{ inputs.target }}", "${{ inputs.target }}"),
        ("${{ github.event.inputs.version }}", "${{ github.event.inputs.version }}"),
        ("${{ 'inputs.version' }}", "${{ 'inputs.version' }}"),
        ("inputs.version", "inputs.version"),
    ],
)
def test_template_inputs_are_written_in(given, expected):
    values = InputValues(
        {
            "version": "3.12",
            "flag": True,
            "count": 3,
            "quote": "it's",
            "later": "${{ github.ref_name }}",
            "both": "v-${{ github.sha }}-{x}",
            "unset": None,
        }
    )
    assert values.value(given) == expected


def test_bare_conditions_get_literals():
    values = InputValues({"coverage": True, "level": "full"})
    assert values.condition("inputs.coverage && inputs.level == 'full'") == (
        "true && 'full' == 'full'"
    )
    assert values.condition("${{ inputs.coverage }}") == "${{ true }}"
    assert values.condition("${{ inputs.level != 'x' }}") == "${{ 'full' != 'x' }}"
    assert values.condition("inputs.manual") == "inputs.manual"


def test_variables_are_renamed_longest_name_first_and_unknown_ones_reported():
    script = 'echo "$PAVEDROAD_REF_NAME $PAVEDROAD_REF ${PAVEDROAD_TEMP} $PAVEDROAD_X" PAVEDROAD'
    renamed, unknown = rename_variables(script)
    assert renamed == 'echo "$GITHUB_REF_NAME $GITHUB_REF ${RUNNER_TEMP} $PAVEDROAD_X" PAVEDROAD'
    assert unknown == ["PAVEDROAD_X"]


def test_only_github_actions_is_a_format():
    assert FORMATS == ("github-actions",)
    check_format("github-actions")
    with pytest.raises(InputError, match="formats are: github-actions"):
        check_format("gitlab-ci")
    with pytest.raises(InputError):
        export_pipeline(resolve(FULL), "jenkins")


def test_the_file_name_comes_from_the_pipeline_name(demo_library):
    assert workflow_filename(resolve(FULL)) == ".github/workflows/orders-ci.yml"
    resolved = resolve("uses: docs-site@1\n", demo_library)
    exported = export_pipeline(resolved, "github-actions")
    assert exported.filename == ".github/workflows/docs-site.yml"
    assert exported.content == to_github_actions(resolved)


def test_unset_optional_template_inputs_become_null():
    template = textwrap.dedent(
        """
        apiVersion: pavedroad.dev/v1alpha1
        kind: PipelineTemplate
        metadata: {name: svc}
        spec:
          owner: group:platform-team
          versions:
            1:
              inputs:
                marker: {type: string}
              jobs:
                a:
                  steps:
                    - run: echo "[${{ inputs.marker }}]"
                      if: ${{ inputs.marker }}
        """
    )
    library = TemplateLibrary.from_entities([load_document(template)])
    resolved = resolve("uses: svc@1\n", library)
    assert resolved.inputs == {}
    text = to_github_actions(resolved, template_inputs=["marker"])
    step = check_workflow(text, ["marker"])["jobs"]["a"]["steps"][0]
    assert step == {"if": "${{ null }}", "run": 'echo "[]"'}


def test_unknown_and_local_step_types():
    pipeline = """
        jobs:
          a:
            steps:
              - uses: ./ci/steps/lint
                with: {strict: true}
              - uses: acme/scan@2
                name: Scan
    """
    resolved = load_pipeline_file(
        textwrap.dedent(pipeline), TemplateLibrary(), "p.yaml", known_step=lambda uses: True
    )
    text = to_github_actions(resolved)
    steps = check_workflow(text)["jobs"]["a"]["steps"]
    assert steps[0] == {"uses": "./ci/steps/lint", "with": {"strict": True}}
    assert steps[1]["name"] == "Scan"
    assert "acme/scan has no GitHub Actions equivalent" in steps[1]["run"]
    assert steps[1]["run"].rstrip().endswith("exit 1")


def test_python_setup_inputs_become_the_install_step():
    pipeline = """
        jobs:
          a:
            steps:
              - uses: python/setup
                with: {python-version: "3.11", extras: [test, docs], path: svc}
              - uses: python/setup
                with: {install: false}
              - uses: python/setup
                with: {extras: "${{ matrix.extra }}"}
    """
    steps = check_workflow(to_github_actions(resolve(pipeline)))["jobs"]["a"]["steps"]
    assert steps[0]["with"] == {"python-version": "3.11"}
    assert "pip install --progress-bar off '.[test,docs]'" in steps[1]["run"]
    assert steps[1]["working-directory"] == "svc"
    # No version asked for: setup-python's own choice (.python-version, else the runner's).
    assert steps[2] == {"name": "Set up Python", "uses": "actions/setup-python@v5"}
    assert "pip install" not in steps[3]["run"]
    assert steps[5]["env"] == {"INSTALL_EXTRAS": "${{ matrix.extra }}"}
    assert 'pip install --progress-bar off ".[$INSTALL_EXTRAS]"' in steps[5]["run"]


def test_a_lone_input_keeps_its_type_where_github_wants_one():
    template = textwrap.dedent(
        """
        apiVersion: pavedroad.dev/v1alpha1
        kind: PipelineTemplate
        metadata: {name: flags}
        spec:
          owner: group:platform-team
          versions:
            1:
              inputs:
                lenient: {type: boolean, default: true}
                shards: {type: number, default: 4}
              jobs:
                a:
                  steps:
                    - run: pytest -n ${{ inputs.shards }}
                      continue-on-error: ${{ inputs.lenient }}
                    - uses: artifact/upload
                      with: {name: "r${{ inputs.shards }}", path: "${{ inputs.shards }}"}
        """
    )
    library = TemplateLibrary.from_entities([load_document(template)])
    steps = check_workflow(to_github_actions(resolve("uses: flags@1\n", library)), ["shards"])
    first, upload = steps["jobs"]["a"]["steps"]
    assert first == {"run": "pytest -n 4", "continue-on-error": True}
    assert upload["with"] == {"name": "r4", "path": 4, "if-no-files-found": "error"}
