"""The web application: ``create_app(settings)`` mounts every domain's API and views."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from pavedroad import __version__
from pavedroad.catalog import api as catalog_api
from pavedroad.catalog import backstage_api
from pavedroad.catalog.service import CatalogService
from pavedroad.core import audit_api
from pavedroad.core.audit import AuditMiddleware
from pavedroad.core.background import BackgroundRunner, Reconciler
from pavedroad.core.db import Database, database_for
from pavedroad.core.http import BodySizeLimit, RequestContextMiddleware, install_error_handlers
from pavedroad.core.jobs import EmbeddedConsumer, JobQueue
from pavedroad.core.plugins import plugin_manager
from pavedroad.environments import api as environments_api
from pavedroad.environments.automation import EnvironmentAutomation
from pavedroad.environments.deployments import DeploymentService
from pavedroad.environments.factory import deployment_queue, deployment_service
from pavedroad.environments.releases import RELEASE_CREATED
from pavedroad.git import api as git_api
from pavedroad.git import http as git_http
from pavedroad.git import webhooks as git_webhooks
from pavedroad.git.service import GIT_PUSHED, GitService
from pavedroad.identity import api as identity_api
from pavedroad.identity import device as identity_device
from pavedroad.identity import oidc
from pavedroad.identity import web as identity_web
from pavedroad.identity.http import AuthenticationMiddleware
from pavedroad.identity.service import IdentityService
from pavedroad.identity.sessions import SessionService
from pavedroad.pipelines import api as pipelines_api
from pavedroad.pipelines.dispatch import JobQueues
from pavedroad.pipelines.runs import PipelineService
from pavedroad.runtimes.local.router import install_router
from pavedroad.scaffolder import api as scaffolder_api
from pavedroad.scaffolder.tasks import TaskService
from pavedroad.secrets import api as secrets_api
from pavedroad.secrets.service import SecretStore
from pavedroad.settings import Settings

log = logging.getLogger("pavedroad")


def create_app(
    settings: Settings | None = None, *, background: bool = False, database: Database | None = None
) -> FastAPI:
    """Build the app. With ``background=True`` the app also runs the reconcilers
    (catalog refresh) while it serves; ``pave up`` does, ``pave server`` may not."""
    settings = settings or Settings()
    settings.ensure_home()
    db = database or database_for(settings)
    db.migrate()
    services = build_services(settings, db)
    catalog, secrets, git_service = services.catalog, services.secrets, services.git
    services.catalog.ensure_configured_locations()
    git_service.import_spool()  # pushes made while the platform was down
    runner = BackgroundRunner(services.reconcilers()) if background else None
    consumers = services.consumers() if background else []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runner:
            runner.start()
        for consumer in consumers:
            consumer.start()
        if consumers:
            for work in services.at_start():
                threading.Thread(target=work, daemon=True).start()
        yield
        for consumer in consumers:
            consumer.stop_and_wait()
        if runner:
            runner.stop()

    app = FastAPI(
        title="Pavedroad",
        version=__version__,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.catalog = catalog
    app.state.secrets = secrets
    app.state.git = git_service
    app.state.queue = services.queue
    app.state.scaffolder = services.scaffolder
    app.state.pipelines = services.pipelines
    app.state.deployments = services.deployments
    app.state.automation = services.automation
    app.state.identity = IdentityService(db)
    app.state.sessions = SessionService(db, settings, app.state.identity)
    app.add_middleware(
        AuthenticationMiddleware,
        identity=app.state.identity,
        sessions=app.state.sessions,
        required=settings.auth.required,
        anonymous_read=settings.auth.anonymous_read,
    )
    app.add_middleware(AuditMiddleware, db=db)
    # Outside authentication: the CSRF check may read a form, never an oversized one.
    app.add_middleware(
        BodySizeLimit,
        max_body_bytes=settings.max_request_bytes,
        # these limit their own bodies
        streamed=("/git/", "/api/v1/git/webhooks/", "/api/v1/releases"),
    )
    app.add_middleware(RequestContextMiddleware)
    # Outermost: requests for deployed services never reach the platform's own stack.
    app.state.router = install_router(app, settings)
    services.deployments.runtime.router = app.state.router  # type: ignore[attr-defined]
    install_error_handlers(app)
    app.include_router(catalog_api.router)
    app.include_router(backstage_api.router)
    app.include_router(identity_api.router)
    app.include_router(identity_web.router)
    app.include_router(identity_device.router)
    app.include_router(oidc.router)
    app.include_router(audit_api.router)
    app.include_router(secrets_api.router)
    app.include_router(git_api.router)
    app.include_router(git_webhooks.router)
    app.include_router(git_http.router)
    app.include_router(scaffolder_api.router)
    app.include_router(pipelines_api.router)
    app.include_router(environments_api.router)
    _add_operational_routes(app, catalog)
    from pavedroad.portal.views import mount_portal

    mount_portal(app)
    plugin_manager().hook.pavedroad_startup(app=app, settings=settings)
    return app


@dataclass
class Services:
    """Every domain's service, as the server and ``pave worker`` both build them."""

    settings: Settings
    db: Database
    catalog: CatalogService
    secrets: SecretStore
    git: GitService
    queue: JobQueue
    scaffolder: TaskService
    pipelines: PipelineService
    job_queues: JobQueues
    deployment_jobs: JobQueue
    deployments: DeploymentService
    automation: EnvironmentAutomation

    def reconcilers(self) -> list[Reconciler]:
        return [
            Reconciler("catalog-refresh", self.catalog.refresh_due, interval_seconds=2.0),
            Reconciler("secret-rotation", self.secrets.rotate_due, interval_seconds=30.0),
            Reconciler("git-push-spool", self.git.import_spool, interval_seconds=2.0),
            Reconciler("scaffolder-recovery", self.scaffolder.recover, interval_seconds=10.0),
            Reconciler(
                "pipeline-triggers",
                self.pipelines.start_pushed,
                interval_seconds=2.0,
                wake_on=(GIT_PUSHED,),
            ),
            Reconciler("pipeline-recovery", self.pipelines.recover, interval_seconds=10.0),
            Reconciler("pipeline-schedules", self.pipelines.fire_schedules, interval_seconds=20.0),
            Reconciler(
                "environment-automation",
                self.automation.react,
                interval_seconds=2.0,
                wake_on=(GIT_PUSHED, RELEASE_CREATED),
            ),
            Reconciler("deployment-recovery", self.deployments.recover, interval_seconds=5.0),
        ]

    def consumers(self) -> list[EmbeddedConsumer]:
        """The queue consumers of this process: template tasks, pipeline jobs of its
        labels, deployments."""
        settings = self.settings
        consumers = [
            self.queue.consumer(settings.workers),
            *self.job_queues.consumers(settings.pipelines.labels, settings.pipelines.workers),
        ]
        if settings.deployments.workers > 0:
            consumers.append(self.deployment_jobs.consumer(settings.deployments.workers))
        return consumers

    def at_start(self) -> list[Callable[[], object]]:
        """Work a processing process does once when it starts: warm the template task
        processes, stop pipeline processes a dead worker left, adopt (or restart) the
        service instances that ran before."""
        return [
            self.scaffolder.warm_up,
            self.pipelines.stop_orphans,
            self.deployments.runtime.adopt,
        ]


def build_services(settings: Settings, db: Database) -> Services:
    catalog = CatalogService(db, settings)
    secrets = SecretStore(db, settings)
    queue = JobQueue(settings)
    scaffolder = TaskService(db, settings, catalog, secrets, queue)
    pipelines = PipelineService(db, settings, catalog, secret_store=secrets)
    job_queues = JobQueues(settings, pipelines.execute_job)
    pipelines.queues = job_queues
    deployment_jobs = deployment_queue(settings)
    deployments = deployment_service(db, settings, catalog, secrets, deployment_jobs)
    return Services(
        settings=settings,
        db=db,
        catalog=catalog,
        secrets=secrets,
        git=GitService(db, settings),
        queue=queue,
        scaffolder=scaffolder,
        pipelines=pipelines,
        job_queues=job_queues,
        deployment_jobs=deployment_jobs,
        deployments=deployments,
        automation=EnvironmentAutomation(deployments),
    )


def _add_operational_routes(app: FastAPI, catalog: CatalogService) -> None:
    @app.get("/healthz", tags=["operations"], summary="Liveness and database check")
    def healthz() -> dict[str, str]:
        from sqlalchemy import text

        with catalog.db.read_session() as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    def metrics() -> Response:
        registry = CollectorRegistry()
        registry.register(_CatalogCollector(catalog))
        body = generate_latest(REGISTRY) + generate_latest(registry)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


class _CatalogCollector:
    """Catalog figures read at scrape time from the database."""

    def __init__(self, catalog: CatalogService) -> None:
        self.catalog = catalog

    def collect(self):  # type: ignore[no-untyped-def]
        with self.catalog.reader() as reader:
            kinds = reader.facets(["kind"])["kind"]
            status = reader.processing_summary()
        entities = GaugeMetricFamily(
            "pavedroad_catalog_entities", "Entities in the catalog", labels=["kind"]
        )
        for item in kinds:
            entities.add_metric([str(item["value"])], item["count"])
        yield entities
        yield GaugeMetricFamily(
            "pavedroad_catalog_locations",
            "Registered and configured locations",
            value=status["locations"],
        )
        yield GaugeMetricFamily(
            "pavedroad_catalog_sources", "Files and URLs the catalog reads", value=status["sources"]
        )
        yield GaugeMetricFamily(
            "pavedroad_catalog_sources_with_errors",
            "Sources whose last read had errors",
            value=status["sources_with_errors"],
        )
        yield GaugeMetricFamily(
            "pavedroad_catalog_orphans", "Orphaned entities", value=status["orphans"]
        )
