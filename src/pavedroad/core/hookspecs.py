"""Every plugin hook Pavedroad offers, in one place.

A plugin is a module or object with functions marked ``@hookimpl`` and named like the
specs below. Install it with pip and declare it under the ``pavedroad.plugins`` entry
point group; it is picked up at the next start. The built-in kinds, processors and
location readers register through these same hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pavedroad.catalog.kinds import KindSchema
    from pavedroad.catalog.processing import EntityProcessor, EntityProvider, LocationReader
    from pavedroad.pipelines.steps import StepType
    from pavedroad.scaffolder.actions import Action
    from pavedroad.settings import Settings
    from pavedroad.workloads.resources import ResourceType

hookspec = pluggy.HookspecMarker("pavedroad")
hookimpl = pluggy.HookimplMarker("pavedroad")


@hookspec
def pavedroad_catalog_kinds() -> list[KindSchema]:  # type: ignore[empty-body]
    """Kinds (apiVersion, kind and JSON Schema) this plugin adds to the catalog."""


@hookspec
def pavedroad_catalog_processors(settings: Settings) -> list[EntityProcessor]:  # type: ignore[empty-body]
    """Processors that check entities and emit their relations, run in registration order."""


@hookspec
def pavedroad_catalog_readers(settings: Settings) -> list[LocationReader]:  # type: ignore[empty-body]
    """Readers for location types (``file``, ``url``, or a plugin's own)."""


@hookspec
def pavedroad_catalog_providers(settings: Settings) -> list[EntityProvider]:  # type: ignore[empty-body]
    """Providers that supply whole sets of entities from outside any location file."""


@hookspec
def pavedroad_authorize(decision: Any, actor: Any, permission: Any, entity_ref: str | None) -> Any:
    """Return a ``Decision`` to replace the built-in access decision, or None to keep it."""


@hookspec
def pavedroad_startup(app: Any, settings: Settings) -> None:
    """Called once the web app is built; register extra routes or background work."""


@hookspec
def pavedroad_secret_backends(settings: Settings) -> list[Any]:  # type: ignore[empty-body]
    """Places that keep sealed secret values (``SecretBackend``); ``secrets.backend`` in
    the settings names the one to use (the built-in ``database`` by default)."""


@hookspec
def pavedroad_event(event: Any, db: Any) -> None:
    """Called in the emitting process after a platform event (``core.events.Event``,
    e.g. ``SecretRotated``) is recorded in ``db`` (the ``Database``, for listeners that
    act on it); later layers react to the ones they care about."""


@hookspec
def pavedroad_scaffolder_actions() -> list[Action]:  # type: ignore[empty-body]
    """Scaffolder actions (``fetch:template``, or a plugin's own ``acme:deploy``) this
    plugin adds; each declares the JSON Schema its step input is checked against."""


@hookspec
def pavedroad_pipeline_steps() -> list[StepType]:  # type: ignore[empty-body]
    """Pipeline step types (``checkout``, ``python/test``, or a plugin's own ``acme/scan``)
    that a step names with ``uses:``; each declares the JSON Schema of its ``with:``."""


@hookspec
def pavedroad_resource_types() -> list[ResourceType]:  # type: ignore[empty-body]
    """Resource types (``volume``, ``secret``, or a plugin's own ``postgres``) that a Score
    workload's resources name with ``type:``; each declares the JSON Schema of its ``params``."""
