"""Running one job of a pipeline run on a worker, as GitHub Actions runs a job.

:class:`JobExecutor` takes a :class:`JobContext` (the job's row id, the run's facts, the
results of the jobs it needs, the secrets) and runs the job's planned steps
(``JobRow.spec``) one after the other in a fresh folder, recording each step
(:class:`StepRow`, its log as :class:`LogChunkRow` rows) as it goes, and returns a
:class:`JobResult`. It writes the job row's ``heartbeat_at`` every few seconds and
nothing else of it: the orchestrator that started it records the job's end.

Per step, as on GitHub: ``${{ }}`` is evaluated just before the step runs; ``if:``
holds an implied ``success() &&`` unless it calls a status function; ``run:`` scripts
run as ``bash --noprofile --norc -eo pipefail <file>`` (or ``sh -e``, or ``python``) in a
session of their own with a clean environment; outputs and environment variables come
back through ``$PAVEDROAD_OUTPUT`` and ``$PAVEDROAD_ENV``; ``continue-on-error`` lets
the job go on past a failure. A step's timeout, the job's and cancellation stop the
step's whole process group; what a step leaves running in its group is killed when it
ends, and what escaped the group is found and killed at the job's end (see
:mod:`pavedroad.pipelines.processes`).

A local step (``uses: ./path``, :mod:`pavedroad.pipelines.local_steps`) runs its own
steps the same way, one after the other within the step that uses it: in that step's
log, each with a notice line naming it, with the local step's ``inputs``, ``steps`` and
status for its ``if:`` conditions, and within that step's timeout.

Differences from GitHub: a job past its ``timeout-minutes`` ends ``failed`` (GitHub
says ``cancelled``), since nobody cancelled it; outputs of a job that hold a secret are
left out with a notice, as GitHub does, and step outputs are stored masked.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import shutil
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update

from pavedroad.core.db import Database
from pavedroad.core.errors import ProblemError
from pavedroad.core.paths import PathEscapeError, contained_path
from pavedroad.core.timeutil import utcnow
from pavedroad.pipelines import outputs as file_commands
from pavedroad.pipelines.expressions import (
    ExpressionError,
    Functions,
    JobStatus,
    evaluate_condition,
    interpolate,
    render_value,
    to_string,
    truthy,
)
from pavedroad.pipelines.local_steps import LocalStep, LocalStepInvalid, load_local_step
from pavedroad.pipelines.models import JobRow, LogChunkRow, RunRow, StepRow, TestCaseRow
from pavedroad.pipelines.processes import JOB_MARKER, kill_marked, run_process
from pavedroad.pipelines.steplog import JOB_LOG_INDEX, StepLog, error_line, notice
from pavedroad.pipelines.steps import (
    RunFacts,
    StepContext,
    StepFailed,
    StepRegistry,
    StepStopped,
)
from pavedroad.secrets.masking import Masker
from pavedroad.settings import Settings

log = logging.getLogger("pavedroad.pipelines")

DEFAULT_JOB_TIMEOUT_MINUTES = 60.0
DEFAULT_STEP_LOG_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_KILL_GRACE_SECONDS = 5.0
DEFAULT_HEARTBEAT_SECONDS = 5.0
DEFAULT_FILE_COMMAND_MAX_BYTES = 1024 * 1024
CANCEL_POLL_SECONDS = 0.5
ACTION_PATH_VARIABLE = "PAVEDROAD_ACTION_PATH"  # a local step's folder, to its steps
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_CONCLUSION_STATUS = {
    "success": "succeeded",
    "failure": "failed",
    "cancelled": "cancelled",
    "skipped": "skipped",
}


# -- what the orchestrator hands over and gets back --------------------------------------


@dataclass
class JobContext:
    """Everything a job needs besides its row: the run's facts, the results of the jobs
    it needs, the secrets in scope (name → value, read from the secrets store) and how
    to tell it was cancelled."""

    settings: Settings
    db: Database
    job_id: str  # the JobRow's id
    run_id: str
    run_number: int
    repository: str  # "owner/name" of a hosted repository
    commit: str
    ref: str  # refs/heads/main
    branch: str | None
    event: str  # push, manual, schedule, rerun
    actor: str
    inputs: dict[str, Any] = field(default_factory=dict)
    needs: dict[str, dict[str, Any]] = field(default_factory=dict)  # id → {result, outputs}
    secrets: dict[str, str] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)  # the pipeline's own env:, unevaluated
    entity_ref: str | None = None  # the component the repository holds
    cancelled: Callable[[], bool] | None = None  # None: read JobRow.cancel_requested
    registry: StepRegistry | None = None  # the step types; None: those the plugins offer

    @classmethod
    def for_job(cls, settings: Settings, db: Database, job_id: str, **given: Any) -> JobContext:
        """The context of ``job_id`` with the run's facts read from its rows; keyword
        arguments (``needs``, ``secrets``, ``cancelled``, ...) are passed on."""
        with db.read_session() as session:
            job = session.get(JobRow, job_id)
            run = session.get(RunRow, job.run_id) if job is not None else None
        if job is None or run is None:
            raise LookupError(f"there is no pipeline job {job_id}")
        pipeline_env = ((run.pipeline or {}).get("pipeline") or {}).get("env")
        facts: dict[str, Any] = {
            "run_id": run.id,
            "run_number": run.number,
            "repository": run.repository,
            "commit": run.commit,
            "ref": run.ref,
            "branch": run.branch,
            "event": run.event,
            "actor": run.created_by,
            "inputs": dict(run.inputs or {}),
            "env": dict(pipeline_env) if isinstance(pipeline_env, dict) else {},
            "entity_ref": run.entity_ref,
        }
        facts.update(given)
        return cls(settings=settings, db=db, job_id=job_id, **facts)

    @property
    def facts(self) -> RunFacts:
        return RunFacts(
            run_id=self.run_id,
            run_number=self.run_number,
            repository=self.repository,
            commit=self.commit,
            ref=self.ref,
            branch=self.branch,
            event=self.event,
            actor=self.actor,
            entity_ref=self.entity_ref,
        )


@dataclass(frozen=True)
class JobResult:
    status: str  # succeeded, failed, cancelled
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None


@dataclass
class _StepResult:
    outcome: str  # success, failure, cancelled, skipped
    outputs: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None
    message: str | None = None
    continue_on_error: bool = False
    job_timed_out: bool = False

    @property
    def conclusion(self) -> str:
        if self.outcome == "failure" and self.continue_on_error:
            return "success"
        return self.outcome


@dataclass
class _Prepared:
    name: str
    env: dict[str, str]
    inputs: dict[str, Any]
    script: str | None
    uses: str | None
    cwd: Path
    timeout_minutes: float | None
    continue_on_error: bool
    shell: str


class _Folders:
    """A job's folders: ``workspace`` (the checkout), ``home`` ($HOME) and ``temp``
    (runner.temp: scripts, file commands, reports), under one folder per job."""

    def __init__(self, settings: Settings, job_id: str) -> None:
        workspaces = settings.home / "pipelines" / "workspaces"
        self.root = contained_path(workspaces, job_id)
        self.workspace = self.root / "workspace"
        self.home = self.root / "home"
        self.temp = self.root / "temp"

    def create(self) -> None:
        remove_tree(self.root)  # an earlier attempt's leftovers: every job starts fresh
        for folder in (self.workspace, self.home, self.temp):
            folder.mkdir(parents=True, mode=0o700)


def remove_tree(path: Path) -> None:
    """Remove a folder whatever its files' permissions (a step may have made some
    read-only)."""

    def retry(function: Callable[..., Any], name: str, _error: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(name), stat.S_IRWXU)
            if os.path.isdir(name) and not os.path.islink(name):
                os.chmod(name, stat.S_IRWXU)
            function(name)

    if path.exists() or path.is_symlink():
        handler = {"onexc" if sys.version_info >= (3, 12) else "onerror": retry}
        shutil.rmtree(path, **handler)  # type: ignore[arg-type]


def _setting(settings: Settings, name: str, default: Any) -> Any:
    return getattr(getattr(settings, "pipelines", None), name, default)


# -- the executor ------------------------------------------------------------------------


class JobExecutor:
    """Runs one job; :meth:`run` returns when it has ended and its processes are gone."""

    def __init__(self, context: JobContext) -> None:
        self.context = context
        settings = context.settings
        self.registry = context.registry or StepRegistry.from_plugins()
        self.masker = Masker(value for value in context.secrets.values() if value)
        self.folders = _Folders(settings, context.job_id)
        self.log_max_bytes = int(
            _setting(settings, "max_step_log_bytes", DEFAULT_STEP_LOG_MAX_BYTES)
        )
        self.grace_seconds = float(
            _setting(settings, "kill_grace_seconds", DEFAULT_KILL_GRACE_SECONDS)
        )
        self.heartbeat_seconds = float(
            _setting(settings, "heartbeat_seconds", DEFAULT_HEARTBEAT_SECONDS)
        )
        self.file_command_max_bytes = int(
            _setting(settings, "file_command_max_bytes", DEFAULT_FILE_COMMAND_MAX_BYTES)
        )
        self.base_path = str(_setting(settings, "step_path", None) or BASE_PATH)
        self.status = JobStatus.SUCCESS
        self.failure: str | None = None
        self.timed_out = False
        self.steps_context: dict[str, dict[str, Any]] = {}
        self.pipeline_env: dict[str, str] = {}
        self.job_env: dict[str, str] = {}
        self.added_env: dict[str, str] = {}
        self.added_path: list[str] = []
        self.job_deadline = float("inf")
        self.job_key = ""  # the pipeline's id of the job (``test``)
        self.attempt = 1
        self.spec: dict[str, Any] = {}
        self.matrix: dict[str, Any] = {}
        self._cancel = threading.Event()
        self._stop_watch = threading.Event()
        self._local_chain: list[LocalStep] = []  # the local steps running, outermost first

    # -- the job ---------------------------------------------------------------------

    def run(self) -> JobResult:
        context = self.context
        with context.db.read_session() as session:
            job = session.get(JobRow, context.job_id)
        if job is None:
            return JobResult("failed", {}, f"there is no pipeline job {context.job_id}")
        self.spec = dict(job.spec or {})
        self.matrix = dict(job.matrix or self.spec.get("matrix") or {})
        self.job_key = job.job_id
        self.attempt = max(1, job.attempt)  # the orchestrator counts from 1 when it claims
        job_log = self._log(JOB_LOG_INDEX)
        watch = threading.Thread(
            target=self._watch, name=f"pipeline-job-{context.job_id}", daemon=True
        )
        watch.start()
        try:
            self._reset_rows()
            self.folders.create()
            result = self._run_steps(job_log)
        except Exception as error:  # a bug or a database outage: the job fails, cleanly
            log.exception("pipeline job %s failed in the executor", context.job_id)
            message = self.masker.mask(f"the runner failed: {type(error).__name__}: {error}")
            job_log.line(error_line(message))
            result = JobResult("failed", {}, message)
        finally:
            self._stop_watch.set()
            watch.join()
            killed = kill_marked(context.job_id)
            if killed:
                job_log.line(notice(f"Stopped {killed} processes the job left running"))
            job_log.close()
            if not _setting(context.settings, "keep_workspaces", False):
                remove_tree(self.folders.root)
        return result

    def _run_steps(self, job_log: StepLog) -> JobResult:
        try:
            minutes = _minutes(self.spec.get("timeout-minutes"), DEFAULT_JOB_TIMEOUT_MINUTES)
            self.job_deadline = time.monotonic() + minutes * 60
            self._evaluate_job_env()
        except (ExpressionError, StepFailed) as error:
            message = self.masker.mask(_message(error))
            job_log.line(error_line(f"The job cannot start: {message}"))
            self._skip_all()
            return JobResult("failed", {}, f"the job cannot start: {message}")
        for step in self._steps():
            self._run_step(step)
        outputs = self._job_outputs(job_log)
        if self.status is JobStatus.CANCELLED:
            return JobResult("cancelled", outputs, "the job was cancelled")
        if self.timed_out:
            job_log.line(error_line(f"The job ran past its timeout of {minutes:g} minutes"))
            return JobResult(
                "failed", outputs, f"the job ran past its timeout of {minutes:g} minutes"
            )
        if self.status is JobStatus.FAILURE:
            return JobResult("failed", outputs, self.failure or "a step failed")
        return JobResult("succeeded", outputs, None)

    def _steps(self) -> list[dict[str, Any]]:
        steps = self.spec.get("steps") or []
        return [
            {**step, "index": step.get("index", position)}
            for position, step in enumerate(steps)
            if isinstance(step, dict)
        ]

    def _reset_rows(self) -> None:
        """Step rows for this attempt (an earlier attempt's steps, logs and test results
        go), every step waiting."""
        job_id = self.context.job_id
        with self.context.db.session() as session:
            for table in (StepRow, LogChunkRow, TestCaseRow):
                session.execute(delete(table).where(table.job_id == job_id))
            for step in self._steps():
                session.add(
                    StepRow(
                        id=_step_row_id(job_id, step["index"]),
                        job_id=job_id,
                        index=step["index"],
                        step_id=step.get("id"),
                        name=_display_name(step)[:300],
                        status="waiting",
                        outputs={},
                        log_bytes=0,
                        truncated=False,
                    )
                )

    def _skip_all(self) -> None:
        with self.context.db.session() as session:
            session.execute(
                update(StepRow)
                .where(StepRow.job_id == self.context.job_id, StepRow.status == "waiting")
                .values(status="skipped")
            )

    # -- cancellation and heartbeat --------------------------------------------------

    def _watch(self) -> None:
        next_beat = 0.0
        while True:
            now = time.monotonic()
            if now >= next_beat:
                self._heartbeat()
                next_beat = now + self.heartbeat_seconds
            if not self._cancel.is_set() and self._cancel_requested():
                self._cancel.set()
            if self._stop_watch.wait(CANCEL_POLL_SECONDS):
                return

    def _heartbeat(self) -> None:
        try:
            with self.context.db.session() as session:
                session.execute(
                    update(JobRow)
                    .where(JobRow.id == self.context.job_id)
                    .values(heartbeat_at=utcnow())
                )
        except Exception:
            log.exception("could not record the heartbeat of job %s", self.context.job_id)

    def _cancel_requested(self) -> bool:
        try:
            if self.context.cancelled is not None:
                return bool(self.context.cancelled())
            with self.context.db.read_session() as session:
                found = session.execute(
                    select(JobRow.cancel_requested, RunRow.cancel_requested)
                    .join(RunRow, RunRow.id == JobRow.run_id)
                    .where(JobRow.id == self.context.job_id)
                ).first()
            return found is None or bool(found[0]) or bool(found[1])
        except Exception:
            log.exception("could not read whether job %s was cancelled", self.context.job_id)
            return False

    # -- contexts ----------------------------------------------------------------------

    def _contexts(self, env: Mapping[str, str]) -> dict[str, Any]:
        context = self.context
        ref = context.ref
        if ref.startswith("refs/heads/"):
            ref_name, ref_type = ref.removeprefix("refs/heads/"), "branch"
        elif ref.startswith("refs/tags/"):
            ref_name, ref_type = ref.removeprefix("refs/tags/"), "tag"
        else:
            ref_name, ref_type = context.branch or ref, "branch"
        return {
            "github": {
                "repository": context.repository,
                "repository_owner": context.repository.partition("/")[0],
                "sha": context.commit,
                "ref": ref,
                "ref_name": ref_name,
                "ref_type": ref_type,
                "event_name": context.event,
                "run_id": context.run_id,
                "run_number": context.run_number,
                "run_attempt": self.attempt,
                "actor": context.actor,
                "job": self.job_key,
                "workspace": str(self.folders.workspace),
                "server_url": context.settings.public_url,
            },
            "env": dict(env),
            "inputs": dict(context.inputs),
            "matrix": dict(self.matrix),
            "needs": {key: dict(value) for key, value in context.needs.items()},
            "steps": self.steps_context,
            "secrets": dict(context.secrets),
            "job": {"status": self.status.value},
            "runner": {
                "os": platform.system(),
                "arch": _architecture(),
                "name": socket.gethostname(),
                "temp": str(self.folders.temp),
            },
            "strategy": {},
            "jobs": {},
            "vars": {},
        }

    def _functions(self, status: JobStatus | None = None) -> Functions:
        """Functions for expressions; with ``status``, the status functions of an ``if:``."""
        return Functions(
            status=status,
            hash_files=lambda patterns: hash_files(self.folders.workspace, patterns),
        )

    def _wanted(self, step: Mapping[str, Any], contexts: dict[str, Any], status: JobStatus) -> bool:
        """Whether the step's ``if:`` holds, with ``status`` answering ``success()`` and
        the other status functions."""
        condition = step.get("if")
        if isinstance(condition, bool):  # `if: false` in YAML is a boolean, not a text
            condition = "true" if condition else "false"
        return evaluate_condition(
            "" if condition is None else str(condition), contexts, self._functions(status)
        )

    def _evaluate_job_env(self) -> None:
        contexts = self._contexts({})
        self.pipeline_env = _render_env(self.context.env, contexts, self._functions())
        contexts["env"] = dict(self.pipeline_env)
        self.job_env = _render_env(self.spec.get("env") or {}, contexts, self._functions())

    def _env_context(self) -> dict[str, str]:
        return {**self.pipeline_env, **self.job_env, **self.added_env}

    # -- one step ----------------------------------------------------------------------

    def _run_step(self, step: dict[str, Any]) -> None:
        index = step["index"]
        step_log = self._log(index)
        if self._cancel.is_set() and self.status is not JobStatus.CANCELLED:
            self.status = JobStatus.CANCELLED
        if self.timed_out or time.monotonic() >= self.job_deadline:
            self.timed_out = True
            self._record(step, _StepResult("skipped"), step_log, name=None)
            return
        contexts = self._contexts(self._env_context())
        try:
            wanted = self._wanted(step, contexts, self.status)
        except ExpressionError as error:
            self._start(index)
            result = _StepResult("failure", message=f"if: {error.detail}")
            self._record(step, result, step_log, name=None)
            return
        if not wanted:
            self._record(step, _StepResult("skipped"), step_log, name=None)
            return
        self._start(index)
        name: str | None = None
        try:
            prepared = self._prepare(step, contexts)
            name = prepared.name
            result = self._execute(step, prepared, step_log)
        except (ExpressionError, StepFailed, file_commands.FileCommandError) as error:
            result = _StepResult("failure", message=_message(error))
        except Exception as error:  # the runner's own failure ends this step, not the job
            log.exception("step %s of job %s failed in the runner", index, self.context.job_id)
            result = _StepResult("failure", message=f"the runner failed: {error}")
        self._record(step, result, step_log, name=name)

    def _prepare(self, step: dict[str, Any], contexts: dict[str, Any]) -> _Prepared:
        """The step's fields evaluated: env first, then the rest with it in ``env``."""
        functions = self._functions()
        step_env = _render_env(step.get("env") or {}, contexts, functions)
        contexts = {**contexts, "env": {**contexts["env"], **step_env}}

        def text(key: str) -> str | None:
            value = step.get(key)
            return None if value is None else interpolate(str(value), contexts, functions)

        def value(key: str) -> Any:
            found = step.get(key)
            return render_value(found, contexts, functions) if isinstance(found, str) else found

        working_directory = text("working-directory") or "."
        try:
            cwd = contained_path(self.folders.workspace, working_directory)
        except PathEscapeError:
            raise StepFailed(
                f"working-directory {working_directory!r} is outside the workspace"
            ) from None
        if not cwd.is_dir():
            raise StepFailed(f"working-directory {working_directory!r} does not exist")
        timeout = value("timeout-minutes")
        return _Prepared(
            name=text("name") or _display_name(step),
            env=step_env,
            inputs=_render_tree(step.get("with") or {}, contexts, functions),
            script=text("run"),
            uses=step.get("uses"),
            cwd=cwd,
            timeout_minutes=None if timeout in (None, "") else _minutes(timeout, None),
            continue_on_error=truthy(value("continue-on-error") or False),
            shell=str(step.get("shell") or "bash"),
        )

    def _execute(
        self,
        step: dict[str, Any],
        prepared: _Prepared,
        step_log: StepLog,
        *,
        key: str | None = None,
        deadline: float = float("inf"),
    ) -> _StepResult:
        """Run a prepared step. ``key`` names its script and file commands (a step of a
        local step has one of its own); ``deadline`` is an enclosing local step's."""
        key = str(step["index"]) if key is None else key
        files = self._file_commands(key)
        env = self._process_env(prepared.env, files)
        own_deadline = (
            time.monotonic() + prepared.timeout_minutes * 60
            if prepared.timeout_minutes is not None
            else float("inf")
        )
        step_deadline = min(own_deadline, deadline, self.job_deadline)
        interruptible = self.status is not JobStatus.CANCELLED  # cleanup steps run to the end

        def should_stop() -> str | None:
            if interruptible and self._cancel.is_set():
                return "cancelled"
            if time.monotonic() >= step_deadline:
                return "timeout"
            return None

        def runner(argv: Sequence[str], cwd: Path, process_env: Mapping[str, str]) -> int:
            outcome = run_process(
                argv,
                cwd=cwd,
                env=process_env,
                on_output=step_log.write,
                should_stop=should_stop,
                on_tick=step_log.tick,
                grace_seconds=self.grace_seconds,
            )
            if outcome.stopped is not None:
                raise StepStopped(outcome.stopped)
            return outcome.exit_code

        result = _StepResult("success", continue_on_error=prepared.continue_on_error)
        try:
            if prepared.script is not None:
                argv = self._script(key, prepared, env)
                result.exit_code = runner(argv, prepared.cwd, env)
                if result.exit_code != 0:
                    result.outcome = "failure"
                    result.message = f"Process completed with exit code {result.exit_code}."
            elif prepared.uses and str(prepared.uses).startswith("./"):
                outputs = self._run_local_step(key, prepared, step_log, step_deadline)
                result.outputs.update(outputs)
            elif prepared.uses:
                outputs = self._run_step_type(step["index"], prepared, env, step_log, runner)
                result.outputs.update(outputs)
            else:
                raise StepFailed("the step has neither run: nor uses:")
        except StepStopped as stopped:
            if stopped.reason == "cancelled":
                result.outcome, result.message = "cancelled", "The step was cancelled."
                self.status = JobStatus.CANCELLED
            elif time.monotonic() >= self.job_deadline:
                result.outcome = "failure"
                result.job_timed_out = True
                result.message = "The job ran past its timeout: the step was stopped."
            elif time.monotonic() >= own_deadline:
                result.outcome = "failure"
                result.message = (
                    f"The step ran past its timeout of {prepared.timeout_minutes:g} minutes."
                )
            else:
                raise  # the enclosing local step's timeout: it says so
        except StepFailed as failed:
            result.outcome, result.message = "failure", failed.message
            result.outputs.update({name: _text(value) for name, value in failed.outputs.items()})
        try:
            result.outputs.update(self._read_file_commands(files))
        except file_commands.FileCommandError as error:
            if result.outcome == "success":
                result.outcome, result.message = "failure", error.detail
        return result

    def _run_step_type(
        self,
        index: int,
        prepared: _Prepared,
        env: dict[str, str],
        step_log: StepLog,
        runner: Callable[[Sequence[str], Path, Mapping[str, str]], int],
    ) -> dict[str, str]:
        uses = str(prepared.uses)
        try:
            step_type = self.registry.get(uses)
        except ProblemError as error:
            raise StepFailed(error.detail) from None
        problems = self.registry.input_problems(uses, prepared.inputs, allow_expressions=False)
        if problems:
            raise StepFailed("; ".join(problems))
        context = StepContext(
            inputs=prepared.inputs,
            workspace=self.folders.workspace,
            temp=self.folders.temp,
            facts=self.context.facts,
            job_id=self.context.job_id,
            step_index=index,
            settings=self.context.settings,
            db=self.context.db,
            env=env,
            masker=self.masker,
            write=step_log.write,
            runner=runner,
            cancelled=self._cancel.is_set,
        )
        try:
            outputs = step_type.handler(context) or {}
        except (StepFailed, StepStopped):
            raise
        except ProblemError as error:
            raise StepFailed(error.detail) from None
        except Exception as error:
            log.exception("the step type %s failed in job %s", uses, self.context.job_id)
            raise StepFailed(f"{step_type.id} failed: {type(error).__name__}: {error}") from None
        finally:
            self.added_env.update(context.added_env)
            self.added_path.extend(context.added_path)
        return {key: _text(value) for key, value in outputs.items()}

    # -- local steps -------------------------------------------------------------------

    def _run_local_step(
        self, key: str, prepared: _Prepared, step_log: StepLog, deadline: float
    ) -> dict[str, str]:
        """Run the local step ``prepared.uses`` names (:mod:`~pavedroad.pipelines.local_steps`)
        as part of this step, in its log; returns the local step's outputs."""
        try:
            local = load_local_step(
                self.folders.workspace,
                str(prepared.uses),
                known_step=self.registry.known,
                chain=self._local_chain,
            )
        except LocalStepInvalid as invalid:
            if len(invalid.problems) > 1:
                for problem in invalid.problems:
                    step_log.line(error_line(problem))
            raise
        around = self._contexts(self._env_context())
        inputs = local.resolve_inputs(
            prepared.inputs, lambda text: render_value(text, around, self._functions())
        )
        # the using step's env reaches the local step's steps; INPUT_* are each one's own
        layer = {
            name: value for name, value in prepared.env.items() if not name.startswith("INPUT_")
        }
        layer |= {**local.input_env(inputs), ACTION_PATH_VARIABLE: str(local.folder)}
        self._local_chain.append(local)
        try:
            return self._run_local_steps(local, inputs, layer, step_log, key, deadline)
        finally:
            self._local_chain.pop()

    def _run_local_steps(
        self,
        local: LocalStep,
        inputs: dict[str, str],
        layer: dict[str, str],
        step_log: StepLog,
        key: str,
        deadline: float,
    ) -> dict[str, str]:
        """A local step's steps, one after the other as a job's: ``if:`` with the local
        step's own status, ``steps`` its own steps, ``continue-on-error``. A failure
        fails the step that uses it (with the outputs set so far); a cancel or a timeout
        stops it (raising :class:`StepStopped`)."""
        status = JobStatus.SUCCESS
        steps_context: dict[str, dict[str, Any]] = {}
        failure = ""
        stopped = False  # cancelled while the local step ran
        interruptible = self.status is not JobStatus.CANCELLED
        for position, step in enumerate(local.steps):
            if time.monotonic() >= deadline:
                raise StepStopped("timeout")
            if interruptible and self._cancel.is_set() and status is not JobStatus.CANCELLED:
                status = self.status = JobStatus.CANCELLED
                stopped = True
            contexts = self._local_contexts(local, inputs, steps_context, layer)
            name = _display_name(step)
            try:
                wanted = self._wanted(step, contexts, status)
            except ExpressionError as error:
                result = _StepResult("failure", message=f"if: {error.detail}")
            else:
                if wanted:
                    result = self._run_local_inner(
                        local, step, contexts, layer, step_log, f"{key}.{position}", deadline
                    )
                else:
                    step_log.line(notice(f"{local.uses}: {name} (skipped)"))
                    result = _StepResult("skipped")
            if result.job_timed_out:
                raise StepStopped("timeout")
            if result.outcome == "failure":
                step_log.line(error_line(result.message or "The step failed."))
                if result.continue_on_error:
                    step_log.line(notice("continue-on-error is set: the local step goes on"))
            if result.outcome == "cancelled":
                status, stopped = JobStatus.CANCELLED, True
            elif result.conclusion == "failure" and status is JobStatus.SUCCESS:
                status = JobStatus.FAILURE
                failure = f"its step {step.get('id') or name!r} failed: {result.message or ''}"
            if step.get("id"):
                steps_context[str(step["id"])] = {
                    "outputs": dict(result.outputs),
                    "outcome": result.outcome,
                    "conclusion": result.conclusion,
                }
        outputs = self._local_outputs(local, inputs, steps_context, layer)
        if stopped:
            raise StepStopped("cancelled")
        if status is JobStatus.FAILURE:
            raise StepFailed(f"{local.uses}: {failure}", outputs)
        return outputs

    def _run_local_inner(
        self,
        local: LocalStep,
        step: dict[str, Any],
        contexts: dict[str, Any],
        layer: dict[str, str],
        step_log: StepLog,
        key: str,
        deadline: float,
    ) -> _StepResult:
        try:
            prepared = self._prepare(step, contexts)
        except (ExpressionError, StepFailed) as error:
            step_log.line(notice(f"{local.uses}: {_display_name(step)}"))
            return _StepResult("failure", message=_message(error))
        step_log.line(notice(f"{local.uses}: {prepared.name}"))
        prepared.env = {**layer, **prepared.env}
        try:
            return self._execute(step, prepared, step_log, key=key, deadline=deadline)
        except (ExpressionError, StepFailed, file_commands.FileCommandError) as error:
            return _StepResult("failure", message=_message(error))

    def _local_contexts(
        self,
        local: LocalStep,
        inputs: dict[str, str],
        steps_context: dict[str, dict[str, Any]],
        layer: dict[str, str],
    ) -> dict[str, Any]:
        """The contexts inside a local step: its own ``inputs`` and ``steps``, no
        ``secrets`` (as in GitHub's composite actions: pass them in as inputs),
        ``github.action_path`` its folder."""
        contexts = self._contexts({**self._env_context(), **layer})
        contexts["github"] = {**contexts["github"], "action_path": str(local.folder)}
        contexts.update(inputs=dict(inputs), steps=steps_context, secrets={})
        return contexts

    def _local_outputs(
        self,
        local: LocalStep,
        inputs: dict[str, str],
        steps_context: dict[str, dict[str, Any]],
        layer: dict[str, str],
    ) -> dict[str, str]:
        contexts = self._local_contexts(local, inputs, steps_context, layer)
        outputs: dict[str, str] = {}
        for name, output in local.outputs.items():
            try:
                outputs[name] = interpolate(output.value, contexts, self._functions())
            except ExpressionError as error:
                raise StepFailed(f"{local.source}: outputs.{name}: {error.detail}") from None
        return outputs

    def _script(self, key: str, prepared: _Prepared, env: Mapping[str, str]) -> list[str]:
        scripts = self.folders.temp / "scripts"
        scripts.mkdir(exist_ok=True)
        shell = prepared.shell
        suffix = {"bash": ".sh", "sh": ".sh", "python": ".py"}.get(shell)
        if suffix is None:
            raise StepFailed(f"shell {shell!r} is not one of bash, sh, python")
        script = scripts / f"step-{key}{suffix}"
        script.write_text(prepared.script or "")
        script.chmod(0o700)
        path = env.get("PATH", self.base_path)
        if shell == "python":
            found = shutil.which("python3", path=path) or shutil.which("python", path=path)
            return [found or sys.executable, str(script)]
        program = shutil.which(shell, path=path)
        if program is None:
            raise StepFailed(f"{shell} is not installed on this worker (PATH={path})")
        if shell == "bash":
            return [program, "--noprofile", "--norc", "-eo", "pipefail", str(script)]
        return [program, "-e", str(script)]

    # -- environment and file commands -------------------------------------------------

    def _file_commands(self, key: str) -> dict[str, Path]:
        folder = self.folders.temp / "commands"
        folder.mkdir(exist_ok=True)
        files = {kind: folder / f"{kind}-{key}" for kind in ("output", "env", "path")}
        for path in files.values():
            path.write_bytes(b"")
        return files

    def _read_file_commands(self, files: Mapping[str, Path]) -> dict[str, str]:
        limit = self.file_command_max_bytes
        read = file_commands.read_command_file
        env = file_commands.parse_env_assignments(read(files["env"], "$PAVEDROAD_ENV", limit))
        folders = file_commands.parse_path_lines(read(files["path"], "$PAVEDROAD_PATH", limit))
        self.added_env.update(env)
        self.added_path.extend(folders)
        return file_commands.parse_assignments(read(files["output"], "$PAVEDROAD_OUTPUT", limit))

    def _process_env(
        self, step_env: Mapping[str, str], files: Mapping[str, Path]
    ) -> dict[str, str]:
        context = self.context
        path = ":".join([*reversed(self.added_path), self.base_path])
        base = {
            "PATH": path,
            "HOME": str(self.folders.home),
            "LANG": "C.UTF-8",
            "TMPDIR": str(self.folders.temp),
            "CI": "true",
        }
        env = {**base, **self.pipeline_env, **self.job_env, **self.added_env, **dict(step_env)}
        env.update(
            {
                "PAVEDROAD": "true",
                "PAVEDROAD_WORKSPACE": str(self.folders.workspace),
                "PAVEDROAD_TEMP": str(self.folders.temp),
                "PAVEDROAD_REPOSITORY": context.repository,
                "PAVEDROAD_SHA": context.commit,
                "PAVEDROAD_REF": context.ref,
                "PAVEDROAD_REF_NAME": context.branch or context.ref.rpartition("/")[2],
                "PAVEDROAD_EVENT_NAME": context.event,
                "PAVEDROAD_RUN_ID": context.run_id,
                "PAVEDROAD_RUN_NUMBER": str(context.run_number),
                "PAVEDROAD_JOB": self.job_key,
                "PAVEDROAD_ACTOR": context.actor,
                "PAVEDROAD_OUTPUT": str(files["output"]),
                "PAVEDROAD_ENV": str(files["env"]),
                "PAVEDROAD_PATH": str(files["path"]),
                "PAVEDROAD_SERVER_URL": context.settings.public_url,
                JOB_MARKER: context.job_id,
            }
        )
        for name, value in env.items():
            if "\x00" in name or "=" in name or "\x00" in value:
                raise StepFailed(f"the environment variable {name[:80]!r} holds a NUL or '='")
        return env

    # -- records -----------------------------------------------------------------------

    def _log(self, index: int) -> StepLog:
        return StepLog(
            self.context.db, self.context.job_id, index, self.masker, max_bytes=self.log_max_bytes
        )

    def _start(self, index: int) -> None:
        with self.context.db.session() as session:
            session.execute(
                update(StepRow)
                .where(StepRow.id == _step_row_id(self.context.job_id, index))
                .values(status="running", started_at=utcnow())
            )

    def _record(
        self, step: dict[str, Any], result: _StepResult, step_log: StepLog, name: str | None
    ) -> None:
        """Close the step's log, store how it ended, and let later steps see it."""
        if result.message:
            line = error_line if result.outcome in ("failure", "cancelled") else notice
            step_log.line(line(result.message))
        if result.outcome == "failure" and result.continue_on_error:
            step_log.line(notice("continue-on-error is set: the job goes on"))
        step_log.close()
        conclusion = result.conclusion
        if result.job_timed_out:
            self.timed_out = True
        if result.outcome == "cancelled":
            self.status = JobStatus.CANCELLED
        elif conclusion == "failure" and self.status is JobStatus.SUCCESS:
            self.status = JobStatus.FAILURE
            label = step.get("id") or name or _display_name(step)
            self.failure = self.masker.mask(f"step {label!r} failed: {result.message or ''}")
        if step.get("id"):
            self.steps_context[str(step["id"])] = {
                "outputs": dict(result.outputs),
                "outcome": result.outcome,
                "conclusion": conclusion,
            }
        values: dict[str, Any] = {
            "status": _CONCLUSION_STATUS[result.outcome],
            "exit_code": result.exit_code,
            "outputs": {key: self.masker.mask(value) for key, value in result.outputs.items()},
            "log_bytes": step_log.log_bytes,
            "truncated": step_log.truncated,
        }
        if result.outcome != "skipped":
            values["finished_at"] = utcnow()
        if name is not None:
            values["name"] = self.masker.mask(name)[:300]
        with self.context.db.session() as session:
            session.execute(
                update(StepRow)
                .where(StepRow.id == _step_row_id(self.context.job_id, step["index"]))
                .values(**values)
            )

    def _job_outputs(self, job_log: StepLog) -> dict[str, str]:
        """The job's ``outputs:`` evaluated; one that holds a secret is left out (as on
        GitHub), since job outputs travel to other jobs and into the run's record."""
        contexts = self._contexts(self._env_context())
        found: dict[str, str] = {}
        for name, expression in (self.spec.get("outputs") or {}).items():
            try:
                value = interpolate(str(expression), contexts, self._functions())
            except ExpressionError as error:
                job_log.line(notice(f"The output {name!r} is left out: {error.detail}"))
                continue
            if self.masker.mask(value) != value:
                job_log.line(notice(f"The output {name!r} is left out: it holds a secret"))
                continue
            found[str(name)] = value
        return found


# -- helpers -----------------------------------------------------------------------------


def _step_row_id(job_id: str, index: int) -> str:
    """A step row's id, derived from its job and place (so it needs no lookup)."""
    digest = hashlib.sha256(f"{job_id}/{index}".encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _display_name(step: Mapping[str, Any]) -> str:
    if step.get("name"):
        return str(step["name"])
    if step.get("uses"):
        return str(step["uses"])
    lines = str(step.get("run") or "").strip().splitlines()
    return f"Run {lines[0]}" if lines else "Run"


def _message(error: BaseException) -> str:
    if isinstance(error, StepFailed):
        return error.message
    if isinstance(error, ProblemError):
        return error.detail
    return str(error)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else to_string(value)


def _minutes(value: Any, default: float | None) -> float:
    if value in (None, ""):
        if default is None:
            raise StepFailed("timeout-minutes is empty")
        return default
    try:
        minutes = float(value)
    except (TypeError, ValueError):
        raise StepFailed(f"timeout-minutes must be a number, not {value!r}") from None
    if not minutes > 0 or minutes == float("inf"):
        raise StepFailed(f"timeout-minutes must be more than 0, not {value!r}")
    return minutes


def _render_env(
    env: Mapping[str, Any], contexts: Mapping[str, Any], functions: Functions
) -> dict[str, str]:
    rendered: dict[str, str] = {}
    for name, value in env.items():
        if not file_commands.ENV_NAME.fullmatch(str(name)):
            raise StepFailed(f"env: {str(name)[:80]!r} is not an environment variable name")
        if isinstance(value, str):
            value = render_value(value, contexts, functions)
        rendered[str(name)] = _text(value)
    return rendered


def _render_tree(value: Any, contexts: Mapping[str, Any], functions: Functions) -> Any:
    if isinstance(value, str):
        return render_value(value, contexts, functions)
    if isinstance(value, dict):
        return {key: _render_tree(item, contexts, functions) for key, item in value.items()}
    if isinstance(value, list):
        return [_render_tree(item, contexts, functions) for item in value]
    return value


def _architecture() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "X64", "amd64": "X64", "aarch64": "ARM64", "arm64": "ARM64"}.get(
        machine, machine.upper()
    )


def hash_files(workspace: Path, patterns: Sequence[str]) -> str:
    """``hashFiles()``: the SHA-256 of the SHA-256 of every file matching the patterns
    (relative to the workspace, ``**`` allowed, ``!pattern`` excludes), in path order;
    ``''`` when nothing matches."""
    root = workspace.resolve()
    chosen: set[Path] = set()
    for pattern in patterns:
        excluded = pattern.startswith("!")
        text = pattern[1:] if excluded else pattern
        try:
            matches = {path.resolve() for path in root.glob(text) if path.is_file()}
        except (NotImplementedError, ValueError) as error:
            raise ExpressionError(f"hashFiles(): {pattern!r}: {error}") from None
        matches = {path for path in matches if root in path.parents}
        chosen = chosen - matches if excluded else chosen | matches
    if not chosen:
        return ""
    total = hashlib.sha256()
    for path in sorted(chosen):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
        total.update(digest.digest())
    return total.hexdigest()
