"""Running one pipeline job on a worker: real database rows, real subprocesses, real git.

Each test creates a run and a job row directly (as the orchestrator would have planned
them) and runs the job with :class:`JobExecutor`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import resource
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import func, select, update

from pavedroad.core.db import Database, database_for
from pavedroad.core.ids import new_id
from pavedroad.core.timeutil import utcnow
from pavedroad.environments.models import ReleaseRow
from pavedroad.environments.releases import ReleaseStore
from pavedroad.pipelines import models
from pavedroad.pipelines.artifacts import ArtifactStore, run_artifacts
from pavedroad.pipelines.executor import JobContext, JobExecutor, JobResult
from pavedroad.pipelines.models import JobRow, LogChunkRow, RunRow, StepRow
from pavedroad.pipelines.steps import StepRegistry

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
OWNER = "checkout-team"
COMPONENT = "component:default/shop"


@pytest.fixture
def database_seed() -> str:
    return "demo"  # hosted repositories belong to a group of the catalog


@pytest.fixture
def db(settings: Any) -> Database:
    return database_for(settings)


def tune(settings: Any, **values: Any) -> Any:
    """Settings with ``pipelines.*`` values, including ones the model may not declare."""
    pipelines = settings.pipelines.model_copy()
    for name, value in values.items():
        object.__setattr__(pipelines, name, value)
    clone = settings.model_copy()
    object.__setattr__(clone, "pipelines", pipelines)
    return clone


_numbers = iter(range(1, 1_000_000))


def make_run(
    db: Database,
    *,
    repository: str = f"{OWNER}/shop",
    commit: str = "0" * 40,
    pipeline_env: dict[str, str] | None = None,
    entity_ref: str | None = COMPONENT,
) -> str:
    run_id = new_id()
    with db.session() as session:
        session.add(
            RunRow(
                id=run_id,
                repository=repository,
                number=next(_numbers),
                entity_ref=entity_ref,
                commit=commit,
                ref="refs/heads/main",
                branch="main",
                event="push",
                trigger_key=f"test:{run_id}",
                status="running",
                name="ci",
                pipeline={"pipeline": {"env": pipeline_env or {}}},  # as runs.py stores it
                inputs={"flavour": "vanilla"},
                problems=[],
                created_by="user:default/alice",
                created_at=utcnow(),
            )
        )
    return run_id


def make_job(
    db: Database,
    run_id: str,
    steps: list[dict[str, Any]],
    *,
    env: dict[str, str] | None = None,
    outputs: dict[str, str] | None = None,
    timeout_minutes: float = 5,
    matrix: dict[str, Any] | None = None,
    key: str = "build",
) -> str:
    job_id = new_id()
    planned = [{"index": index, **step} for index, step in enumerate(steps)]
    with db.session() as session:
        session.add(
            JobRow(
                id=job_id,
                run_id=run_id,
                key=key,
                job_id=key,
                name=key,
                needs=[],
                status="running",
                labels=[],
                matrix=matrix or {},
                spec={
                    "id": key,
                    "name": key,
                    "env": env or {},
                    "timeout-minutes": timeout_minutes,
                    "outputs": outputs or {},
                    "matrix": matrix or {},
                    "steps": planned,
                },
                outputs={},
                attempt=0,
                max_attempts=1,
            )
        )
    return job_id


def execute(settings: Any, db: Database, job_id: str, **given: Any) -> JobResult:
    context = JobContext.for_job(settings, db, job_id, **given)
    return JobExecutor(context).run()


def run_job(
    settings: Any, db: Database, steps: list[dict[str, Any]], **options: Any
) -> tuple[str, JobResult]:
    given = {
        name: options.pop(name) for name in ("secrets", "needs", "cancelled") if name in options
    }
    run_options = {
        name: options.pop(name)
        for name in ("repository", "commit", "pipeline_env", "entity_ref")
        if name in options
    }
    run_id = make_run(db, **run_options)
    job_id = make_job(db, run_id, steps, **options)
    return job_id, execute(settings, db, job_id, **given)


def step_rows(db: Database, job_id: str) -> list[StepRow]:
    with db.read_session() as session:
        return list(
            session.scalars(select(StepRow).where(StepRow.job_id == job_id).order_by(StepRow.index))
        )


def statuses(db: Database, job_id: str) -> list[str]:
    return [row.status for row in step_rows(db, job_id)]


def log_text(db: Database, job_id: str, step_index: int | None = None) -> str:
    statement = select(LogChunkRow.text).where(LogChunkRow.job_id == job_id)
    if step_index is not None:
        statement = statement.where(LogChunkRow.step_index == step_index)
    with db.read_session() as session:
        return "".join(session.scalars(statement.order_by(LogChunkRow.id)))


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != b"Z"


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


# -- steps, statuses, outputs ------------------------------------------------------------


def test_a_passing_job_records_its_steps_and_logs(settings: Any, db: Database) -> None:
    job_id, result = run_job(
        settings,
        db,
        [
            {"name": "Greet", "run": "echo hello from $PAVEDROAD_JOB"},
            {"run": "echo second line one\necho to stderr >&2"},
        ],
    )
    assert result == JobResult("succeeded", {}, None)
    rows = step_rows(db, job_id)
    assert [(row.name, row.status, row.exit_code) for row in rows] == [
        ("Greet", "succeeded", 0),
        ("Run echo second line one", "succeeded", 0),
    ]
    assert all(row.started_at and row.finished_at for row in rows)
    assert all(row.started_at <= row.finished_at for row in rows)  # type: ignore[operator]
    assert log_text(db, job_id, 0) == "hello from build\n"
    assert log_text(db, job_id, 1) == "second line one\nto stderr\n"
    with db.read_session() as session:
        job = session.get(JobRow, job_id)
        assert job is not None and job.heartbeat_at is not None
    assert not (settings.home / "pipelines" / "workspaces" / job_id).exists()


def test_a_failing_step_fails_the_job_unless_it_may(settings: Any, db: Database) -> None:
    job_id, result = run_job(
        settings,
        db,
        [
            {"id": "flaky", "run": "echo trying; exit 3", "continue-on-error": True},
            {"run": "echo after flaky: ${{ steps.flaky.outcome }}/${{ steps.flaky.conclusion }}"},
            {"id": "broken", "run": "false\necho never printed"},
            {"run": "echo skipped after a failure"},
        ],
    )
    assert result.status == "failed"
    assert result.error == "step 'broken' failed: Process completed with exit code 1."
    assert statuses(db, job_id) == ["failed", "succeeded", "failed", "skipped"]
    assert [row.exit_code for row in step_rows(db, job_id)] == [3, 0, 1, None]
    assert "continue-on-error is set" in log_text(db, job_id, 0)
    assert log_text(db, job_id, 1) == "after flaky: failure/success\n"
    assert "never printed" not in log_text(db, job_id, 2)
    assert "##[error]Process completed with exit code 1." in log_text(db, job_id, 2)


def test_outputs_flow_between_steps_and_out_of_the_job(settings: Any, db: Database) -> None:
    write_outputs = textwrap.dedent(
        """\
        echo "greeting=hello world" >> "$PAVEDROAD_OUTPUT"
        {
          echo "notes<<END_OF_NOTES"
          echo "line one"
          echo "line = two"
          echo "END_OF_NOTES"
        } >> "$PAVEDROAD_OUTPUT"
        """
    )
    job_id, result = run_job(
        settings,
        db,
        [
            {"id": "make", "run": write_outputs},
            {
                "id": "use",
                "env": {"NOTES": "${{ steps.make.outputs.notes }}"},
                "run": 'echo "${{ steps.make.outputs.greeting }}"; printf "%s\\n" "$NOTES"\n'
                'echo "count=$(printf "%s" "$NOTES" | wc -l)" >> "$PAVEDROAD_OUTPUT"',
            },
            {
                "uses": "artifact/upload",
                "with": {"name": "${{ steps.use.outputs.count }}x"},
                "continue-on-error": True,
            },
        ],
        outputs={
            "greeting": "${{ steps.make.outputs.greeting }}",
            "lines": "${{ steps.use.outputs.count }}",
            "token": "${{ secrets.TOKEN }}",
            "broken": "${{ steps.make.outputs.greeting == }}",
        },
        secrets={"TOKEN": "very-secret-value"},
    )
    assert result.status == "succeeded"
    assert result.outputs == {"greeting": "hello world", "lines": "1"}
    rows = step_rows(db, job_id)
    assert rows[0].outputs == {"greeting": "hello world", "notes": "line one\nline = two"}
    assert log_text(db, job_id, 1) == "hello world\nline one\nline = two\n"
    assert rows[1].outputs == {"count": "1"}
    # a step type's input is checked after evaluation
    assert "artifact/upload: with: 'path' is a required property" in log_text(db, job_id, 2)
    job_log = log_text(db, job_id, -1)
    assert "The output 'token' is left out: it holds a secret" in job_log
    assert "The output 'broken' is left out" in job_log


def test_hash_files_and_output_that_is_not_text(settings: Any, db: Database) -> None:
    job_id, result = run_job(
        settings,
        db,
        [
            {"run": "mkdir -p a/b; echo one > a/x.txt; echo two > a/b/y.txt; echo 3 > a/z.md"},
            {
                "run": "echo \"${{ hashFiles('a/**/*.txt') }}\"\n"
                "echo \"[${{ hashFiles('a/**/*.txt', '!a/b/*') }}]\"\n"
                "echo \"[${{ hashFiles('nothing/*') }}]\""
            },
            {"run": "printf 'nul:\\000: bad:\\377:\\n'"},
        ],
    )
    assert result.status == "succeeded"
    one, two = hashlib.sha256(b"one\n").digest(), hashlib.sha256(b"two\n").digest()
    both = hashlib.sha256(two + one).hexdigest()  # in path order: a/b/y.txt, a/x.txt
    only_one = hashlib.sha256(one).hexdigest()
    assert log_text(db, job_id, 1) == f"{both}\n[{only_one}]\n[]\n"
    assert log_text(db, job_id, 2) == "nul:\ufffd: bad:\ufffd:\n"


def test_if_conditions_see_the_jobs_status(settings: Any, db: Database) -> None:
    job_id, result = run_job(
        settings,
        db,
        [
            {"run": "true"},
            {
                "if": "${{ github.ref_name == 'main' && inputs.flavour == 'vanilla' }}",
                "run": "true",
            },
            {"if": "github.event_name == 'schedule'", "run": "echo not a schedule"},
            {"if": "failure()", "run": "echo nothing failed yet"},
            {"id": "boom", "run": "exit 1"},
            {"run": "echo implied success()"},
            {"if": "failure() && steps.boom.outcome == 'failure'", "run": "echo reporting"},
            {"if": "always()", "run": "echo cleaning up"},
            {"if": "cancelled()", "run": "echo not cancelled"},
            {"if": False, "run": "echo never"},
            {"if": "success() || ", "run": "echo broken condition"},
        ],
    )
    assert result.status == "failed"
    assert statuses(db, job_id) == [
        "succeeded",
        "succeeded",
        "skipped",
        "skipped",
        "failed",
        "skipped",
        "succeeded",
        "succeeded",
        "skipped",
        "skipped",
        "failed",
    ]
    assert log_text(db, job_id, 6) == "reporting\n"
    assert log_text(db, job_id, 7) == "cleaning up\n"
    assert "if:" in log_text(db, job_id, 10)


def test_environment_layers_and_the_runners_variables(
    settings: Any, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKER_ONLY_SECRET", "leaked")
    show = 'for n in A B C D E CI LANG; do eval "echo $n=\\${$n-unset}"; done'
    job_id, result = run_job(
        settings,
        db,
        [
            {
                "run": 'echo "D=from-env-file" >> "$PAVEDROAD_ENV"\n'
                'mkdir -p "$PAVEDROAD_WORKSPACE/tools"\n'
                'printf "#!/bin/sh\\necho tool ran\\n" > "$PAVEDROAD_WORKSPACE/tools/mytool"\n'
                'chmod +x "$PAVEDROAD_WORKSPACE/tools/mytool"\n'
                'echo "$PAVEDROAD_WORKSPACE/tools" >> "$PAVEDROAD_PATH"'
            },
            {"env": {"C": "step", "E": "${{ env.B }}-${{ matrix.python }}"}, "run": show},
            {"run": "mytool"},
            {"run": "pwd", "working-directory": "sub"},
            {"if": "always()", "run": "pwd", "working-directory": "../.."},
        ],
        pipeline_env={"A": "pipeline", "B": "pipeline", "C": "pipeline"},
        env={"B": "job", "C": "job"},
        matrix={"python": "3.12"},
    )
    assert result.status == "failed"
    assert statuses(db, job_id) == ["succeeded", "succeeded", "succeeded", "failed", "failed"]
    assert log_text(db, job_id, 1) == (
        "A=pipeline\nB=job\nC=step\nD=from-env-file\nE=job-3.12\nCI=true\nLANG=C.UTF-8\n"
    )
    assert log_text(db, job_id, 2) == "tool ran\n"
    assert "working-directory 'sub' does not exist" in log_text(db, job_id, 3)
    assert "working-directory '../..' is outside the workspace" in log_text(db, job_id, 4)

    job_id, result = run_job(
        settings,
        db,
        [
            {"run": "mkdir sub"},
            {
                "run": 'echo "worker=${WORKER_ONLY_SECRET-unset}"\n'
                'test "$PWD" = "$PAVEDROAD_WORKSPACE/sub" && echo "in sub"\n'
                'test "$HOME" != "$PAVEDROAD_WORKSPACE" && test -d "$HOME" && echo "own home"\n'
                'echo "sha=$PAVEDROAD_SHA ref=$PAVEDROAD_REF"',
                "working-directory": "sub",
            },
        ],
        commit="b" * 40,
    )
    assert result.status == "succeeded"
    assert log_text(db, job_id, 1) == (
        f"worker=unset\nin sub\nown home\nsha={'b' * 40} ref=refs/heads/main\n"
    )


def test_shells_and_a_step_timeout(settings: Any, db: Database) -> None:
    job_id, result = run_job(
        settings,
        db,
        [
            {"shell": "sh", "run": "echo from sh"},
            {"shell": "python", "run": "import sys\nprint('from python', sys.version_info[0])"},
            {"run": "sleep 30", "timeout-minutes": 0.02},
            {"if": "always()", "run": "echo after the timeout"},
        ],
    )
    assert result.status == "failed"
    assert statuses(db, job_id) == ["succeeded", "succeeded", "failed", "succeeded"]
    assert log_text(db, job_id, 1) == "from python 3\n"
    assert "ran past its timeout of 0.02 minutes" in log_text(db, job_id, 2)
    rows = step_rows(db, job_id)
    assert rows[2].finished_at - rows[2].started_at < __import__("datetime").timedelta(seconds=8)


def test_the_job_timeout_stops_the_running_step(settings: Any, db: Database) -> None:
    started = time.monotonic()
    job_id, result = run_job(
        settings,
        db,
        [{"run": "sleep 30"}, {"if": "always()", "run": "echo too late"}],
        timeout_minutes=0.02,
    )
    assert time.monotonic() - started < 8
    assert result.status == "failed"
    assert result.error == "the job ran past its timeout of 0.02 minutes"
    assert statuses(db, job_id) == ["failed", "skipped"]


# -- hostile steps -----------------------------------------------------------------------


@sqlite_only
def test_a_gigabyte_of_output_is_cut_and_the_worker_is_fine(settings: Any, db: Database) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    started = time.monotonic()
    job_id, result = run_job(
        settings, db, [{"run": "head -c 1G < <(yes)"}, {"run": "echo next step"}]
    )
    elapsed = time.monotonic() - started
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert result.status == "succeeded"
    rows = step_rows(db, job_id)
    assert rows[0].log_bytes == 1024**3
    assert rows[0].truncated is True
    assert rows[1].truncated is False
    text = log_text(db, job_id, 0)
    kept, _, notice = text.rstrip("\n").rpartition("\n")
    assert len(kept) + 1 == 10 * 1024 * 1024
    assert set(kept.split("\n")) == {"y"}
    assert notice.startswith("##[notice]The step's output was cut at 10.0 MiB")
    assert f"({1024**3 - 10 * 1024 * 1024} bytes) more were not kept" in notice
    assert text.count("##[notice]") == 1
    assert log_text(db, job_id, 1) == "next step\n"
    assert grown_mib < 100, f"the worker grew by {grown_mib:.0f} MiB"
    assert elapsed < 30


def test_processes_left_behind_are_killed(settings: Any, db: Database, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    started = time.monotonic()
    job_id, result = run_job(
        settings,
        db,
        [
            {"run": f"sleep 1000 & echo $! > {pids}/background"},
            {
                # a killed process may stay a zombie (Z) until init reaps it: it is gone
                "run": f"state=$(cut -d' ' -f3 /proc/$(cat {pids}/background)/stat 2>/dev/null)\n"
                'if [ -n "$state" ] && [ "$state" != Z ]; then echo alive; else echo gone; fi\n'
                f"setsid sleep 1001 & echo $! > {pids}/escaped\n"
                f"setsid -f sh -c 'echo $$ > {pids}/daemon; exec sleep 1002' > /dev/null 2>&1\n"
                f"while [ ! -s {pids}/daemon ]; do sleep 0.01; done"
            },
            {
                "run": f'kill -0 "$(cat {pids}/escaped)" && kill -0 "$(cat {pids}/daemon)" '
                "&& echo escaped processes live until the job ends"
            },
        ],
    )
    assert result.status == "succeeded"
    assert time.monotonic() - started < 15
    assert log_text(db, job_id, 1) == "gone\n"
    assert log_text(db, job_id, 2) == "escaped processes live until the job ends\n"
    assert "Stopped 2 processes the job left running" in log_text(db, job_id, -1)
    for name in ("background", "escaped", "daemon"):
        pid = int((pids / name).read_text())
        wait_for(lambda pid=pid: not alive(pid), timeout=5)


def test_secrets_are_masked_in_every_form(settings: Any, db: Database) -> None:
    secret = "p@ss w0rd/with+odd=chars"
    encoded = base64.b64encode(secret.encode()).decode()
    job_id, result = run_job(
        settings,
        db,
        [
            {
                "id": "leak",
                "env": {"TOKEN": "${{ secrets.API_TOKEN }}"},
                "run": 'echo "plain: $TOKEN"\n'
                'printf "%s" "$TOKEN" | base64\n'
                "python3 -c 'import os, urllib.parse; "
                'print("url:", urllib.parse.quote(os.environ["TOKEN"], safe=""))\'\n'
                'echo "value=$TOKEN" >> "$PAVEDROAD_OUTPUT"\n'
                "echo '${{ secrets.API_TOKEN }}' from an expression",
            }
        ],
        secrets={"API_TOKEN": secret},
    )
    assert result.status == "succeeded"
    text = log_text(db, job_id)
    for form in (secret, encoded, quote(secret, safe="")):
        assert form not in text
    assert text == "plain: ***\n***\nurl: ***\n*** from an expression\n"
    assert step_rows(db, job_id)[0].outputs == {"value": "***"}


def test_cancelling_during_a_long_step(settings: Any, db: Database, tmp_path: Path) -> None:
    settings = tune(settings, kill_grace_seconds=1.0)
    pid_file = tmp_path / "pid"
    run_id = make_run(db)
    job_id = make_job(
        db,
        run_id,
        [
            {"run": "echo starting"},
            {"run": f"trap '' TERM; sleep 1000 & echo $! > {pid_file}; wait"},
            {"run": "echo not after a cancel"},
            {"if": "cancelled()", "run": "echo cleaning up after the cancel"},
        ],
    )
    results: list[JobResult] = []
    worker = threading.Thread(target=lambda: results.append(execute(settings, db, job_id)))
    worker.start()
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    sleeper = int(pid_file.read_text())
    cancelled_at = time.monotonic()
    with db.session() as session:
        session.execute(update(JobRow).where(JobRow.id == job_id).values(cancel_requested=True))
    worker.join(timeout=15)
    assert not worker.is_alive()
    assert time.monotonic() - cancelled_at < 5
    assert results[0].status == "cancelled"
    assert statuses(db, job_id) == ["succeeded", "cancelled", "skipped", "succeeded"]
    assert "The step was cancelled" in log_text(db, job_id, 1)
    assert log_text(db, job_id, 3) == "cleaning up after the cancel\n"
    wait_for(lambda: not alive(sleeper), timeout=3)


def test_cancelling_through_the_callable(settings: Any, db: Database) -> None:
    flag = threading.Event()
    timer = threading.Timer(0.5, flag.set)
    timer.start()
    started = time.monotonic()
    job_id, result = run_job(settings, db, [{"run": "sleep 60"}], cancelled=flag.is_set)
    assert result.status == "cancelled"
    assert time.monotonic() - started < 4
    assert statuses(db, job_id) == ["cancelled"]


# -- built-in step types -----------------------------------------------------------------


def _git(*args: str, cwd: Path) -> str:
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


SCORE = """\
apiVersion: score.dev/v1b1
metadata:
  name: shop
containers:
  web:
    image: .
"""


@pytest.fixture
def hosted_repo(settings: Any, db: Database, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A hosted repository with one pushed commit: (repository, commit)."""
    from pavedroad.git.service import GitService

    git = GitService(db, settings)
    repo = git.create(OWNER, "shop", "user:default/alice")
    bare = git.path(git.repo(OWNER, "shop"))
    clone = tmp_path / "clone"
    clone.mkdir()
    _git("init", "--quiet", "--initial-branch=main", cwd=clone)
    (clone / "app.py").write_text("print('shop')\n")
    (clone / "score.yaml").write_text(SCORE)
    (clone / "docs").mkdir()
    (clone / "docs" / "index.md").write_text("# Shop\n")
    _git("add", ".", cwd=clone)
    _git("commit", "--quiet", "-m", "first", cwd=clone)
    _git("push", "--quiet", str(bare), "main", cwd=clone)
    yield f"{repo['owner']}/{repo['name']}", _git("rev-parse", "HEAD", cwd=clone)


def test_checkout_clones_the_commit(
    settings: Any, db: Database, hosted_repo: tuple[str, str]
) -> None:
    repository, commit = hosted_repo
    job_id, result = run_job(
        settings,
        db,
        [
            {"id": "co", "uses": "checkout"},
            {"run": "git rev-parse HEAD; cat app.py; git status --porcelain | wc -l"},
            {"uses": "checkout@1", "with": {"path": "again"}},
            {"run": "cat again/docs/index.md"},
            {"uses": "checkout", "with": {"path": "../escape"}},
        ],
        repository=repository,
        commit=commit,
    )
    assert statuses(db, job_id) == ["succeeded", "succeeded", "succeeded", "succeeded", "failed"]
    assert step_rows(db, job_id)[0].outputs == {
        "commit": commit,
        "ref": "refs/heads/main",
        "path": ".",
    }
    assert log_text(db, job_id, 1) == f"{commit}\nprint('shop')\n0\n"
    assert log_text(db, job_id, 3) == "# Shop\n"
    assert "'../escape' is outside the workspace" in log_text(db, job_id, 4)
    assert result.status == "failed"

    job_id, result = run_job(
        settings, db, [{"uses": "checkout"}], repository=repository, commit="f" * 40
    )
    assert result.status == "failed"
    assert "is not in checkout-team/shop any more" in log_text(db, job_id, 0)
    job_id, result = run_job(
        settings, db, [{"uses": "checkout"}], repository="https://example.com/x.git"
    )
    assert "checkout clones hosted repositories" in log_text(db, job_id, 0)


TESTS = """\
def test_passes():
    assert 1 + 1 == 2


def test_fails():
    assert "secret-in-a-test-message" == "other", "compared secret-in-a-test-message"
"""


def test_python_test_records_test_results(settings: Any, db: Database) -> None:
    job_id, result = run_job(
        settings,
        db,
        [
            {"run": f"mkdir proj && cat > proj/test_sample.py <<'EOF'\n{TESTS}EOF"},
            {
                "id": "tests",
                "uses": "python/test",
                "with": {"path": "proj", "args": "-q -p no:cacheprovider"},
            },
            {"if": "always()", "run": "echo failed=${{ steps.tests.outputs.failed }}"},
        ],
        secrets={"S": "secret-in-a-test-message"},
    )
    assert result.status == "failed"
    assert result.error == "step 'tests' failed: 1 test did not pass"
    assert statuses(db, job_id) == ["succeeded", "failed", "succeeded"]
    assert step_rows(db, job_id)[1].outputs == {
        "passed": "1",
        "failed": "1",
        "errors": "0",
        "skipped": "0",
        "total": "2",
    }
    assert log_text(db, job_id, 2) == "failed=1\n"
    with db.read_session() as session:
        cases = list(
            session.scalars(
                select(models.TestCaseRow)
                .where(models.TestCaseRow.job_id == job_id)
                .order_by(models.TestCaseRow.name)
            )
        )
    assert [(case.classname, case.name, case.outcome) for case in cases] == [
        ("test_sample", "test_fails", "failed"),
        ("test_sample", "test_passes", "passed"),
    ]
    assert cases[0].message and "compared ***" in cases[0].message
    assert "secret-in-a-test-message" not in cases[0].message
    assert "1 failed, 1 passed" in log_text(db, job_id, 1)


def test_a_hostile_junit_report_is_refused(tmp_path: Path) -> None:
    from pavedroad.pipelines.junit import JUnitError, parse_junit

    bomb = b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaa">]><testsuite>&a;</testsuite>'
    with pytest.raises(JUnitError, match="declares a DTD or entities"):
        parse_junit(bomb)
    with pytest.raises(JUnitError, match="not valid XML"):
        parse_junit(b"<testsuite>")


@sqlite_only
def test_python_setup_builds_a_virtualenv(settings: Any, db: Database) -> None:
    pyproject = textwrap.dedent(
        """\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "tinyproj"
        version = "0.1.0"
        dependencies = []
        """
    )
    job_id, result = run_job(
        settings,
        db,
        [
            {
                "run": f"cat > pyproject.toml <<'EOF'\n{pyproject}EOF\n"
                "mkdir tinyproj && echo 'VALUE = 42' > tinyproj/__init__.py"
            },
            {"id": "setup", "uses": "python/setup"},
            {"run": 'python -c "import tinyproj, sys; print(tinyproj.VALUE, sys.prefix)"'},
        ],
    )
    logs = log_text(db, job_id)
    assert result.status == "succeeded", logs
    outputs = step_rows(db, job_id)[1].outputs
    assert outputs["venv"] == ".venv"
    assert len(outputs["cache-key"]) == 64
    workspace = settings.home / "pipelines" / "workspaces" / job_id / "workspace"
    assert log_text(db, job_id, 2) == f"42 {workspace}/.venv\n"
    assert (settings.home / "pipelines" / "cache" / "pip").is_dir()  # PIP_CACHE_DIR


def test_artifacts_round_trip_with_stable_digests(
    settings: Any, db: Database, tmp_path: Path
) -> None:
    make_dist = (
        "mkdir -p dist/sub && echo one > dist/a.txt && echo two > dist/sub/b.txt && "
        "printf '#!/bin/sh\\n' > dist/run.sh && chmod +x dist/run.sh && ln -s a.txt dist/link"
    )
    run_id = make_run(db)
    upload = make_job(
        db,
        run_id,
        [
            {"run": make_dist},
            {"id": "up", "uses": "artifact/upload", "with": {"name": "dist", "path": "dist"}},
            {"uses": "artifact/upload", "with": {"name": "one file", "path": "dist/a.txt"}},
            {"uses": "artifact/upload", "with": {"name": "escape", "path": "../../home"}},
        ],
        key="upload",
    )
    assert execute(settings, db, upload).status == "failed"
    assert statuses(db, upload) == ["succeeded", "succeeded", "succeeded", "failed"]
    assert "outside the workspace" in log_text(db, upload, 3)
    digest = step_rows(db, upload)[1].outputs["digest"]

    download = make_job(
        db,
        run_id,
        [
            {"uses": "artifact/download", "with": {"name": "dist", "path": "got"}},
            {"uses": "artifact/download", "with": {"name": "one file"}},
            {"run": "cat got/a.txt got/sub/b.txt a.txt; readlink got/link; test -x got/run.sh"},
            {"uses": "artifact/download", "with": {"name": "missing"}},
            {"if": "always()", "uses": "artifact/upload", "with": {"name": "dist", "path": "got"}},
        ],
        key="download",
    )
    execute(settings, db, download)
    assert statuses(db, download) == ["succeeded", "succeeded", "succeeded", "failed", "succeeded"]
    assert log_text(db, download, 2) == "one\ntwo\none\na.txt\n"
    assert "this run has no artifact named 'missing'" in log_text(db, download, 3)
    # the same files (downloaded, with other times) are the same bytes: no conflict
    assert step_rows(db, download)[4].outputs["digest"] == digest
    assert [row.name for row in run_artifacts(db, run_id)] == ["dist", "one file"]

    # another upload of the same folder, later and elsewhere: the same digest
    time.sleep(1.1)
    other_run = make_run(db)
    again = make_job(
        db,
        other_run,
        [{"run": make_dist}, {"uses": "artifact/upload", "with": {"name": "d", "path": "dist"}}],
    )
    execute(settings, db, again)
    assert step_rows(db, again)[1].outputs["digest"] == digest
    # another job of the first run cannot replace the artifact with other bytes
    clash = make_job(
        db,
        run_id,
        [
            {"run": "mkdir x && echo other > x/f"},
            {"uses": "artifact/upload", "with": {"name": "dist", "path": "x"}},
        ],
        key="clash",
    )
    assert execute(settings, db, clash).status == "failed"
    assert "another job of this run uploaded an artifact named 'dist'" in log_text(db, clash, 1)

    store = ArtifactStore.for_settings(settings)
    blob_path = store.path(digest)
    assert blob_path.is_file()
    assert blob_path.relative_to(settings.home / "pipelines" / "store").parts[:2] == (
        "sha256",
        digest[7:9],
    )
    target = tmp_path / "unpacked"
    assert sorted(store.extract(digest, target)) == [
        "a.txt",
        "link",
        "run.sh",
        "sub",
        "sub/b.txt",
    ]


def test_release_build_is_idempotent(
    settings: Any, db: Database, hosted_repo: tuple[str, str]
) -> None:
    repository, commit = hosted_repo
    steps = [
        {"uses": "checkout"},
        {"run": "mkdir -p .venv && echo junk > .venv/junk && echo untracked > notes.txt"},
        {"id": "release", "uses": "release/build"},
    ]
    first, result = run_job(settings, db, steps, repository=repository, commit=commit)
    assert result.status == "succeeded", log_text(db, first)
    second, result = run_job(
        settings, db, steps[:1] + steps[2:], repository=repository, commit=commit
    )
    assert result.status == "succeeded"
    one, two = step_rows(db, first)[2].outputs, step_rows(db, second)[1].outputs
    assert one["release"] == two["release"]
    assert one["digest"] == two["digest"]
    assert (one["created"], two["created"]) == ("true", "false")
    assert "Found release" in log_text(db, second, 1)
    with db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(ReleaseRow)) == 1
    release = ReleaseStore(db, ArtifactStore.for_settings(settings)).get(one["release"])
    assert (release.component, release.commit, release.branch, release.source) == (
        COMPONENT,
        commit,
        "main",
        "pipeline",
    )
    assert release.workload_name == "shop"
    members = ArtifactStore.for_settings(settings).extract(release.digest, settings.home / "x")
    assert sorted(members) == ["app.py", "docs/index.md", "score.yaml"]

    bad, result = run_job(
        settings,
        db,
        [
            {"uses": "checkout"},
            {"run": "printf 'apiVersion: v1\\nkind: Pod\\n' > score.yaml"},
            {"uses": "release/build"},
            {"if": "always()", "uses": "release/build", "with": {"score": "missing.yaml"}},
            {"if": "always()", "uses": "deploy", "with": {"environment": "dev"}},
        ],
        repository=repository,
        commit=commit,
    )
    assert result.status == "failed"
    assert "score.yaml must have apiVersion score.dev/v1b1" in log_text(db, bad, 2)
    assert "there is no missing.yaml" in log_text(db, bad, 3)
    assert "there is no environment 'dev'" in log_text(db, bad, 4)  # it found the release
    nothing, result = run_job(
        settings, db, [{"uses": "release/build"}], repository=repository, commit=commit
    )
    assert "is not a git checkout" in log_text(db, nothing, 0)
    no_component, result = run_job(
        settings,
        db,
        steps[:1] + steps[2:],
        repository=repository,
        commit=commit,
        entity_ref=None,
    )
    assert "release/build needs the run's component" in log_text(db, no_component, 1)


def test_the_step_registry() -> None:
    registry = StepRegistry.from_plugins()
    for uses in ("checkout", "checkout@1", "python/setup", "python/test@v2", "release/build"):
        assert registry.known(uses)
    assert not registry.known("docker/build")
    assert registry.input_problems("artifact/upload", {"name": "x"}) == [
        "artifact/upload: with: 'path' is a required property"
    ]
    assert (
        registry.input_problems("artifact/upload", {"name": "${{ matrix.x }}", "path": "d"}) == []
    )
    assert "unknown step type 'docker/build'" in registry.input_problems("docker/build", {})[0]
    assert {"checkout", "deploy", "artifact/download"} <= set(registry.ids())


def test_unknown_step_types_and_missing_local_steps_fail(settings: Any, db: Database) -> None:
    job_id, result = run_job(
        settings,
        db,
        [
            {"uses": "docker/build"},
            {"if": "always()", "uses": "./ci/steps/lint"},
            {"if": "always()", "run": "echo ${{ secrets.NOPE }}-${{ needs.a.outputs.x }}"},
        ],
        needs={"a": {"result": "success", "outputs": {"x": "from-a"}}},
    )
    assert result.status == "failed"
    assert "unknown step type 'docker/build'" in log_text(db, job_id, 0)
    assert "there is no folder ci/steps/lint in the workspace" in log_text(db, job_id, 1)
    assert log_text(db, job_id, 2) == "-from-a\n"


def test_a_job_whose_env_cannot_be_evaluated(settings: Any, db: Database) -> None:
    job_id, result = run_job(
        settings, db, [{"run": "echo never"}], env={"BROKEN": "${{ github.sha == }}"}
    )
    assert result.status == "failed"
    assert result.error and result.error.startswith("the job cannot start:")
    assert statuses(db, job_id) == ["skipped"]
    assert "##[error]The job cannot start" in log_text(db, job_id, -1)


def test_a_job_that_is_gone(settings: Any, db: Database) -> None:
    context = JobContext(
        settings=settings,
        db=db,
        job_id=new_id(),
        run_id=new_id(),
        run_number=1,
        repository="a/b",
        commit="0" * 40,
        ref="refs/heads/main",
        branch="main",
        event="push",
        actor="user:default/alice",
    )
    result = JobExecutor(context).run()
    assert result.status == "failed"
    assert result.error and "there is no pipeline job" in result.error


def test_store_refuses_bad_digests(tmp_path: Path) -> None:
    from pavedroad.core.errors import InputError, NotFoundError

    store = ArtifactStore(tmp_path / "store")
    with pytest.raises(InputError):
        store.path("sha256:../../etc/passwd")
    with pytest.raises(NotFoundError):
        store.open("sha256:" + "0" * 64)
    assert store.put_bytes(b"abc").digest == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_python_setup_installs_dependencies_once_and_the_project_each_time(
    settings: Any, db: Database
) -> None:
    pyproject = textwrap.dedent(
        """\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "tinyproj"
        version = "0.1.0"
        dependencies = []

        [project.optional-dependencies]
        test = ["pytest"]
        """
    )

    def job(value: int) -> tuple[str, JobResult]:
        return run_job(
            settings,
            db,
            [
                {
                    "run": f"cat > pyproject.toml <<'EOF'\n{pyproject}EOF\n"
                    f"mkdir tinyproj && echo 'VALUE = {value}' > tinyproj/__init__.py"
                },
                {"uses": "python/setup"},
                {"run": 'python -c "import tinyproj, pytest; print(tinyproj.VALUE)"'},
                {"run": "python -m pip --version >/dev/null && echo pip works"},
            ],
        )

    first, result = job(1)
    assert result.status == "succeeded", log_text(db, first)
    assert "Installed the 3 declared requirement(s)" in log_text(db, first, 1)
    second, result = job(2)
    assert result.status == "succeeded", log_text(db, second)
    assert "Reusing the 3 declared requirement(s)" in log_text(db, second, 1)
    assert log_text(db, second, 2) == "2\n"  # the commit's own project, not a cached one
    assert log_text(db, second, 3) == "pip works\n"
    shared = list((settings.home / "pipelines" / "cache" / "python").glob("*/.complete"))
    assert len(shared) == 1
