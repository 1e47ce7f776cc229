"""The catalog's service functions: what the API, CLI, portal and other domains call."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pavedroad.catalog.ingestion import Ingester, RefreshReport
from pavedroad.catalog.models import LocationRow
from pavedroad.catalog.processing import EntityValidationError, ProcessingContext
from pavedroad.catalog.queries import CatalogReader
from pavedroad.catalog.reading import PROVIDER_TYPE, SourceTask
from pavedroad.catalog.refs import parse_ref
from pavedroad.core.db import Database
from pavedroad.core.errors import InputError, NotFoundError, ProblemError
from pavedroad.settings import Settings

PREVIEW_MAX_SOURCES = 200


class CatalogService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.ingester = Ingester(db, settings)

    @contextmanager
    def reader(self) -> Iterator[CatalogReader]:
        with self.db.read_session() as session:
            yield CatalogReader(session)

    # -- locations -------------------------------------------------------------------

    def register_location(
        self, type_: str, target: str, *, created_by: str | None = None, process: bool = True
    ) -> tuple[LocationRow, list[dict[str, Any]]]:
        """Add a root location and (by default) ingest it now; returns it and its entities.

        A target that cannot be read at all (missing, too large, refused) is an error
        and nothing is registered; problems inside a readable target are reported on
        the location, as they would be at any later refresh."""
        self._check_registrable(type_)
        target = self.ingester.normalise_target(type_, target)
        if type_ in self.ingester.readers:
            self.ingester.readers[type_].read(target)
        location = self.ingester.add_location(type_, target, origin="api", created_by=created_by)
        if process:
            self.ingester.run_until_idle(location_id=location.id)
        with self.reader() as reader:
            refs = reader.entity_refs_of_location(location.id)
            entities = [e for e in reader.get_many(refs) if e is not None]
        return location, entities

    def preview_location(
        self, type_: str, target: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """What registering would produce (entities and errors), writing nothing."""
        self._check_registrable(type_)
        target = self.ingester.normalise_target(type_, target)
        pending = [SourceTask("root:preview", "required", None, type_, target)]
        seen: set[str] = set()
        entities: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        while pending and len(seen) < PREVIEW_MAX_SOURCES:
            task = pending.pop(0)
            seen.add(task.key)
            outcome = self.ingester.reader.read(task)
            for prepared in outcome.entities:
                entity = json.loads(prepared.body)
                entity["relations"] = [
                    {"type": t, "targetRef": g}
                    for s, t, g in prepared.relations
                    if s == prepared.key
                ]
                entities.append(entity)
            errors.extend(e.as_dict(task.key) for e in outcome.errors)
            ancestors = (*task.ancestors, task.key)
            pending.extend(
                SourceTask(key, child.presence, None, type_, target, ancestors)
                for key, child in outcome.children.items()
                if key not in seen
            )
        return entities, errors

    def _check_registrable(self, type_: str) -> None:
        """Locations registered through the API or CLI must be of an allowed type
        (configured locations are not limited)."""
        allowed = self.settings.catalog.allowed_location_types
        if type_ not in allowed:
            raise InputError(
                f"Registered locations must be of an allowed type {json.dumps(allowed)}"
            )

    def delete_entity(self, uid: str) -> None:
        """Remove one entity now (as Backstage does; a location still holding it brings
        it back at its next refresh)."""
        self.ingester.delete_entity(uid)

    def unregister_location(self, location_id: str) -> None:
        self.ingester.remove_location(location_id)

    def ensure_configured_locations(self) -> None:
        """Add the locations named in settings (idempotent)."""
        for location in self.settings.catalog.locations:
            self.ingester.ensure_location(location.type, location.target, origin="config")
        for name in self.ingester.providers:
            self.ingester.ensure_location(PROVIDER_TYPE, name, origin="provider")

    # -- refresh ---------------------------------------------------------------------

    def refresh_entity(self, ref: str) -> RefreshReport:
        """Re-read the source an entity came from, now."""
        with self.reader() as reader:
            row = reader.row_by_ref(ref)
            if row is None:
                raise NotFoundError(f"No entity {parse_ref(ref)}")
            source_key = row.source_key
        self.ingester.request_refresh(source_key=source_key)
        return self.ingester.process_source(source_key)

    def refresh_location(self, location_id: str) -> RefreshReport:
        with self.reader() as reader:
            reader.location(location_id)
        self.ingester.request_refresh(location_id=location_id)
        return self.ingester.run_until_idle(location_id=location_id)

    def refresh_due(self) -> RefreshReport:
        return self.ingester.refresh_due()

    # -- validation ------------------------------------------------------------------

    def validate_entity(self, entity: Any, location: str | None = None) -> dict[str, Any]:
        """Validate one entity as ingestion would, without saving. Raises on errors."""
        type_, _, target = (location or "url:https://localhost/validate.yaml").partition(":")

        def no_reads(relative: str) -> bytes:
            raise InputError(f"placeholders cannot be resolved when validating ({relative})")

        context = ProcessingContext(type_ or "url", target, no_reads, self.settings)
        if not isinstance(entity, dict):
            raise EntityValidationError(["an entity must be a mapping"])
        try:
            processed = self.ingester.pipeline.process(copy.deepcopy(entity), context)
        except EntityValidationError:
            raise
        except ProblemError as exc:
            raise EntityValidationError([exc.detail]) from None
        return processed.entity
