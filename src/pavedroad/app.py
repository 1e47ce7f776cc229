"""The web application: ``create_app(settings)`` mounts every domain's API and views."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
from pavedroad.core.jobs import JobQueue
from pavedroad.core.plugins import plugin_manager
from pavedroad.git import api as git_api
from pavedroad.git import http as git_http
from pavedroad.git import webhooks as git_webhooks
from pavedroad.git.service import GitService
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
    catalog = CatalogService(db, settings)
    catalog.ensure_configured_locations()
    secrets = SecretStore(db, settings)
    git_service = GitService(db, settings)
    git_service.import_spool()  # pushes made while the platform was down
    queue = JobQueue(settings)
    scaffolder = TaskService(db, settings, catalog, secrets, queue)
    pipelines = PipelineService(db, settings, catalog, secret_store=secrets)
    job_queues = JobQueues(settings, pipelines.execute_job)
    pipelines.queues = job_queues
    reconcilers = background_reconcilers(catalog, secrets, git_service, scaffolder, pipelines)
    runner = BackgroundRunner(reconcilers) if background else None
    consumers = (
        [
            queue.consumer(settings.workers),
            *job_queues.consumers(settings.pipelines.labels, settings.pipelines.workers),
        ]
        if background
        else []
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runner:
            runner.start()
        for consumer in consumers:
            consumer.start()
        if consumers:
            threading.Thread(target=scaffolder.warm_up, daemon=True).start()
            threading.Thread(target=pipelines.stop_orphans, daemon=True).start()
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
    app.state.queue = queue
    app.state.scaffolder = scaffolder
    app.state.pipelines = pipelines
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
        streamed=("/git/", "/api/v1/git/webhooks/"),  # these limit their own bodies
    )
    app.add_middleware(RequestContextMiddleware)
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
    _add_operational_routes(app, catalog)
    from pavedroad.portal.views import mount_portal

    mount_portal(app)
    plugin_manager().hook.pavedroad_startup(app=app, settings=settings)
    return app


def background_reconcilers(
    catalog: CatalogService,
    secrets: SecretStore,
    git_service: GitService,
    scaffolder: TaskService,
    pipelines: PipelineService,
) -> list[Reconciler]:
    return [
        Reconciler("catalog-refresh", catalog.refresh_due, interval_seconds=2.0),
        Reconciler("secret-rotation", secrets.rotate_due, interval_seconds=30.0),
        Reconciler("git-push-spool", git_service.import_spool, interval_seconds=2.0),
        Reconciler("scaffolder-recovery", scaffolder.recover, interval_seconds=10.0),
        Reconciler("pipeline-triggers", pipelines.start_pushed, interval_seconds=2.0),
        Reconciler("pipeline-recovery", pipelines.recover, interval_seconds=10.0),
        Reconciler("pipeline-schedules", pipelines.fire_schedules, interval_seconds=20.0),
    ]


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
