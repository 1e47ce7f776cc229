"""Pipeline runs from trigger to result, on a real database and real hosted repositories:
pushes start runs (once each, filters honoured), invalid files give failed runs with their
lines, jobs are planned with their matrix and queued as their needs end, a worker's
reports advance the run (retries, if: conditions, skips), cancel, manual runs with typed
inputs, and recovery of jobs whose worker stopped. The workers here are this test: it
claims jobs and reports on them as `pave worker` does, so the orchestration is exercised
without running steps (tests/integration/test_pipeline_executor.py runs them)."""

from __future__ import annotations

import json
import subprocess
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from pavedroad.pipelines.models import JobRow
from pavedroad.pipelines.runs import PipelineService, Trigger, glob_match


@pytest.fixture
def database_seed() -> str:
    return "demo"  # the teams that own repositories, and the pipeline templates


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


class Repo:
    """A hosted repository and a working copy that pushes to it as a developer would."""

    def __init__(self, app: Any, tmp_path: Path, name: str = "svc") -> None:
        self.app = app
        app.state.git.create("checkout-team", name, "bob")
        self.bare = app.state.git.root / "checkout-team" / f"{name}.git"
        self.work = tmp_path / f"work-{name}"
        git("clone", "-q", str(self.bare), str(self.work), cwd=tmp_path)
        self.repository = f"checkout-team/{name}"

    def commit(self, files: dict[str, str], branch: str = "main") -> str:
        for path, text in files.items():
            target = self.work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(text))
        git("checkout", "-q", "-B", branch, cwd=self.work)
        git("add", "-A", cwd=self.work)
        git("-c", "user.name=Bob", "-c", "user.email=b@x", "commit", "-qm", "change", cwd=self.work)
        git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
        self.app.state.git.import_spool()
        return git("rev-parse", "HEAD", cwd=self.work).strip()


@pytest.fixture
def platform(make_app, make_settings, tmp_path):
    app = make_app(make_settings())
    service: PipelineService = app.state.pipelines
    service.queues = None  # this test plays the workers
    return app, service, tmp_path


PIPELINE = """
name: CI
on:
  push:
    branches: [main, "release/**"]
    paths-ignore: ["docs/**"]
  manual:
    inputs:
      level: {type: choice, options: [low, high], default: low}
      count: {type: number}
jobs:
  lint:
    steps:
      - run: echo lint
  test:
    strategy:
      matrix:
        python: ["3.11", "3.12"]
    retries: 1
    steps:
      - run: echo test ${{ matrix.python }}
  build:
    needs: [lint, test]
    steps:
      - run: echo build
  notify:
    needs: [build]
    if: ${{ always() }}
    steps:
      - run: echo notify
"""


def statuses(service: PipelineService, run_id: str) -> dict[str, str]:
    return {job.key: job.status for job in service.jobs(run_id)}


def work(service: PipelineService, run_id: str, key: str, status: str = "succeeded") -> None:
    """Be a worker: claim the queued job ``key`` and report ``status``."""
    job = next(j for j in service.jobs(run_id) if j.key == key)
    assert service.claim(job.id, "test-worker") is not None, f"{key} is {job.status}"
    service.finish_job(job.id, status, {"result": status}, None if status != "failed" else "x")


def test_a_push_starts_one_run_planned_with_its_matrix_and_needs(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    commit = repo.commit({".pavedroad/pipeline.yaml": PIPELINE, "app.py": "x = 1\n"})

    assert service.start_pushed() == 1
    assert service.start_pushed() == 0  # the same push never starts a second run
    [run] = service.runs(repository=repo.repository)

    assert (run.commit, run.branch, run.event, run.number) == (commit, "main", "push", 1)
    assert run.status == "queued" and run.problems == []  # until a worker claims a job
    assert statuses(service, run.id) == {
        "lint": "queued",
        "test (3.11)": "queued",
        "test (3.12)": "queued",
        "build": "waiting",
        "notify": "waiting",
    }
    described = service.describe(run, with_jobs=True)
    assert [s["name"] for s in described["jobs"][0]["steps"]] == ["Run echo build"]


def test_jobs_advance_as_their_needs_end_and_the_run_takes_their_result(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": PIPELINE})
    service.start_pushed()
    [run] = service.runs()

    work(service, run.id, "lint")
    work(service, run.id, "test (3.11)")
    assert statuses(service, run.id)["build"] == "waiting"  # test (3.12) still runs
    work(service, run.id, "test (3.12)", "failed")
    assert statuses(service, run.id)["test (3.12)"] == "queued"  # retries: 1
    work(service, run.id, "test (3.12)", "failed")

    ended = statuses(service, run.id)
    assert ended["build"] == "skipped"  # a need failed
    assert ended["notify"] == "queued"  # if: always()
    work(service, run.id, "notify")
    assert service.run(run.id).status == "failed"
    retried = next(j for j in service.jobs(run.id) if j.key == "test (3.12)")
    assert retried.attempt == 2


def test_an_invalid_pipeline_file_gives_a_failed_run_with_its_lines(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit(
        {
            ".pavedroad/pipeline.yaml": """\
                jobs:
                  a:
                    needs: [b]
                    steps:
                      - run: echo a
                  b:
                    needs: [a]
                    steps:
                      - uses: no/such-step
                      - runs: typo
                """
        }
    )

    service.start_pushed()
    [run] = service.runs()

    assert run.status == "failed" and service.jobs(run.id) == []
    by_line = {(p["line"], p["path"]): p["message"] for p in run.problems}
    assert any("cycle" in message for message in by_line.values()), by_line
    assert any(line == 9 and "no/such-step" in msg for (line, _), msg in by_line.items())
    assert any(line == 10 and "runs" in msg for (line, _), msg in by_line.items())


def test_branch_and_path_filters_decide_whether_a_push_runs(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": PIPELINE})
    assert service.start_pushed() == 1
    repo.commit({"docs/index.md": "# docs only\n"})  # paths-ignore: docs/**
    assert service.start_pushed() == 0
    repo.commit({"feature.py": "y = 2\n"}, branch="feature/x")  # not main nor release/**
    assert service.start_pushed() == 0
    repo.commit({"fix.py": "z = 3\n"}, branch="release/2.0")
    assert service.start_pushed() == 1
    assert [r.branch for r in service.runs()] == ["release/2.0", "main"]


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("main", "main", True),
        ("release/*", "release/1", True),
        ("release/*", "release/1/x", False),
        ("release/**", "release/1/x", True),
        ("docs/**", "docs/a/b.md", True),
        ("*.md", "docs/a.md", False),
        ("**.md", "docs/a.md", True),
        ("v?", "v1", True),
    ],
)
def test_filter_patterns_follow_github(pattern, value, matches):
    assert glob_match(pattern, value) is matches


def test_a_repository_without_a_pipeline_file_runs_nothing(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({"README.md": "hi\n"})
    assert service.start_pushed() == 0
    with pytest.raises(Exception, match=r"has no \.pavedroad/pipeline\.yaml"):
        service.start_manual(repo.repository, "main", "bob")


def test_a_manual_run_checks_its_typed_inputs(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": PIPELINE})

    with pytest.raises(Exception) as refused:
        service.start_manual(repo.repository, "main", "bob", {"level": "extreme", "nope": 1})
    errors = refused.value.extensions["errors"]  # type: ignore[attr-defined]
    assert set(errors) == {"level", "nope"}

    run = service.start_manual(repo.repository, "main", "bob", {"level": "high", "count": 3})
    assert run.event == "manual" and run.inputs["level"] == "high" and run.created_by == "bob"


def test_cancel_ends_waiting_and_queued_jobs_and_the_run(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": PIPELINE})
    service.start_pushed()
    [run] = service.runs()
    lint = next(j for j in service.jobs(run.id) if j.key == "lint")
    service.claim(lint.id, "test-worker")

    service.cancel(run.id)

    assert statuses(service, run.id)["build"] == "cancelled"
    assert service.heartbeat(lint.id) is False  # the running job is told to stop
    service.finish_job(lint.id, "cancelled", {}, None)
    assert service.run(run.id).status == "cancelled"


def test_a_job_whose_worker_stopped_is_retried_then_failed(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": PIPELINE})
    service.start_pushed()
    [run] = service.runs()
    test_job = next(j for j in service.jobs(run.id) if j.key == "test (3.11)")
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    for _attempt in range(2):
        assert service.claim(test_job.id, "a-worker-that-dies") is not None
        with app.state.db.session() as session:
            session.execute(
                update(JobRow).where(JobRow.id == test_job.id).values(heartbeat_at=long_ago)
            )
        assert service.recover() >= 1
    job = next(j for j in service.jobs(run.id) if j.key == "test (3.11)")
    assert job.status == "failed" and "worker" in (job.error or "")


def test_a_rerun_is_a_new_run_of_the_same_commit(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": PIPELINE})
    service.start_pushed()
    [run] = service.runs()
    service.cancel(run.id)

    again = service.rerun(run.id, "carol")

    assert (again.commit, again.number, again.rerun_of) == (run.commit, 2, run.id)
    assert again.created_by == "carol" and again.status == "queued"


def test_a_pipeline_using_a_template_resolves_against_the_catalog(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": "uses: python-service@1\n"})

    service.start_pushed()
    [run] = service.runs()

    assert run.problems == [] and run.template_ref == "python-service"
    assert {job.job_id for job in service.jobs(run.id)} == {"lint", "test", "build"}


def test_triggers_are_keyed_so_two_services_never_start_one_push_twice(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    commit = repo.commit({".pavedroad/pipeline.yaml": PIPELINE})
    trigger = Trigger(repo.repository, commit, "refs/heads/main", "push", "push:same", "bob")
    other = PipelineService(app.state.db, app.state.settings, app.state.catalog)

    first, second = service.start(trigger), other.start(trigger)

    assert first is not None and second is not None and first.id == second.id


def test_a_push_runs_its_pipeline_on_the_queue_to_the_end(make_app, make_settings, tmp_path):
    """Everything for real: the push is noticed, jobs go through the job queue to this
    process's workers, steps run as processes, logs and outputs come back."""
    from fastapi.testclient import TestClient
    from integration_support import wait_for

    app = make_app(make_settings(), background=True)
    with TestClient(app) as client:
        repo = Repo(app, tmp_path)
        repo.commit(
            {
                ".pavedroad/pipeline.yaml": """\
                    on: push
                    jobs:
                      make:
                        outputs:
                          word: ${{ steps.pick.outputs.word }}
                        steps:
                          - uses: checkout
                          - id: pick
                            run: echo "word=$(cat word.txt)" >> "$PAVEDROAD_OUTPUT"
                      say:
                        needs: [make]
                        runs-on: local
                        steps:
                          - run: echo "the word is ${{ needs.make.outputs.word }}"
                    """,
                "word.txt": "paved\n",
            }
        )
        service: PipelineService = app.state.pipelines

        assert wait_for(lambda: service.runs() and service.runs()[0].status in ("succeeded",
                        "failed", "cancelled"), timeout=60)  # fmt: skip
        [run] = service.runs()
        described = client.get(f"/api/v1/pipelines/runs/{run.id}").json()
        assert described["status"] == "succeeded", described
        say = next(job for job in described["jobs"] if job["key"] == "say")
        log = client.get(f"/api/v1/pipelines/jobs/{say['id']}/log.txt").text
        assert "the word is paved" in log


GROUPED = """
on: push
concurrency:
  group: deploy-${{ github.ref }}
  cancel-in-progress: %s
jobs:
  only:
    steps:
      - run: echo one
"""


def test_a_new_run_cancels_the_one_in_progress_of_its_group(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": GROUPED % "true"})
    service.start_pushed()
    repo.commit({"a.txt": "a\n"})
    service.start_pushed()

    newer, older = service.runs()

    assert older.status == "cancelled" and newer.status == "queued"
    assert statuses(service, newer.id) == {"only": "queued"}


def test_without_cancel_in_progress_a_run_waits_for_its_group(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": GROUPED % "false"})
    service.start_pushed()
    repo.commit({"a.txt": "a\n"})
    service.start_pushed()
    newer, older = service.runs()
    assert (older.status, newer.status) == ("queued", "queued")
    assert statuses(service, older.id) == {"only": "queued"}
    assert statuses(service, newer.id) == {"only": "waiting"}

    work(service, older.id, "only")

    assert service.run(older.id).status == "succeeded"
    assert statuses(service, newer.id) == {"only": "queued"}


def test_a_schedule_starts_one_run_per_matching_minute(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit(
        {
            ".pavedroad/pipeline.yaml": """\
                on:
                  schedule:
                    - cron: "30 4 * * 1-5"
                jobs:
                  nightly:
                    steps:
                      - run: echo nightly
                """
        }
    )
    monday = datetime(2026, 11, 23, 4, 30, 12, tzinfo=UTC)

    assert service.fire_schedules(monday) == 1
    assert service.fire_schedules(monday.replace(second=50)) == 0  # the same minute
    assert service.fire_schedules(monday.replace(minute=31)) == 0  # not its minute
    assert service.fire_schedules(monday.replace(day=29)) == 0  # a Sunday
    [run] = service.runs()
    assert run.event == "schedule" and run.branch == "main"


def test_a_cache_saved_by_one_run_is_restored_by_the_next(make_app, make_settings, tmp_path):
    from fastapi.testclient import TestClient
    from integration_support import wait_for

    app = make_app(make_settings(), background=True)
    with TestClient(app) as client:
        repo = Repo(app, tmp_path)
        repo.commit(
            {
                ".pavedroad/pipeline.yaml": """\
                    on: push
                    jobs:
                      deps:
                        steps:
                          - uses: checkout
                          - id: restore
                            uses: cache/restore
                            with:
                              key: deps-${{ hashFiles('deps.txt') }}
                              path: .deps
                          - run: |
                              if [ "${{ steps.restore.outputs.cache-hit }}" = "true" ]; then
                                echo "from the cache: $(cat .deps/value)"
                              else
                                mkdir -p .deps && echo built-once > .deps/value
                              fi
                          - uses: cache/save
                            with:
                              key: deps-${{ hashFiles('deps.txt') }}
                              path: .deps
                    """,
                "deps.txt": "requests==2\n",
            }
        )
        service: PipelineService = app.state.pipelines

        def finished(count: int) -> bool:
            runs = service.runs()
            return len(runs) >= count and all(
                r.status in ("succeeded", "failed", "cancelled") for r in runs
            )

        assert wait_for(lambda: finished(1), timeout=60)
        first = service.runs()[0]
        service.rerun(first.id, "bob")
        assert wait_for(lambda: finished(2), timeout=60)
        second = service.runs()[0]
        logs = [
            client.get(f"/api/v1/pipelines/jobs/{job.id}/log.txt").text
            for job in service.jobs(second.id)
        ]
    assert (first.status, service.run(second.id).status) == ("succeeded", "succeeded")
    assert "from the cache: built-once" in logs[0]


def test_artifacts_and_test_results_come_back_through_the_api(make_app, make_settings, tmp_path):
    import io
    import tarfile

    from fastapi.testclient import TestClient
    from integration_support import wait_for

    app = make_app(make_settings(), background=True)
    with TestClient(app) as client:
        repo = Repo(app, tmp_path)
        repo.commit(
            {
                ".pavedroad/pipeline.yaml": """\
                    on: push
                    jobs:
                      test:
                        steps:
                          - uses: checkout
                          - uses: python/test
                            continue-on-error: true
                          - run: mkdir -p out && echo report > out/report.txt
                          - uses: artifact/upload
                            with: {name: report, path: out}
                    """,
                "tests/test_it.py": "def test_ok():\n    pass\n\n\ndef test_bad():\n    assert 0\n",
            }
        )
        service: PipelineService = app.state.pipelines
        assert wait_for(
            lambda: bool(service.runs()) and service.runs()[0].status == "succeeded", timeout=60
        ), [service.describe(r, with_jobs=True) for r in service.runs()]
        run = service.runs()[0]
        job = service.jobs(run.id)[0]

        listed = client.get(f"/api/v1/pipelines/runs/{run.id}/artifacts").json()["items"]
        blob = client.get(f"/api/v1/pipelines/runs/{run.id}/artifacts/report")
        tests = client.get(f"/api/v1/pipelines/jobs/{job.id}/tests").json()
        missing = client.get(f"/api/v1/pipelines/runs/{run.id}/artifacts/nope")

    assert [a["name"] for a in listed] == ["report"]
    assert blob.status_code == 200 and blob.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(blob.content)) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("report.txt"))
        assert archive.extractfile(member).read() == b"report\n"  # type: ignore[union-attr]
    assert tests["counts"] == {"passed": 1, "failed": 1}
    assert missing.status_code == 404


def test_a_report_from_a_superseded_claim_changes_nothing(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": PIPELINE})
    service.start_pushed()
    [run] = service.runs()
    job = next(j for j in service.jobs(run.id) if j.key == "test (3.11)")  # retries: 1
    first = service.claim(job.id, "worker-a:1")
    assert first is not None
    with app.state.db.session() as session:  # worker a goes silent; its job is retried
        session.execute(
            update(JobRow)
            .where(JobRow.id == job.id)
            .values(heartbeat_at=datetime(2020, 1, 1, tzinfo=UTC))
        )
    service.recover()
    second = service.claim(job.id, "worker-b:2")
    assert second is not None and second.attempt == 2

    # worker a was only slow: its late report is for a claim that is no longer the job's
    service.finish_job(job.id, "succeeded", {}, None, worker="worker-a:1", attempt=1)
    assert statuses(service, run.id)["test (3.11)"] == "running"
    service.finish_job(job.id, "succeeded", {}, None, worker="worker-b:2", attempt=2)
    assert statuses(service, run.id)["test (3.11)"] == "succeeded"


def job(service: PipelineService, run_id: str, key: str) -> JobRow:
    return next(j for j in service.jobs(run_id) if j.key == key)


def step_statuses(service: PipelineService, run_id: str, key: str) -> list[str]:
    return [step.status for step in service.steps(job(service, run_id, key).id)]


def test_a_run_is_queued_until_a_worker_claims_one_of_its_jobs(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": PIPELINE})
    service.start_pushed()
    [run] = service.runs()
    assert (run.status, run.started_at) == ("queued", None)

    assert service.claim(job(service, run.id, "lint").id, "test-worker") is not None

    claimed = service.run(run.id)
    assert claimed.status == "running" and claimed.started_at is not None


def test_steps_of_jobs_that_never_started_end_cancelled_or_skipped(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": PIPELINE})
    service.start_pushed()
    [run] = service.runs()
    work(service, run.id, "lint", "failed")
    work(service, run.id, "test (3.11)")
    work(service, run.id, "test (3.12)")
    assert statuses(service, run.id)["build"] == "skipped"  # a need failed
    assert step_statuses(service, run.id, "build") == ["skipped"]
    assert statuses(service, run.id)["notify"] == "queued"  # if: always()

    service.cancel(run.id)

    assert statuses(service, run.id)["notify"] == "cancelled"
    assert step_statuses(service, run.id, "notify") == ["cancelled"]


FAIL_FAST = """
on: push
jobs:
  test:
    strategy:
      fail-fast: %s
      matrix:
        n: [1, 2, 3]
    continue-on-error: ${{ matrix.n == 4 }}
    steps:
      - run: echo ${{ matrix.n }}
  after:
    needs: [test]
    steps:
      - run: echo after
"""


def test_fail_fast_cancels_the_siblings_of_a_failed_matrix_job(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": FAIL_FAST % "true"})
    service.start_pushed()
    [run] = service.runs()
    one, two = job(service, run.id, "test (1)"), job(service, run.id, "test (2)")
    service.claim(one.id, "worker-a")
    service.claim(two.id, "worker-b")

    service.finish_job(one.id, "failed", {}, "step failed")

    assert statuses(service, run.id) == {
        "test (1)": "failed",
        "test (2)": "running",  # asked to stop: its heartbeat says so
        "test (3)": "cancelled",
        "after": "waiting",
    }
    assert service.heartbeat(two.id) is False
    assert "test (1) failed (strategy.fail-fast)" in (job(service, run.id, "test (3)").error or "")
    assert step_statuses(service, run.id, "test (3)") == ["cancelled"]

    service.finish_job(two.id, "cancelled", {}, "the job was cancelled")

    assert "strategy.fail-fast" in (job(service, run.id, "test (2)").error or "")
    assert statuses(service, run.id)["after"] == "skipped"
    assert service.run(run.id).status == "failed"  # the failure, not the cancels it caused


def test_without_fail_fast_the_other_matrix_jobs_go_on(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": FAIL_FAST % "false"})
    service.start_pushed()
    [run] = service.runs()
    two = job(service, run.id, "test (2)")
    service.claim(two.id, "worker-b")

    work(service, run.id, "test (1)", "failed")

    assert statuses(service, run.id)["test (2)"] == "running"
    assert statuses(service, run.id)["test (3)"] == "queued"
    assert service.heartbeat(two.id) is True


def test_a_matrix_job_allowed_to_fail_does_not_cancel_its_siblings(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    pipeline = (FAIL_FAST % "true").replace("matrix.n == 4", "matrix.n == 1")
    repo.commit({".pavedroad/pipeline.yaml": pipeline})
    service.start_pushed()
    [run] = service.runs()

    work(service, run.id, "test (1)", "failed")  # continue-on-error: ${{ matrix.n == 1 }}

    assert statuses(service, run.id)["test (2)"] == "queued"
    work(service, run.id, "test (2)")
    work(service, run.id, "test (3)")
    assert service.run(run.id).status == "succeeded"  # its failure fails nothing


def test_max_parallel_queues_the_next_matrix_job_as_one_ends(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit(
        {
            ".pavedroad/pipeline.yaml": """\
                on: push
                jobs:
                  test:
                    strategy:
                      max-parallel: 2
                      matrix:
                        n: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
                    steps:
                      - run: echo ${{ matrix.n }}
                """
        }
    )
    service.start_pushed()
    [run] = service.runs()

    def queued() -> list[str]:
        found = statuses(service, run.id)
        return [f"test ({n})" for n in range(1, 11) if found[f"test ({n})"] == "queued"]

    assert queued() == ["test (1)", "test (2)"]  # in the matrix's order, 10 after 9
    service.claim(job(service, run.id, "test (1)").id, "w")
    assert queued() == ["test (2)"]  # a running one counts too
    work(service, run.id, "test (2)")
    assert queued() == ["test (3)"]
    for n in range(3, 11):
        if n > 3:
            assert queued() == [f"test ({n})"]
        work(service, run.id, f"test ({n})")
    service.finish_job(job(service, run.id, "test (1)").id, "succeeded", {}, None)
    assert service.run(run.id).status == "succeeded"


DEPLOY = """
on: push
jobs:
  build:
    steps:
      - run: echo build
  deploy:
    needs: [build]
    concurrency:
      group: deploy-${{ github.ref_name }}
      cancel-in-progress: %s
    steps:
      - run: echo deploy
"""


def test_a_job_waits_for_the_job_of_another_run_in_its_concurrency_group(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": DEPLOY % "false"})
    service.start_pushed()
    repo.commit({"a.txt": "a\n"})
    service.start_pushed()
    newer, older = service.runs()
    work(service, older.id, "build")
    service.claim(job(service, older.id, "deploy").id, "w")

    work(service, newer.id, "build")

    assert statuses(service, newer.id)["deploy"] == "waiting"  # deploy-main is taken
    assert job(service, newer.id, "deploy").spec["concurrency-group"] == "deploy-main"
    service.finish_job(job(service, older.id, "deploy").id, "succeeded", {}, None)
    assert statuses(service, newer.id)["deploy"] == "queued"
    assert service.run(older.id).status == "succeeded"


def test_a_job_group_with_cancel_in_progress_cancels_the_older_runs_job(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": DEPLOY % "true"})
    service.start_pushed()
    repo.commit({"a.txt": "a\n"})
    service.start_pushed()
    repo.commit({"b.txt": "b\n"})
    service.start_pushed()
    newest, newer, oldest = service.runs()
    work(service, oldest.id, "build")
    running = job(service, oldest.id, "deploy")
    service.claim(running.id, "w")
    work(service, newer.id, "build")
    assert statuses(service, newer.id)["deploy"] == "waiting"  # the running one is stopping
    assert service.heartbeat(running.id) is False

    work(service, newest.id, "build")  # cancels newer's waiting deploy at once

    assert statuses(service, newer.id)["deploy"] == "cancelled"
    assert service.run(newer.id).status == "cancelled"
    assert "concurrency group 'deploy-main'" in (job(service, newer.id, "deploy").error or "")
    assert statuses(service, newest.id)["deploy"] == "waiting"
    service.finish_job(running.id, "cancelled", {}, "the job was cancelled")
    assert service.run(oldest.id).status == "cancelled"
    assert statuses(service, newest.id)["deploy"] == "queued"


DYNAMIC = """
on:
  push: {}
  manual:
    inputs:
      m: {type: string, default: '{"x": [1]}'}
jobs:
  setup:
    outputs:
      matrix: ${{ steps.pick.outputs.matrix }}
    steps:
      - id: pick
        run: echo "matrix=..." >> "$PAVEDROAD_OUTPUT"
  test:
    needs: [setup]
    runs-on: ${{ matrix.os }}
    strategy:
      max-parallel: 2
      matrix: ${{ fromJSON(needs.setup.outputs.matrix) }}
    steps:
      - run: echo ${{ matrix.os }}
      - run: echo again
  from-inputs:
    strategy:
      matrix: ${{ fromJSON(inputs.m) }}
    steps:
      - run: echo ${{ matrix.x }}
"""


def test_a_matrix_expression_expands_into_matrix_jobs_when_its_needs_end(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": DYNAMIC})
    service.start_pushed()
    [run] = service.runs()
    assert statuses(service, run.id) == {
        "setup": "queued",
        "test": "waiting",
        "from-inputs (1)": "queued",
    }
    matrix = {
        "os": ["linux", "mac", "bsd"],
        "tier": ["a"],
        "exclude": [{"os": "bsd"}],
        "include": [{"os": "mac", "extra": True}, {"os": "windows"}],
    }

    work_with_outputs(service, run.id, "setup", {"matrix": json.dumps(matrix)})

    jobs = {j.key: j for j in service.jobs(run.id)}
    assert {key: j.status for key, j in jobs.items() if key.startswith("test")} == {
        "test (linux, a)": "queued",
        "test (mac, a, True)": "queued",
        "test (windows)": "waiting",  # max-parallel: 2
    }
    assert jobs["test (mac, a, True)"].matrix == {"os": "mac", "tier": "a", "extra": True}
    assert jobs["test (linux, a)"].labels == ["linux"]  # runs-on: ${{ matrix.os }}
    assert [s.status for s in service.steps(jobs["test (windows)"].id)] == ["waiting"] * 2
    work(service, run.id, "test (linux, a)")
    assert statuses(service, run.id)["test (windows)"] == "queued"


def work_with_outputs(service: PipelineService, run_id: str, key: str, outputs: dict) -> None:
    found = job(service, run_id, key)
    assert service.claim(found.id, "test-worker") is not None
    service.finish_job(found.id, "succeeded", outputs, None)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "fromJSON"),
        ('"a string"', "the matrix expression gave the string 'a string', not a mapping"),
        ('{"os": []}', "strategy.matrix.os: matrix axis 'os' must be a non-empty list"),
        ('{"os": ["a"], "exclude": [{"os": "a"}]}', "exclude removes every combination"),
        ('{"n": ' + json.dumps(list(range(300))) + "}", "more than the limit of 256"),
    ],
)
def test_a_bad_matrix_expression_value_fails_its_job_saying_why(platform, value, message):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": DYNAMIC})
    service.start_pushed()
    [run] = service.runs()

    work_with_outputs(service, run.id, "setup", {"matrix": value})

    failed = job(service, run.id, "test")
    assert failed.status == "failed" and failed.error.startswith("strategy.matrix: ")  # type: ignore[union-attr]
    assert message in failed.error, failed.error  # type: ignore[operator]
    assert step_statuses(service, run.id, "test") == ["skipped", "skipped"]


def test_a_matrix_from_a_manual_runs_inputs_expands_at_once(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": DYNAMIC})

    run = service.start_manual(repo.repository, "main", "bob", {"m": '{"x": [7, 8]}'})

    found = statuses(service, run.id)
    assert (found["from-inputs (7)"], found["from-inputs (8)"]) == ("queued", "queued")


def test_a_matrix_expression_of_a_skipped_job_is_not_evaluated(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": DYNAMIC})
    service.start_pushed()
    [run] = service.runs()

    work(service, run.id, "setup", "failed")

    assert statuses(service, run.id)["test"] == "skipped"
    assert job(service, run.id, "test").error is None


def test_a_worker_takes_only_jobs_whose_labels_its_queues_carry(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit(
        {
            ".pavedroad/pipeline.yaml": """\
                on: push
                jobs:
                  gpu:
                    runs-on: [gpu]
                    steps:
                      - run: echo on a gpu
                """
        }
    )
    service.start_pushed()
    [run] = service.runs()
    gpu = job(service, run.id, "gpu")
    assert "gpu" not in app.state.settings.pipelines.labels

    service.execute_job(gpu.id, frozenset({"local"}))
    assert statuses(service, run.id)["gpu"] == "queued"  # back on its queue for another

    service.execute_job(gpu.id, frozenset({"gpu", "local"}))  # the labels its queues carry
    assert service.run(run.id).status == "succeeded"


def test_job_queues_tell_the_handler_the_labels_they_consume(make_settings):
    from integration_support import wait_for

    from pavedroad.pipelines.dispatch import JobQueues
    from pavedroad.pipelines.runs import JOB

    handled: list[tuple[str, Any]] = []
    queues = JobQueues(make_settings(), lambda job_id, labels: handled.append((job_id, labels)))
    [any_consumer, gpu_consumer] = queues.consumers(["gpu"], 1)
    for consumer in (any_consumer, gpu_consumer):
        consumer.start()
    try:
        queues("jobs-gpu").enqueue(JOB, "a-job")
        assert wait_for(lambda: bool(handled), timeout=20)
    finally:
        for consumer in (any_consumer, gpu_consumer):
            consumer.stop_and_wait()
    assert handled == [("a-job", frozenset({"gpu"}))]
