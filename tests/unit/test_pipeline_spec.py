"""The pipeline file model: a GitHub-Actions-like file parsed whole, and every validation
rule reported at its exact line, all problems at once, sorted by line."""

from __future__ import annotations

import textwrap
import time
from datetime import UTC, datetime

import pytest

from pavedroad.pipelines.spec import (
    DEFAULT_TIMEOUT_MINUTES,
    CronError,
    Job,
    Matrix,
    Pipeline,
    PipelineError,
    Problem,
    find_cycles,
    parse_cron,
    parse_pipeline,
    read_matrix,
)

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


def parse(text: str) -> Pipeline:
    return parse_pipeline(
        textwrap.dedent(text).lstrip("\n"), "pipeline.yaml", known_step=known_step
    )


def problems(text: str) -> list[Problem]:
    with pytest.raises(PipelineError) as caught:
        parse(text)
    return caught.value.problems


FULL = """
name: CI
on:
  push:
    branches: [main, "release/**"]
    paths-ignore: ["docs/**"]
  workflow_dispatch:
    inputs:
      level:
        type: choice
        options: [info, debug]
        default: info
        description: How much to log
      dry-run:
        type: boolean
        default: false
      target:
        type: environment
        required: true
      count:
        type: number
        default: 3
  schedule:
    - cron: "*/15 9-17 * * MON-FRI"
    - "0 3 1 JAN,JUL *"
env:
  PYTHON: 3.10
  DEBUG: true
  WORKERS: 4
concurrency:
  group: ci-${{ github.ref }}
  cancel-in-progress: true
jobs:
  lint:
    runs-on: linux
    steps:
      - uses: checkout
      - run: python -m compileall -q src
  test:
    name: Test on ${{ matrix.python }}
    needs: lint
    runs-on: [linux, x64]
    timeout-minutes: 30
    strategy:
      fail-fast: false
      max-parallel: 2
      matrix:
        python: ["3.11", "3.12"]
        os: [linux]
        include:
          - python: "3.13"
            experimental: true
        exclude:
          - python: "3.11"
    continue-on-error: ${{ matrix.experimental == true }}
    concurrency: test-${{ github.ref }}
    env:
      PYTHONDONTWRITEBYTECODE: "1"
    outputs:
      report: ${{ steps.test.outputs.report }}
    steps:
      - uses: python/setup
        with:
          python-version: ${{ matrix.python }}
          cache: true
      - id: test
        name: Test
        uses: python/test
        timeout-minutes: 10
        env:
          PYTEST_ADDOPTS: -q
      - run: |
          echo hello
          echo "${{ steps.test.outputs.report }}"
        if: always()
        shell: bash
        working-directory: src
        continue-on-error: true
      - uses: ./ci/steps/report
  build:
    needs: [lint, test]
    if: github.ref == 'refs/heads/main'
    retries: 2
    steps:
      - uses: release/build@1
"""


def test_a_github_actions_like_pipeline_parses_whole():
    pipeline = parse(FULL)

    assert pipeline.name == "CI"
    assert pipeline.source == "pipeline.yaml"
    push = pipeline.on.push
    assert push is not None
    assert (push.branches, push.paths_ignore, push.line) == (["main", "release/**"], ["docs/**"], 3)
    manual = pipeline.on.manual
    assert manual is not None and list(manual.inputs) == ["level", "dry-run", "target", "count"]
    level = manual.inputs["level"]
    assert (level.type, level.options, level.default, level.description) == (
        "choice",
        ["info", "debug"],
        "info",
        "How much to log",
    )
    assert manual.inputs["dry-run"].default is False
    assert manual.inputs["target"].required is True
    assert manual.inputs["count"].default == 3
    assert pipeline.on.schedule == ["*/15 9-17 * * MON-FRI", "0 3 1 JAN,JUL *"]
    # Numbers keep the text they were written with: 3.10 is not 3.1.
    assert pipeline.env == {"PYTHON": "3.10", "DEBUG": "true", "WORKERS": "4"}
    assert pipeline.concurrency is not None
    assert (pipeline.concurrency.group, pipeline.concurrency.cancel_in_progress) == (
        "ci-${{ github.ref }}",
        True,
    )
    assert list(pipeline.jobs) == ["lint", "test", "build"]

    lint, test, build = pipeline.jobs.values()
    assert (lint.runs_on, lint.needs, lint.timeout_minutes) == (
        ["linux"],
        [],
        DEFAULT_TIMEOUT_MINUTES,
    )
    assert [s.uses or s.run for s in lint.steps] == ["checkout", "python -m compileall -q src"]
    assert [(s.line, s.column) for s in lint.steps] == [(36, 9), (37, 9)]

    assert test.name == "Test on ${{ matrix.python }}"
    assert (test.needs, test.runs_on, test.timeout_minutes) == (["lint"], ["linux", "x64"], 30)
    assert test.continue_on_error == "${{ matrix.experimental == true }}"
    assert test.concurrency is not None and test.concurrency.group == "test-${{ github.ref }}"
    assert test.env == {"PYTHONDONTWRITEBYTECODE": "1"}
    assert test.outputs == {"report": "${{ steps.test.outputs.report }}"}
    assert test.line == 38
    strategy = test.strategy
    assert strategy is not None and strategy.matrix is not None
    assert (strategy.fail_fast, strategy.max_parallel) == (False, 2)
    assert strategy.matrix.combinations() == [
        {"python": "3.12", "os": "linux"},
        {"python": "3.13", "experimental": True},
    ]
    setup, run_test, script, local = test.steps
    assert setup.with_ == {"python-version": "${{ matrix.python }}", "cache": True}
    assert (run_test.id, run_test.name, run_test.timeout_minutes) == ("test", "Test", 10)
    assert run_test.env == {"PYTEST_ADDOPTS": "-q"}
    assert script.run == 'echo hello\necho "${{ steps.test.outputs.report }}"\n'
    assert (script.if_, script.shell, script.working_directory) == ("always()", "bash", "src")
    assert script.continue_on_error is True
    assert script.display_name == "Run echo hello"
    assert local.uses == "./ci/steps/report"

    assert (build.needs, build.if_, build.retries) == (
        ["lint", "test"],
        "github.ref == 'refs/heads/main'",
        2,
    )
    assert build.steps[0].uses == "release/build@1"
    assert not any(step.required for job in pipeline.jobs.values() for step in job.steps)


@pytest.mark.parametrize(
    ("on", "push", "manual", "schedule"),
    [
        ("", True, False, []),  # no on: every push
        ("on: push", True, False, []),
        ("on: [push, manual]", True, True, []),
        ("on: [workflow_dispatch]", False, True, []),
        ("on: {manual: }", False, True, []),
        ("on: {schedule: ['0 0 * * *']}", False, False, ["0 0 * * *"]),
    ],
)
def test_trigger_forms(on, push, manual, schedule):
    pipeline = parse(f"{on}\njobs:\n  a:\n    steps: [run: echo]\n")
    assert (pipeline.on.push is not None, pipeline.on.manual is not None) == (push, manual)
    assert pipeline.on.schedule == schedule


def test_an_if_may_be_written_with_or_without_braces_or_as_a_boolean():
    pipeline = parse(
        """
        jobs:
          a:
            if: ${{ github.ref == 'refs/heads/main' }}
            steps:
              - run: echo
                if: false
              - run: echo
                if: failure() || cancelled()
        """
    )
    job = pipeline.jobs["a"]
    assert job.if_ == "${{ github.ref == 'refs/heads/main' }}"
    assert [s.if_ for s in job.steps] == ["false", "failure() || cancelled()"]


# (pipeline file, [(line, path)], a piece of the first problem's message)
INVALID = {
    "unknown top-level key": (
        """
        nmae: CI
        jobs:
          a:
            steps: [run: echo]
        """,
        [(1, "nmae")],
        "unknown key 'nmae' in a pipeline (did you mean 'name'?)",
    ),
    "unknown job key": (
        """
        jobs:
          a:
            runs_on: linux
            steps: [run: echo]
        """,
        [(3, "jobs.a.runs_on")],
        "(did you mean 'runs-on'?)",
    ),
    "unknown step key": (
        """
        jobs:
          a:
            steps:
              - run: echo
                timeout: 5
        """,
        [(5, "jobs.a.steps[0].timeout")],
        "(did you mean 'timeout-minutes'?)",
    ),
    "unknown key without a close match lists the keys": (
        """
        jobs:
          a:
            steps: [run: echo]
            zzz: 1
        """,
        [(4, "jobs.a.zzz")],
        "expected one of: name, needs, if",
    ),
    "runs-on on a step": (
        """
        jobs:
          a:
            steps:
              - run: echo
                runs-on: linux
        """,
        [(5, "jobs.a.steps[0].runs-on")],
        "runs-on belongs to the job, not to a step",
    ),
    "uses on a job": (
        """
        jobs:
          a:
            uses: python-service@1
            steps: [run: echo]
        """,
        [(3, "jobs.a.uses")],
        "jobs cannot use a whole pipeline; give the job steps",
    ),
    "uses at the top of a full pipeline": (
        """
        uses: python-service@1
        jobs:
          a:
            steps: [run: echo]
        """,
        [(1, "uses")],
        "references a pipeline template and is read with it",
    ),
    "no jobs": ("name: CI\n", [(1, "")], "a pipeline needs 'jobs'"),
    "jobs not a mapping": ("jobs: [a, b]\n", [(1, "jobs")], "jobs must be a mapping"),
    "empty file": ("# nothing\n", [(0, "")], "the file is empty"),
    "not a mapping": ("- a\n- b\n", [(1, "")], "a pipeline must be a mapping, not a list"),
    "duplicate key": (
        """
        jobs:
          a:
            steps: [run: echo]
          a:
            steps: [run: echo]
        """,
        [(4, "")],
        "duplicate key 'a'",
    ),
    "broken YAML": ("jobs:\n  a: [\n", [(3, "")], ""),
    "name not a string": (
        """
        name: 5
        jobs:
          a:
            steps: [run: echo]
        """,
        [(1, "name")],
        "name must be a string, not the number 5",
    ),
    "invalid job id": (
        """
        jobs:
          1st:
            steps: [run: echo]
        """,
        [(2, "jobs.1st")],
        "job id '1st' is not valid",
    ),
    "job without steps": (
        """
        jobs:
          a:
            name: A
        """,
        [(2, "jobs.a")],
        "job 'a' has no steps",
    ),
    "empty steps": (
        """
        jobs:
          a:
            steps: []
        """,
        [(3, "jobs.a.steps")],
        "steps must be a non-empty list",
    ),
    "step with neither run nor uses": (
        """
        jobs:
          a:
            steps:
              - name: nothing
        """,
        [(4, "jobs.a.steps[0]")],
        "a step needs 'run' (a script) or 'uses' (a step type)",
    ),
    "step with run and uses": (
        """
        jobs:
          a:
            steps:
              - run: echo
                uses: checkout
        """,
        [(5, "jobs.a.steps[0].uses")],
        "a step has 'run' or 'uses', not both",
    ),
    "with on a run step": (
        """
        jobs:
          a:
            steps:
              - run: echo
                with: {a: 1}
        """,
        [(5, "jobs.a.steps[0].with")],
        "'with' gives inputs to a 'uses' step",
    ),
    "shell on a uses step": (
        """
        jobs:
          a:
            steps:
              - uses: checkout
                shell: bash
        """,
        [(5, "jobs.a.steps[0].shell")],
        "'shell' is for 'run' steps",
    ),
    "unknown shell": (
        """
        jobs:
          a:
            steps:
              - run: echo
                shell: bsh
        """,
        [(5, "jobs.a.steps[0].shell")],
        "unknown shell 'bsh' (did you mean 'bash'?)",
    ),
    "duplicate step id": (
        """
        jobs:
          a:
            steps:
              - id: x
                run: echo
              - id: x
                run: echo
        """,
        [(6, "jobs.a.steps[1].id")],
        "step id 'x' is used twice in job 'a'",
    ),
    "invalid step id": (
        """
        jobs:
          a:
            steps:
              - id: my step
                run: echo
        """,
        [(4, "jobs.a.steps[0].id")],
        "step id 'my step' is not valid",
    ),
    "step ids may repeat across jobs": None,
    "needs an unknown job": (
        """
        jobs:
          build:
            steps: [run: echo]
          test:
            needs: [biuld]
            steps: [run: echo]
        """,
        [(5, "jobs.test.needs[0]")],
        "needs 'biuld', which is not a job of this pipeline (did you mean 'build'?)",
    ),
    "needs itself": (
        """
        jobs:
          a:
            needs: a
            steps: [run: echo]
        """,
        [(3, "jobs.a.needs")],
        "job 'a' needs itself",
    ),
    "needs twice": (
        """
        jobs:
          a:
            steps: [run: echo]
          b:
            needs: [a, a]
            steps: [run: echo]
        """,
        [(5, "jobs.b.needs[1]")],
        "'a' is listed twice in needs",
    ),
    "needs not strings": (
        """
        jobs:
          a:
            needs: {b: 1}
            steps: [run: echo]
        """,
        [(3, "jobs.a.needs")],
        "needs must be a string or a list of strings",
    ),
    "a two-job cycle": (
        """
        jobs:
          a:
            needs: b
            steps: [run: echo]
          b:
            needs: a
            steps: [run: echo]
        """,
        [(3, "jobs.a.needs")],
        "jobs form a cycle in needs: a → b → a",
    ),
    "job timeout zero": (
        """
        jobs:
          a:
            timeout-minutes: 0
            steps: [run: echo]
        """,
        [(3, "jobs.a.timeout-minutes")],
        "timeout-minutes must be a number of minutes above 0 and at most 360, not the number 0",
    ),
    "job timeout over the cap": (
        """
        jobs:
          a:
            timeout-minutes: 361
            steps: [run: echo]
        """,
        [(3, "jobs.a.timeout-minutes")],
        "at most 360",
    ),
    "job timeout as text": (
        """
        jobs:
          a:
            timeout-minutes: ten
            steps: [run: echo]
        """,
        [(3, "jobs.a.timeout-minutes")],
        "not the string 'ten'",
    ),
    "job timeout as a boolean": (
        """
        jobs:
          a:
            timeout-minutes: true
            steps: [run: echo]
        """,
        [(3, "jobs.a.timeout-minutes")],
        "not the boolean true",
    ),
    "step timeout negative": (
        """
        jobs:
          a:
            steps:
              - run: echo
                timeout-minutes: -5
        """,
        [(5, "jobs.a.steps[0].timeout-minutes")],
        "above 0",
    ),
    "step timeout longer than its job's": (
        """
        jobs:
          a:
            timeout-minutes: 20
            steps:
              - run: echo
                timeout-minutes: 30
        """,
        [(6, "jobs.a.steps[0].timeout-minutes")],
        "the step's timeout-minutes (30) is longer than its job's (20)",
    ),
    "retries over the cap": (
        """
        jobs:
          a:
            retries: 11
            steps: [run: echo]
        """,
        [(3, "jobs.a.retries")],
        "retries must be a whole number from 0 to 10",
    ),
    "continue-on-error not a boolean": (
        """
        jobs:
          a:
            steps:
              - run: echo
                continue-on-error: sometimes
        """,
        [(5, "jobs.a.steps[0].continue-on-error")],
        "continue-on-error must be true or false",
    ),
    "invalid runs-on label": (
        """
        jobs:
          a:
            runs-on: [linux, "big machine"]
            steps: [run: echo]
        """,
        [(3, "jobs.a.runs-on[1]")],
        "runs-on label 'big machine' is not valid",
    ),
    "runs-on not a string": (
        """
        jobs:
          a:
            runs-on: 5
            steps: [run: echo]
        """,
        [(3, "jobs.a.runs-on")],
        "runs-on must be a string or a list of strings",
    ),
    "strategy without matrix": (
        """
        jobs:
          a:
            strategy:
              fail-fast: false
            steps: [run: echo]
        """,
        [(3, "jobs.a.strategy")],
        "strategy needs a matrix",
    ),
    "empty matrix": (
        """
        jobs:
          a:
            strategy:
              matrix: {}
            steps: [run: echo]
        """,
        [(4, "jobs.a.strategy.matrix")],
        "the matrix is empty",
    ),
    "matrix axis with no values": (
        """
        jobs:
          a:
            strategy:
              matrix:
                python: []
            steps: [run: echo]
        """,
        [(5, "jobs.a.strategy.matrix.python")],
        "matrix axis 'python' must be a non-empty list of values",
    ),
    "matrix axis not a list": (
        """
        jobs:
          a:
            strategy:
              matrix:
                python: "3.12"
            steps: [run: echo]
        """,
        [(5, "jobs.a.strategy.matrix.python")],
        "must be a non-empty list",
    ),
    "matrix with only exclude": (
        """
        jobs:
          a:
            strategy:
              matrix:
                exclude: [{python: "3.12"}]
            steps: [run: echo]
        """,
        [(5, "jobs.a.strategy.matrix"), (5, "jobs.a.strategy.matrix.exclude[0].python")],
        "a matrix needs an axis (a list of values) or include",
    ),
    "include entry not a mapping": (
        """
        jobs:
          a:
            strategy:
              matrix:
                python: ["3.12"]
                include: ["3.13"]
            steps: [run: echo]
        """,
        [(6, "jobs.a.strategy.matrix.include[0]")],
        "an include entry must be a non-empty mapping",
    ),
    "exclude key that is not an axis": (
        """
        jobs:
          a:
            strategy:
              matrix:
                python: ["3.11", "3.12"]
                exclude:
                  - pyhton: "3.11"
            steps: [run: echo]
        """,
        [(7, "jobs.a.strategy.matrix.exclude[0].pyhton")],
        "exclude key 'pyhton' is not a matrix axis (did you mean 'python'?)",
    ),
    "exclude removing everything": (
        """
        jobs:
          a:
            strategy:
              matrix:
                python: ["3.12"]
                exclude: [{python: "3.12"}]
            steps: [run: echo]
        """,
        [(5, "jobs.a.strategy.matrix")],
        "exclude removes every combination",
    ),
    "matrix too large": (
        """
        jobs:
          a:
            strategy:
              matrix:
                x: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]
                y: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]
            steps: [run: echo]
        """,
        [(5, "jobs.a.strategy.matrix")],
        "the matrix makes 289 jobs, more than the limit of 256",
    ),
    "max-parallel zero": (
        """
        jobs:
          a:
            strategy:
              matrix: {x: [1]}
              max-parallel: 0
            steps: [run: echo]
        """,
        [(5, "jobs.a.strategy.max-parallel")],
        "max-parallel must be a whole number from 1 to 256",
    ),
    "broken expression in run": (
        """
        jobs:
          a:
            steps:
              - run: echo ${{ github.ref
        """,
        [(4, "jobs.a.steps[0].run")],
        "The expression is not closed",
    ),
    "broken expression on the third line of a block": (
        """
        jobs:
          a:
            steps:
              - run: |
                  echo one
                  echo two
                  echo ${{ github.ref == }}
                  echo four
        """,
        [(7, "jobs.a.steps[0].run")],
        "",
    ),
    "unknown context": (
        """
        env:
          REF: ${{ gihub.ref }}
        jobs:
          a:
            steps: [run: echo]
        """,
        [(2, "env.REF")],
        "Unrecognized named-value: 'gihub'",
    ),
    "broken expression in with": (
        """
        jobs:
          a:
            steps:
              - uses: python/setup
                with:
                  versions: [3.11, "${{ matrix.python ) }}"]
        """,
        [(6, "jobs.a.steps[0].with.versions[1]")],
        "",
    ),
    "broken bare if": (
        """
        jobs:
          a:
            if: github.ref ==
            steps: [run: echo]
        """,
        [(3, "jobs.a.if")],
        "",
    ),
    "if with text around the expression": (
        """
        jobs:
          a:
            steps:
              - run: echo
                if: ref is ${{ github.ref }}
        """,
        [(5, "jobs.a.steps[0].if")],
        "always true",
    ),
    "if of the wrong type": (
        """
        jobs:
          a:
            if: [a]
            steps: [run: echo]
        """,
        [(3, "jobs.a.if")],
        "if must be an expression, not a list",
    ),
    "uses not a step reference": (
        """
        jobs:
          a:
            steps:
              - uses: docker://alpine:3
        """,
        [(4, "jobs.a.steps[0].uses")],
        "uses 'docker://alpine:3' is not a step reference",
    ),
    "uses an expression": (
        """
        jobs:
          a:
            steps:
              - uses: ${{ inputs.step }}
        """,
        [(4, "jobs.a.steps[0].uses")],
        "is not a step reference",
    ),
    "local step outside the repository": (
        """
        jobs:
          a:
            steps:
              - uses: ./../secrets
        """,
        [(4, "jobs.a.steps[0].uses")],
        "local step './../secrets' must be a path inside the repository",
    ),
    "unknown step type": (
        """
        jobs:
          a:
            steps:
              - uses: python/tset
        """,
        [(4, "jobs.a.steps[0].uses")],
        "unknown step type 'python/tset'",
    ),
    "absolute working-directory": (
        """
        jobs:
          a:
            steps:
              - run: ls
                working-directory: /etc
        """,
        [(5, "jobs.a.steps[0].working-directory")],
        "must be a relative path inside the workspace",
    ),
    "working-directory climbing out": (
        """
        jobs:
          a:
            steps:
              - run: ls
                working-directory: src/../../..
        """,
        [(5, "jobs.a.steps[0].working-directory")],
        "must be a relative path inside the workspace",
    ),
    "required outside a template": (
        """
        jobs:
          a:
            steps:
              - uses: python/test
                required: true
        """,
        [(5, "jobs.a.steps[0].required")],
        "only pipeline templates mark steps required",
    ),
    "invalid env name": (
        """
        env:
          MY-VAR: x
        jobs:
          a:
            steps: [run: echo]
        """,
        [(2, "env.MY-VAR")],
        "'MY-VAR' is not a variable name",
    ),
    "reserved env name": (
        """
        jobs:
          a:
            env:
              PAVEDROAD_OUTPUT: /tmp/x
            steps: [run: echo]
        """,
        [(4, "jobs.a.env.PAVEDROAD_OUTPUT")],
        "variables starting with PAVEDROAD_ are the platform's",
    ),
    "env value not a scalar": (
        """
        env:
          PATHS: [a, b]
        jobs:
          a:
            steps: [run: echo]
        """,
        [(2, "env.PATHS")],
        "env PATHS must be a string, number or boolean, not a list",
    ),
    "env not a mapping": (
        """
        env: [A]
        jobs:
          a:
            steps: [run: echo]
        """,
        [(1, "env")],
        "env must be a mapping",
    ),
    "unknown event": (
        """
        on:
          pushh: {}
        jobs:
          a:
            steps: [run: echo]
        """,
        [(2, "on.pushh")],
        "unknown key 'pushh' in on (did you mean 'push'?)",
    ),
    "no events": (
        """
        on: {}
        jobs:
          a:
            steps: [run: echo]
        """,
        [(1, "on")],
        "on names no trigger",
    ),
    "manual twice": (
        """
        on:
          manual:
          workflow_dispatch:
        jobs:
          a:
            steps: [run: echo]
        """,
        [(3, "on.workflow_dispatch")],
        "give the manual trigger once",
    ),
    "unknown push filter": (
        """
        on:
          push:
            branch: main
        jobs:
          a:
            steps: [run: echo]
        """,
        [(3, "on.push.branch")],
        "(did you mean 'branches'?)",
    ),
    "branches and branches-ignore": (
        """
        on:
          push:
            branches: [main]
            branches-ignore: [wip/**]
        jobs:
          a:
            steps: [run: echo]
        """,
        [(4, "on.push.branches-ignore")],
        "use branches or branches-ignore, not both",
    ),
    "paths with an empty pattern": (
        """
        on:
          push:
            paths: ["src/**", ""]
        jobs:
          a:
            steps: [run: echo]
        """,
        [(3, "on.push.paths[1]")],
        "paths must hold non-empty strings",
    ),
    "schedule not a list": (
        """
        on:
          schedule: "0 0 * * *"
        jobs:
          a:
            steps: [run: echo]
        """,
        [(2, "on.schedule")],
        "schedule must be a list of cron expressions",
    ),
    "invalid cron": (
        """
        on:
          schedule:
            - cron: "0 0 * * *"
            - cron: "60 0 * * *"
        jobs:
          a:
            steps: [run: echo]
        """,
        [(4, "on.schedule[1].cron")],
        "invalid cron expression '60 0 * * *': minute: 60 is out of range 0-59",
    ),
    "schedule entry without cron": (
        """
        on:
          schedule:
            - crn: "0 0 * * *"
        jobs:
          a:
            steps: [run: echo]
        """,
        [(3, "on.schedule[0].crn")],
        "(did you mean 'cron'?)",
    ),
    "unknown input type": (
        """
        on:
          manual:
            inputs:
              level:
                type: strng
        jobs:
          a:
            steps: [run: echo]
        """,
        [(5, "on.manual.inputs.level.type")],
        "unknown input type 'strng' (did you mean 'string'?)",
    ),
    "choice without options": (
        """
        on:
          manual:
            inputs:
              level:
                type: choice
        jobs:
          a:
            steps: [run: echo]
        """,
        [(4, "on.manual.inputs.level")],
        "input 'level' of type choice needs options",
    ),
    "options on a string input": (
        """
        on:
          manual:
            inputs:
              level:
                options: [a, b]
        jobs:
          a:
            steps: [run: echo]
        """,
        [(5, "on.manual.inputs.level.options")],
        "options are for inputs of type choice",
    ),
    "default of the wrong type": (
        """
        on:
          manual:
            inputs:
              dry-run:
                type: boolean
                default: "yes"
        jobs:
          a:
            steps: [run: echo]
        """,
        [(6, "on.manual.inputs.dry-run.default")],
        "default expects true or false, not the string 'yes'",
    ),
    "choice default not among the options": (
        """
        on:
          manual:
            inputs:
              level:
                type: choice
                options: [info, debug]
                default: trace
        jobs:
          a:
            steps: [run: echo]
        """,
        [(7, "on.manual.inputs.level.default")],
        "default must be one of 'info', 'debug', not 'trace'",
    ),
    "invalid input name": (
        """
        on:
          manual:
            inputs:
              "my input": {}
        jobs:
          a:
            steps: [run: echo]
        """,
        [(4, "on.manual.inputs.my input")],
        "input name 'my input' is not valid",
    ),
    "concurrency without group": (
        """
        concurrency:
          cancel-in-progress: true
        jobs:
          a:
            steps: [run: echo]
        """,
        [(2, "concurrency")],
        "concurrency needs a group",
    ),
    "cancel-in-progress not a boolean": (
        """
        concurrency:
          group: ci
          cancel-in-progress: "yes"
        jobs:
          a:
            steps: [run: echo]
        """,
        [(3, "concurrency.cancel-in-progress")],
        "cancel-in-progress must be true or false",
    ),
    "outputs with an invalid name": (
        """
        jobs:
          a:
            outputs:
              "my output": x
            steps: [run: echo]
        """,
        [(4, "jobs.a.outputs.my output")],
        "output name 'my output' is not valid",
    ),
}


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [case for case in INVALID.values() if case],
    ids=[name for name, case in INVALID.items() if case],
)
def test_each_rule_is_reported_at_its_line(text, where, message):
    found = problems(text)
    assert [(p.line, p.path) for p in found] == where, found
    assert message in found[0].message


def test_step_ids_may_repeat_across_jobs():
    pipeline = parse(
        """
        jobs:
          a:
            steps: [{id: x, run: echo}]
          b:
            steps: [{id: x, run: echo}]
        """
    )
    assert [job.steps[0].id for job in pipeline.jobs.values()] == ["x", "x"]


def test_every_problem_is_reported_sorted_by_line_with_the_source():
    with pytest.raises(PipelineError) as caught:
        parse(
            """
            on:
              pushh: {}
            jobs:
              a:
                needs: b
                steps: [run: echo]
              b:
                needs: a
                timeout-minutes: 0
                steps:
                  - name: nothing
                  - uses: nope
            """
        )
    error = caught.value
    assert [(p.line, p.path) for p in error.problems] == [
        (2, "on.pushh"),
        (5, "jobs.a.needs"),  # the cycle, found last, is sorted in at its line
        (9, "jobs.b.timeout-minutes"),
        (11, "jobs.b.steps[0]"),
        (12, "jobs.b.steps[1].uses"),
    ]
    assert error.detail.splitlines()[0].startswith("pipeline.yaml:2:3: on.pushh: unknown key")
    assert error.status == 400
    assert error.to_problem()["problems"][1] == {
        "line": 5,
        "column": 5,
        "path": "jobs.a.needs",
        "message": "jobs form a cycle in needs: a → b → a",
    }


def test_cycles_are_named_once_each_and_jobs_after_a_cycle_are_not_blamed():
    found = problems(
        """
        jobs:
          a:
            needs: c
            steps: [run: echo]
          b:
            needs: a
            steps: [run: echo]
          c:
            needs: b
            steps: [run: echo]
          d:
            needs: [a]
            steps: [run: echo]
          e:
            needs: f
            steps: [run: echo]
          f:
            needs: e
            steps: [run: echo]
        """
    )
    assert [(p.line, p.message) for p in found] == [
        (3, "jobs form a cycle in needs: a → c → b → a"),
        (15, "jobs form a cycle in needs: e → f → e"),
    ]


def test_find_cycles_on_a_long_chain_is_not_recursive():
    jobs = {f"j{i}": Job(f"j{i}", needs=[f"j{i + 1}"] if i < 4999 else ["j0"]) for i in range(5000)}
    started = time.perf_counter()
    (cycle,) = find_cycles(jobs)
    assert len(cycle) == 5001 and cycle[0] == cycle[-1] == "j0"
    jobs["j4999"].needs = []
    assert find_cycles(jobs) == []
    assert time.perf_counter() - started < 5


def test_a_file_of_thousands_of_jobs_parses_quickly():
    lines = ["jobs:"]
    for i in range(3000):
        lines += [f"  j{i}:", f"    needs: [j{i + 1}]" if i < 2999 else "    needs: [j0]"]
        lines += ["    steps: [run: echo]"]
    started = time.perf_counter()
    with pytest.raises(PipelineError) as caught:
        parse_pipeline("\n".join(lines), "big.yaml")
    assert [p.line for p in caught.value.problems] == [3]
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize(
    "text",
    [
        "jobs:\n  a: &a {steps: [run: echo], needs: *a}\n",  # recursive alias
        "a: &a [*a]\n",
        "jobs: !!python/object:os.system {}\n",
        "\xff\xfe",
    ],
)
def test_hostile_yaml_is_refused_as_a_problem(text):
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(text.encode("latin-1") if text.startswith("\xff") else text, "x.yaml")
    assert len(caught.value.problems) == 1


WRONG_VALUES = [None, 0, True, "x", [], {}, [{}], {"x": None}]
KEY_PATHS = [
    ("name",),
    ("on",),
    ("on", "push"),
    ("on", "push", "branches"),
    ("on", "manual"),
    ("on", "manual", "inputs"),
    ("on", "manual", "inputs", "level"),
    ("on", "manual", "inputs", "level", "type"),
    ("on", "manual", "inputs", "level", "options"),
    ("on", "schedule"),
    ("env",),
    ("concurrency",),
    ("jobs",),
    ("jobs", "a"),
    ("jobs", "a", "needs"),
    ("jobs", "a", "strategy"),
    ("jobs", "a", "strategy", "matrix"),
    ("jobs", "a", "strategy", "matrix", "include"),
    ("jobs", "a", "outputs"),
    ("jobs", "a", "steps"),
    ("jobs", "a", "steps", 0),
    ("jobs", "a", "steps", 0, "with"),
    ("jobs", "a", "steps", 0, "if"),
]


@pytest.mark.parametrize("path", KEY_PATHS, ids=lambda path: ".".join(map(str, path)))
def test_any_wrong_value_anywhere_is_a_problem_or_accepted_never_a_crash(path):
    import copy

    base = {
        "name": "n",
        "on": {
            "push": {"branches": ["main"]},
            "manual": {"inputs": {"level": {"type": "choice", "options": ["a"]}}},
            "schedule": ["0 0 * * *"],
        },
        "env": {"A": "1"},
        "concurrency": "g",
        "jobs": {
            "a": {
                "needs": [],
                "strategy": {"matrix": {"x": [1], "include": [{"x": 2}]}},
                "outputs": {"o": "v"},
                "steps": [{"uses": "python/setup", "with": {"v": 1}, "if": "true"}],
            },
            "b": {"steps": [{"run": "echo"}]},
        },
    }
    from pavedroad.core.safeyaml import dump

    for wrong in WRONG_VALUES:
        data = copy.deepcopy(base)
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = wrong
        try:
            parse_pipeline(dump(data), "fuzz.yaml")
        except PipelineError as error:
            assert all(isinstance(p.line, int) and p.message for p in error.problems)


def test_matrix_combinations_follow_github_rules():
    # The example of GitHub's "Expanding or adding matrix configurations".
    matrix = Matrix(
        axes={"fruit": ["apple", "pear"], "animal": ["cat", "dog"]},
        include=[
            {"color": "green"},
            {"color": "pink", "animal": "cat"},
            {"fruit": "apple", "shape": "circle"},
            {"fruit": "banana"},
            {"fruit": "banana", "animal": "cat"},
        ],
    )
    assert matrix.combinations() == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]
    assert Matrix(include=[{"os": "linux"}, {"os": "mac"}]).combinations() == [
        {"os": "linux"},
        {"os": "mac"},
    ]


def test_a_matrix_may_be_one_expression():
    pipeline = parse(
        """
        jobs:
          a:
            strategy:
              matrix: ${{ fromJSON(needs.setup.outputs.matrix) }}
            steps: [run: echo]
        """
    )
    matrix = pipeline.jobs["a"].strategy.matrix  # type: ignore[union-attr]
    assert matrix is not None and matrix.expression == "${{ fromJSON(needs.setup.outputs.matrix) }}"


def test_a_matrix_expression_must_be_the_whole_value():
    found = problems(
        """
        jobs:
          a:
            strategy:
              matrix: "os-${{ inputs.os }}"
            steps: [run: echo]
        """
    )
    assert [(p.line, p.path) for p in found] == [(4, "jobs.a.strategy.matrix")]
    assert "one ${{ }} and nothing else" in found[0].message


def test_a_matrix_given_at_run_time_follows_the_rules_of_a_written_one():
    matrix = read_matrix(
        {
            "os": ["linux", "mac"],
            "exclude": [{"os": "mac"}],
            "include": [{"os": "linux", "extra": "${{ not an expression }}"}],
        }
    )
    assert matrix.combinations() == [{"os": "linux", "extra": "${{ not an expression }}"}]
    assert read_matrix({"include": [{"a": 1}]}).combinations() == [{"a": 1}]


@pytest.mark.parametrize(
    ("value", "where", "message"),
    [
        ('{"os": ["a"]}', "strategy.matrix", 'gave the string \'{"os": ["a"]}\', not a'),
        ([1, 2], "strategy.matrix", "gave a list, not a mapping"),
        (None, "strategy.matrix", "gave nothing (null), not a mapping"),
        ({}, "strategy.matrix", "the matrix is empty"),
        ({"os": "linux"}, "strategy.matrix.os", "matrix axis 'os' must be a non-empty list"),
        ({"os": [None]}, "strategy.matrix.os[0]", "must be a scalar or a mapping"),
        (
            {"os": ["a"], "exclude": [{"oss": "a"}]},
            "strategy.matrix.exclude[0].oss",
            "not a matrix axis",
        ),
        ({"os": ["a"], "include": ["a"]}, "strategy.matrix.include[0]", "non-empty mapping"),
        ({"os": ["a"], "exclude": [{"os": "a"}]}, "strategy.matrix", "exclude removes every"),
        ({"a": list(range(20)), "b": list(range(20))}, "strategy.matrix", "more than the limit"),
        ({"bad name": [1]}, "strategy.matrix.bad name", "matrix axis 'bad name' is not valid"),
    ],
)
def test_a_matrix_given_at_run_time_that_breaks_a_rule_says_where(value, where, message):
    with pytest.raises(PipelineError) as caught:
        read_matrix(value)
    first = caught.value.problems[0]
    assert (first.line, first.path) == (0, where), caught.value.problems
    assert message in first.message


def test_local_steps_are_not_asked_of_the_step_registry():
    asked = []

    def registry(uses: str) -> bool:
        asked.append(uses)
        return True

    parse_pipeline(
        "jobs:\n  a:\n    steps:\n      - uses: ./ci/lint\n      - uses: deploy@2\n",
        known_step=registry,
    )
    assert asked == ["deploy@2"]


# --- cron -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "moment", "fires"),
    [
        ("* * * * *", datetime(2024, 5, 6, 12, 34, tzinfo=UTC), True),
        ("*/15 9-17 * * MON-FRI", datetime(2024, 5, 6, 9, 45, tzinfo=UTC), True),  # Monday
        ("*/15 9-17 * * MON-FRI", datetime(2024, 5, 6, 9, 50, tzinfo=UTC), False),
        ("*/15 9-17 * * MON-FRI", datetime(2024, 5, 5, 9, 45, tzinfo=UTC), False),  # Sunday
        ("0 3 1 JAN,jul *", datetime(2024, 7, 1, 3, 0, tzinfo=UTC), True),
        ("0 3 1 JAN,jul *", datetime(2024, 8, 1, 3, 0, tzinfo=UTC), False),
        ("0 0 * * 7", datetime(2024, 5, 5, 0, 0, tzinfo=UTC), True),  # 7 is Sunday too
        ("0 0 * * sun", datetime(2024, 5, 5, 0, 0, tzinfo=UTC), True),
        ("5-10/2 * * * *", datetime(2024, 5, 5, 0, 7, tzinfo=UTC), True),
        ("5-10/2 * * * *", datetime(2024, 5, 5, 0, 8, tzinfo=UTC), False),
        ("30/10 * * * *", datetime(2024, 5, 5, 0, 50, tzinfo=UTC), True),
        ("1,2,3 * * * *", datetime(2024, 5, 5, 0, 2, tzinfo=UTC), True),
        # Day of month and day of week both restricted: either matches (cron's rule).
        ("0 0 13 * FRI", datetime(2024, 5, 10, 0, 0, tzinfo=UTC), True),  # a Friday
        ("0 0 13 * FRI", datetime(2024, 5, 13, 0, 0, tzinfo=UTC), True),  # the 13th
        ("0 0 13 * FRI", datetime(2024, 5, 14, 0, 0, tzinfo=UTC), False),
        ("0 0 */2 * *", datetime(2024, 5, 14, 0, 0, tzinfo=UTC), False),
    ],
)
def test_cron_schedules_fire_when_cron_would(expression, moment, fires):
    assert parse_cron(expression).matches(moment) is fires


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "expected 5 fields"),
        ("* * * * * *", "expected 5 fields"),
        ("@daily", "expected 5 fields"),
        ("60 * * * *", "minute: 60 is out of range 0-59"),
        ("* 24 * * *", "hour: 24 is out of range 0-23"),
        ("* * 0 * *", "day of month: 0 is out of range 1-31"),
        ("* * * 13 *", "month: 13 is out of range 1-12"),
        ("* * * * 8", "day of week: 8 is out of range 0-7"),
        ("* * * FOO *", "month: 'FOO' is not a number from 1 to 12 or a name (JAN-DEC)"),
        ("* * * * MONDAY", "day of week: 'MONDAY' is not a number from 0 to 7 or a name"),
        ("MON * * * *", "minute: 'MON' is not a number from 0 to 59"),
        ("*/0 * * * *", "minute: step '0' must be a whole number above 0"),
        ("*/x * * * *", "minute: step 'x' must be"),
        ("10-5 * * * *", "minute: range '10-5' runs backwards"),
        ("1,,2 * * * *", "minute: empty item"),
        ("? * * * *", "minute: '?' is not a number"),
        ("-1 * * * *", "minute: '' is not a number"),
    ],
)
def test_invalid_cron_expressions_say_why(expression, message):
    with pytest.raises(CronError) as caught:
        parse_cron(expression)
    assert message in str(caught.value)
