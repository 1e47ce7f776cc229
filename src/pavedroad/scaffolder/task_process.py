"""The process one scaffolder task runs in.

The task runner forks it (:func:`run_forked`) from a server process that has this module
imported already, with the settings, the task's id and its secret answers. It runs the
task (its steps, or a template update) and writes the log and the result to the
database. The runner limits its memory and time and kills its process group when it
must; everything this process does is bounded by that, whatever the template says.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from multiprocessing.connection import Connection
from typing import Any

from pavedroad.catalog.service import CatalogService
from pavedroad.core.db import Database, database_for
from pavedroad.core.errors import ProblemError
from pavedroad.git.service import GitService
from pavedroad.scaffolder.actions import ActionCancelled
from pavedroad.scaffolder.models import TaskRow
from pavedroad.scaffolder.platform import TaskPlatform, TemplateOrigin
from pavedroad.scaffolder.projects import ProjectStore
from pavedroad.scaffolder.runner import RunCallbacks, StepFailed, StepRunner
from pavedroad.scaffolder.tasks import (
    TaskService,
    actor_from_record,
    add_event,
    finish_task,
)
from pavedroad.scaffolder.versions import TemplateVersion, TemplateVersions
from pavedroad.scaffolder.workspace import Workspace, WorkspaceLimits
from pavedroad.secrets.masking import Masker
from pavedroad.settings import Settings

MAX_LINE_CHARS = 8000
MAX_LOG_LINES = 20_000
CANCEL_LOOK_SECONDS = 0.5
DRY_RUN_MAX_FILE_CHARS = 64 * 1024
DRY_RUN_MAX_TOTAL_CHARS = 1024 * 1024


class TaskLog:
    """The task's log in the database, every line masked."""

    def __init__(self, db: Database, task_id: str, masker: Masker) -> None:
        self.db = db
        self.task_id = task_id
        self.masker = masker
        self.lines = 0
        self._cancel_looked = 0.0
        self._cancelled = False

    def log(self, step: str | None, line: str) -> None:
        self.lines += 1
        if self.lines > MAX_LOG_LINES:
            if self.lines == MAX_LOG_LINES + 1:
                line = f"(the log is cut here: a task keeps at most {MAX_LOG_LINES} lines)"
            else:
                return
        text = self.masker.mask(str(line))
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + f" … ({len(text) - MAX_LINE_CHARS} characters cut)"
        add_event(self.db, self.task_id, "log", step, {"message": text})

    def step_status(self, step: str, status: str, name: str | None) -> None:
        add_event(self.db, self.task_id, "step", step, {"status": status, "name": name})

    def cancelled(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._cancel_looked >= CANCEL_LOOK_SECONDS:
            self._cancel_looked = now
            with self.db.read_session() as session:
                row = session.get(TaskRow, self.task_id)
                self._cancelled = bool(row is None or row.cancel_requested)
        return self._cancelled

    def callbacks(self) -> RunCallbacks:
        return RunCallbacks(log=self.log, step_status=self.step_status, cancelled=self.cancelled)


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


class TaskProcess:
    def __init__(self, settings: Settings, task_id: str, secrets: dict[str, Any]) -> None:
        self.settings = settings
        self.db = database_for(settings)
        self.task_id = task_id
        self.secrets = secrets
        self.catalog = CatalogService(self.db, settings)
        self.git = GitService(self.db, settings)
        self.versions = TemplateVersions(self.db, settings)
        self.projects = ProjectStore(self.db, settings)
        self.tasks = TaskService(self.db, settings, self.catalog, None, None)  # type: ignore[arg-type]
        self.task = self.tasks.row(task_id)
        self.actor = actor_from_record(self.task.actor)
        self.log = TaskLog(self.db, task_id, Masker(_leaves(secrets)))
        self.folder = settings.home / "scaffolder" / "tasks" / task_id
        limits = settings.scaffolder
        self.limits = WorkspaceLimits(
            max_files=limits.max_workspace_files,
            max_file_bytes=limits.max_file_bytes,
            max_total_bytes=limits.max_workspace_bytes,
        )

    def run(self) -> None:
        try:
            output = self._run()
        except ActionCancelled:
            self.log.log(None, "cancelled")
            finish_task(self.db, self.task_id, "cancelled")
        except StepFailed as exc:
            message = self.log.masker.mask(exc.message)
            self.log.log(exc.step, f"failed: {message}")
            finish_task(self.db, self.task_id, "failed", error=f"step {exc.step}: {message}")
        except MemoryError:
            finish_task(
                self.db,
                self.task_id,
                "failed",
                error=f"the task used more than {self.settings.scaffolder.task_memory_mb} MB "
                "of memory (scaffolder.task_memory_mb) and was stopped",
            )
        except ProblemError as exc:
            message = self.log.masker.mask(exc.detail)
            self.log.log(None, f"failed: {message}")
            finish_task(self.db, self.task_id, "failed", error=message)
        except Exception as exc:  # a bug, here or in a plugin: the task still ends, saying so
            traceback.print_exc()  # to the output file the runner keeps the tail of
            message = self.log.masker.mask(f"{type(exc).__name__}: {exc}")
            self.log.log(None, f"failed unexpectedly: {message}")
            finish_task(
                self.db, self.task_id, "failed", error=f"the task failed unexpectedly: {message}"
            )
        else:
            status = "cancelled" if self.log.cancelled() else "completed"
            finish_task(self.db, self.task_id, status, output=output)
        finally:
            if not self.settings.scaffolder.keep_workspaces:
                shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self) -> dict[str, Any]:
        if self.task.kind == "update":
            from pavedroad.scaffolder.updates import run_update

            return run_update(self)
        entity = self.tasks.template_entity(self.task.template_ref)
        version = self.versions.record(entity)
        self._set_version(version.version)
        self.log.log(None, f"template {version.template_ref} at version {version.version[:12]}")
        values = dict(self.task.values)
        runner, workspace = self.runner(version, values, "workspace", dry_run=self.is_dry_run)
        output = runner.run()
        if self.is_dry_run:
            output["files"] = dry_run_files(workspace)
        else:
            self.projects.record_from_task(self.task_id, runner.steps_output, version, values)
        return output

    @property
    def is_dry_run(self) -> bool:
        return self.task.kind == "dry-run"

    def runner(
        self, version: TemplateVersion, values: dict[str, Any], name: str, *, dry_run: bool
    ) -> tuple[StepRunner, Workspace]:
        """A step runner for ``version`` of the template, in a fresh folder ``name``."""
        template_dir = self.versions.checkout(
            version.template_ref, version.version, self.folder / f"{name}-template"
        )
        root = self.folder / name
        root.mkdir(parents=True, mode=0o700)
        workspace = Workspace(root, self.limits)
        spec = self.tasks.template_spec(version.entity)
        platform = TaskPlatform(
            settings=self.settings,
            db=self.db,
            git=self.git,
            catalog=self.catalog,
            actor=self.actor,
            task_id=self.task_id,
            origin=TemplateOrigin(version.template_ref, version.version, values),
        )
        runner = StepRunner(
            spec=spec,
            registry=self.tasks.registry,
            workspace=workspace,
            template_dir=template_dir,
            parameters=values,
            secrets=self.secrets,
            callbacks=self.log.callbacks(),
            user=self._user(),
            platform=platform,
            dry_run=dry_run,
        )
        return runner, workspace

    def _user(self) -> dict[str, Any]:
        user: dict[str, Any] = {"ref": self.actor.user_ref, "name": self.actor.name}
        if self.actor.user_ref:
            with self.catalog.reader() as reader:
                if reader.row_by_ref(self.actor.user_ref) is not None:
                    user["entity"] = reader.get_by_ref(self.actor.user_ref)
        return user

    def _set_version(self, version: str) -> None:
        with self.db.session() as session:
            row = session.get(TaskRow, self.task_id)
            if row is not None:
                row.template_version = version


def dry_run_files(workspace: Workspace) -> list[dict[str, Any]]:
    """The workspace's files, with the contents of text files (within limits)."""
    files: list[dict[str, Any]] = []
    budget = DRY_RUN_MAX_TOTAL_CHARS
    for path, size in workspace.tree():
        entry: dict[str, Any] = {"path": path, "size": size}
        data = workspace.read(path) if size <= DRY_RUN_MAX_FILE_CHARS else None
        if data is not None and b"\x00" not in data[:8192]:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if text is not None and len(text) <= budget:
                entry["content"] = text
                budget -= len(text)
        files.append(entry)
    return files


def run_forked(
    payload: bytes,
    output: str,
    memory_limit: int,
    dropped_env: tuple[str, ...],
    worker_alive: Connection,
) -> None:
    """The task process's entry when forked by the task runner: lead a process group of
    its own (killed as a whole), limit its address space, send its output to a file,
    forget the platform's secrets in the environment, then run the task."""
    os.setsid()
    _end_with_worker(worker_alive)
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)
    for name in dropped_env:
        os.environ.pop(name, None)
    data = json.loads(payload)
    TaskProcess(Settings(**data["settings"]), data["task"], data.get("secrets") or {}).run()


def _end_with_worker(worker_alive: Connection) -> None:
    """Kill this process group when the worker that started the task dies (it holds the
    other end of ``worker_alive``; the kernel closes it however the worker ends): the
    fork server that is this process's parent outlives the worker, so a parent-death
    signal would not do."""

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            worker_alive.recv()  # nothing is ever sent: this returns when the worker ends
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="worker-watch", daemon=True).start()
