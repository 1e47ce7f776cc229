"""Deployments: a release of a component going into an environment, step by step.

A deployment is persisted before anything happens and then follows its steps
(:data:`~pavedroad.environments.models.DEPLOYMENT_STEPS`): resolve the workload for the
environment, provision its resources, prepare the release (once per release), start new
instances, check they are ready, switch the route, drain and stop the old instances. Each
step is recorded on its timeline. The switch is the one moment the environment changes:
the route and the :class:`LiveRow` move together, so exactly one release is live. A
failure before it stops the new instances and leaves the old release serving (recorded
as an automatic rollback); nothing after it can fail the deployment.

Requests are idempotent: a second request for the same (component, environment, release)
while one is in progress joins it (``active_key`` is unique), and asking for the release
already live gives the live deployment. Deployments of one component in one environment
run one at a time, oldest first.

They run on the background queue (huey), so on any worker; a worker that dies is noticed
(its process is gone, or its heartbeat stops) and its deployment is finished if the
switch happened, otherwise failed cleanly.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from pavedroad.catalog.refs import parse_ref
from pavedroad.catalog.service import CatalogService
from pavedroad.core import audit, events
from pavedroad.core.db import Database
from pavedroad.core.errors import ConflictError, InputError, NotFoundError, ProblemError
from pavedroad.core.ids import new_id
from pavedroad.core.jobs import worker_gone, worker_name
from pavedroad.core.timeutil import as_utc, isoformat, utcnow
from pavedroad.environments.directory import Environment, EnvironmentDirectory
from pavedroad.environments.models import (
    DEPLOYMENT_ENDED,
    ApprovalRow,
    DeploymentEventRow,
    DeploymentRow,
    LiveRow,
)
from pavedroad.environments.releases import Release, ReleaseStore
from pavedroad.settings import Settings

if TYPE_CHECKING:
    from pavedroad.core.jobs import JobQueue
    from pavedroad.environments.runtime import WorkloadRuntime
    from pavedroad.secrets.service import SecretStore

log = logging.getLogger("pavedroad.deployments")

JOB = "deployment"
DEPLOYMENT_STARTED = "DeploymentStarted"
DEPLOYMENT_LIVE = "DeploymentLive"
DEPLOYMENT_FAILED = "DeploymentFailed"
WAITING = ("awaiting-approval", "queued")
IN_PROGRESS = ("awaiting-approval", "queued", "running")
BUSY_RETRY_SECONDS = 0.5


class DeploymentFailed(ProblemError):
    """A step failed; the deployment ends failed with this reason."""

    status = 500
    title = "Deployment failed"
    type_slug = "deployment-failed"

    def __init__(self, detail: str, log_tail: list[str] | None = None) -> None:
        super().__init__(detail)
        self.log_tail = log_tail or []


class DeploymentRefused(InputError):
    title = "Deployment refused"
    type_slug = "deployment-refused"


class _Superseded(Exception):
    """The deployment's claim was taken over by another worker: stop quietly."""


@dataclass(frozen=True)
class Requested:
    deployment: DeploymentRow
    created: bool  # False: joined the one in progress (or the live one)


class DeploymentService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        catalog: CatalogService,
        releases: ReleaseStore,
        runtime: WorkloadRuntime,
        secret_store: SecretStore | None = None,
        queue: JobQueue | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.catalog = catalog
        self.releases = releases
        self.runtime = runtime
        self.secret_store = secret_store
        self.environments = EnvironmentDirectory(db, catalog)
        self.queue = queue
        if queue is not None:
            queue.register(JOB, self.execute)

    # -- requests ----------------------------------------------------------------------

    def deploy(
        self,
        component: str,
        environment: str,
        release_id: str,
        actor: str,
        *,
        kind: str = "deploy",
        rollback_of: str | None = None,
        promoted_from: str | None = None,
        pinned: Mapping[str, Any] | None = None,
        trigger_key: str | None = None,
    ) -> Requested:
        """Ask for ``release_id`` of ``component`` to go live in ``environment``: a new
        deployment, or the one already doing (or done) that. ``trigger_key`` names what
        asked (an automatic deployment's event): a key seen before gives its deployment."""
        if trigger_key is not None:
            seen = self._by_trigger(trigger_key)
            if seen is not None:
                return Requested(seen, created=False)
        component = _component_ref(component)
        env = self.environments.get(environment)
        release = self.find_release(release_id, component)
        if release.component != component:
            raise DeploymentRefused(f"release {release.id} is of {release.component}")
        live = self.live(component, env.name)
        if live is not None and live.release_id == release.id and kind != "rollback":
            return Requested(self.get(live.deployment_id), created=False)
        if kind in ("deploy", "promote", "auto") and env.promotes_from:
            self._check_promotable(release, env)
        # a rollback goes back to what was live here (and approved then, if it had to be)
        approval = env.approval if kind in ("deploy", "promote", "auto") else None
        needs_approval = approval is not None
        now = utcnow()
        key = f"{component}|{env.name}|{release.id}"
        row = DeploymentRow(
            id=new_id(),
            number=0,
            component=component,
            environment=env.name,
            release_id=release.id,
            kind=kind,
            status="awaiting-approval" if needs_approval else "queued",
            step=None,
            active_key=key,
            requested_by=actor,
            trigger_key=trigger_key,
            reason=None,
            log_tail=[],
            previous_release_id=live.release_id if live else None,
            rollback_of=rollback_of,
            promoted_from=promoted_from,
            config=dict(pinned or {}),
            secret_versions={},
            instances=[],
            url=None,
            worker=None,
            attempt=0,
            heartbeat_at=None,
            approval_expires_at=(now + approval.expires_after) if approval else None,
            created_at=now,
        )
        for _ in range(5):
            try:
                with self.db.session() as session:
                    highest = session.scalar(select(func.max(DeploymentRow.number))) or 0
                    row.number = highest + 1
                    session.add(row)
                break
            except IntegrityError:
                joined = self._active(key) or (
                    self._by_trigger(trigger_key) if trigger_key else None
                )
                if joined is not None:
                    return Requested(joined, created=False)
                continue  # another deployment took the number: take the next
        else:  # pragma: no cover - five collisions in a row
            raise ConflictError("too many deployments at once; try again")
        self._event(row.id, "request", "info", _requested_message(row, release, env))
        events.emit(
            self.db,
            DEPLOYMENT_STARTED,
            component,
            {"deployment": row.id, "environment": env.name, "release": release.id, "kind": kind},
        )
        if row.status == "queued":
            self._enqueue(row.id)
        return Requested(self.get(row.id), created=True)

    def promote(self, component: str, to: str, actor: str) -> Requested:
        """Deploy to ``to`` exactly the release live in the environment it promotes from."""
        component = _component_ref(component)
        target = self.environments.get(to)
        if not target.promotes_from:
            raise DeploymentRefused(
                f"{target.name} does not promote from another environment "
                f"(it has no promotesFrom): deploy a release to it with pave deploy"
            )
        source = self.live(component, target.promotes_from)
        if source is None:
            raise DeploymentRefused(
                f"nothing of {component} is live in {target.promotes_from}, so there is "
                f"nothing to promote to {target.name}"
            )
        current = self.live(component, target.name)
        if current is not None and current.release_id == source.release_id:
            raise DeploymentRefused(f"release {source.release_id} is already live in {target.name}")
        return self.deploy(
            component,
            target.name,
            source.release_id,
            actor,
            kind="promote",
            promoted_from=target.promotes_from,
        )

    def rollback(
        self, component: str, environment: str, actor: str, to: str | None = None
    ) -> Requested:
        """Redeploy the release live before the current one (or ``to``), with the
        configuration and secret versions it ran with then."""
        component = _component_ref(component)
        env = self.environments.get(environment)
        live = self.live(component, env.name)
        history = self._went_live(component, env.name)
        if to:
            release = self.find_release(to, component)
            earlier = next((d for d in history if d.release_id == release.id), None)
            if earlier is None:
                raise DeploymentRefused(
                    f"release {release.id} was never live in {env.name}, so it is no rollback: "
                    "deploy or promote it instead (its environment's rules apply then)"
                )
        else:
            earlier = next(
                (d for d in history if live is None or d.release_id != live.release_id), None
            )
            if earlier is None:
                raise DeploymentRefused(
                    f"{component} has no earlier release that was live in {env.name} "
                    "to roll back to"
                )
            release = self.find_release(earlier.release_id, component)
        if live is not None and live.release_id == release.id:
            raise DeploymentRefused(f"release {release.id} is the one live in {env.name}")
        pinned = {}
        if earlier is not None:
            pinned = {"variables": earlier.config.get("variables") or {}}
            pinned["secretVersions"] = dict(earlier.secret_versions)
        return self.deploy(
            component,
            env.name,
            release.id,
            actor,
            kind="rollback",
            rollback_of=live.deployment_id if live else None,
            pinned=pinned,
        )

    def approve(self, deployment_id: str, actor: str, comment: str | None = None) -> DeploymentRow:
        return self._decide(deployment_id, actor, "approved", comment)

    def reject(self, deployment_id: str, actor: str, comment: str | None = None) -> DeploymentRow:
        return self._decide(deployment_id, actor, "rejected", comment)

    def _decide(
        self, deployment_id: str, actor: str, decision: str, comment: str | None
    ) -> DeploymentRow:
        deployment = self.get(deployment_id)
        if deployment.status != "awaiting-approval":
            raise ConflictError(
                f"deployment {deployment.number} is {deployment.status}, not awaiting approval"
            )
        if actor == deployment.requested_by:
            raise DeploymentRefused(
                f"{actor} asked for deployment {deployment.number}; someone else must approve it"
            )
        env = self.environments.get(deployment.environment)
        enqueue = False
        with self.db.session() as session:
            row = session.get(DeploymentRow, deployment_id, with_for_update=True)
            if row is None or row.status != "awaiting-approval":
                raise ConflictError(f"deployment {deployment.number} is no longer waiting")
            if session.scalar(
                select(ApprovalRow).where(
                    ApprovalRow.deployment_id == deployment_id, ApprovalRow.approver == actor
                )
            ):
                raise ConflictError(f"{actor} has already decided on deployment {row.number}")
            session.add(
                ApprovalRow(
                    id=new_id(),
                    deployment_id=deployment_id,
                    approver=actor,
                    decision=decision,
                    comment=(comment or None) and comment[:2000],
                    at=utcnow(),
                )
            )
            session.flush()
            if decision == "rejected":
                row.status = "rejected"
                row.reason = f"rejected by {actor}" + (f": {comment[:500]}" if comment else "")
                row.active_key = None
                row.finished_at = utcnow()
            else:
                approvals = session.scalar(
                    select(func.count())
                    .select_from(ApprovalRow)
                    .where(
                        ApprovalRow.deployment_id == deployment_id,
                        ApprovalRow.decision == "approved",
                    )
                )
                needed = env.approval.approvals if env.approval else 1
                if (approvals or 0) >= needed:
                    row.status = "queued"
                    row.heartbeat_at = utcnow()  # queued now, not when it was asked for
                    enqueue = True
        self._event(deployment_id, "approval", "info", f"{decision} by {actor}")
        if enqueue:
            self._enqueue(deployment_id)
        return self.get(deployment_id)

    def cancel(self, deployment_id: str, actor: str) -> DeploymentRow:
        """Cancel a deployment that has not started (awaiting approval or queued)."""
        with self.db.session() as session:
            row = session.get(DeploymentRow, deployment_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"there is no deployment {deployment_id[:80]}")
            if row.status not in WAITING:
                raise ConflictError(
                    f"deployment {row.number} is {row.status}: only a waiting one can be cancelled"
                )
            row.status = "cancelled"
            row.reason = f"cancelled by {actor}"
            row.active_key = None
            row.finished_at = utcnow()
        self._event(deployment_id, "request", "info", f"cancelled by {actor}")
        return self.get(deployment_id)

    def _check_promotable(self, release: Release, env: Environment) -> None:
        source = env.promotes_from or ""
        with self.db.read_session() as session:
            was_live = session.scalar(
                select(DeploymentRow.id)
                .where(
                    DeploymentRow.component == release.component,
                    DeploymentRow.environment == source,
                    DeploymentRow.release_id == release.id,
                    DeploymentRow.status.in_(("live", "replaced")),
                )
                .limit(1)
            )
        if was_live is None:
            raise DeploymentRefused(
                f"{env.name} takes only releases that were live in {source} first, and "
                f"release {release.id} of {release.component} was not; deploy it to "
                f"{source} first (pave promote {parse_ref(release.component).name} "
                f"--to {env.name} takes the one live there)"
            )

    # -- execution ---------------------------------------------------------------------

    def execute(self, deployment_id: str) -> None:
        """The queue's handler: run the deployment's steps (claiming it first, so a
        message delivered twice runs nothing twice)."""
        worker = worker_name()
        claimed = self._claim(deployment_id, worker)
        if claimed is None:
            return
        if not isinstance(claimed, DeploymentRow):  # another of its place is ahead of it
            self._enqueue(deployment_id, delay=BUSY_RETRY_SECONDS)
            return
        deployment = claimed
        stop = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat, args=(deployment.id, deployment.attempt, stop), daemon=True
        )
        beat.start()
        try:
            self._run_steps(deployment)
        except _Superseded:
            log.warning("deployment %s was taken over by another worker", deployment.number)
        except Exception as error:  # a bug: the deployment must still end
            log.exception("deployment %s failed unexpectedly", deployment.number)
            self._fail(deployment, DeploymentFailed(f"internal error: {error}"))
        finally:
            stop.set()

    def _claim(self, deployment_id: str, worker: str) -> DeploymentRow | str | None:
        with self.db.session() as session:
            row = session.get(DeploymentRow, deployment_id, with_for_update=True)
            if row is None or row.status != "queued":
                return None
            earlier_running = session.scalar(
                select(DeploymentRow.id)
                .where(
                    DeploymentRow.component == row.component,
                    DeploymentRow.environment == row.environment,
                    DeploymentRow.id != row.id,
                    or_(
                        DeploymentRow.status == "running",
                        (DeploymentRow.status == "queued")
                        & (DeploymentRow.created_at < row.created_at),
                    ),
                )
                .limit(1)
            )
            if earlier_running is not None:
                row.heartbeat_at = utcnow()  # its message is alive: it comes back to wait
                return "busy"
            row.status = "running"
            row.worker = worker
            row.attempt += 1
            row.heartbeat_at = utcnow()
            row.started_at = row.started_at or utcnow()
            session.flush()
            session.expunge(row)
            return row

    def _heartbeat(self, deployment_id: str, attempt: int, stop: threading.Event) -> None:
        while not stop.wait(2.0):
            with contextlib.suppress(Exception), self.db.session() as session:
                row = session.get(DeploymentRow, deployment_id, with_for_update=True)
                if row is None or row.status != "running" or row.attempt != attempt:
                    return
                row.heartbeat_at = utcnow()

    def _run_steps(self, deployment: DeploymentRow) -> None:
        from pavedroad.environments.runtime import DeploymentPlan

        new_instances: list[str] = []
        try:
            with self._step(deployment, "resolve"):
                release = self.releases.get(deployment.release_id)
                env = self.environments.get(deployment.environment)
                plan = DeploymentPlan.for_release(
                    release, env, deployment, self._secret_reader(deployment)
                )
            with self._step(deployment, "provision") as note:
                provisioned = self.runtime.provision(plan)
                note(provisioned.summary)
                self._update(
                    deployment,
                    config={"variables": plan.variables, **provisioned.config},
                    secret_versions=provisioned.secret_versions,
                )
            with self._step(deployment, "prepare") as note:
                prepared = self.runtime.prepare(release)
                note(prepared.summary)
            with self._step(deployment, "start") as note:
                new_instances = self.runtime.start(plan, provisioned, prepared)
                self._update(deployment, instances=list(new_instances))
                note(f"started {', '.join(new_instances)}")
            with self._step(deployment, "ready") as note:
                note(self.runtime.wait_ready(plan, new_instances))
        except DeploymentFailed as failure:
            with contextlib.suppress(Exception):
                self.runtime.stop(new_instances)
            self._fail(deployment, failure)
            return
        with self._step(deployment, "switch", fail=False) as note:
            url = self.runtime.switch(plan, new_instances)
            old = self._switch(deployment, new_instances, url)
            note(f"{url} now serves release {release.id}")
        with self._step(deployment, "drain", fail=False) as note:
            if old is not None and old.instances:
                self.runtime.drain(plan, list(old.instances))
                note(f"stopped {', '.join(old.instances)}")
            else:
                note("nothing was serving before")
        self._finish(deployment)

    @contextlib.contextmanager
    def _step(
        self, deployment: DeploymentRow, step: str, *, fail: bool = True
    ) -> Iterator[Callable[[str], None]]:
        self._fence(deployment)
        with self.db.session() as session:
            row = session.get(DeploymentRow, deployment.id)
            if row is not None:
                row.step = step
        self._event(deployment.id, step, "started", "")
        notes: list[str] = []
        try:
            yield notes.append
        except DeploymentFailed as failure:
            self._event(deployment.id, step, "failed", failure.detail)
            raise
        except ProblemError as error:
            self._event(deployment.id, step, "failed", error.detail)
            if fail:
                raise DeploymentFailed(error.detail) from None
            raise
        except Exception as error:
            self._event(deployment.id, step, "failed", str(error) or type(error).__name__)
            if fail:
                raise DeploymentFailed(f"{step}: {error}") from None
            raise
        self._event(deployment.id, step, "succeeded", "; ".join(n for n in notes if n))

    def _fence(self, deployment: DeploymentRow) -> None:
        with self.db.read_session() as session:
            row = session.get(DeploymentRow, deployment.id)
        if row is None or row.status != "running" or row.attempt != deployment.attempt:
            raise _Superseded()

    def _switch(
        self, deployment: DeploymentRow, instances: list[str], url: str | None
    ) -> LiveRow | None:
        """Record the switch: the deployment live, the one before replaced, in one
        transaction. Returns what was live before (its instances are to be drained)."""
        now = utcnow()
        with self.db.session() as session:
            live = session.get(
                LiveRow, (deployment.component, deployment.environment), with_for_update=True
            )
            old = None
            if live is not None:
                old = LiveRow(
                    component=live.component,
                    environment=live.environment,
                    release_id=live.release_id,
                    deployment_id=live.deployment_id,
                    instances=list(live.instances),
                    url=live.url,
                    since=live.since,
                )
                previous = session.get(DeploymentRow, live.deployment_id)
                if previous is not None and previous.id != deployment.id:
                    previous.status = "replaced"
                live.release_id = deployment.release_id
                live.deployment_id = deployment.id
                live.instances = list(instances)
                live.url = url
                live.since = now
            else:
                session.add(
                    LiveRow(
                        component=deployment.component,
                        environment=deployment.environment,
                        release_id=deployment.release_id,
                        deployment_id=deployment.id,
                        instances=list(instances),
                        url=url,
                        since=now,
                    )
                )
            row = session.get(DeploymentRow, deployment.id)
            if row is not None:
                row.url = url
                row.step = "switch"
        return old

    def _finish(self, deployment: DeploymentRow) -> None:
        with self.db.session() as session:
            row = session.get(DeploymentRow, deployment.id)
            if row is None:
                return
            row.status = "live" if self._is_live(session, row) else "replaced"
            row.step = None
            row.active_key = None
            row.finished_at = utcnow()
            number, url = row.number, row.url
        self._event(deployment.id, "live", "succeeded", f"live at {url}")
        events.emit(
            self.db,
            DEPLOYMENT_LIVE,
            deployment.component,
            {
                "deployment": deployment.id,
                "number": number,
                "environment": deployment.environment,
                "release": deployment.release_id,
                "url": url,
            },
        )

    @staticmethod
    def _is_live(session: Any, row: DeploymentRow) -> bool:
        live = session.get(LiveRow, (row.component, row.environment))
        return live is not None and live.deployment_id == row.id

    def _fail(self, deployment: DeploymentRow, failure: DeploymentFailed) -> None:
        with self.db.session() as session:
            row = session.get(DeploymentRow, deployment.id, with_for_update=True)
            if row is None or row.status in DEPLOYMENT_ENDED:
                return
            row.status = "failed"
            row.reason = failure.detail[:4000]
            row.log_tail = failure.log_tail[-50:]
            row.active_key = None
            row.finished_at = utcnow()
            live = session.get(LiveRow, (row.component, row.environment))
            serving = live.release_id if live is not None else None
        message = (
            f"release {serving} keeps serving (automatic rollback)"
            if serving
            else "nothing was serving before; nothing serves now"
        )
        self._event(deployment.id, "rollback", "info", message)
        events.emit(
            self.db,
            DEPLOYMENT_FAILED,
            deployment.component,
            {
                "deployment": deployment.id,
                "environment": deployment.environment,
                "release": deployment.release_id,
                "reason": failure.detail[:500],
            },
        )

    def _update(self, deployment: DeploymentRow, **values: Any) -> None:
        with self.db.session() as session:
            row = session.get(DeploymentRow, deployment.id)
            if row is not None:
                for name, value in values.items():
                    setattr(row, name, value)

    def _secret_reader(self, deployment: DeploymentRow) -> SecretReader:
        pinned = (deployment.config or {}).get("secretVersions") or {}
        return SecretReader(self.secret_store, deployment, dict(pinned))

    # -- recovery ----------------------------------------------------------------------

    def recover(self) -> int:
        """Reconciler: deployments whose worker is gone end cleanly (finished if their
        switch happened, failed otherwise); approvals that expired end; queued
        deployments whose message was lost are queued again. Returns those changed."""
        changed = 0
        now = utcnow()
        lost_after = timedelta(seconds=self.settings.deployments.lost_after_seconds)
        with self.db.read_session() as session:
            rows = list(
                session.scalars(select(DeploymentRow).where(DeploymentRow.status.in_(IN_PROGRESS)))
            )
        for row in rows:
            if row.status == "awaiting-approval":
                expires = as_utc(row.approval_expires_at) if row.approval_expires_at else None
                if expires is not None and expires <= now:
                    changed += self._expire(row)
                continue
            if row.status == "queued":
                # queued, or last seen waiting for another deployment of its place: a
                # message not taken since then was lost (claiming makes a duplicate harmless)
                waited = now - as_utc(row.heartbeat_at or row.created_at)
                if waited > timedelta(seconds=self.settings.deployments.requeue_after_seconds):
                    self._enqueue(row.id)
                continue
            gone = worker_gone(row.worker)
            silent = row.heartbeat_at is None or now - as_utc(row.heartbeat_at) > lost_after
            if gone or silent:
                changed += self._recover_lost(row)
        return changed

    def _expire(self, row: DeploymentRow) -> int:
        with self.db.session() as session:
            current = session.get(DeploymentRow, row.id, with_for_update=True)
            if current is None or current.status != "awaiting-approval":
                return 0
            current.status = "expired"
            current.reason = "nobody approved it in time"
            current.active_key = None
            current.finished_at = utcnow()
        self._event(row.id, "approval", "info", "expired: nobody approved it in time")
        return 1

    def _recover_lost(self, row: DeploymentRow) -> int:
        with self.db.read_session() as session:
            live = session.get(LiveRow, (row.component, row.environment))
        if live is not None and live.deployment_id == row.id:
            # the switch happened: finish the drain and call it live
            self._event(row.id, "recover", "info", "its worker stopped after the switch")
            with contextlib.suppress(Exception):
                self._drain_leftovers(row)
            self._finish(row)
            return 1
        with contextlib.suppress(Exception):
            self.runtime.stop(list(row.instances))
        with self.db.read_session() as session:
            current = session.get(DeploymentRow, row.id)
        step = (current.step if current else None) or "the start"
        self._fail(
            row,
            DeploymentFailed(f"the worker running it stopped during {step} (platform restart?)"),
        )
        return 1

    def _drain_leftovers(self, row: DeploymentRow) -> None:
        """Instances of this component and environment that nothing live uses."""
        live = self.live(row.component, row.environment)
        keep = set(live.instances) if live else set()
        self.runtime.stop_except(row.component, row.environment, keep)

    # -- removal -----------------------------------------------------------------------

    def undeploy(self, component: str, environment: str, actor: str, reason: str) -> bool:
        """Stop what serves ``component`` in ``environment`` and forget its route."""
        component = _component_ref(component)
        with self.db.session() as session:
            live = session.get(LiveRow, (component, environment), with_for_update=True)
            if live is None:
                return False
            deployment = session.get(DeploymentRow, live.deployment_id)
            if deployment is not None:
                deployment.status = "removed"
                deployment.reason = reason[:4000]
            instances = list(live.instances)
            session.delete(live)
        self.runtime.remove_route(component, environment)
        with contextlib.suppress(Exception):
            self.runtime.stop(instances)
        self.runtime.stop_except(component, environment, set())
        if deployment is not None:
            self._event(deployment.id, "remove", "info", f"{reason} ({actor})")
        return True

    def remove_environment(self, name: str, actor: str) -> list[str]:
        """Everything in a run-time environment stopped, and the environment forgotten."""
        env = self.environments.get(name)
        if not env.removable:
            raise ConflictError(
                f"{name} is declared in the catalog; remove it from its catalog file instead"
            )
        removed = []
        for live in self.lives(environment=name):
            if self.undeploy(live.component, name, actor, f"environment {name} removed"):
                removed.append(live.component)
        with self.db.session() as session:
            for row in session.scalars(
                select(DeploymentRow).where(
                    DeploymentRow.environment == name, DeploymentRow.status.in_(WAITING)
                )
            ):
                row.status = "cancelled"
                row.reason = f"environment {name} removed"
                row.active_key = None
                row.finished_at = utcnow()
        self.environments.forget(name)
        return removed

    # -- reading -----------------------------------------------------------------------

    def get(self, deployment_id: str) -> DeploymentRow:
        with self.db.read_session() as session:
            row = session.get(DeploymentRow, deployment_id)
            if row is None and deployment_id.isdigit():
                row = session.scalar(
                    select(DeploymentRow).where(DeploymentRow.number == int(deployment_id))
                )
        if row is None:
            raise NotFoundError(f"there is no deployment {deployment_id[:80]}")
        return row

    def recent(
        self,
        component: str | None = None,
        environment: str | None = None,
        status: str | None = None,
        limit: int = 50,
    ) -> list[DeploymentRow]:
        statement = select(DeploymentRow).order_by(DeploymentRow.number.desc())
        if component:
            statement = statement.where(DeploymentRow.component == _component_ref(component))
        if environment:
            statement = statement.where(DeploymentRow.environment == environment)
        if status:
            statement = statement.where(DeploymentRow.status == status)
        with self.db.read_session() as session:
            return list(session.scalars(statement.limit(max(1, min(limit, 2000)))))

    def timeline(self, deployment_id: str) -> list[DeploymentEventRow]:
        with self.db.read_session() as session:
            return list(
                session.scalars(
                    select(DeploymentEventRow)
                    .where(DeploymentEventRow.deployment_id == deployment_id)
                    .order_by(DeploymentEventRow.id)
                )
            )

    def approvals(self, deployment_id: str) -> list[ApprovalRow]:
        with self.db.read_session() as session:
            return list(
                session.scalars(
                    select(ApprovalRow)
                    .where(ApprovalRow.deployment_id == deployment_id)
                    .order_by(ApprovalRow.at)
                )
            )

    def live(self, component: str, environment: str) -> LiveRow | None:
        with self.db.read_session() as session:
            return session.get(LiveRow, (_component_ref(component), environment))

    def lives(self, component: str | None = None, environment: str | None = None) -> list[LiveRow]:
        statement = select(LiveRow).order_by(LiveRow.component, LiveRow.environment)
        if component:
            statement = statement.where(LiveRow.component == _component_ref(component))
        if environment:
            statement = statement.where(LiveRow.environment == environment)
        with self.db.read_session() as session:
            return list(session.scalars(statement))

    def find_release(self, text: str, component: str | None = None) -> Release:
        """A release by id, or by a unique prefix (6+ characters) of its id, digest or
        commit among the component's releases."""
        text = (text or "").strip()
        with contextlib.suppress(NotFoundError):
            return self.releases.get(text)
        if len(text) < 6 or component is None:
            raise NotFoundError(f"there is no release {text[:80]!r}")
        needle = text.lower().removeprefix("sha256:")
        matches = [
            r
            for r in self.releases.list(component=component, limit=500)
            if r.id.lower().startswith(needle)
            or r.digest.removeprefix("sha256:").startswith(needle)
            or (r.commit or "").startswith(needle)
        ]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise NotFoundError(f"{component} has no release {text[:80]!r}")
        raise InputError(f"{text[:80]!r} names {len(matches)} releases of {component}; say more")

    def describe(self, row: DeploymentRow, *, full: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": row.id,
            "number": row.number,
            "component": row.component,
            "environment": row.environment,
            "release": row.release_id,
            "kind": row.kind,
            "status": row.status,
            "step": row.step,
            "requestedBy": row.requested_by,
            "reason": row.reason,
            "previousRelease": row.previous_release_id,
            "promotedFrom": row.promoted_from,
            "rollbackOf": row.rollback_of,
            "url": row.url,
            "instances": list(row.instances),
            "approvalExpiresAt": isoformat(row.approval_expires_at)
            if row.approval_expires_at
            else None,
            "createdAt": isoformat(row.created_at),
            "startedAt": isoformat(row.started_at) if row.started_at else None,
            "finishedAt": isoformat(row.finished_at) if row.finished_at else None,
        }
        if full:
            data["logTail"] = list(row.log_tail)
            data["variables"] = (row.config or {}).get("variables") or {}
            data["secretVersions"] = dict(row.secret_versions)
            data["timeline"] = [
                {"at": isoformat(e.at), "step": e.step, "status": e.status, "message": e.message}
                for e in self.timeline(row.id)
            ]
            data["approvals"] = [
                {
                    "approver": a.approver,
                    "decision": a.decision,
                    "comment": a.comment,
                    "at": isoformat(a.at),
                }
                for a in self.approvals(row.id)
            ]
        return data

    def _went_live(self, component: str, environment: str) -> list[DeploymentRow]:
        """Deployments that went live here, newest first."""
        with self.db.read_session() as session:
            return list(
                session.scalars(
                    select(DeploymentRow)
                    .where(
                        DeploymentRow.component == component,
                        DeploymentRow.environment == environment,
                        DeploymentRow.status.in_(("live", "replaced")),
                    )
                    .order_by(DeploymentRow.number.desc())
                )
            )

    def _by_trigger(self, key: str) -> DeploymentRow | None:
        with self.db.read_session() as session:
            return session.scalar(select(DeploymentRow).where(DeploymentRow.trigger_key == key))

    def _active(self, key: str) -> DeploymentRow | None:
        with self.db.read_session() as session:
            return session.scalar(select(DeploymentRow).where(DeploymentRow.active_key == key))

    def _event(self, deployment_id: str, step: str, status: str, message: str) -> None:
        with self.db.session() as session:
            session.add(
                DeploymentEventRow(
                    deployment_id=deployment_id,
                    at=utcnow(),
                    step=step,
                    status=status,
                    message=message[:4000],
                )
            )

    def _enqueue(self, deployment_id: str, delay: float | None = None) -> None:
        if self.queue is not None:
            self.queue.enqueue(JOB, deployment_id, delay=delay)


class SecretReader:
    """Secret values for a deployment: the component's secrets in the environment (or the
    component's own, or the environment's), each read audited as the deployment's, at the
    version pinned by a rollback or the current one; remembers the versions it read."""

    def __init__(
        self, store: SecretStore | None, deployment: DeploymentRow, pinned: dict[str, int]
    ) -> None:
        self.store = store
        self.deployment = deployment
        self.pinned = pinned
        self.versions: dict[str, int] = {}

    def __call__(self, name: str) -> str:
        value = self.find(name)
        if value is None:
            component, environment = self.deployment.component, self.deployment.environment
            raise DeploymentFailed(
                f"secret {name} is not set for {component} in {environment} "
                f"(pave secret set {name} --entity {component} --env {environment})"
            )
        return value

    def find(self, name: str) -> str | None:
        """The value, or None when no scope of the deployment has the secret."""
        from pavedroad.secrets.scopes import SecretScope

        if self.store is None:
            return None
        component, environment = self.deployment.component, self.deployment.environment
        for scope in (
            SecretScope.parse(component, environment),
            SecretScope.parse(component, None),
            SecretScope.parse(None, environment),
        ):
            found = self.store.find(entity=scope.entity_ref, environment=scope.environment)
            meta = next((m for m in found if m["name"] == name), None)
            if meta is None:
                continue
            record = audit.AuditEvent(
                actor=f"deployment:{self.deployment.number}",
                action="secret.read",
                target="",
                outcome="success",
                status=200,
                request_id=f"deployment:{self.deployment.id}"[:64],
            )
            version = self.pinned.get(name)
            value, meta = self.store.reveal(scope, name, version, record)
            used = version or meta.get("version") or meta.get("currentVersion") or 0
            self.versions[name] = int(used)
            return value
        return None


def _component_ref(text: str) -> str:
    return parse_ref(text.strip(), "component").key


def _requested_message(row: DeploymentRow, release: Release, env: Environment) -> str:
    what = {
        "deploy": "deploy",
        "auto": "automatic deploy",
        "promote": f"promotion from {row.promoted_from}",
        "rollback": "rollback",
        "preview": "preview deploy",
    }.get(row.kind, row.kind)
    source = (release.commit or "")[:12] or release.digest[:19]
    text = f"{what} of release {release.id} ({source}) by {row.requested_by}"
    if row.status == "awaiting-approval" and env.approval:
        text += f"; waits for {env.approval.approvals} approval(s) from {env.name}'s approvers"
    return text
