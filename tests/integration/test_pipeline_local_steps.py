"""Local steps (``uses: ./path``): steps kept in the repository, run as GitHub runs a
local composite action. Each test pushes the step files to a real hosted repository,
and the job checks it out with the ``checkout`` step and runs real subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_pipeline_executor import log_text, run_job, statuses, step_rows

from pavedroad.core.db import Database, database_for
from pavedroad.pipelines.local_steps import MAX_DEPTH

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
OWNER = "checkout-team"
CHECKOUT = {"uses": "checkout"}

Repository = Callable[..., tuple[str, str]]


@pytest.fixture
def database_seed() -> str:
    return "demo"  # hosted repositories belong to a group of the catalog


@pytest.fixture
def db(settings: Any) -> Database:
    return database_for(settings)


def git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Alice",
        "GIT_AUTHOR_EMAIL": "alice@example.com",
        "GIT_COMMITTER_NAME": "Alice",
        "GIT_COMMITTER_EMAIL": "alice@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repository(settings: Any, db: Database, tmp_path: Path) -> Repository:
    """Push files (path → text; ``{"symlink": target}`` for a symbolic link) to a new
    hosted repository: (``owner/name``, commit)."""
    from pavedroad.git.service import GitService

    service = GitService(db, settings)
    made = iter(range(1, 1000))

    def create(files: dict[str, Any]) -> tuple[str, str]:
        name = f"steps-{next(made)}"
        service.create(OWNER, name, "user:default/alice")
        clone = tmp_path / name
        clone.mkdir()
        git("init", "--quiet", "--initial-branch=main", cwd=clone)
        for path, content in {"README.md": "# steps\n", **files}.items():
            target = clone / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, dict):
                os.symlink(content["symlink"], target)
            else:
                target.write_text(textwrap.dedent(content).lstrip("\n"))
        git("add", ".", cwd=clone)
        git("commit", "--quiet", "-m", "steps", cwd=clone)
        git("push", "--quiet", str(service.path(service.repo(OWNER, name))), "main", cwd=clone)
        return f"{OWNER}/{name}", git("rev-parse", "HEAD", cwd=clone)

    return create


def run_steps(
    settings: Any, db: Database, repo: tuple[str, str], steps: list[dict[str, Any]], **options: Any
) -> tuple[str, Any]:
    repository, commit = repo
    return run_job(
        settings, db, [CHECKOUT, *steps], repository=repository, commit=commit, **options
    )


GREET = """
name: Greet
description: Say hello, and say it loud
inputs:
  who:
    description: Whom to greet
    required: true
  greeting:
    default: Hello
  sha-prefix:
    default: ${{ github.sha }}
  unused: {}
outputs:
  message:
    description: What was said
    value: ${{ steps.say.outputs.message }}
  shout:
    value: ${{ steps.upper.outputs.text }}!
runs:
  using: composite
  steps:
    - id: say
      run: |
        echo "$INPUT_GREETING, ${{ inputs.who }}!"
        echo "message=$INPUT_GREETING, $INPUT_WHO" >> "$PAVEDROAD_OUTPUT"
    - id: upper
      name: Shout ${{ inputs.who }}
      shell: python
      run: |
        import os
        text = os.environ["INPUT_WHO"].upper()
        print("upper:", text)
        with open(os.environ["PAVEDROAD_OUTPUT"], "a") as out:
            out.write(f"text={text}\\n")
    - working-directory: ci
      env:
        INNER: inner-${{ steps.say.outcome }}
      run: |
        test -f "$PAVEDROAD_ACTION_PATH/step.yaml" && echo "action path ok"
        test "${{ github.action_path }}" = "$PAVEDROAD_ACTION_PATH" && echo "in the context too"
        echo "in $(basename "$PWD"), sha ${INPUT_SHA_PREFIX:0:7}, unused [$INPUT_UNUSED]"
        echo "env: $OUTER $INNER"
    - if: inputs.who == 'nobody'
      run: echo never
    - run: echo "ADDED=by the local step" >> "$PAVEDROAD_ENV"
"""


@sqlite_only
def test_a_local_step_runs_its_steps_with_inputs_and_outputs(
    settings: Any, db: Database, repository: Repository
) -> None:
    repo = repository({"ci/steps/greet/step.yaml": GREET})
    job_id, result = run_steps(
        settings,
        db,
        repo,
        [
            {
                "id": "greet",
                "uses": "./ci/steps/greet",
                "with": {"who": "${{ github.ref_name }} team"},
                "env": {"OUTER": "outer"},
            },
            {"run": "echo '${{ steps.greet.outputs.message }} / ${{ steps.greet.outputs.shout }}'"},
            {"run": 'echo "$ADDED"; echo "[${INPUT_WHO-unset}]"'},
        ],
    )
    assert result.status == "succeeded", log_text(db, job_id)
    assert statuses(db, job_id) == ["succeeded"] * 4
    greet = step_rows(db, job_id)[1]
    assert greet.name == "./ci/steps/greet"
    assert greet.outputs == {"message": "Hello, main team", "shout": "MAIN TEAM!"}
    commit = repo[1]
    third = 'Run test -f "$PAVEDROAD_ACTION_PATH/step.yaml" && echo "action path ok"'
    assert log_text(db, job_id, 1) == textwrap.dedent(
        f"""\
        ##[notice]./ci/steps/greet: Run echo "$INPUT_GREETING, main team!"
        Hello, main team!
        ##[notice]./ci/steps/greet: Shout main team
        upper: MAIN TEAM
        ##[notice]./ci/steps/greet: {third}
        action path ok
        in the context too
        in ci, sha {commit[:7]}, unused []
        env: outer inner-success
        ##[notice]./ci/steps/greet: Run echo never (skipped)
        ##[notice]./ci/steps/greet: Run echo "ADDED=by the local step" >> "$PAVEDROAD_ENV"
        """
    )
    assert log_text(db, job_id, 2) == "Hello, main team / MAIN TEAM!\n"
    # what a local step adds to the environment stays; its inputs do not
    assert log_text(db, job_id, 3) == "by the local step\n[unset]\n"


FAILING = """
outputs:
  first: {value: "${{ steps.first.outputs.value }}"}
runs:
  steps:
    - id: first
      run: echo "value=1" >> "$PAVEDROAD_OUTPUT"
    - id: flaky
      run: exit 2
      continue-on-error: true
    - run: echo "after flaky ${{ steps.flaky.outcome }}/${{ steps.flaky.conclusion }}"
    - id: boom
      run: echo failing; exit 3
    - run: echo never
    - if: failure() && steps.boom.outcome == 'failure'
      run: echo cleaning up
    - if: always()
      run: echo always
"""


@sqlite_only
def test_a_failing_step_inside_fails_the_local_step(
    settings: Any, db: Database, repository: Repository
) -> None:
    repo = repository({"ci/fails/step.yaml": FAILING})
    job_id, result = run_steps(
        settings,
        db,
        repo,
        [
            {"id": "lint", "uses": "./ci/fails"},
            {"run": "echo not after a failure"},
            {
                "if": "always()",
                "run": "echo '${{ steps.lint.outcome }} ${{ steps.lint.outputs.first }}'",
            },
        ],
    )
    assert result.status == "failed"
    assert result.error == (
        "step 'lint' failed: ./ci/fails: its step 'boom' failed: "
        "Process completed with exit code 3."
    )
    assert statuses(db, job_id) == ["succeeded", "failed", "skipped", "succeeded"]
    text = log_text(db, job_id, 1)
    assert "##[error]Process completed with exit code 2.\n" in text
    assert "continue-on-error is set: the local step goes on" in text
    assert "after flaky failure/success\n" in text
    assert "failing\n##[error]Process completed with exit code 3.\n" in text
    assert "./ci/fails: Run echo never (skipped)" in text
    assert "cleaning up\n" in text and "always\n" in text
    assert text.endswith(
        "##[error]./ci/fails: its step 'boom' failed: Process completed with exit code 3.\n"
    )
    # the outputs set before the failure are kept, as a step type's are
    assert step_rows(db, job_id)[1].outputs == {"first": "1"}
    assert log_text(db, job_id, 3) == "failure 1\n"


NESTED = {
    "ci/outer/step.yaml": """
        inputs:
          name: {default: outer}
        outputs:
          said: {value: "${{ steps.inner.outputs.said }}"}
        runs:
          steps:
            - run: echo "outer sees INPUT_NAME=$INPUT_NAME"
            - id: inner
              uses: ./ci/inner
              with: {word: "from ${{ inputs.name }}"}
        """,
    "ci/inner/action.yml": """
        name: Inner (a GitHub composite action)
        inputs:
          word: {required: true}
        outputs:
          said: {value: "${{ steps.say.outputs.said }}"}
        runs:
          using: composite
          steps:
            - id: say
              shell: bash
              run: |
                echo "inner says $INPUT_WORD, INPUT_NAME=${INPUT_NAME-unset}"
                echo "said=$INPUT_WORD" >> "$PAVEDROAD_OUTPUT"
        """,
    "ci/loop-a/step.yaml": "runs: {steps: [{uses: ./ci/loop-b}]}\n",
    "ci/loop-b/step.yaml": "runs: {steps: [{uses: ./ci/loop-a}]}\n",
    **{
        f"ci/deep-{n}/step.yaml": f"runs: {{steps: [{{uses: ./ci/deep-{n + 1}}}]}}\n"
        for n in range(1, MAX_DEPTH + 1)
    },
    f"ci/deep-{MAX_DEPTH + 1}/step.yaml": "runs: {steps: [{run: echo too deep}]}\n",
}


@sqlite_only
def test_local_steps_use_local_steps_but_not_in_a_cycle_or_too_deep(
    settings: Any, db: Database, repository: Repository
) -> None:
    repo = repository(NESTED)
    job_id, result = run_steps(
        settings,
        db,
        repo,
        [
            {"id": "nested", "uses": "./ci/outer", "with": {"name": "job"}},
            {"if": "always()", "uses": "./ci/loop-a"},
            {"if": "always()", "uses": "./ci/deep-1"},
            {"if": "always()", "uses": "./ci/deep-2"},
        ],
    )
    assert statuses(db, job_id) == ["succeeded", "succeeded", "failed", "failed", "succeeded"]
    assert step_rows(db, job_id)[1].outputs == {"said": "from job"}
    text = log_text(db, job_id, 1)
    assert "outer sees INPUT_NAME=job\n" in text
    assert "##[notice]./ci/inner: Run echo " in text
    assert "inner says from job, INPUT_NAME=unset\n" in text  # each one's own inputs
    assert (
        "local steps use each other in a cycle: ./ci/loop-a → ./ci/loop-b → ./ci/loop-a"
        in log_text(db, job_id, 2)
    )
    chain = " → ".join(f"./ci/deep-{n}" for n in range(1, MAX_DEPTH + 2))
    assert f"local steps are nested more than {MAX_DEPTH} deep: {chain}" in log_text(db, job_id, 3)
    assert "too deep" in log_text(db, job_id, 4)  # five deep is fine
    assert result.status == "failed"


BROKEN = {
    "ci/empty-folder/README.md": "no step here\n",
    "ci/bad-yaml/step.yaml": """
        runs:
          steps:
            - run: [not closed
        """,
    "ci/unknown-keys/step.yaml": """
        name: Typos
        outputz: {}
        runs:
          steps:
            - rn: echo hi
            - uses: docker/build
        """,
    "ci/javascript/action.yml": """
        name: A JavaScript action
        runs:
          using: node20
          main: index.js
        """,
    "ci/unsaid/action.yaml": "runs: {steps: [{run: echo hi, shell: bash}]}\n",
    "ci/two/step.yaml": "runs: {steps: [{run: echo one}]}\n",
    "ci/two/action.yml": "runs: {using: composite, steps: [{run: echo two, shell: bash}]}\n",
    "ci/greet/step.yaml": GREET,
    "ci/bad-output/step.yaml": """
        outputs:
          broken: {value: "${{ fromJSON('not json') }}"}
        runs: {steps: [{run: echo ran}]}
        """,
    "ci/outside/step.yaml": {"symlink": "/etc/hostname"},
    "ci/elsewhere": {"symlink": "/tmp"},
    "ci/a-file": "not a folder\n",
}


@sqlite_only
@pytest.mark.parametrize(
    ("uses", "given", "expected"),
    [
        (
            "./ci/nothing",
            None,
            "uses: ./ci/nothing: there is no folder ci/nothing in the workspace "
            "(check the repository out first: uses: checkout)",
        ),
        ("./ci/empty-folder", None, "the folder has no step.yaml (nor action.yml)"),
        ("./ci/a-file", None, "uses: ./ci/a-file is a file: name the folder that holds step.yaml"),
        ("./ci/bad-yaml/step.yaml", None, "is a file"),
        ("./ci/bad-yaml", None, "ci/bad-yaml/step.yaml:4:"),
        ("./ci/javascript", None, "only composite steps run here"),
        ("./ci/unsaid", None, "an action.yml runs here when it says runs.using: composite"),
        ("./ci/two", None, "the folder has both step.yaml and action.yml; keep one"),
        ("./ci/greet", {}, "./ci/greet needs the input 'who' (with: {who: ...})"),
        ("./ci/greet", {"whom": "x"}, "./ci/greet has no input 'whom' (did you mean 'who'?)"),
        ("./ci/bad-output", None, "ci/bad-output/step.yaml: outputs.broken: "),
        ("./ci/outside", None, "uses: ./ci/outside: step.yaml leads outside the workspace"),
        ("./ci/elsewhere", None, "uses: ./ci/elsewhere leads outside the workspace"),
        ("./ci/../..", None, "is not a local step: write ./path/to/folder"),
    ],
)
def test_a_local_step_that_cannot_run_fails_with_a_clear_message(
    settings: Any,
    db: Database,
    repository: Repository,
    uses: str,
    given: dict[str, Any] | None,
    expected: str,
) -> None:
    repo = repository(BROKEN)
    step: dict[str, Any] = {"uses": uses} if given is None else {"uses": uses, "with": given}
    job_id, result = run_steps(settings, db, repo, [step])
    assert result.status == "failed"
    assert statuses(db, job_id) == ["succeeded", "failed"]
    assert expected in log_text(db, job_id, 1)


@sqlite_only
def test_every_problem_of_a_step_file_is_listed_with_its_line(
    settings: Any, db: Database, repository: Repository
) -> None:
    repo = repository(BROKEN)
    job_id, result = run_steps(settings, db, repo, [{"id": "typos", "uses": "./ci/unknown-keys"}])
    assert result.error == (
        "step 'typos' failed: ci/unknown-keys/step.yaml has 4 problems (listed above)"
    )
    assert log_text(db, job_id, 1) == (
        "##[error]ci/unknown-keys/step.yaml:2:1: outputz: unknown key 'outputz' in a local step "
        "(did you mean 'outputs'?)\n"
        "##[error]ci/unknown-keys/step.yaml:5:7: runs.steps[0]: a step needs 'run' (a script) "
        "or 'uses' (a step type)\n"
        "##[error]ci/unknown-keys/step.yaml:5:7: runs.steps[0].rn: unknown key 'rn' in a step "
        "(did you mean 'run'?)\n"
        "##[error]ci/unknown-keys/step.yaml:6:13: runs.steps[1].uses: unknown step type "
        "'docker/build'\n"
        "##[error]ci/unknown-keys/step.yaml has 4 problems (listed above)\n"
    )


SLOW = """
runs:
  steps:
    - id: slow
      run: echo started; sleep 30
    - if: always()
      run: echo "cleaning up after ${{ steps.slow.outcome }}"
"""

SLOW_INSIDE = SLOW.replace("sleep 30", "sleep 30\n      timeout-minutes: 0.02")

SLEEPER = """
runs:
  steps:
    - run: echo started > "$PAVEDROAD_TEMP/started"; sleep 60
    - run: echo not after a cancel
    - if: always()
      run: sleep 0.5; echo cleaning up after the cancel
"""


@sqlite_only
def test_timeouts_stop_a_local_step(settings: Any, db: Database, repository: Repository) -> None:
    repo = repository({"ci/slow/step.yaml": SLOW, "ci/slow-inside/step.yaml": SLOW_INSIDE})
    started = time.monotonic()
    job_id, result = run_steps(
        settings,
        db,
        repo,
        [
            {"uses": "./ci/slow", "timeout-minutes": 0.02},  # the using step's timeout
            {"if": "always()", "uses": "./ci/slow-inside"},  # the timeout of a step inside
        ],
    )
    assert time.monotonic() - started < 20
    assert result.status == "failed"
    assert statuses(db, job_id) == ["succeeded", "failed", "failed"]
    assert log_text(db, job_id, 1) == (
        "##[notice]./ci/slow: Run echo started; sleep 30\n"
        "started\n"
        "##[error]The step ran past its timeout of 0.02 minutes.\n"
    )  # the step is over: nothing more of it runs
    assert log_text(db, job_id, 2) == (
        "##[notice]./ci/slow-inside: Run echo started; sleep 30\n"
        "started\n"
        "##[error]The step ran past its timeout of 0.02 minutes.\n"
        '##[notice]./ci/slow-inside: Run echo "cleaning up after failure"\n'
        "cleaning up after failure\n"
        "##[error]./ci/slow-inside: its step 'slow' failed: "
        "The step ran past its timeout of 0.02 minutes.\n"
    )


@sqlite_only
def test_the_job_timeout_stops_a_local_step(
    settings: Any, db: Database, repository: Repository
) -> None:
    repo = repository({"ci/slow/step.yaml": SLOW})
    started = time.monotonic()
    job_id, result = run_steps(settings, db, repo, [{"uses": "./ci/slow"}], timeout_minutes=0.1)
    assert time.monotonic() - started < 20
    assert result.status == "failed"
    assert result.error == "the job ran past its timeout of 0.1 minutes"
    assert statuses(db, job_id) == ["succeeded", "failed"]
    assert log_text(db, job_id, 1) == (
        "##[notice]./ci/slow: Run echo started; sleep 30\n"
        "started\n"
        "##[error]The job ran past its timeout: the step was stopped.\n"
    )


@sqlite_only
def test_cancelling_inside_a_local_step(
    settings: Any, db: Database, repository: Repository
) -> None:
    repo = repository({"ci/sleeper/step.yaml": SLEEPER})
    flag = threading.Event()
    temp = settings.home / "pipelines" / "workspaces"

    def cancel_once_started() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not list(temp.glob("*/temp/started")):
            time.sleep(0.05)
        flag.set()

    threading.Thread(target=cancel_once_started, daemon=True).start()
    started = time.monotonic()
    job_id, result = run_steps(
        settings,
        db,
        repo,
        [{"uses": "./ci/sleeper"}, {"run": "echo not after"}],
        cancelled=flag.is_set,
    )
    assert result.status == "cancelled"
    assert time.monotonic() - started < 15
    assert statuses(db, job_id) == ["succeeded", "cancelled", "skipped"]
    text = log_text(db, job_id, 1)
    assert "./ci/sleeper: Run echo not after a cancel (skipped)\n" in text
    assert "\nnot after a cancel\n" not in text
    assert "cleaning up after the cancel\n" in text  # not interrupted by the cancel
    assert text.endswith("##[error]The step was cancelled.\n")


@sqlite_only
def test_secrets_reach_a_local_step_only_as_inputs_and_stay_masked(
    settings: Any, db: Database, repository: Repository
) -> None:
    repo = repository(
        {
            "ci/secretive/step.yaml": """
                inputs:
                  token: {required: true}
                runs:
                  steps:
                    - run: |
                        echo "input: $INPUT_TOKEN / ${{ inputs.token }}"
                        echo "context: [${{ secrets.TOKEN }}]"
                """
        }
    )
    job_id, result = run_steps(
        settings,
        db,
        repo,
        [{"uses": "./ci/secretive", "with": {"token": "${{ secrets.TOKEN }}"}}],
        secrets={"TOKEN": "very-secret-value"},
    )
    assert result.status == "succeeded"
    text = log_text(db, job_id, 1)
    assert "very-secret-value" not in text
    assert "input: *** / ***\ncontext: []\n" in text
