"""Pipeline runs: from a trigger to jobs on workers and back to a run's result.

- **Triggers.** A push recorded by the hosted git layer (``GitPushed``), a manual start, a
  re-run. Each trigger has a key (``push:<event id>``, ...) that is unique among runs, so a
  trigger seen twice (a replayed event, two servers) starts one run.
- **Planning.** The run reads ``.pavedroad/pipeline.yaml`` at the commit, resolves a
  ``uses: template@N`` against the catalog's PipelineTemplates, checks the push filters,
  and plans one job row per job and matrix combination. An invalid file gives a failed run
  with every problem at its line, never a silent skip.
- **Dispatch.** A job whose needs have ended is queued on the job queue for its
  ``runs-on`` labels (see :func:`queue_name`); any worker consuming that queue claims it in
  the database, runs it (:mod:`pavedroad.pipelines.executor`) and reports back; the run
  then advances. A failed job with ``retries`` left is queued again.
- **Recovery.** A running job whose worker stopped sending heartbeats is retried or
  failed; a queued job whose message was lost is queued again. Nothing stays "running".
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import socket
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from pavedroad.catalog.queries import EntityQuery, parse_filters
from pavedroad.catalog.service import CatalogService
from pavedroad.core.db import Database
from pavedroad.core.errors import ConflictError, InputError, NotFoundError
from pavedroad.core.ids import new_id
from pavedroad.core.jobs import JobQueue
from pavedroad.core.timeutil import as_utc, isoformat, utcnow
from pavedroad.pipelines.library import ResolvedPipeline, TemplateLibrary, load_pipeline_file
from pavedroad.pipelines.models import FINISHED, JobRow, RunRow, StepRow
from pavedroad.pipelines.spec import Job, PipelineError, Step
from pavedroad.secrets.service import SecretStore
from pavedroad.settings import Settings

log = logging.getLogger("pavedroad.pipelines")

JOB = "pipelines.job"
PIPELINE_FILE = ".pavedroad/pipeline.yaml"
ZERO_SHA = "0" * 40
PUSH_LOOKBACK = timedelta(days=1)
LABEL_RETRY_SECONDS = 2.0
BUSY_RETRY_SECONDS = 1.0
PUSH_REREAD = timedelta(minutes=2)  # ids from several processes may commit out of order
GIT_TIMEOUT_SECONDS = 60
MAX_PIPELINE_BYTES = 256 * 1024


def queue_name(labels: Iterable[str]) -> str:
    """The queue a job waits on: its first ``runs-on`` label's, or the queue any worker
    takes from. A worker consumes the queues of each of its labels and ``any``."""
    chosen = sorted(labels)
    return f"jobs-{chosen[0]}" if chosen else "jobs-any"


@dataclasses.dataclass(frozen=True)
class Trigger:
    repository: str  # owner/name of a hosted repository
    commit: str
    ref: str
    event: str  # push, manual, rerun
    key: str  # unique per trigger
    actor: str
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    before: str | None = None  # the commit before a push (path filters)

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None

    @property
    def tag(self) -> str | None:
        return self.ref.removeprefix("refs/tags/") if self.ref.startswith("refs/tags/") else None


def glob_match(pattern: str, value: str) -> bool:
    """GitHub's filter patterns: ``*`` within a path segment, ``**`` across them, ``?``
    one character, a leading ``!`` handled by the caller."""
    regex = ""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**", index):
            regex += ".*"
            index += 2
            continue
        if char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        else:
            regex += re.escape(char)
        index += 1
    return re.fullmatch(regex, value) is not None


def _filtered(value: str, include: list[str], exclude: list[str]) -> bool:
    """GitHub's rule: included by the list (or by no list), then not excluded; within one
    list a ``!pattern`` after a match takes it out again."""
    if include:
        matched = False
        for pattern in include:
            if pattern.startswith("!"):
                if matched and glob_match(pattern[1:], value):
                    matched = False
            elif glob_match(pattern, value):
                matched = True
        if not matched:
            return False
    return not any(glob_match(pattern, value) for pattern in exclude)


class PipelineService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        catalog: CatalogService,
        queues: Callable[[str], JobQueue] | None = None,
        secret_store: SecretStore | None = None,
    ) -> None:
        from pavedroad.pipelines.steps import StepRegistry

        self.db = db
        self.settings = settings
        self.catalog = catalog
        self.queues = queues
        self.secret_store = secret_store
        self.registry = StepRegistry.from_plugins()
        self.git_root = settings.home / "git"
        self._push_cursor: str | None = None
        self._schedule_cache: dict[tuple[str, str], list[str]] = {}
        self._slots = threading.BoundedSemaphore(max(1, settings.pipelines.workers))

    def start_pushed(self) -> int:
        """Reconciler: a run for each push the hosted git layer recorded since the last
        look (at start: the last day's, so pushes made while no server ran are not lost;
        the trigger keys keep any push from starting two runs). Returns runs started."""
        from pavedroad.core.events import EventRow
        from pavedroad.git.service import GIT_PUSHED

        statement = (
            select(EventRow).where(EventRow.type == GIT_PUSHED).order_by(EventRow.id).limit(200)
        )
        if self._push_cursor is None:
            statement = statement.where(EventRow.at >= utcnow() - PUSH_LOOKBACK)
        else:
            # after the last one seen, and again the last minutes': an event another
            # process committed late, with an older id, is not skipped
            statement = statement.where(
                or_(EventRow.id > self._push_cursor, EventRow.at >= utcnow() - PUSH_REREAD)
            )
        with self.db.read_session() as session:
            events = [(row.id, json.loads(row.data)) for row in session.scalars(statement)]
        started = 0
        for event_id, data in events:
            try:
                if self._run_by_key(f"push:{event_id}") is None and self.on_push(event_id, data):
                    started += 1
            except Exception:  # one bad push must not hold up the others
                log.exception("could not start the pipeline for push %s", event_id)
            self._push_cursor = event_id
        return started

    # -- triggers ----------------------------------------------------------------------

    def on_push(self, event_id: str, data: Mapping[str, Any]) -> RunRow | None:
        """A push recorded by the hosted git layer: a run if its pipeline wants one."""
        if data.get("source") != "hosted" or data.get("after") in (None, ZERO_SHA):
            return None  # a deleted branch runs nothing
        trigger = Trigger(
            repository=str(data["repository"]),
            commit=str(data["after"]),
            ref=str(data["ref"]),
            event="push",
            key=f"push:{event_id}",
            actor=str(data.get("pusher") or "unknown"),
            before=str(data.get("before") or "") or None,
        )
        return self.start(trigger)

    def start_manual(
        self, repository: str, ref: str, actor: str, inputs: Mapping[str, Any] | None = None
    ) -> RunRow:
        """A run started by hand at the head of a branch (or a tag, or a commit)."""
        commit = self._resolve_commit(repository, ref)
        full_ref = ref if ref.startswith("refs/") else f"refs/heads/{ref}"
        trigger = Trigger(
            repository, commit, full_ref, "manual", f"manual:{new_id()}", actor, dict(inputs or {})
        )
        run = self.start(trigger)
        assert run is not None  # manual runs always start (or fail with the reason)
        return run

    def rerun(self, run_id: str, actor: str) -> RunRow:
        old = self.run(run_id)
        if old.status not in FINISHED:
            raise ConflictError(f"run {old.number} is {old.status}; re-run it once it has ended")
        trigger = Trigger(
            old.repository,
            old.commit,
            old.ref,
            "rerun",
            f"rerun:{old.id}:{new_id()}",
            actor,
            dict(old.inputs),
        )
        run = self.start(trigger, rerun_of=old.id)
        assert run is not None
        return run

    # -- planning ----------------------------------------------------------------------

    def start(self, trigger: Trigger, rerun_of: str | None = None) -> RunRow | None:
        """Plan and queue the run for ``trigger``; None when the pipeline does not run for
        it (no pipeline file, or its filters leave this push out). A trigger seen before
        gives the run it started then."""
        existing = self._run_by_key(trigger.key)
        if existing is not None:
            return existing
        text = self._read(trigger.repository, trigger.commit, PIPELINE_FILE)
        if text is None:
            if trigger.event in ("manual", "rerun"):
                raise InputError(
                    f"{trigger.repository} has no {PIPELINE_FILE} at {trigger.commit[:12]}"
                )
            return None
        try:
            resolved = load_pipeline_file(
                text, self.template_library(), PIPELINE_FILE, known_step=self.known_step
            )
        except PipelineError as exc:
            return self._insert_run(trigger, None, rerun_of, problems=exc.problems)
        if trigger.event == "push" and not self._wants_push(resolved, trigger):
            return None
        if trigger.event == "manual":
            self._check_inputs(resolved, trigger.inputs)
        return self._insert_run(trigger, resolved, rerun_of)

    def _wants_push(self, resolved: ResolvedPipeline, trigger: Trigger) -> bool:
        push = resolved.pipeline.on.push
        if push is None:
            return False
        if trigger.branch is not None:
            if push.tags and not push.branches:
                return False
            if not _filtered(trigger.branch, push.branches, push.branches_ignore):
                return False
        elif trigger.tag is not None:
            if push.branches and not push.tags:
                return False
            if not _filtered(trigger.tag, push.tags, push.tags_ignore):
                return False
        if push.paths or push.paths_ignore:
            changed = self._changed_files(trigger)
            if changed is not None and not any(
                _filtered(path, push.paths, push.paths_ignore) for path in changed
            ):
                return False
        return True

    def _check_inputs(self, resolved: ResolvedPipeline, given: Mapping[str, Any]) -> None:
        manual = resolved.pipeline.on.manual
        if manual is None:
            raise InputError("this pipeline cannot be started by hand (it has no manual trigger)")
        errors: dict[str, list[str]] = {}
        for name in given:
            if name not in manual.inputs:
                errors[name] = [f"is not an input of this pipeline ({', '.join(manual.inputs)})"]
        for name, spec in manual.inputs.items():
            if name not in given:
                if spec.required and spec.default is None:
                    errors[name] = ["is required"]
                continue
            problem = spec.check(given[name])
            if problem:
                errors[name] = [problem]
        if errors:
            raise InputError("the inputs do not fit the pipeline's manual trigger", errors=errors)

    def _insert_run(
        self,
        trigger: Trigger,
        resolved: ResolvedPipeline | None,
        rerun_of: str | None,
        problems: Iterable[Any] = (),
    ) -> RunRow:
        now = utcnow()
        problem_list = [p.as_dict() for p in problems]
        inputs = dict(trigger.inputs)
        if resolved is not None and resolved.pipeline.on.manual is not None:
            for name, spec in resolved.pipeline.on.manual.inputs.items():
                inputs.setdefault(name, spec.default)
        run = RunRow(
            id=new_id(),
            repository=trigger.repository,
            number=0,
            entity_ref=self._entity_of(trigger.repository),
            commit=trigger.commit,
            ref=trigger.ref,
            branch=trigger.branch,
            event=trigger.event,
            trigger_key=trigger.key,
            status="failed" if problem_list else "queued",
            name=(resolved.pipeline.name if resolved else None) or PIPELINE_FILE,
            pipeline=_jsonable(resolved) if resolved else None,
            template_ref=resolved.template if resolved else None,
            template_version=resolved.template_version if resolved else None,
            inputs={**self._evaluated_inputs(trigger, resolved), **inputs},
            problems=problem_list,
            created_by=trigger.actor,
            created_at=now,
            finished_at=now if problem_list else None,
            cancel_requested=False,
            rerun_of=rerun_of,
        )
        for attempt in range(5):
            try:
                with self.db.session() as session:
                    highest = session.scalar(
                        select(func.max(RunRow.number)).where(
                            RunRow.repository == trigger.repository
                        )
                    )
                    run.number = (highest or 0) + 1
                    session.add(run)
                    session.flush()  # the rows below refer to it
                    if resolved is not None:
                        planned = self._plan(run, resolved)
                        session.add_all([row for row in planned if isinstance(row, JobRow)])
                        session.flush()
                        session.add_all([row for row in planned if isinstance(row, StepRow)])
                break
            except IntegrityError:
                existing = self._run_by_key(trigger.key)
                if existing is not None:
                    return existing  # another process started this trigger's run
                if attempt == 4:
                    raise
                run = _fresh(run)
        if resolved is not None:
            self._cancel_superseded(run.id)
            self.advance(run.id)
        return self.run(run.id)

    # -- concurrency groups --------------------------------------------------------------

    def _concurrency(self, run: RunRow) -> tuple[str, bool] | None:
        """The run's concurrency group (evaluated) and whether a new run cancels the one
        in progress; None without a group."""
        from pavedroad.pipelines.expressions import interpolate

        pipeline = (run.pipeline or {}).get("pipeline") or {}
        concurrency = pipeline.get("concurrency") or {}
        group = concurrency.get("group")
        if not group:
            return None
        try:
            value = interpolate(
                str(group), {"github": self.github_context(run), "inputs": run.inputs}
            )
        except InputError:
            value = str(group)
        return f"{run.repository}:{value}", bool(concurrency.get("cancel_in_progress"))

    def _group_runs(self, run: RunRow, group: str) -> list[RunRow]:
        """The repository's other unfinished runs in the same group, oldest first."""
        with self.db.read_session() as session:
            others = session.scalars(
                select(RunRow)
                .where(
                    RunRow.repository == run.repository,
                    RunRow.id != run.id,
                    RunRow.status.in_(("queued", "running")),
                )
                .order_by(RunRow.created_at)
            )
            candidates = list(others)
        return [other for other in candidates if (self._concurrency(other) or ("",))[0] == group]

    def _cancel_superseded(self, run_id: str) -> None:
        run = self.run(run_id)
        concurrency = self._concurrency(run)
        if concurrency is None or not concurrency[1]:
            return
        for other in self._group_runs(run, concurrency[0]):
            if other.created_at <= run.created_at:
                log.info("run %s supersedes run %s", run.number, other.number)
                with contextlib.suppress(ConflictError):  # it ended meanwhile
                    self.cancel(other.id)

    def _waits_for_group(self, run: RunRow) -> bool:
        """A queued run waits while an older run of its group is unfinished."""
        concurrency = self._concurrency(run)
        if concurrency is None:
            return False
        return any(
            other.created_at < run.created_at for other in self._group_runs(run, concurrency[0])
        )

    def _evaluated_inputs(
        self, trigger: Trigger, resolved: ResolvedPipeline | None
    ) -> dict[str, Any]:
        """The template's inputs, those given as ``${{ }}`` evaluated for this trigger."""
        if resolved is None:
            return {}
        github = {
            "repository": trigger.repository,
            "sha": trigger.commit,
            "ref": trigger.ref,
            "ref_name": trigger.ref.removeprefix("refs/heads/").removeprefix("refs/tags/"),
            "event_name": trigger.event,
            "actor": trigger.actor,
        }
        return {
            name: _evaluated(value, {"github": github}) if isinstance(value, str) else value
            for name, value in resolved.inputs.items()
        }

    def _plan(self, run: RunRow, resolved: ResolvedPipeline) -> list[Any]:
        rows: list[Any] = []
        pipeline = resolved.pipeline
        for job in pipeline.jobs.values():
            combinations = (
                job.strategy.matrix.combinations()
                if job.strategy and job.strategy.matrix and not job.strategy.matrix.expression
                else [{}]
            ) or [{}]
            for matrix in combinations:
                key = job.id if not matrix else f"{job.id} ({', '.join(map(str, matrix.values()))})"
                job_row_id = new_id()
                contexts = {
                    "github": self.github_context(run),
                    "matrix": matrix,
                    "inputs": run.inputs,
                }
                name = _evaluated(job.name or job.id, contexts)
                if matrix and "${{" not in (job.name or ""):
                    name += f" ({', '.join(map(str, matrix.values()))})"
                labels = [_evaluated(label, contexts) for label in job.runs_on]
                rows.append(
                    JobRow(
                        id=job_row_id,
                        run_id=run.id,
                        key=key[:300],
                        job_id=job.id,
                        name=name[:300],
                        needs=list(job.needs),
                        status="waiting",
                        labels=[label for label in labels if label],
                        matrix=matrix,
                        spec=_job_spec(job, pipeline.env, matrix),
                        attempt=0,
                        max_attempts=1 + job.retries,
                        outputs={},
                        cancel_requested=False,
                    )
                )
                for index, step in enumerate(job.steps):
                    rows.append(
                        StepRow(
                            id=new_id(),
                            job_id=job_row_id,
                            index=index,
                            step_id=step.id,
                            name=step.display_name[:300],
                            status="waiting",
                            outputs={},
                            log_bytes=0,
                            truncated=False,
                        )
                    )
        return rows

    # -- advancing ---------------------------------------------------------------------

    def advance(self, run_id: str) -> None:
        """Queue every waiting job whose needs have ended (or skip it), then settle the
        run's status. Idempotent: any process may call it at any time."""
        from pavedroad.pipelines.expressions import evaluate_condition

        current = self.run(run_id)
        waits = current.status == "queued" and not current.cancel_requested
        if waits and self._waits_for_group(current):
            return  # its turn comes when the older run of its group ends
        to_queue: list[JobRow] = []
        ended = False
        with self.db.session() as session:
            run = session.get(RunRow, run_id, with_for_update=True)
            if run is None or run.status in FINISHED:
                return
            jobs = list(session.scalars(select(JobRow).where(JobRow.run_id == run_id)))
            by_job_id: dict[str, list[JobRow]] = {}
            for job in jobs:
                by_job_id.setdefault(job.job_id, []).append(job)
            for job in jobs:
                if job.status != "waiting":
                    continue
                needed = [row for need in job.needs for row in by_job_id.get(need, [])]
                if any(row.status not in FINISHED for row in needed):
                    continue
                if run.cancel_requested:
                    job.status = "cancelled"
                    job.finished_at = utcnow()
                    continue
                status = _needs_status(needed)
                condition = str(job.spec.get("if") or "")
                try:
                    should_run = evaluate_condition(
                        condition,
                        self._contexts(run, job, needed),
                        _status_functions(status),
                    )
                except InputError as exc:
                    job.status = "failed"
                    job.error = f"if: {exc.detail}"
                    job.finished_at = utcnow()
                    continue
                if not should_run:
                    job.status = "skipped"
                    job.finished_at = utcnow()
                    continue
                job.status = "queued"
                job.queued_at = utcnow()
                to_queue.append(job)
            if run.status == "queued" and (to_queue or any(j.status == "running" for j in jobs)):
                run.status = "running"
                run.started_at = run.started_at or utcnow()
            if all(job.status in FINISHED for job in jobs):
                run.status = _run_status(run, jobs)
                run.finished_at = utcnow()
                ended = True
        for job in to_queue:
            self._enqueue(job)
        if ended:
            self._next_in_group(current)

    def _next_in_group(self, ended: RunRow) -> None:
        concurrency = self._concurrency(ended)
        if concurrency is None:
            return
        waiting = [r for r in self._group_runs(ended, concurrency[0]) if r.status == "queued"]
        if waiting:
            self.advance(waiting[0].id)

    def _enqueue(self, job: JobRow, delay: float | None = None) -> None:
        if self.queues is not None:
            self.queues(queue_name(job.labels)).enqueue(JOB, job.id, delay=delay)

    def _contexts(self, run: RunRow, job: JobRow, needed: list[JobRow]) -> dict[str, Any]:
        needs = _needs_context(needed)
        return {
            "github": self.github_context(run),
            "inputs": run.inputs,
            "matrix": job.matrix,
            "needs": needs,
            "env": {},
            "vars": {},
        }

    def github_context(self, run: RunRow) -> dict[str, Any]:
        return {
            "repository": run.repository,
            "sha": run.commit,
            "ref": run.ref,
            "ref_name": run.ref.removeprefix("refs/heads/").removeprefix("refs/tags/"),
            "event_name": run.event,
            "run_id": run.id,
            "run_number": run.number,
            "actor": run.created_by,
            "server_url": self.settings.public_url,
        }

    # -- jobs on workers ---------------------------------------------------------------

    def claim(self, job_id: str, worker: str) -> JobRow | None:
        """Take a queued job for this worker; None if it is not queued any more."""
        now = utcnow()
        with self.db.session() as session:
            claimed = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "queued")
                .values(
                    status="running",
                    worker=worker[:200],
                    attempt=JobRow.attempt + 1,
                    started_at=now,
                    heartbeat_at=now,
                    finished_at=None,
                    error=None,
                )
            ).rowcount  # type: ignore[attr-defined]
        if not claimed:
            return None
        with self.db.read_session() as session:
            return session.get(JobRow, job_id)

    def finish_job(
        self,
        job_id: str,
        status: str,
        outputs: Mapping[str, Any],
        error: str | None,
        *,
        worker: str | None = None,
        attempt: int | None = None,
        silent_since: datetime | None = None,
    ) -> None:
        """A worker's report (or the recovery's). A failed job with attempts left waits in
        the queue again. ``worker``/``attempt`` name the claim being reported: a report for
        an older claim (the job was retried and claimed again meanwhile) changes nothing;
        ``silent_since``: only if the job has sent no heartbeat since (the recovery's view
        may be old by the time it acts)."""
        with self.db.session() as session:
            job = session.get(JobRow, job_id, with_for_update=True)
            if job is None or job.status != "running":
                return
            if worker is not None and (job.worker != worker or job.attempt != attempt):
                return
            if silent_since is not None and (
                job.heartbeat_at is not None and as_utc(job.heartbeat_at) >= silent_since
            ):
                return
            retry = (
                status == "failed" and job.attempt < job.max_attempts and not (job.cancel_requested)
            )
            if retry:
                job.status = "queued"
                job.queued_at = utcnow()
                job.error = error
                session.execute(
                    update(StepRow)
                    .where(StepRow.job_id == job_id)
                    .values(status="waiting", started_at=None, finished_at=None, exit_code=None)
                )
            else:
                job.status = status
                job.outputs = dict(outputs)
                job.error = error
                job.finished_at = utcnow()
            run_id = job.run_id
            labels = list(job.labels)
        if retry:
            log.info("job %s failed; retrying (%s)", job_id, error)
            if self.queues is not None:
                self.queues(queue_name(labels)).enqueue(JOB, job_id)
            return
        self.advance(run_id)

    def heartbeat(self, job_id: str) -> bool:
        """Keep a running job alive; False when it was asked to stop."""
        with self.db.session() as session:
            session.execute(update(JobRow).where(JobRow.id == job_id).values(heartbeat_at=utcnow()))
            job = session.get(JobRow, job_id)
            return bool(job and not job.cancel_requested)

    def execute_job(self, job_id: str) -> None:
        """The queue's handler: claim, run on this worker, report."""

        worker = f"{socket.gethostname()}:{os.getpid()}"
        with self.db.read_session() as session:
            queued = session.get(JobRow, job_id)
        mine = set(self.settings.pipelines.labels)
        if queued is not None and queued.status == "queued" and not set(queued.labels) <= mine:
            # it waits on the queue of its first label; a worker with all of them takes it
            self._requeue(queued, LABEL_RETRY_SECONDS)
            return
        if not self._slots.acquire(blocking=False):
            # this process runs pipelines.workers jobs at once, whatever the queues
            if queued is not None and queued.status == "queued":
                self._requeue(queued, BUSY_RETRY_SECONDS)
            return
        try:
            self._execute(job_id, worker)
        finally:
            self._slots.release()

    def _requeue(self, job: JobRow, delay: float) -> None:
        """Put a job this worker will not run back on its queue (and say when, so the
        recovery does not take it for a lost one and queue it a second time)."""
        with self.db.session() as session:
            session.execute(
                update(JobRow)
                .where(JobRow.id == job.id, JobRow.status == "queued")
                .values(queued_at=utcnow())
            )
        self._enqueue(job, delay=delay)

    def _execute(self, job_id: str, worker: str) -> None:
        from pavedroad.pipelines.executor import JobContext, JobExecutor

        job = self.claim(job_id, worker)
        if job is None:
            return
        try:
            run = self.run(job.run_id)
            context = JobContext.for_job(
                self.settings,
                self.db,
                job.id,
                needs=self._needs(job),
                secrets=self._secrets_for(run),
                registry=self.registry,
            )
            result = JobExecutor(context).run()
        except Exception as exc:  # the job must end, whatever happened here
            log.exception("job %s could not run", job_id)
            self.finish_job(
                job_id,
                "failed",
                {},
                f"the job could not run: {exc}",
                worker=worker,
                attempt=job.attempt,
            )
            return
        self.finish_job(
            job_id,
            result.status,
            result.outputs,
            result.error,
            worker=worker,
            attempt=job.attempt,
        )

    def _needs(self, job: JobRow) -> dict[str, Any]:
        """``needs.<id>``: each needed job's result (GitHub's words) and outputs."""
        with self.db.read_session() as session:
            rows = list(
                session.scalars(
                    select(JobRow).where(JobRow.run_id == job.run_id, JobRow.job_id.in_(job.needs))
                )
            )
        return _needs_context(rows)

    def _secrets_for(self, run: RunRow) -> dict[str, str]:
        """The component's own secrets (not an environment's), each read recorded in the
        audit log as the run's."""
        if self.secret_store is None or not run.entity_ref:
            return {}
        from pavedroad.core import audit
        from pavedroad.secrets.scopes import SecretScope

        scope = SecretScope.parse(run.entity_ref, None)
        values: dict[str, str] = {}
        for item in self.secret_store.find(entity=run.entity_ref, environment=""):
            record = audit.AuditEvent(
                actor=f"pipeline:{run.repository}#{run.number}"[:400],
                action="secret.read",
                target="",
                outcome="success",
                status=200,
                request_id=f"run:{run.id}"[:64],
            )
            values[item["name"]] = self.secret_store.reveal(scope, item["name"], None, record)[0]
        return values

    # -- cancelling and recovering -----------------------------------------------------

    def cancel(self, run_id: str) -> RunRow:
        run = self.run(run_id)
        if run.status in FINISHED:
            raise ConflictError(f"run {run.number} is {run.status} already")
        now = utcnow()
        with self.db.session() as session:
            session.execute(update(RunRow).where(RunRow.id == run_id).values(cancel_requested=True))
            session.execute(
                update(JobRow).where(JobRow.run_id == run_id).values(cancel_requested=True)
            )
            session.execute(
                update(JobRow)
                .where(JobRow.run_id == run_id, JobRow.status.in_(("waiting", "queued")))
                .values(status="cancelled", finished_at=now)
            )
        self.advance(run_id)
        return self.run(run_id)

    def recover(self) -> int:
        """Reconciler: jobs whose worker stopped are retried or failed; queued jobs whose
        message was lost are queued again; runs left behind advance."""
        now = utcnow()
        lost_after = timedelta(seconds=self.settings.pipelines.lost_after_seconds)
        requeue_after = timedelta(seconds=self.settings.pipelines.requeue_after_seconds)
        touched = 0
        with self.db.read_session() as session:
            lost = list(
                session.scalars(
                    select(JobRow.id).where(
                        JobRow.status == "running", JobRow.heartbeat_at < now - lost_after
                    )
                )
            )
            stale = list(
                session.scalars(
                    select(JobRow).where(
                        JobRow.status == "queued", JobRow.queued_at < now - requeue_after
                    )
                )
            )
        for job_id in lost:
            self.finish_job(
                job_id,
                "failed",
                {},
                "the worker running this job stopped (no heartbeat)",
                silent_since=now - lost_after,
            )
            touched += 1
        for job in stale:
            with self.db.session() as session:
                session.execute(update(JobRow).where(JobRow.id == job.id).values(queued_at=now))
            self._enqueue(job)
            touched += 1
        return touched

    def fire_schedules(self, now: datetime | None = None) -> int:
        """Reconciler (each minute): a run for each ``on.schedule`` cron line of each hosted
        repository's default branch that matches this minute; once per minute and line,
        whichever process looks first (the trigger key says which minute)."""
        from pavedroad.git.models import RepoRow
        from pavedroad.pipelines.spec import CronError, parse_cron

        minute = (now or utcnow()).replace(second=0, microsecond=0)
        with self.db.read_session() as session:
            repos = [(r.owner, r.name, r.default_branch) for r in session.scalars(select(RepoRow))]
        started = 0
        for owner, name, branch in repos:
            repository = f"{owner}/{name}"
            head = self._git(repository, "rev-parse", "-q", "--verify", f"refs/heads/{branch}")
            if head.returncode != 0:
                continue
            commit = head.stdout.decode().strip()
            for cron in self._schedules(repository, commit):
                try:
                    if not parse_cron(cron).matches(minute):
                        continue
                except CronError:
                    continue
                key = f"schedule:{repository}:{branch}:{cron}:{minute.isoformat()}"
                if self._run_by_key(key) is not None:
                    continue
                trigger = Trigger(
                    repository, commit, f"refs/heads/{branch}", "schedule", key, "schedule"
                )
                try:
                    if self.start(trigger):
                        started += 1
                except Exception:
                    log.exception("the schedule %r of %s could not start", cron, repository)
        return started

    def _schedules(self, repository: str, commit: str) -> list[str]:
        cached = self._schedule_cache.get((repository, commit))
        if cached is not None:
            return cached
        crons: list[str] = []
        text = self._read(repository, commit, PIPELINE_FILE)
        if text is not None:
            try:
                resolved = load_pipeline_file(
                    text, self.template_library(), PIPELINE_FILE, known_step=self.known_step
                )
                crons = list(resolved.pipeline.on.schedule)
            except PipelineError:
                crons = []
        if len(self._schedule_cache) > 1000:
            self._schedule_cache.clear()
        self._schedule_cache[(repository, commit)] = crons
        return crons

    def stop_orphans(self) -> int:
        """At a worker's start: the processes of jobs this host was running when its
        worker died (they lead sessions of their own, so nothing else stops them)."""
        from pavedroad.pipelines.processes import kill_marked

        host = socket.gethostname()
        with self.db.read_session() as session:
            jobs = list(
                session.scalars(
                    select(JobRow).where(
                        JobRow.status == "running", JobRow.worker.like(f"{host}:%")
                    )
                )
            )
        killed = 0
        for job in jobs:
            pid = int((job.worker or "0").rsplit(":", 1)[-1] or 0)
            if pid and _alive(pid):
                continue  # its worker is still there
            killed += kill_marked(job.id)
            self.finish_job(
                job.id,
                "failed",
                {},
                "the worker running this job stopped",
                worker=job.worker,
                attempt=job.attempt,
            )
        return killed

    # -- reading -----------------------------------------------------------------------

    def run(self, run_id: str) -> RunRow:
        with self.db.read_session() as session:
            row = session.get(RunRow, run_id)
        if row is None:
            raise NotFoundError(f"there is no pipeline run {run_id[:40]}")
        return row

    def jobs(self, run_id: str) -> list[JobRow]:
        with self.db.read_session() as session:
            return list(
                session.scalars(select(JobRow).where(JobRow.run_id == run_id).order_by(JobRow.key))
            )

    def steps(self, job_id: str) -> list[StepRow]:
        with self.db.read_session() as session:
            return list(
                session.scalars(
                    select(StepRow).where(StepRow.job_id == job_id).order_by(StepRow.index)
                )
            )

    def runs(
        self,
        *,
        repository: str | None = None,
        branch: str | None = None,
        status: str | None = None,
        entity_ref: str | None = None,
        limit: int = 50,
    ) -> list[RunRow]:
        statement = select(RunRow).order_by(RunRow.created_at.desc()).limit(limit)
        if repository:
            statement = statement.where(RunRow.repository == repository)
        if branch:
            statement = statement.where(RunRow.branch == branch)
        if status:
            statement = statement.where(RunRow.status == status)
        if entity_ref:
            statement = statement.where(RunRow.entity_ref == entity_ref)
        with self.db.read_session() as session:
            return list(session.scalars(statement))

    def describe(self, run: RunRow, *, with_jobs: bool = False) -> dict[str, Any]:
        described: dict[str, Any] = {
            "id": run.id,
            "number": run.number,
            "repository": run.repository,
            "entityRef": run.entity_ref,
            "commit": run.commit,
            "ref": run.ref,
            "branch": run.branch,
            "event": run.event,
            "status": run.status,
            "name": run.name,
            "uses": f"{run.template_ref}@{run.template_version}" if run.template_ref else None,
            "inputs": run.inputs,
            "problems": run.problems,
            "createdBy": run.created_by,
            "createdAt": isoformat(run.created_at),
            "startedAt": isoformat(run.started_at),
            "finishedAt": isoformat(run.finished_at),
            "rerunOf": run.rerun_of,
        }
        if with_jobs:
            described["jobs"] = [self.describe_job(job) for job in self.jobs(run.id)]
        return described

    def describe_job(self, job: JobRow) -> dict[str, Any]:
        return {
            "id": job.id,
            "key": job.key,
            "jobId": job.job_id,
            "name": job.name,
            "needs": job.needs,
            "status": job.status,
            "labels": job.labels,
            "matrix": job.matrix,
            "attempt": job.attempt,
            "worker": job.worker,
            "startedAt": isoformat(job.started_at),
            "finishedAt": isoformat(job.finished_at),
            "outputs": job.outputs,
            "error": job.error,
            "steps": [
                {
                    "index": step.index,
                    "id": step.step_id,
                    "name": step.name,
                    "status": step.status,
                    "exitCode": step.exit_code,
                    "startedAt": isoformat(step.started_at),
                    "finishedAt": isoformat(step.finished_at),
                    "outputs": step.outputs,
                    "truncated": step.truncated,
                }
                for step in self.steps(job.id)
            ],
        }

    # -- helpers -----------------------------------------------------------------------

    def template_library(self) -> TemplateLibrary:
        query = EntityQuery(filter=parse_filters(["kind=pipelinetemplate"]), limit=1000)
        with self.catalog.reader() as reader:
            return TemplateLibrary.from_entities(reader.query(query).items)

    def known_step(self, uses: str) -> bool:
        return bool(self.registry.known(uses))

    def _entity_of(self, repository: str) -> str | None:
        """The component whose source is this hosted repository (made by a template, or
        registered from it), if the catalog knows one."""
        from pavedroad.catalog.models import EntityRow

        owner, _, name = repository.partition("/")
        marker = f"/repos/{owner}/{name}/blob/"
        with self.catalog.reader() as reader:
            rows = reader.session.scalars(
                select(EntityRow.entity_ref).where(
                    EntityRow.entity_ref.like("component:%"),
                    EntityRow.source_key.contains(marker),
                )
            )
            return next(iter(rows), None)

    def _run_by_key(self, key: str) -> RunRow | None:
        with self.db.read_session() as session:
            return session.scalar(select(RunRow).where(RunRow.trigger_key == key))

    def _bare(self, repository: str) -> str:
        owner, _, name = repository.partition("/")
        if not (owner and name) or ".." in repository or repository.count("/") != 1:
            raise InputError(f"{repository[:200]!r} is not a hosted repository (OWNER/NAME)")
        return str(self.git_root / owner / f"{name}.git")

    def _git(self, repository: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["git", "--git-dir", self._bare(repository), *args],
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
            check=False,
        )

    def _read(self, repository: str, commit: str, path: str) -> bytes | None:
        result = self._git(repository, "cat-file", "-s", f"{commit}:{path}")
        if result.returncode != 0:
            return None
        if int(result.stdout or 0) > MAX_PIPELINE_BYTES:
            return f"# {path} is larger than {MAX_PIPELINE_BYTES} bytes\n: [".encode()
        shown = self._git(repository, "show", f"{commit}:{path}")
        return shown.stdout if shown.returncode == 0 else None

    def _resolve_commit(self, repository: str, ref: str) -> str:
        result = self._git(repository, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}")
        if result.returncode != 0:
            raise NotFoundError(f"{repository} has no branch, tag or commit {ref[:200]!r}")
        return result.stdout.decode().strip()

    def _changed_files(self, trigger: Trigger) -> list[str] | None:
        if not trigger.before or trigger.before == ZERO_SHA:
            return None  # a new branch: every path counts
        result = self._git(
            trigger.repository, "diff", "--name-only", "-z", trigger.before, trigger.commit
        )
        if result.returncode != 0:
            return None
        return [p for p in result.stdout.decode(errors="replace").split("\0") if p]


def _evaluated(text: str, contexts: Mapping[str, Any]) -> str:
    """``text`` with its ``${{ }}`` evaluated (left as written if that fails: the job that
    uses it then says why)."""
    from pavedroad.pipelines.expressions import interpolate

    if "${{" not in text:
        return text
    try:
        return interpolate(text, contexts)
    except InputError:
        return text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fresh(run: RunRow) -> RunRow:
    """A copy of an unsaved run row, for another try at numbering it."""
    columns = {c.key: getattr(run, c.key) for c in RunRow.__table__.columns}
    return RunRow(**columns)


_RESULTS = {"succeeded": "success", "failed": "failure", "cancelled": "cancelled"}


def _needs_context(rows: list[JobRow]) -> dict[str, Any]:
    """GitHub's ``needs``: per job id, its result (``success``, ``failure``, ``cancelled``,
    ``skipped``; the worst of its matrix jobs) and the outputs its jobs set."""
    order = ["success", "skipped", "cancelled", "failure"]
    needs: dict[str, Any] = {}
    for row in rows:
        result = _RESULTS.get(row.status, row.status)
        entry = needs.setdefault(row.job_id, {"result": result, "outputs": {}})
        entry["outputs"].update(row.outputs or {})
        if result in order and order.index(result) > order.index(entry["result"]):
            entry["result"] = result
    return needs


def _needs_status(needed: list[JobRow]) -> str:
    if any(row.status == "cancelled" for row in needed):
        return "cancelled"
    if any(row.status == "failed" for row in needed):
        return "failure"
    return "success"


def _status_functions(status: str) -> Any:
    from pavedroad.pipelines.expressions import JobStatus

    return _Functions(
        {"success": JobStatus.SUCCESS, "failure": JobStatus.FAILURE}.get(
            status, JobStatus.CANCELLED
        )
    )


@dataclasses.dataclass(frozen=True)
class _Functions:
    status: Any
    hash_files: Any = None


def _run_status(run: RunRow, jobs: list[JobRow]) -> str:
    if run.cancel_requested or any(job.status == "cancelled" for job in jobs):
        return "cancelled"
    failed = [
        job
        for job in jobs
        if job.status == "failed" and job.spec.get("continue-on-error") is not True
    ]
    return "failed" if failed else "succeeded"


def _job_spec(job: Job, pipeline_env: Mapping[str, str], matrix: Mapping[str, Any]) -> dict:
    return {
        "id": job.id,
        "name": job.name or job.id,
        "if": job.if_,
        "env": {**pipeline_env, **job.env},
        "timeout-minutes": job.timeout_minutes,
        "outputs": dict(job.outputs),
        "matrix": dict(matrix),
        "continue-on-error": job.continue_on_error,
        "concurrency": dataclasses.asdict(job.concurrency) if job.concurrency else None,
        "steps": [_step_spec(step, index) for index, step in enumerate(job.steps)],
    }


def _step_spec(step: Step, index: int) -> dict[str, Any]:
    return {
        "index": index,
        "id": step.id,
        "name": step.display_name,
        "run": step.run,
        "uses": step.uses,
        "with": dict(step.with_),
        "env": dict(step.env),
        "if": step.if_,
        "working-directory": step.working_directory,
        "timeout-minutes": step.timeout_minutes,
        "continue-on-error": step.continue_on_error,
        "shell": step.shell,
    }


def _jsonable(resolved: ResolvedPipeline) -> dict[str, Any]:
    """The resolved pipeline as stored with the run (what ran, exactly)."""
    data = dataclasses.asdict(resolved)
    return json.loads(json.dumps(data, default=str))  # type: ignore[no-any-return]
