"""Scaffolder tasks: accepted, persisted, queued, run in a process of their own, logged.

A task is stored before it is acknowledged and then queued by id (``scaffolder.run``).
Whichever worker takes it claims it in the database, at most
``scaffolder.max_running_tasks`` at once across all workers, and runs it in a child
process (:mod:`pavedroad.scaffolder.task_process`, forked from a preloaded server) with a
wall-clock limit, an address-space limit and no platform secrets in its environment:
a hostile template can at worst fail its own task. The child writes the log and the
result to the database; this side watches the clock, the cancel flag and the child's
exit, and says why when the child died.

Secret answers never reach the task's stored values or its log: they are sealed with
the master key for the child and the seal is deleted when the task ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import asdict
from datetime import timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import func, select, text, update

from pavedroad.catalog.service import CatalogService
from pavedroad.core.db import Database
from pavedroad.core.errors import ConflictError, ForbiddenError, InputError, NotFoundError
from pavedroad.core.ids import new_id
from pavedroad.core.jobs import JobQueue, worker_name
from pavedroad.core.plugins import plugin_manager
from pavedroad.core.timeutil import isoformat, utcnow
from pavedroad.identity.policy import Actor, Role
from pavedroad.scaffolder.actions import ActionRegistry
from pavedroad.scaffolder.models import TaskEventRow, TaskRow
from pavedroad.scaffolder.template import (
    TemplateSpec,
    TemplateSpecError,
    apply_defaults,
    secret_fields,
    validate_parameters,
)
from pavedroad.secrets.service import SecretStore
from pavedroad.settings import Settings

log = logging.getLogger("pavedroad.scaffolder")

JOB = "scaffolder.run"
FINISHED = ("completed", "failed", "cancelled")
# Tasks run in processes forked from a server process that has the scaffolder imported
# already: starting one takes milliseconds, not the second a fresh interpreter needs.
_TASK_PROCESSES = multiprocessing.get_context("forkserver")
_TASK_PROCESSES.set_forkserver_preload(["pavedroad.scaffolder.task_process"])
HEARTBEAT_SECONDS = 5.0
CANCEL_GRACE_SECONDS = 10.0
NO_SLOT_DELAY_SECONDS = 0.5
STDERR_TAIL_BYTES = 4000
_CHILD_ENV_DROPPED = (
    "PAVEDROAD_MASTER_KEY",
    "PAVEDROAD_PREVIOUS_MASTER_KEYS",
    "PAVEDROAD_ADMIN_PASSWORD",
    "PAVEDROAD_TOKEN",
)


class TemplateParametersError(InputError):
    """The answers do not fit the template's form; ``errors`` maps field → messages."""

    status = 422
    title = "Invalid template parameters"
    type_slug = "invalid-parameters"


def actor_record(actor: Actor | None) -> dict[str, Any]:
    if actor is None:  # sign-in switched off: the local operator
        return {"name": "anonymous", "role": Role.admin.value, "user_ref": None, "group_ref": None}
    return {**asdict(actor), "role": actor.role.value}


def actor_from_record(record: Mapping[str, Any]) -> Actor:
    return Actor(
        name=str(record.get("name") or "anonymous"),
        role=Role(record.get("role") or Role.viewer.value),
        user_ref=record.get("user_ref"),
        group_ref=record.get("group_ref"),
    )


def split_secrets(spec: TemplateSpec, values: Mapping[str, Any]) -> tuple[dict, dict]:
    """The answers without the secret ones, and the secret ones by path."""
    plain: dict[str, Any] = json.loads(json.dumps(values))
    secrets: dict[str, Any] = {}
    for path in sorted(secret_fields(spec)):
        *parents, leaf = path.split(".")
        holder: Any = plain
        for part in parents:
            holder = holder.get(part) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and leaf in holder:
            secrets[path] = holder.pop(leaf)
    return plain, secrets


def settings_payload(settings: Settings) -> dict[str, Any]:
    """The settings a task's child process needs, as JSON, without the platform's own
    secrets (master keys, admin password, session key, sign-in client secret)."""
    data = settings.model_dump(
        mode="python",
        exclude={"master_key", "previous_master_keys", "admin_password", "token"},
    )
    data["auth"]["secret_key"] = None
    data["auth"]["oidc"] = None
    data["catalog"]["ingest_processes"] = 0  # register in the task's own process

    def plain(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        return value

    return plain(data)  # type: ignore[no-any-return]


class TaskService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        catalog: CatalogService,
        secrets: SecretStore,
        queue: JobQueue | None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.catalog = catalog
        self.secrets = secrets
        self.queue = queue
        self.root = settings.home / "scaffolder" / "tasks"
        self.registry = ActionRegistry.from_plugins(plugin_manager())
        if queue is not None:
            queue.register(JOB, self.execute)

    # -- templates ---------------------------------------------------------------------

    def template_entity(self, ref: str) -> dict[str, Any]:
        from pavedroad.catalog.refs import parse_ref

        key = parse_ref(ref, "template").key
        if not key.startswith("template:"):
            raise InputError(f"{ref[:200]} is not a template reference")
        with self.catalog.reader() as reader:
            if reader.row_by_ref(key) is None:
                raise NotFoundError(f"there is no template {key}")
            return reader.get_by_ref(key)

    def template_spec(self, entity: Mapping[str, Any]) -> TemplateSpec:
        return TemplateSpec.parse(entity, self.registry.ids())

    def templates(self) -> list[dict[str, Any]]:
        from pavedroad.catalog.queries import EntityQuery, parse_filters

        query = EntityQuery(
            filter=parse_filters(["kind=template"]),
            order=[("metadata.title", "asc"), ("metadata.name", "asc")],
            limit=1000,
        )
        with self.catalog.reader() as reader:
            return reader.query(query).items

    # -- accepting work ----------------------------------------------------------------

    def create(
        self,
        template_ref: str,
        values: Mapping[str, Any],
        actor: Actor | None,
        *,
        dry_run: bool = False,
        kind: str | None = None,
        target: str | None = None,
        retry_of: str | None = None,
    ) -> dict[str, Any]:
        """Check the answers and persist and queue the task; raises
        :class:`TemplateParametersError` with per-field ``errors`` when they do not fit."""
        entity = self.template_entity(template_ref)
        try:
            spec = self.template_spec(entity)
        except TemplateSpecError as exc:
            raise ConflictError(
                f"the template {template_ref} cannot run: " + "; ".join(exc.problems[:10]),
                problems=exc.problems,
            ) from None
        if not isinstance(values, Mapping):
            raise InputError("values must be an object of answers")
        problems = validate_parameters(spec, values) if kind != "update" else {}
        if problems:
            count = sum(len(messages) for messages in problems.values())
            raise TemplateParametersError(
                f"{count} answer(s) do not fit the template's form", errors=problems
            )
        if kind != "update":
            values = apply_defaults(spec, values)
        plain, secrets = split_secrets(spec, values)
        task_id = new_id()
        row = TaskRow(
            id=task_id,
            kind=kind or ("dry-run" if dry_run else "create"),
            template_ref=_ref_key(entity),
            status="open",
            values=plain,
            sealed_secrets=(
                self.secrets.seal_transient(json.dumps(secrets).encode(), _seal_context(task_id))
                if secrets
                else None
            ),
            secret_names=sorted(secrets),
            actor=actor_record(actor),
            created_by=actor.name if actor else "anonymous",
            created_at=utcnow(),
            enqueued_at=utcnow(),
            target=target,
            retry_of=retry_of,
            output=None,
        )
        with self.db.session() as session:
            session.add(row)
        self._enqueue(task_id)
        return self.describe(row)

    def start_update(
        self,
        actor: Actor | None,
        *,
        repository: str | None = None,
        entity_ref: str | None = None,
        secrets: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A task bringing a project (named by its repository or its entity) up to its
        template's newest version, once the caller is found allowed to push to it."""
        from pavedroad.catalog.refs import parse_ref
        from pavedroad.git.service import GitService
        from pavedroad.identity.policy import decide
        from pavedroad.scaffolder.projects import ProjectStore

        projects = ProjectStore(self.db, self.settings)
        if repository:
            row = projects.get(repository)
        elif entity_ref:
            found = projects.for_entity(parse_ref(entity_ref, "component").key)
            if found is None:
                raise NotFoundError(f"{entity_ref[:400]} was not made from a template")
            row = found
        else:
            raise InputError("name the project: its entity or its repository")
        owner, _, name = row.repository.partition("/")
        repo = GitService(self.db, self.settings).repo(owner, name)
        if actor is not None:
            with self.catalog.reader() as reader:
                decision = decide(reader, actor, "git.repo.push", repo.owner_ref)
            if not decision.allowed:
                raise ForbiddenError(
                    decision.reason, permission="git.repo.push", owners=decision.owners
                )
        origin = projects.origin(row.repository)
        return self.create(
            origin.template_ref, dict(secrets or {}), actor, kind="update", target=row.repository
        )

    def _enqueue(self, task_id: str, delay: float | None = None) -> None:
        if self.queue is not None:
            self.queue.enqueue(JOB, task_id, delay=delay)

    # -- reading -----------------------------------------------------------------------

    def row(self, task_id: str) -> TaskRow:
        with self.db.read_session() as session:
            row = session.get(TaskRow, task_id)
        if row is None:
            raise NotFoundError(f"there is no task {task_id[:40]}")
        return row

    def get(self, task_id: str) -> dict[str, Any]:
        return self.describe(self.row(task_id))

    def find(
        self,
        *,
        created_by: str | None = None,
        status: str | None = None,
        template_ref: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        statement = select(TaskRow).order_by(TaskRow.created_at.desc()).limit(limit)
        if created_by:
            statement = statement.where(TaskRow.created_by == created_by)
        if status:
            statement = statement.where(TaskRow.status == status)
        if template_ref:
            statement = statement.where(TaskRow.template_ref == template_ref.lower())
        with self.db.read_session() as session:
            return [self.describe(row, brief=True) for row in session.scalars(statement)]

    def events(self, task_id: str, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        with self.db.read_session() as session:
            rows = session.scalars(
                select(TaskEventRow)
                .where(TaskEventRow.task_id == task_id, TaskEventRow.id > after)
                .order_by(TaskEventRow.id)
                .limit(limit)
            )
            return [
                {
                    "id": row.id,
                    "at": isoformat(row.at),
                    "type": row.type,
                    "step": row.step,
                    "body": row.body,
                }
                for row in rows
            ]

    def describe(self, row: TaskRow, brief: bool = False) -> dict[str, Any]:
        described: dict[str, Any] = {
            "id": row.id,
            "kind": row.kind,
            "templateRef": row.template_ref,
            "templateVersion": row.template_version,
            "status": row.status,
            "dryRun": row.kind == "dry-run",
            "createdBy": row.created_by,
            "createdAt": isoformat(row.created_at),
            "startedAt": isoformat(row.started_at),
            "finishedAt": isoformat(row.finished_at),
            "cancelRequested": row.cancel_requested,
            "error": row.error,
            "target": row.target,
            "retryOf": row.retry_of,
        }
        if not brief:
            described["values"] = row.values
            described["secretNames"] = row.secret_names
            described["output"] = row.output or {}
            described["steps"] = self._step_states(row.id)
        return described

    def _step_states(self, task_id: str) -> list[dict[str, Any]]:
        states: dict[str, dict[str, Any]] = {}
        with self.db.read_session() as session:
            rows = session.scalars(
                select(TaskEventRow)
                .where(TaskEventRow.task_id == task_id, TaskEventRow.type == "step")
                .order_by(TaskEventRow.id)
            )
            for row in rows:
                state = states.setdefault(
                    row.step or "", {"id": row.step, "name": row.body.get("name")}
                )
                state["status"] = row.body.get("status")
                if state["status"] == "processing":
                    state["startedAt"] = isoformat(row.at)
                else:
                    state["finishedAt"] = isoformat(row.at)
        return list(states.values())

    # -- changing ----------------------------------------------------------------------

    def cancel(self, task_id: str, actor: Actor | None) -> dict[str, Any]:
        row = self.row(task_id)
        self._check_may_change(row, actor, "cancel")
        if row.status in FINISHED:
            raise ConflictError(f"the task is {row.status} already")
        with self.db.session() as session:
            session.execute(
                update(TaskRow).where(TaskRow.id == task_id).values(cancel_requested=True)
            )
            # a task nobody runs yet ends here; a running one ends when its process sees it
            cancelled = session.execute(
                update(TaskRow)
                .where(TaskRow.id == task_id, TaskRow.status == "open")
                .values(status="cancelled", finished_at=utcnow(), sealed_secrets=None)
            ).rowcount  # type: ignore[attr-defined]
        if cancelled:
            self.add_event(task_id, "completion", None, {"status": "cancelled"})
        return self.get(task_id)

    def retry(
        self, task_id: str, actor: Actor | None, secrets: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """A new task with the same template and answers; secret answers, which were
        never kept, must be given again."""
        row = self.row(task_id)
        self._check_may_change(row, actor, "retry")
        if row.status not in FINISHED:
            raise ConflictError(f"the task is {row.status}; retry it once it has ended")
        missing = [name for name in row.secret_names if name not in (secrets or {})]
        if missing:
            raise InputError(
                "this template's secret answers are never kept: give them again "
                f"({', '.join(missing)})",
                errors={name: ["is required"] for name in missing},
            )
        values: dict[str, Any] = json.loads(json.dumps(row.values))
        for path, value in (secrets or {}).items():
            *parents, leaf = str(path).split(".")
            holder = values
            for part in parents:
                holder = holder.setdefault(part, {})
            holder[leaf] = value
        return self.create(
            row.template_ref,
            values,
            actor,
            kind=row.kind,
            target=row.target,
            retry_of=row.id,
        )

    def _check_may_change(self, row: TaskRow, actor: Actor | None, verb: str) -> None:
        if actor is None or actor.role is Role.admin or actor.name == row.created_by:
            return
        raise ForbiddenError(
            f"only {row.created_by} (who started the task) or an admin may {verb} it",
            permission=f"scaffolder.task.{verb}",
        )

    def add_event(self, task_id: str, type_: str, step: str | None, body: dict[str, Any]) -> None:
        add_event(self.db, task_id, type_, step, body)

    # -- running -----------------------------------------------------------------------

    @staticmethod
    def warm_up() -> None:
        """Start the process tasks fork from now (it imports the scaffolder once, which
        takes a second or two) rather than in the first task."""
        from multiprocessing import forkserver

        forkserver.ensure_running()

    def execute(self, task_id: str) -> None:
        """The queue's handler: claim the task (or come back when a slot is free), run
        its child process to the end, and make sure the task ends in a final state."""
        claimed = self._claim(task_id)
        if claimed is None:
            return  # finished, cancelled or taken by another worker
        if claimed is False:
            self._enqueue(task_id, delay=NO_SLOT_DELAY_SECONDS)
            return
        try:
            self._supervise(task_id)
        except Exception as exc:  # the task must end, whatever went wrong here
            log.exception("scaffolder task %s failed to run", task_id)
            self.finish(task_id, "failed", error=f"the task could not be run: {exc}")

    def _claim(self, task_id: str) -> bool | None:
        """True: claimed; False: no free slot now; None: nothing to do."""
        limit = self.settings.scaffolder.max_running_tasks
        with self.db.session() as session:
            if session.bind is not None and session.bind.dialect.name == "postgresql":
                # one claimer at a time, so the count below stays true
                session.execute(text("SELECT pg_advisory_xact_lock(7071)"))
            row = session.get(TaskRow, task_id)
            if row is None or row.status != "open":
                return None
            running = session.scalar(
                select(func.count()).select_from(TaskRow).where(TaskRow.status == "processing")
            )
            if (running or 0) >= limit:
                return False
            now = utcnow()
            row.status = "processing"
            row.started_at = now
            row.heartbeat_at = now
        worker = worker_name()
        self.add_event(task_id, "status", None, {"status": "processing", "worker": worker})
        return True

    def _supervise(self, task_id: str) -> None:
        row = self.row(task_id)
        secrets: dict[str, Any] = {}
        if row.sealed_secrets:
            secrets = json.loads(
                self.secrets.unseal_transient(row.sealed_secrets, _seal_context(task_id))
            )
        limits = self.settings.scaffolder
        payload = json.dumps(
            {"settings": settings_payload(self.settings), "task": task_id, "secrets": secrets}
        ).encode()
        from pavedroad.scaffolder import task_process

        output = self.root / f"{task_id}.output"
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        # the child ends itself when this end closes, that is, when this worker dies
        worker_alive, alive_end = _TASK_PROCESSES.Pipe(duplex=False)
        child = _TASK_PROCESSES.Process(
            target=task_process.run_forked,
            args=(
                payload,
                str(output),
                limits.task_memory_mb * 1024 * 1024,
                _CHILD_ENV_DROPPED,
                worker_alive,
            ),
            name=f"pavedroad-task-{task_id}",
        )
        try:
            child.start()
            worker_alive.close()
            reason = self._watch(task_id, child, limits.task_timeout_seconds)
        finally:
            alive_end.close()
        if not limits.keep_workspaces:  # a killed child never cleaned up after itself
            shutil.rmtree(self.root / task_id, ignore_errors=True)
        tail = _tail(output)
        output.unlink(missing_ok=True)
        if self.row(task_id).status not in FINISHED:
            if reason is None:
                if child.exitcode and child.exitcode < 0:
                    reason = f"the task's process was killed by signal {-child.exitcode}"
                else:
                    reason = f"the task's process stopped unexpectedly (exit {child.exitcode})"
                if "MemoryError" in tail:
                    reason = (
                        f"the task used more than {limits.task_memory_mb} MB of memory "
                        "(scaffolder.task_memory_mb) and was stopped"
                    )
                elif tail:
                    log.warning("scaffolder task %s child output: %s", task_id, tail)
            status = "cancelled" if reason == "cancelled" else "failed"
            self.finish(task_id, status, error=None if status == "cancelled" else reason)

    def _watch(self, task_id: str, child: BaseProcess, timeout: float) -> str | None:
        """Wait for the child; kill it at the time limit or after a cancel it ignores."""
        started = time.monotonic()
        last_beat = last_look = started
        cancel_seen: float | None = None
        while True:
            child.join(timeout=0.25)
            if child.exitcode is not None:
                _kill(child)  # whatever it started in its process group goes with it
                return None
            now = time.monotonic()
            if now - started > timeout:
                _kill(child)
                return (
                    f"the task ran longer than {timeout:g} s (scaffolder.task_timeout_seconds) "
                    "and was stopped"
                )
            if now - last_beat >= HEARTBEAT_SECONDS:
                last_beat = now
                with self.db.session() as session:
                    session.execute(
                        update(TaskRow).where(TaskRow.id == task_id).values(heartbeat_at=utcnow())
                    )
            if cancel_seen is None and now - last_look >= 1.0:
                last_look = now
                if self.row(task_id).cancel_requested:
                    cancel_seen = now  # the child stops by itself at its next check
            if cancel_seen is not None and now - cancel_seen > CANCEL_GRACE_SECONDS:
                _kill(child)
                return "cancelled"

    def finish(
        self,
        task_id: str,
        status: str,
        *,
        error: str | None = None,
        output: dict[str, Any] | None = None,
    ) -> bool:
        return finish_task(self.db, task_id, status, error=error, output=output)

    def recover(self) -> int:
        """Reconciler: fail tasks whose worker died, queue again tasks whose message was
        lost. Returns how many tasks it touched."""
        now = utcnow()
        touched = 0
        lost_after = timedelta(seconds=self.settings.scaffolder.lost_after_seconds)
        requeue_after = timedelta(seconds=self.settings.scaffolder.requeue_after_seconds)
        with self.db.read_session() as session:
            lost = list(
                session.scalars(
                    select(TaskRow.id).where(
                        TaskRow.status == "processing", TaskRow.heartbeat_at < now - lost_after
                    )
                )
            )
            stale = list(
                session.scalars(
                    select(TaskRow.id).where(
                        TaskRow.status == "open", TaskRow.enqueued_at < now - requeue_after
                    )
                )
            )
        for task_id in lost:
            touched += self.finish(
                task_id,
                "failed",
                error="the worker running this task stopped; retry it to run it again",
            )
        for task_id in stale:
            with self.db.session() as session:
                session.execute(
                    update(TaskRow).where(TaskRow.id == task_id).values(enqueued_at=now)
                )
            self._enqueue(task_id)
            touched += 1
        return touched

    def running(self) -> int:
        with self.db.read_session() as session:
            return int(
                session.scalar(
                    select(func.count()).select_from(TaskRow).where(TaskRow.status == "processing")
                )
                or 0
            )


def add_event(
    db: Database, task_id: str, type_: str, step: str | None, body: dict[str, Any]
) -> None:
    with db.session() as session:
        session.add(TaskEventRow(task_id=task_id, at=utcnow(), type=type_, step=step, body=body))


def finish_task(
    db: Database,
    task_id: str,
    status: str,
    *,
    error: str | None = None,
    output: dict[str, Any] | None = None,
) -> bool:
    """End the task, once; its sealed secrets go with it. False if it had ended."""
    values: dict[str, Any] = {
        "status": status,
        "finished_at": utcnow(),
        "sealed_secrets": None,
        "error": error,
    }
    if output is not None:
        values["output"] = output
    with db.session() as session:
        done = session.execute(
            update(TaskRow)
            .where(TaskRow.id == task_id, TaskRow.status.not_in(FINISHED))
            .values(**values)
        ).rowcount  # type: ignore[attr-defined]
    if done:
        body: dict[str, Any] = {"status": status}
        if error:
            body["error"] = error
        add_event(db, task_id, "completion", None, body)
    return bool(done)


def _ref_key(entity: Mapping[str, Any]) -> str:
    metadata = entity.get("metadata") or {}
    return f"template:{metadata.get('namespace') or 'default'}/{metadata.get('name')}".lower()


def _seal_context(task_id: str) -> str:
    return f"scaffolder-task:{task_id}"


def _kill(child: BaseProcess) -> None:
    """Kill the task's whole process group (the child leads it once it has started)."""
    if child.pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
    if child.exitcode is None:
        child.kill()
    child.join()


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - STDERR_TAIL_BYTES))
            return handle.read().decode(errors="replace").strip()
    except OSError:
        return ""
