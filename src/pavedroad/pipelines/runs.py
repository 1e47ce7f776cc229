"""Pipeline runs: from a trigger to jobs on workers and back to a run's result.

- **Triggers.** A push recorded by the git layer (``GitPushed``): to a hosted repository,
  or announced by a GitHub or GitLab webhook, whose pushed ref is first fetched into the
  repository's mirror (:mod:`pavedroad.git.mirrors`, under the outbound URL policy); a
  manual start, a schedule, a re-run. Each trigger has a key (``push:<event id>``, ...)
  that is unique among runs, so a trigger seen twice (a replayed event, two servers)
  starts one run.
- **Planning.** The run reads ``.pavedroad/pipeline.yaml`` at the commit, resolves a
  ``uses: template@N`` against the catalog's PipelineTemplates, checks the push filters,
  and plans one job row per job and matrix combination (one row for a matrix given as an
  expression, expanded when the job's needs have ended). An invalid file gives a failed
  run with every problem at its line, never a silent skip.
- **Dispatch.** A job whose needs have ended is queued on the job queue for its
  ``runs-on`` labels (see :func:`queue_name`), unless ``strategy.max-parallel`` or its
  ``concurrency`` group holds it back; any worker consuming that queue claims it in the
  database (the run is "running" from the first claim), runs it
  (:mod:`pavedroad.pipelines.executor`) and reports back; the run then advances. A failed
  job with ``retries`` left is queued again; a failed matrix job cancels its siblings
  under ``strategy.fail-fast``.
- **Recovery.** A running job whose worker stopped sending heartbeats is retried or
  failed; a queued job whose message was lost is queued again. Nothing stays "running".
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import socket
import subprocess
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pavedroad.catalog.queries import EntityQuery, parse_filters
from pavedroad.catalog.refs import EntityRef
from pavedroad.catalog.service import CatalogService
from pavedroad.core.db import Database, in_chunks
from pavedroad.core.errors import ConflictError, InputError, NotFoundError
from pavedroad.core.ids import new_id
from pavedroad.core.jobs import JobQueue, worker_gone, worker_name
from pavedroad.core.timeutil import as_utc, isoformat, utcnow
from pavedroad.git.mirrors import MirrorError, Mirrors, is_mirrored, repository_identity
from pavedroad.pipelines.library import ResolvedPipeline, TemplateLibrary, load_pipeline_file
from pavedroad.pipelines.models import FINISHED, JobRow, RunRow, StepRow
from pavedroad.pipelines.spec import Job, PipelineError, Problem, Step
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
MIRRORED_SOURCES = ("github", "gitlab")  # pushes announced by webhooks, fetched to mirrors
ACTIVE = ("queued", "running")


def queue_name(labels: Iterable[str]) -> str:
    """The queue a job waits on: its first ``runs-on`` label's, or the queue any worker
    takes from. A worker consumes the queues of each of its labels and ``any``."""
    chosen = sorted(labels)
    return f"jobs-{chosen[0]}" if chosen else "jobs-any"


@dataclasses.dataclass(frozen=True)
class Trigger:
    repository: str  # owner/name of a hosted repository; host/owner/name of a mirrored one
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
        self.mirrors = Mirrors(settings)
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
        """A push recorded by the git layer: a run if its pipeline wants one. A push to a
        hosted repository is read where it is; one a GitHub or GitLab webhook announced
        is fetched from its URL into the repository's mirror first, and a URL the
        outbound policy refuses (or a fetch that fails) gives a failed run saying why."""
        source = data.get("source")
        if source not in ("hosted", *MIRRORED_SOURCES) or data.get("after") in (None, ZERO_SHA):
            return None  # a deleted branch runs nothing
        url = str(data["repository"])
        trigger = Trigger(
            repository=url if source == "hosted" else _mirrored_name(url),
            commit=str(data["after"]),
            ref=str(data["ref"]),
            event="push",
            key=f"push:{event_id}",
            actor=str(data.get("pusher") or "unknown"),
            before=str(data.get("before") or "") or None,
        )
        if source != "hosted":
            existing = self._run_by_key(trigger.key)
            if existing is not None:
                return existing
            try:
                self.mirrors.fetch(url, trigger.ref, trigger.commit)
            except MirrorError as error:
                log.warning("the push to %s is not run: %s", url, error.detail)
                problem = Problem(
                    0, 0, "", f"the pushed commit could not be fetched: {error.detail}"
                )
                return self._insert_run(trigger, None, None, problems=[problem])
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
        """A job row (and its step rows) per job and matrix combination, in the file's
        order; one row for a matrix given as an expression (see :meth:`_expand`)."""
        rows: list[Any] = []
        pipeline = resolved.pipeline
        taken: set[str] = set()
        for job in pipeline.jobs.values():
            base = _job_spec(job, pipeline.env)
            matrix = job.strategy.matrix if job.strategy else None
            combinations = matrix.combinations() if matrix and not matrix.expression else []
            for order, combination in enumerate(combinations or [{}]):
                row = self._job_row(run, base, combination, order, taken)
                row.needs, row.max_attempts = list(job.needs), 1 + job.retries
                rows.append(row)
                rows.extend(_step_rows(row))
        return rows

    def _job_row(
        self,
        run: RunRow,
        base: Mapping[str, Any],
        matrix: Mapping[str, Any],
        order: int,
        taken: set[str],
    ) -> JobRow:
        """A waiting job row for one matrix combination of the job planned as ``base``
        (its name and labels evaluated with the combination); its key is not in ``taken``
        and is added to it."""
        job_id = str(base["id"])
        values = ", ".join(map(str, matrix.values()))
        key = _unique_key(f"{job_id} ({values})" if matrix else job_id, taken)
        contexts = {
            "github": self.github_context(run),
            "matrix": dict(matrix),
            "inputs": run.inputs,
        }
        raw_name = str(base.get("name") or job_id)
        name = _evaluated(raw_name, contexts)
        if matrix and "${{" not in raw_name:
            name += f" ({values})"
        labels = [_evaluated(str(label), contexts) for label in base.get("runs-on") or []]
        return JobRow(
            id=new_id(),
            run_id=run.id,
            key=key,
            job_id=job_id,
            name=name[:300],
            needs=[],
            status="waiting",
            labels=[label for label in labels if label],
            matrix=dict(matrix),
            spec={**base, "matrix": dict(matrix), "order": order},
            attempt=0,
            max_attempts=1,
            outputs={},
            cancel_requested=False,
        )

    # -- advancing ---------------------------------------------------------------------

    def advance(self, run_id: str) -> None:
        """Queue every waiting job whose needs have ended (or skip it), then settle the
        run's status. Idempotent: any process may call it at any time.

        A failed matrix job first cancels its siblings (``strategy.fail-fast``). Then, per
        waiting job whose needs have ended, in plan order: its ``if:``; a matrix given as
        an expression is expanded into its matrix jobs; ``strategy.max-parallel`` and the
        job's ``concurrency`` group may keep it waiting; else it is queued."""
        current = self.run(run_id)
        waits = current.status == "queued" and not current.cancel_requested
        if waits and self._waits_for_group(current):
            return  # its turn comes when the older run of its group ends
        changes = _Changes()
        ended = False
        with self.db.session() as session:
            _lock_repository(session, current.repository)
            run = session.get(RunRow, run_id, with_for_update=True)
            if run is None or run.status in FINISHED:
                return
            state = _RunJobs(
                sorted(
                    session.scalars(select(JobRow).where(JobRow.run_id == run_id)),
                    key=_plan_order,
                )
            )
            _fail_fast(state, changes)
            index = 0
            while index < len(state.jobs):  # expanding a matrix adds jobs to the end
                job = state.jobs[index]
                index += 1
                if job.status == "waiting":
                    self._ready(session, run, job, state, changes)
            if run.status == "queued" and any(job.status == "running" for job in state.jobs):
                run.status = "running"  # claimed before claims marked runs (older rows)
                run.started_at = run.started_at or utcnow()
            if all(job.status in FINISHED for job in state.jobs):
                run.status = _run_status(run, state.jobs)
                run.finished_at = utcnow()
                ended = True
            _end_steps(session, changes.ended)
        for job in changes.queued:
            self._enqueue(job)
        for other in sorted(changes.other_runs - {run_id}):
            self.advance(other)
        if changes.groups:
            self._wake_group_waiters(current.repository, changes.groups)
        if ended:
            self._next_in_group(current)

    def _ready(
        self, session: Session, run: RunRow, job: JobRow, state: _RunJobs, changes: _Changes
    ) -> None:
        """Decide about one waiting job: leave it waiting, end it, or queue it."""
        from pavedroad.pipelines.expressions import evaluate_condition

        needed = [row for need in job.needs for row in state.by_job_id.get(need, [])]
        if any(row.status not in FINISHED for row in needed):
            return
        if run.cancel_requested:
            changes.end(job, "cancelled")
            return
        contexts = self._contexts(run, job, needed)
        try:
            should_run = evaluate_condition(
                str(job.spec.get("if") or ""), contexts, _status_functions(_needs_status(needed))
            )
        except InputError as exc:
            changes.end(job, "failed", f"if: {exc.detail}")
            return
        if not should_run:
            changes.end(job, "skipped")
            return
        if (job.spec.get("strategy") or {}).get("matrix"):
            try:
                self._expand(session, run, job, state, contexts)
            except InputError as exc:
                changes.end(job, "failed", f"strategy.matrix: {_problems_text(exc)}")
                return
            self._ready(session, run, job, state, changes)  # now one of its matrix jobs
            return
        try:
            _settle_continue_on_error(job, contexts)
        except InputError as exc:
            changes.end(job, "failed", f"continue-on-error: {exc.detail}")
            return
        if _held_back(job, state):
            return  # strategy.max-parallel: it is queued when one of its siblings ends
        if not self._take_group(session, run, job, contexts, changes):
            return
        job.status = "queued"
        job.queued_at = utcnow()
        changes.queued.append(job)

    def _expand(
        self,
        session: Session,
        run: RunRow,
        job: JobRow,
        state: _RunJobs,
        contexts: Mapping[str, Any],
    ) -> None:
        """Turn the row of a job whose matrix is an expression into its matrix jobs: the
        expression is evaluated now that the job's needs have ended (``needs``,
        ``inputs``, ``github``), and read as a matrix written in the file would be. The
        row becomes the first combination; the others are added. Raises
        :class:`InputError` (an expression error, :class:`PipelineError`) saying why."""
        from pavedroad.pipelines.expressions import render_value
        from pavedroad.pipelines.spec import read_matrix

        strategy = dict(job.spec.get("strategy") or {})
        available = {name: contexts[name] for name in ("github", "inputs", "needs", "vars")}
        matrix = read_matrix(render_value(str(strategy["matrix"]), available))
        strategy["matrix"] = None
        base = {**job.spec, "strategy": strategy}
        taken = {row.key for row in state.jobs if row.id != job.id}
        rows = [
            self._job_row(run, base, combination, order, taken)
            for order, combination in enumerate(matrix.combinations())
        ]
        first, others = rows[0], rows[1:]
        job.key, job.name, job.labels = first.key, first.name, first.labels
        job.matrix, job.spec = first.matrix, first.spec
        for row in others:
            row.needs, row.max_attempts = list(job.needs), job.max_attempts
        session.add_all(others)
        session.flush()  # the step rows refer to them
        session.add_all([step for row in others for step in _step_rows(row)])
        state.add(others)

    def _take_group(
        self,
        session: Session,
        run: RunRow,
        job: JobRow,
        contexts: Mapping[str, Any],
        changes: _Changes,
    ) -> bool:
        """Whether a ready job may go in its ``concurrency`` group (True without one).

        Groups span the repository's runs: a job waits while a job of its group is
        queued or running, or while one of an older run waits for the group; with
        ``cancel-in-progress``, the jobs of older runs in the group are cancelled first
        (and it waits until those that were running have ended). Jobs of one run in one
        group run one after the other."""
        concurrency = job.spec.get("concurrency") or {}
        if not concurrency.get("group"):
            return True
        group = job.spec.get("concurrency-group")
        if group is None:
            group = _evaluated(str(concurrency["group"]), contexts)
            job.spec = {**job.spec, "concurrency-group": group}
        others = _group_jobs(session, run.repository, group, job.id)
        if concurrency.get("cancel_in_progress"):
            reason = (
                f"cancelled: a newer job of concurrency group {group!r} started (run {run.number})"
            )
            for other, created_at in others:
                if created_at >= run.created_at:
                    continue
                changes.other_runs.add(other.run_id)
                if other.status in ("waiting", "queued"):
                    changes.end(other, "cancelled", reason)
                elif not other.cancel_requested:
                    other.cancel_requested, other.error = True, reason
        return not any(
            other.status in ACTIVE or created_at < run.created_at
            for other, created_at in others
            if other.status not in FINISHED
        )

    def _wake_group_waiters(self, repository: str, groups: Collection[str]) -> None:
        """Advance the runs with jobs waiting for one of ``groups``, oldest first: a job
        of one of them ended, so the next may go."""
        with self.db.read_session() as session:
            rows = session.execute(
                select(JobRow.run_id, JobRow.spec, RunRow.created_at)
                .join(RunRow, RunRow.id == JobRow.run_id)
                .where(
                    RunRow.repository == repository,
                    RunRow.status.in_(ACTIVE),
                    JobRow.status == "waiting",
                )
            ).all()
        waiting: dict[str, datetime] = {}
        for run_id, spec, created_at in rows:
            if (spec or {}).get("concurrency-group") in groups:
                waiting[run_id] = created_at
        for run_id in sorted(waiting, key=waiting.__getitem__):
            self.advance(run_id)

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
        """Take a queued job for this worker; None if it is not queued any more. The
        first claim of a run's jobs makes the run "running"."""
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
            if claimed:
                run_of_job = select(JobRow.run_id).where(JobRow.id == job_id).scalar_subquery()
                session.execute(
                    update(RunRow)
                    .where(RunRow.id == run_of_job, RunRow.status == "queued")
                    .values(status="running", started_at=func.coalesce(RunRow.started_at, now))
                )
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
        may be old by the time it acts). A job cancelled with a reason (fail-fast, a
        newer job of its concurrency group) keeps it; steps it never reached end."""
        group: str | None = None
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
                if not (status == "cancelled" and job.cancel_requested and job.error):
                    job.error = error
                job.finished_at = utcnow()
                _end_steps(session, {job_id: "cancelled" if status == "cancelled" else "skipped"})
                session.execute(
                    update(StepRow)
                    .where(StepRow.job_id == job_id, StepRow.status == "running")
                    .values(status="cancelled" if status == "cancelled" else "failed")
                )
                group = (job.spec or {}).get("concurrency-group")
            run_id = job.run_id
            labels = list(job.labels)
        if retry:
            log.info("job %s failed; retrying (%s)", job_id, error)
            if self.queues is not None:
                self.queues(queue_name(labels)).enqueue(JOB, job_id)
            return
        self.advance(run_id)
        if group is not None:
            self._wake_group_waiters(self.run(run_id).repository, {group})

    def heartbeat(self, job_id: str) -> bool:
        """Keep a running job alive; False when it was asked to stop."""
        with self.db.session() as session:
            session.execute(update(JobRow).where(JobRow.id == job_id).values(heartbeat_at=utcnow()))
            job = session.get(JobRow, job_id)
            return bool(job and not job.cancel_requested)

    def execute_job(self, job_id: str, labels: Collection[str] | None = None) -> None:
        """The queue's handler: claim, run on this worker, report. ``labels`` are those
        of the queues this worker consumes (see :class:`~pavedroad.pipelines.dispatch.JobQueues`);
        None: ``pipelines.labels``."""

        worker = worker_name()
        with self.db.read_session() as session:
            queued = session.get(JobRow, job_id)
        mine = set(self.settings.pipelines.labels if labels is None else labels)
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
        """Cancel a run: its waiting and queued jobs (and their steps) end at once, its
        running jobs are asked to stop."""
        run = self.run(run_id)
        if run.status in FINISHED:
            raise ConflictError(f"run {run.number} is {run.status} already")
        now = utcnow()
        with self.db.session() as session:
            session.execute(update(RunRow).where(RunRow.id == run_id).values(cancel_requested=True))
            session.execute(
                update(JobRow).where(JobRow.run_id == run_id).values(cancel_requested=True)
            )
            unstarted = list(
                session.execute(
                    select(JobRow.id, JobRow.spec)
                    .where(JobRow.run_id == run_id, JobRow.status.in_(("waiting", "queued")))
                    .with_for_update()
                )
            )
            session.execute(
                update(JobRow)
                .where(JobRow.run_id == run_id, JobRow.status.in_(("waiting", "queued")))
                .values(status="cancelled", finished_at=now)
            )
            _end_steps(session, {job_id: "cancelled" for job_id, _spec in unstarted})
        self.advance(run_id)
        groups = {
            group for _job_id, spec in unstarted if (group := (spec or {}).get("concurrency-group"))
        }
        if groups:
            self._wake_group_waiters(run.repository, groups)
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
            if not worker_gone(job.worker):
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

        if is_mirrored(repository):
            return self._entity_of_mirrored(repository)
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

    def _entity_of_mirrored(self, repository: str) -> str | None:
        """The component of a mirrored repository (``github.com/acme/orders``): the one
        whose ``backstage.io/source-location`` is in it, else the one whose
        ``github.com/project-slug`` or ``gitlab.com/project-slug`` is its path."""
        path = repository.partition("/")[2]
        location = "metadata.annotations.backstage.io/source-location"
        predicate = {
            "$all": [
                {"kind": "component"},
                {
                    "$any": [
                        {location: {"$hasPrefix": f"url:{scheme}://{repository}"}}
                        for scheme in ("https", "http")
                    ]
                    + [
                        {f"metadata.annotations.{slug}": path}
                        for slug in ("github.com/project-slug", "gitlab.com/project-slug")
                    ]
                },
            ]
        }
        with self.catalog.reader() as reader:
            entities = reader.query(EntityQuery(filter=predicate, limit=100)).items
        by_location: list[str] = []
        by_slug: list[str] = []
        for entity in entities:
            annotations = (entity.get("metadata") or {}).get("annotations") or {}
            ref = EntityRef.of(entity).key
            if _locates(str(annotations.get("backstage.io/source-location") or ""), repository):
                by_location.append(ref)
            elif path.lower() in {
                str(annotations.get(slug) or "").lower()
                for slug in ("github.com/project-slug", "gitlab.com/project-slug")
            }:
                by_slug.append(ref)
        found = sorted(by_location) or sorted(by_slug)
        return found[0] if found else None

    def _run_by_key(self, key: str) -> RunRow | None:
        with self.db.read_session() as session:
            return session.scalar(select(RunRow).where(RunRow.trigger_key == key))

    def _bare(self, repository: str) -> str:
        """The bare repository of a run: hosted (``owner/name``) or a mirror."""
        if is_mirrored(repository):
            return str(self.mirrors.path(repository))
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
    """A cancelled run is cancelled; else a failed job (without ``continue-on-error``)
    fails it, even when others were cancelled because of it (fail-fast); else a
    cancelled job (by a newer job of its concurrency group) cancels it."""
    if run.cancel_requested:
        return "cancelled"
    if any(
        job.status == "failed" and job.spec.get("continue-on-error") is not True for job in jobs
    ):
        return "failed"
    if any(job.status == "cancelled" for job in jobs):
        return "cancelled"
    return "succeeded"


@dataclasses.dataclass
class _RunJobs:
    """A run's job rows in plan order, and by the pipeline's job id."""

    jobs: list[JobRow]
    by_job_id: dict[str, list[JobRow]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        jobs, self.jobs = self.jobs, []
        self.add(jobs)

    def add(self, rows: Iterable[JobRow]) -> None:
        for row in rows:
            self.jobs.append(row)
            self.by_job_id.setdefault(row.job_id, []).append(row)


@dataclasses.dataclass
class _Changes:
    """What one :meth:`PipelineService.advance` did, to act on once it is committed."""

    queued: list[JobRow] = dataclasses.field(default_factory=list)
    ended: dict[str, str] = dataclasses.field(default_factory=dict)  # job row → its steps'
    groups: set[str] = dataclasses.field(default_factory=set)  # groups a job left
    other_runs: set[str] = dataclasses.field(default_factory=set)  # runs with jobs ended here

    def end(self, job: JobRow, status: str, error: str | None = None) -> None:
        """End a job that did not start; its steps end as cancelled or skipped."""
        job.status = status
        job.finished_at = utcnow()
        if error is not None:
            job.error = error
        self.ended[job.id] = "cancelled" if status == "cancelled" else "skipped"
        group = (job.spec or {}).get("concurrency-group")
        if group is not None:
            self.groups.add(group)


def _fail_fast(state: _RunJobs, changes: _Changes) -> None:
    """``strategy.fail-fast`` (on unless false): once a matrix job has failed (for good:
    no retry left, and without ``continue-on-error``), its siblings that have not started
    are cancelled and those running are asked to stop."""
    for rows in state.by_job_id.values():
        if len(rows) < 2 or (rows[0].spec.get("strategy") or {}).get("fail-fast") is False:
            continue
        failed = next(
            (
                row
                for row in rows
                if row.status == "failed" and row.spec.get("continue-on-error") is not True
            ),
            None,
        )
        if failed is None:
            continue
        reason = f"cancelled: {failed.name} failed (strategy.fail-fast)"
        for row in rows:
            if row.status in ("waiting", "queued"):
                changes.end(row, "cancelled", reason)
            elif row.status == "running" and not row.cancel_requested:
                row.cancel_requested, row.error = True, reason


def _held_back(job: JobRow, state: _RunJobs) -> bool:
    """Whether ``strategy.max-parallel`` of its matrix jobs are queued or running."""
    limit = (job.spec.get("strategy") or {}).get("max-parallel")
    if not limit:
        return False
    active = sum(1 for row in state.by_job_id.get(job.job_id, []) if row.status in ACTIVE)
    return active >= int(limit)


def _settle_continue_on_error(job: JobRow, contexts: Mapping[str, Any]) -> None:
    """A job's ``continue-on-error: ${{ ... }}`` (``matrix.experimental``, ...) decided
    as it is queued, so its failure is read rightly (by fail-fast, by the run's result)."""
    from pavedroad.pipelines.expressions import render_value, truthy

    value = job.spec.get("continue-on-error")
    if isinstance(value, str):
        job.spec = {**job.spec, "continue-on-error": truthy(render_value(value, contexts))}


def _group_jobs(
    session: Session, repository: str, group: str, job_id: str
) -> list[tuple[JobRow, datetime]]:
    """The repository's unfinished jobs (but ``job_id``) that are in the concurrency
    ``group`` or wait for it, with when their runs were created."""
    rows = session.execute(
        select(JobRow, RunRow.created_at)
        .join(RunRow, RunRow.id == JobRow.run_id)
        .where(
            RunRow.repository == repository,
            RunRow.status.in_(ACTIVE),
            JobRow.status.in_(("waiting", *ACTIVE)),
            JobRow.id != job_id,
        )
    ).all()
    return [
        (row, created_at)
        for row, created_at in rows
        if (row.spec or {}).get("concurrency-group") == group
    ]


def _lock_repository(session: Session, repository: str) -> None:
    """On PostgreSQL, one advance per repository at a time (until the transaction
    ends), so two runs never both take a free concurrency group. SQLite writers are one
    at a time already."""
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"pavedroad.pipelines:{repository}".encode()).digest()
    session.execute(select(func.pg_advisory_xact_lock(int.from_bytes(digest[:8], signed=True))))


def _end_steps(session: Session, ended: Mapping[str, str]) -> None:
    """The steps of jobs that ended without running them: cancelled or skipped."""
    for status in ("cancelled", "skipped"):
        job_ids = [job_id for job_id, step_status in ended.items() if step_status == status]
        for chunk in in_chunks(job_ids):
            session.execute(
                update(StepRow)
                .where(StepRow.job_id.in_(chunk), StepRow.status == "waiting")
                .values(status=status)
            )


def _plan_order(job: JobRow) -> tuple[int, str]:
    return int((job.spec or {}).get("order") or 0), job.key


def _unique_key(key: str, taken: set[str]) -> str:
    """``key`` (at most 300 characters), numbered when two matrix jobs show alike."""
    chosen = key[:300]
    number = 2
    while chosen in taken:
        chosen = f"{key[:290]} #{number}"
        number += 1
    taken.add(chosen)
    return chosen


def _step_rows(job: JobRow) -> list[StepRow]:
    return [
        StepRow(
            id=new_id(),
            job_id=job.id,
            index=int(step["index"]),
            step_id=step.get("id"),
            name=str(step.get("name") or "")[:300],
            status="waiting",
            outputs={},
            log_bytes=0,
            truncated=False,
        )
        for step in job.spec.get("steps") or []
    ]


def _problems_text(error: InputError) -> str:
    if isinstance(error, PipelineError):
        return "; ".join(str(problem) for problem in error.problems)
    return error.detail


def _mirrored_name(url: str) -> str:
    """How runs name a repository a webhook announced: its identity, or (for a URL that
    has none, whose run fails) its host and path, without credentials."""
    try:
        return repository_identity(url)
    except MirrorError:
        parts = urlsplit(url)
        return f"{parts.hostname or 'unknown'}{parts.path}".removesuffix(".git")[:400]


def _locates(location: str, repository: str) -> bool:
    """Whether a ``backstage.io/source-location`` (``url:https://github.com/acme/orders
    /tree/main/``) is in the mirrored ``repository`` (``github.com/acme/orders``)."""
    try:
        parts = urlsplit(location.removeprefix("url:"))
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https"):
        return False
    host = (parts.hostname or "").lower()
    if port is not None and port != {"http": 80, "https": 443}[parts.scheme]:
        host = f"{host}:{port}"
    named = f"{host}{parts.path}".lower()
    wanted = repository.lower()
    return named in (wanted, f"{wanted}.git") or named.startswith((f"{wanted}/", f"{wanted}.git/"))


def _job_spec(job: Job, pipeline_env: Mapping[str, str]) -> dict[str, Any]:
    """The job as planned, without its matrix combination (see ``_job_row``)."""
    strategy = job.strategy
    return {
        "id": job.id,
        "name": job.name or job.id,
        "if": job.if_,
        "runs-on": list(job.runs_on),
        "env": {**pipeline_env, **job.env},
        "timeout-minutes": job.timeout_minutes,
        "outputs": dict(job.outputs),
        "continue-on-error": job.continue_on_error,
        "strategy": {
            "fail-fast": strategy.fail_fast,
            "max-parallel": strategy.max_parallel,
            "matrix": strategy.matrix.expression if strategy.matrix else None,
        }
        if strategy
        else None,
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
