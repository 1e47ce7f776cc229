"""Reads the portal pages need beyond :class:`CatalogReader`: facet counts that stay
fast on large catalogs, entity bodies by ref without their relations, recent changes,
and the relation lookups behind group and user pages."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pavedroad.catalog.ingestion import catalog_generation
from pavedroad.catalog.models import EntityRow, RelationRow
from pavedroad.catalog.queries import CatalogReader, Predicate
from pavedroad.core.db import in_chunks

if TYPE_CHECKING:
    from pavedroad.catalog.service import CatalogService

FacetCounts = dict[str, list[dict[str, Any]]]

log = logging.getLogger("pavedroad.portal")


@dataclass(frozen=True)
class FacetScope:
    """The entities facet values are counted among: a filter and a full-text search."""

    filter: Predicate = None
    full_text: str = ""

    def key(self) -> str:
        return json.dumps([self.filter, self.full_text.strip().lower()], sort_keys=True)


def facet_counts(reader: CatalogReader, scope: FacetScope, fields: Sequence[str]) -> FacetCounts:
    """Value counts of each field among the scope's entities (cached by the reader)."""
    return reader.facets(list(fields), scope.filter, scope.full_text)


class FacetWarmer:
    """After the catalog changes, counts the scopes most pages need in a background
    thread, so the first visitor after a change does not wait for them."""

    def __init__(self) -> None:
        self.warmed: dict[str, int] = {}
        self.warming: set[str] = set()
        self.lock = threading.Lock()

    def warm(
        self,
        service: CatalogService,
        plan: Callable[[CatalogReader], list[tuple[FacetScope, list[str]]]],
    ) -> None:
        with service.reader() as reader:
            database, at = (
                str(reader.session.get_bind().engine.url),
                catalog_generation(reader.session),
            )
        with self.lock:
            if self.warmed.get(database) == at or database in self.warming:
                return
            self.warming.add(database)
        threading.Thread(
            target=self._warm,
            args=(service, database, at, plan),
            name="portal-facet-warmup",
            daemon=True,
        ).start()

    def _warm(
        self,
        service: CatalogService,
        database: str,
        at: int,
        plan: Callable[[CatalogReader], list[tuple[FacetScope, list[str]]]],
    ) -> None:
        try:
            with service.reader() as reader:
                for scope, fields in plan(reader):
                    facet_counts(reader, scope, fields)
        except Exception:  # a warm-up is only an optimisation; pages count for themselves
            log.debug("facet warm-up failed", exc_info=True)
        finally:
            with self.lock:
                self.warmed[database] = at
                self.warming.discard(database)


facet_warmer = FacetWarmer()


# -- entities without relations ------------------------------------------------------------


def entities_by_ref(session: Session, refs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Entity bodies (no relations) for the refs that exist, keyed by ref."""
    wanted = list(dict.fromkeys(refs))
    found: dict[str, dict[str, Any]] = {}
    for chunk in in_chunks(wanted):
        statement = select(EntityRow.entity_ref, EntityRow.body).where(
            EntityRow.entity_ref.in_(chunk)
        )
        for ref, body in session.execute(statement):
            found[ref] = json.loads(body)
    return found


def recent_entities(session: Session, limit: int = 8) -> list[dict[str, Any]]:
    """The most recently written entities, newest first, with ``updatedAt``."""
    rows = session.execute(
        select(EntityRow.body, EntityRow.updated_at)
        .order_by(EntityRow.updated_at.desc(), EntityRow.entity_ref)
        .limit(limit)
    )
    return [json.loads(body) | {"updatedAt": updated} for body, updated in rows]


# -- relations -------------------------------------------------------------------------------


def relation_targets(
    session: Session, sources: Sequence[str], relation_type: str, limit: int = 2000
) -> list[tuple[str, str]]:
    """(source, target) pairs of one relation type leaving the given entities."""
    if not sources:
        return []
    rows = session.execute(
        select(RelationRow.source_ref, RelationRow.target_ref)
        .where(RelationRow.source_ref.in_(list(sources)), RelationRow.type == relation_type)
        .distinct()
        .order_by(RelationRow.source_ref, RelationRow.target_ref)
        .limit(limit)
    )
    return [(source, target) for source, target in rows]


def location_entities(session: Session, location_id: str, limit: int = 200) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(EntityRow.body)
        .where(EntityRow.location_id == location_id)
        .order_by(EntityRow.entity_ref)
        .limit(limit)
    )
    return [json.loads(body) for body in rows]
