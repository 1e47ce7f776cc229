"""Pipeline templates: the PipelineTemplate kind in the catalog, the demo templates, and
resolving a service's ``uses: name@version`` (inputs, extra jobs and steps, required
steps that cannot be removed or overridden)."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pavedroad.catalog.processing import (
    EntityPipeline,
    EntityValidationError,
    ProcessingContext,
    Relation,
)
from pavedroad.core.safeyaml import load_document
from pavedroad.pipelines.library import (
    PipelineTemplate,
    TemplateDefinition,
    TemplateLibrary,
    TemplateUse,
    load_pipeline_file,
    parse_pipeline_file,
    parse_template,
    read_template,
    resolve,
)
from pavedroad.pipelines.spec import Pipeline, PipelineError
from pavedroad.scaffolder.expressions import render_text
from pavedroad.settings import Settings

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
DEMO_TEMPLATES = ["python-service", "python-library", "docs-site"]
BUILT_IN_STEPS = {
    "checkout",
    "python/setup",
    "python/test",
    "artifact/upload",
    "artifact/download",
    "release/build",
    "deploy",
}


def known_step(uses: str) -> bool:
    return uses.split("@")[0] in BUILT_IN_STEPS


def demo_entity(name: str) -> dict[str, Any]:
    path = DEMO / "pipelines" / f"{name}.yaml"
    return load_document(path.read_bytes(), str(path))


@pytest.fixture(scope="module")
def demo_library() -> TemplateLibrary:
    return TemplateLibrary.from_entities(demo_entity(name) for name in DEMO_TEMPLATES)


HEAD = "uses: svc@1\nwith: {target: dev}\n"  # a service file's first lines
TEMPLATE = """
apiVersion: pavedroad.dev/v1alpha1
kind: PipelineTemplate
metadata:
  name: svc
spec:
  owner: group:platform-team
  versions:
    1:
      inputs:
        python-version: {type: string, default: "3.12"}
        coverage: {type: boolean, default: false}
        shards: {type: number, default: 1}
        level: {type: choice, options: [quick, full], default: quick}
        target: {type: environment, required: true, description: Where to deploy}
      env:
        TZ: UTC
      extendable:
        jobs: true
        steps:
          test: [before, after]
          build: after
      jobs:
        lint:
          steps:
            - uses: checkout
            - run: python -m compileall -q src
        test:
          needs: lint
          steps:
            - uses: checkout
            - id: setup
              uses: python/setup
            - id: test
              uses: python/test
              required: true
            - id: report
              run: echo done
        build:
          needs: [test]
          steps:
            - id: release
              uses: release/build
              required: true
    2:
      description: two
      jobs:
        build:
          steps: [{uses: release/build, required: true}]
"""


@pytest.fixture
def library() -> TemplateLibrary:
    template = parse_template(TEMPLATE, "svc.yaml")
    return TemplateLibrary([template])


def service(text: str, library: TemplateLibrary, **kwargs: Any):
    kwargs.setdefault("known_step", known_step)
    return load_pipeline_file(
        textwrap.dedent(text).lstrip("\n"), library, "pipeline.yaml", **kwargs
    )


def service_problems(text: str, library: TemplateLibrary) -> list[tuple[int, str, str]]:
    with pytest.raises(PipelineError) as caught:
        service(text, library)
    return [(p.line, p.path, p.message) for p in caught.value.problems]


# --- the demo templates -----------------------------------------------------------------


@pytest.mark.parametrize("name", DEMO_TEMPLATES)
def test_demo_templates_ingest_as_valid_entities(
    name: str, pipeline: EntityPipeline, unit_settings: Settings
):
    path = DEMO / "pipelines" / f"{name}.yaml"
    context = ProcessingContext("file", str(path), lambda t: Path(t).read_bytes(), unit_settings)
    processed = pipeline.process(demo_entity(name), context)
    ref = f"pipelinetemplate:default/{name}"
    assert str(processed.ref) == ref
    assert processed.relations == [
        Relation(ref, "ownedBy", "group:default/platform-team"),
        Relation("group:default/platform-team", "ownerOf", ref),
    ]


@pytest.mark.parametrize("name", DEMO_TEMPLATES)
def test_demo_templates_are_version_1_with_built_in_steps_and_required_steps(name: str):
    path = DEMO / "pipelines" / f"{name}.yaml"
    template = parse_template(path.read_bytes(), str(path), known_step=known_step)
    assert (template.owner, list(template.versions)) == ("group:platform-team", [1])
    assert template.versions[1].required_steps()


def test_python_service_lints_tests_and_builds_with_test_and_build_required():
    template = read_template(demo_entity("python-service"), known_step=known_step)
    definition = template.versions[1]
    assert list(definition.jobs) == ["lint", "test", "build"]
    lint = definition.jobs["lint"]
    assert any("compileall" in (step.run or "") for step in lint.steps)
    assert [(job, step.uses) for job, step in definition.required_steps()] == [
        ("test", "python/test"),
        ("build", "release/build"),
    ]
    assert definition.jobs["build"].needs == ["lint", "test"]


def test_the_python_web_service_skeleton_resolves_against_the_demo_template(demo_library):
    skeleton = DEMO / "templates" / "python-web-service" / "skeleton"
    text = (skeleton / ".pavedroad" / "pipeline.yaml").read_text()
    rendered = render_text(text, {"values": {"name": "stock-levels", "module": "stock_levels"}})

    resolved = load_pipeline_file(rendered, demo_library, known_step=known_step)

    assert resolved.uses == "python-service@1"
    assert (resolved.template, resolved.template_version) == ("python-service", 1)
    assert resolved.inputs == {
        "python-version": "3.12",
        "source-folder": "src",
        "test-extra": "test",
    }
    assert not resolved.customised
    pipeline = resolved.pipeline
    assert list(pipeline.jobs) == ["lint", "test", "build"]
    assert [s.uses for s in pipeline.jobs["test"].steps] == [
        "checkout",
        "python/setup",
        "python/test",
    ]
    assert pipeline.on.push is not None and pipeline.on.manual is not None


@pytest.mark.parametrize(
    ("folder", "uses"), [("python-library", "python-library@1"), ("docs-site", "docs-site@1")]
)
def test_the_other_skeletons_resolve_too(folder: str, uses: str, demo_library):
    text = (DEMO / "templates" / folder / "skeleton" / ".pavedroad" / "pipeline.yaml").read_text()
    assert load_pipeline_file(text, demo_library, known_step=known_step).uses == uses


# --- resolution -------------------------------------------------------------------------


def test_inputs_are_checked_and_defaults_filled(library):
    resolved = service(
        """
        uses: svc@1
        with:
          python-version: 3.10
          coverage: true
          target: staging
          level: full
        """,
        library,
    )
    assert resolved.inputs == {
        "python-version": "3.10",  # as written, not the float 3.1
        "coverage": True,
        "target": "staging",
        "level": "full",
        "shards": 1,
    }
    assert resolved.pipeline.env == {"TZ": "UTC"}
    assert resolved.pipeline.name == "svc"


def test_an_input_may_be_an_expression_decided_at_run_time(library):
    resolved = service(
        "uses: svc@1\nwith:\n  target: ${{ github.ref_name }}\n  coverage: ${{ inputs.cov }}\n",
        library,
    )
    assert resolved.inputs["coverage"] == "${{ inputs.cov }}"


@pytest.mark.parametrize(
    ("with_", "expected"),
    [
        (
            "  target: dev\n  coverage: 'yes'\n",
            [(4, "with.coverage", "input 'coverage' expects true or false, not the string 'yes'")],
        ),
        (
            "  target: dev\n  shards: many\n",
            [(4, "with.shards", "input 'shards' expects a number, not the string 'many'")],
        ),
        (
            "  target: dev\n  level: slow\n",
            [(4, "with.level", "input 'level' must be one of 'quick', 'full', not 'slow'")],
        ),
        (
            "  target: [dev]\n",
            [(3, "with.target", "input 'target' expects a string, not a list (quote it)")],
        ),
        (
            "  target: dev\n  pyhton-version: '3.13'\n",
            [
                (
                    4,
                    "with.pyhton-version",
                    "pipeline template svc@1 has no input 'pyhton-version' "
                    "(did you mean 'python-version'?)",
                )
            ],
        ),
        (
            "  coverage: true\n",
            [(2, "with", "pipeline template svc@1 needs input 'target': Where to deploy")],
        ),
    ],
)
def test_input_problems_point_at_the_service_file(library, with_, expected):
    assert service_problems("uses: svc@1\nwith:\n" + with_, library) == expected


def test_a_missing_required_input_without_with_points_at_uses(library):
    assert service_problems("# ours\nuses: svc@1\n", library) == [
        (2, "uses", "pipeline template svc@1 needs input 'target': Where to deploy")
    ]


def test_extra_jobs_are_added_where_the_template_allows(library):
    resolved = service(
        """
        uses: svc@1
        with: {target: dev}
        jobs:
          smoke:
            needs: [build]
            steps:
              - run: ./smoke.sh
        """,
        library,
    )
    assert resolved.added_jobs == ["smoke"]
    assert list(resolved.pipeline.jobs) == ["lint", "test", "build", "smoke"]
    assert resolved.pipeline.jobs["smoke"].needs == ["build"]
    assert resolved.customised


def test_extra_steps_go_before_the_first_required_step_and_after_the_last(library):
    resolved = service(
        """
        uses: svc@1
        with: {target: dev}
        extend:
          test:
            before:
              - name: System packages
                run: apt-get install -y libpq-dev
            after:
              - id: coverage
                uses: artifact/upload
                with: {name: coverage, path: htmlcov}
          build:
            after:
              - run: echo built
        """,
        library,
    )
    steps = resolved.pipeline.jobs["test"].steps
    assert [s.id or s.name for s in steps] == [
        None,
        "setup",
        "System packages",
        "test",
        "report",
        "coverage",
    ]
    assert [(a.job, a.position, a.step.line) for a in resolved.added_steps] == [
        ("test", "before", 6),
        ("test", "after", 9),
        ("build", "after", 14),
    ]
    assert [s.uses or s.run for s in resolved.pipeline.jobs["build"].steps] == [
        "release/build",
        "echo built",
    ]
    assert resolved.customised


def test_resolving_does_not_change_the_template(library):
    text = "uses: svc@1\nwith: {target: dev}\nextend:\n  test:\n    after: [{run: echo}]\n"
    first = service(text, library)
    second = service(text, library)
    assert len(second.pipeline.jobs["test"].steps) == len(first.pipeline.jobs["test"].steps) == 5
    assert len(library.find("svc", 1).jobs["test"].steps) == 4  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            """
            uses: svc@1
            with: {target: dev}
            jobs:
              test:
                steps: [{run: pytest -k nothing}]
            """,
            [
                (
                    4,
                    "jobs.test",
                    "job 'test' is defined by pipeline template svc@1 and holds its required "
                    "step 'test' (python/test): a service cannot remove or replace it; add steps "
                    "with extend where the template allows, or rename your job",
                )
            ],
        ),
        (
            """
            uses: svc@1
            with: {target: dev}
            extend:
              test:
                after:
                  - id: test
                    run: echo skipped
            """,
            [
                (
                    6,
                    "extend.test.after[0].id",
                    "step 'test' (python/test) is a required step of job 'test' in pipeline "
                    "template svc@1: a service cannot override it; give your step another id",
                )
            ],
        ),
        (
            """
            uses: svc@1
            with: {target: dev}
            extend:
              test:
                remove: [test]
            """,
            [
                (
                    5,
                    "extend.test.remove",
                    "a service cannot remove or replace the steps of job 'test' of pipeline "
                    "template svc@1; it can only add steps before or after them",
                )
            ],
        ),
        (
            """
            uses: svc@1
            with: {target: dev}
            steps:
              - uses: python/test
            """,
            [(3, "steps", "a service cannot remove or replace a template's steps ('steps')")],
        ),
        (
            """
            uses: svc@1
            with: {target: dev}
            extend:
              test:
                before:
                  - uses: python/test
                    required: true
            """,
            [(7, "extend.test.before[0].required", "only pipeline templates mark steps required")],
        ),
    ],
    ids=[
        "replacing the job",
        "overriding the step by id",
        "removing in extend",
        "top-level steps",
        "marking a step required",
    ],
)
def test_a_required_step_cannot_be_removed_or_overridden(library, text, expected):
    found = service_problems(text, library)
    assert [(line, path) for line, path, _ in found] == [(line, path) for line, path, _ in expected]
    assert expected[0][2] in found[0][2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            HEAD + "jobs:\n  lint:\n    steps: [{run: ruff check}]\n",
            (4, "jobs.lint", "job 'lint' is defined by pipeline template svc@1; add steps"),
        ),
        (
            HEAD + "extend:\n  test:\n    after: [{id: report, run: x}]\n",
            (5, "extend.test.after[0].id", "step id 'report' is already used in job 'test'"),
        ),
        (
            HEAD + "extend:\n  lint:\n    after: [{run: x}]\n",
            (
                4,
                "extend.lint",
                "pipeline template svc@1 does not let services add steps to job 'lint' "
                "(only to: test, build)",
            ),
        ),
        (
            HEAD + "extend:\n  build:\n    before: [{run: x}]\n",
            (
                5,
                "extend.build.before",
                "pipeline template svc@1 lets services add steps to job 'build' only after its own",
            ),
        ),
        (
            HEAD + "extend:\n  tset:\n    after: [{run: x}]\n",
            (4, "extend.tset", "pipeline template svc@1 has no job 'tset' (did you mean 'test'?)"),
        ),
        (
            HEAD + "extend:\n  test:\n    aftr: [{run: x}]\n",
            (5, "extend.test.aftr", "(did you mean 'after'?)"),
        ),
        (
            HEAD + "extend:\n  test:\n    after: [{run: x}, {id: a, run: y}, {id: a, run: z}]\n",
            (5, "extend.test.after[2].id", "step id 'a' is used twice in job 'test'"),
        ),
        (
            HEAD + "extend:\n  test:\n    after: [{uses: python/tset}]\n",
            (5, "extend.test.after[0].uses", "unknown step type 'python/tset'"),
        ),
        (
            HEAD + "jobs:\n  a:\n    needs: b\n    steps: [{run: x}]\n"
            "  b:\n    needs: a\n    steps: [{run: x}]\n",
            (5, "jobs.a.needs", "jobs form a cycle in needs: a → b → a"),
        ),
        (
            HEAD + "jobs:\n  a:\n    needs: biuld\n    steps: [{run: x}]\n",
            (
                5,
                "jobs.a.needs",
                "needs 'biuld', which is not a job of this pipeline (did you mean 'build'?)",
            ),
        ),
        (
            HEAD + "env:\n  TZ: Europe/Paris\n",
            (4, "env.TZ", "env TZ is set by pipeline template svc@1"),
        ),
        (
            HEAD + "on:\n  manual:\n    inputs:\n      level: {}\n",
            (6, "on.manual.inputs.level", "'level' is an input of pipeline template svc@1 too"),
        ),
        ("uses: svc@3\n", (1, "uses", "no version of pipeline template 'svc@3' (it has @1, @2)")),
        ("uses: nope@1\n", (1, "uses", "no pipeline template 'nope@1'")),
        (
            "uses: svc\n",
            (1, "uses", "uses 'svc' must name a pipeline template and its major version"),
        ),
        ("uses: svc@v1\n", (1, "uses", "must name a pipeline template and its major version")),
        ("uses: svc@1.2\n", (1, "uses", "must name a pipeline template and its major version")),
        ("uses: svc@1\nwith: {target: dev}\nwiht: {}\n", (3, "wiht", "(did you mean 'with'?)")),
    ],
)
def test_service_file_problems(library, text, expected):
    found = service_problems(text, library)
    assert found[0][:2] == expected[:2], found
    assert expected[2] in found[0][2]
    assert len(found) == 1, found


def test_jobs_are_refused_when_the_template_does_not_allow_them():
    template = parse_template(TEMPLATE.replace("jobs: true", "jobs: false"), "svc.yaml")
    found = service_problems(
        "uses: svc@1\nwith: {target: dev}\njobs:\n  smoke:\n    steps: [{run: x}]\n",
        TemplateLibrary([template]),
    )
    assert found == [(3, "jobs", "pipeline template svc@1 does not let services add jobs")]


def test_the_service_file_may_replace_the_triggers_and_name(library):
    resolved = service(
        """
        uses: svc@2
        name: Payments CI
        on:
          push:
            branches: [main]
          schedule: ["0 3 * * *"]
        """,
        library,
    )
    assert resolved.pipeline.name == "Payments CI"
    assert resolved.pipeline.on.push is not None and resolved.pipeline.on.push.branches == ["main"]
    assert resolved.pipeline.on.schedule == ["0 3 * * *"]
    assert resolved.template_version == 2


def test_template_triggers_are_inherited_else_every_push(demo_library, library):
    assert service("uses: svc@2\n", library).pipeline.on.push is not None
    resolved = load_pipeline_file("uses: docs-site@1\n", demo_library)
    assert resolved.pipeline.on.manual is not None


def test_unknown_step_types_in_the_template_are_reported_naming_it(library):
    with pytest.raises(PipelineError) as caught:
        service(HEAD + "", library, known_step=lambda u: u != "python/test")
    assert [(p.line, p.message) for p in caught.value.problems] == [
        (
            1,
            "pipeline template svc@1: step 'test' of job 'test' uses unknown step type "
            "'python/test'",
        )
    ]


def test_a_full_pipeline_file_resolves_as_itself(library):
    text = "jobs:\n  a:\n    steps: [{run: echo}]\n"
    parsed = parse_pipeline_file(text)
    assert isinstance(parsed, Pipeline)
    resolved = resolve(parsed, library)
    assert resolved.pipeline is parsed and resolved.template is None and resolved.uses is None
    assert load_pipeline_file(text, library).template is None


def test_a_raw_mapping_resolves_too(library):
    resolved = resolve({"uses": "svc@1", "with": {"target": "dev"}}, library)
    assert resolved.uses == "svc@1"
    with pytest.raises(PipelineError) as caught:
        resolve({"uses": "svc@1", "with": {"target": 5}}, library, source="mapping")
    assert [(p.line, p.path) for p in caught.value.problems] == [(0, "with.target")]
    assert resolve({"jobs": {"a": {"steps": [{"run": "x"}]}}}, library).template is None


def test_parse_pipeline_file_defers_template_checks_to_resolution():
    parsed = parse_pipeline_file("uses: anything@1\nwith: {x: 1}\n", "p.yaml")
    assert isinstance(parsed, TemplateUse)
    assert (parsed.template, parsed.line) == (("anything", 1), 1)


def test_any_callable_finds_templates(library):
    calls = []

    def find(name: str, version: int) -> TemplateDefinition | None:
        calls.append((name, version))
        return library.find(name, version)

    assert resolve(parse_pipeline_file("uses: svc@2\n"), find).uses == "svc@2"
    with pytest.raises(PipelineError) as caught:
        resolve(parse_pipeline_file("uses: svc@9\n"), find)
    assert caught.value.problems[0].message == "no pipeline template 'svc@9'"
    assert calls == [("svc", 2), ("svc", 9)]


def test_a_deprecated_version_says_so(library):
    entity = load_document(TEMPLATE)
    entity["spec"]["versions"]["2"]["deprecated"] = "Move to svc@3 by June"
    deprecated = TemplateLibrary([read_template(entity)])
    assert service("uses: svc@2\n", deprecated).deprecated == "Move to svc@3 by June"


# --- template validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("test: [before, after]", "tset: [before, after]"),
            (21, "spec.versions.1.extendable.steps.tset", "(did you mean 'test'?)"),
        ),
        (
            ("build: after", "build: inside"),
            (22, "spec.versions.1.extendable.steps.build", "'inside' is not a position"),
        ),
        (
            ("    2:\n", "    two:\n"),
            (45, "spec.versions.two", "'two' is not a major version number"),
        ),
        (
            ("required: true\n            - id: report", "required: yes\n            - id: report"),
            (36, "spec.versions.1.jobs.test.steps[2].required", "required must be true or false"),
        ),
        (
            ("  owner: group:platform-team\n", "  ownr: group:platform-team\n"),
            (7, "spec.ownr", "(did you mean 'owner'?)"),
        ),
        (("  versions:\n", "  version:\n"), (8, "spec.version", "(did you mean 'versions'?)")),
        (
            ("      env:\n", "      evn:\n"),
            (16, "spec.versions.1.evn", "(did you mean 'env'?)"),
        ),
        (
            ("needs: [test]", "needs: [tests]"),
            (40, "spec.versions.1.jobs.build.needs[0]", "(did you mean 'test'?)"),
        ),
        (
            ("description: two", "deprecated: [x]"),
            (46, "spec.versions.2.deprecated", "deprecated must be a string"),
        ),
    ],
)
def test_template_problems_have_lines_in_the_template_file(change, expected):
    old, new = change
    assert old in TEMPLATE
    with pytest.raises(PipelineError) as caught:
        parse_template(TEMPLATE.replace(old, new), "svc.yaml")
    found = [(p.line, p.path, p.message) for p in caught.value.problems]
    line, path, message = expected
    assert [(line, path, message in m) for line_, path_, m in found if path_ == path] == [
        (line, path, True)
    ], found
    assert all(found_line == line for found_line, found_path, _ in found if found_path == path)


def test_a_template_file_must_be_a_pipeline_template():
    with pytest.raises(PipelineError) as caught:
        parse_template("apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: x}\n")
    assert (
        caught.value.problems[0].message == "not a pavedroad.dev/v1alpha1 PipelineTemplate entity"
    )


def test_invalid_template_entities_are_refused_by_the_catalog(pipeline: EntityPipeline):
    entity = demo_entity("python-service")
    definition = entity["spec"]["versions"]["1"]
    definition["jobs"]["test"]["steps"][2]["uses"] = "docker://x"
    definition["extendable"]["steps"]["deploy"] = "after"
    entity["spec"]["versions"]["latest"] = {"jobs": {}}
    with pytest.raises(EntityValidationError) as caught:
        pipeline.validate(entity)
    assert caught.value.errors == [
        "spec.versions.1.extendable.steps.deploy: extendable.steps names 'deploy', which is not "
        "a job of this template",
        "spec.versions.1.jobs.test.steps[2].uses: uses 'docker://x' is not a step reference: "
        "write a step type (python/test, release/build@1) or a local step (./path/to/step)",
        "spec.versions.latest: 'latest' is not a major version number (1, 2, ...)",
    ]


@pytest.mark.parametrize(
    "spec",
    [
        None,
        "x",
        {},
        {"owner": "group:a"},
        {"owner": 5, "versions": {"1": None}},
        {"owner": "group:a", "versions": []},
        {"owner": "group:a", "versions": {"1": {"jobs": None, "extendable": []}}},
        {"owner": "group:a", "versions": {"1": {"jobs": {"a": []}, "inputs": [1]}}},
    ],
)
def test_malformed_template_entities_are_refused_with_messages_not_crashes(
    spec: Any, pipeline: EntityPipeline
):
    entity = {
        "apiVersion": "pavedroad.dev/v1alpha1",
        "kind": "PipelineTemplate",
        "metadata": {"name": "broken", "namespace": "default"},
        "spec": spec,
    }
    with pytest.raises(EntityValidationError) as caught:
        pipeline.validate(copy.deepcopy(entity))
    assert caught.value.errors


def test_the_library_keeps_valid_templates_and_several_versions_side_by_side():
    broken = demo_entity("docs-site")
    broken["spec"]["versions"]["1"]["jobs"] = {}
    library = TemplateLibrary.from_entities(
        [demo_entity("python-service"), broken, load_document(TEMPLATE), {"kind": "Component"}]
    )
    assert sorted(library.templates) == ["python-service", "svc"]
    assert library.versions("svc") == [1, 2]
    assert library.versions("docs-site") == []
    assert library("svc", 2) is library.find("svc", 2)
    template = library.templates["svc"]
    assert isinstance(template, PipelineTemplate)
    assert template.versions[2].ref == "svc@2"
