"""The deployments service as every process builds it: the server, ``pave worker``, and
a pipeline's ``deploy`` step."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pavedroad.core.db import Database
from pavedroad.settings import Settings

if TYPE_CHECKING:
    from pavedroad.catalog.service import CatalogService
    from pavedroad.core.jobs import JobQueue
    from pavedroad.environments.deployments import DeploymentService
    from pavedroad.secrets.service import SecretStore

QUEUE_NAME = "pavedroad-deployments"


def deployment_queue(settings: Settings) -> JobQueue:
    from pavedroad.core.jobs import JobQueue

    return JobQueue(settings, name=QUEUE_NAME)


def deployment_service(
    db: Database,
    settings: Settings,
    catalog: CatalogService | None = None,
    secrets: SecretStore | None = None,
    queue: JobQueue | None = None,
) -> DeploymentService:
    from pavedroad.catalog.service import CatalogService
    from pavedroad.environments.deployments import DeploymentService
    from pavedroad.environments.local import LocalWorkloadRuntime
    from pavedroad.environments.releases import ReleaseStore
    from pavedroad.pipelines.artifacts import ArtifactStore
    from pavedroad.secrets.service import SecretStore

    artifacts = ArtifactStore.for_settings(settings)
    return DeploymentService(
        db,
        settings,
        catalog or CatalogService(db, settings),
        ReleaseStore(db, artifacts),
        LocalWorkloadRuntime(settings, artifacts),
        secret_store=secrets or SecretStore(db, settings),
        queue=queue or deployment_queue(settings),
    )
