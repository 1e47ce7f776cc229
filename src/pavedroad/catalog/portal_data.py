"""Reads the portal pages need beyond :class:`CatalogReader`: facet counts that stay
fast on large catalogs, entity bodies by ref without their relations, recent changes,
and the relation lookups behind group and user pages."""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pavedroad.catalog.ingestion import catalog_generation
from pavedroad.catalog.models import EntityRow, RelationRow, SearchRow
from pavedroad.catalog.queries import CatalogReader, Predicate, filter_clause, full_text_clause
from pavedroad.catalog.refs import EntityRef

if TYPE_CHECKING:
    from pavedroad.catalog.service import CatalogService

FacetCounts = dict[str, list[dict[str, Any]]]

# Up to this many matching entities, counting from the matches (one query for every
# facet) beats scanning each facet's index range; beyond it the range scan wins.
SMALL_RESULT = 5000
WAIT_FOR_OTHERS_SECONDS = 10.0

log = logging.getLogger("pavedroad.portal")


@dataclass(frozen=True)
class FacetScope:
    """The entities facet values are counted among: a filter and a full-text search."""

    filter: Predicate = None
    full_text: str = ""

    def key(self) -> str:
        return json.dumps([self.filter, self.full_text.strip().lower()], sort_keys=True)


def generation(reader: CatalogReader) -> int:
    """The catalog's write counter: cached counts are good while it stays the same."""
    return catalog_generation(reader.session)


class FacetCounter:
    """Facet counts, cached per catalog generation (any write invalidates them).

    Counting a facet over a large catalog scans an index range, so each scope is
    counted once however many requests ask at the same time, and the scopes most
    pages need are counted in the background after the catalog changes.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.items: OrderedDict[tuple[str, int, str], FacetCounts] = OrderedDict()
        self.inflight: dict[tuple[str, int, str], threading.Event] = {}
        self.warmed: dict[str, int] = {}
        self.warming: set[str] = set()
        self.lock = threading.Lock()

    def counts(self, reader: CatalogReader, at_generation: int, scope: FacetScope,
               fields: Sequence[str], matching: int | None = None) -> FacetCounts:
        """Value counts of each field among the scope's entities.

        ``matching`` is how many entities the scope matches when the caller knows;
        small scopes are counted from their matches in one query.
        """
        key = (_database(reader), at_generation, scope.key())
        waited = False
        while True:
            with self.lock:
                known = self.items.get(key, {})
                missing = [f for f in fields if f not in known]
                if not missing:
                    self.items.move_to_end(key)
                    return {f: known[f] for f in fields}
                event = self.inflight.get(key)
                if event is None or waited:
                    mine = threading.Event()
                    self.inflight[key] = mine
                    break
            event.wait(WAIT_FOR_OTHERS_SECONDS)
            waited = True
        try:
            fresh = _count(reader, scope, missing, matching)
            with self.lock:
                merged = {**self.items.get(key, {}), **fresh}
                self.items[key] = merged
                self.items.move_to_end(key)
                while len(self.items) > self.size:
                    self.items.popitem(last=False)
        finally:
            with self.lock:
                if self.inflight.get(key) is mine:
                    del self.inflight[key]
            mine.set()
        return {f: merged.get(f, []) for f in fields}

    def warm(self, service: CatalogService, at_generation: int,
             plan: Callable[[CatalogReader, int], list[tuple[FacetScope, list[str]]]]) -> None:
        """Count the planned scopes in a background thread, once per generation."""
        with service.reader() as reader:
            database = _database(reader)
        with self.lock:
            if self.warmed.get(database) == at_generation or database in self.warming:
                return
            self.warming.add(database)
        threading.Thread(target=self._warm, args=(service, database, at_generation, plan),
                         name="portal-facet-warmup", daemon=True).start()

    def _warm(self, service: CatalogService, database: str, at_generation: int,
              plan: Callable[[CatalogReader, int], list[tuple[FacetScope, list[str]]]]) -> None:
        try:
            with service.reader() as reader:
                if generation(reader) == at_generation:
                    for scope, fields in plan(reader, at_generation):
                        self.counts(reader, at_generation, scope, fields)
        except Exception:  # a warm-up is only an optimisation; pages count for themselves
            log.debug("facet warm-up failed", exc_info=True)
        finally:
            with self.lock:
                self.warmed[database] = at_generation
                self.warming.discard(database)


facet_counter = FacetCounter()


class GenerationMemo:
    """Small read results (home page figures) kept while the catalog is unchanged."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.items: OrderedDict[tuple[str, int, str], Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, reader: CatalogReader, at_generation: int, name: str,
            compute: Callable[[], Any]) -> Any:
        key = (_database(reader), at_generation, name)
        with self.lock:
            if key in self.items:
                return self.items[key]
        value = compute()
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


memo = GenerationMemo()


def _database(reader: CatalogReader) -> str:
    bind = reader.session.get_bind()
    return str(bind.engine.url)


def _count(reader: CatalogReader, scope: FacetScope, fields: list[str],
           matching: int | None) -> FacetCounts:
    if scope.filter is None and not scope.full_text.strip():
        return reader.facets(fields)
    if matching is not None and matching <= SMALL_RESULT:
        return _counts_from_matches(reader.session, fields, scope.filter, scope.full_text)
    return reader.facets(fields, scope.filter, scope.full_text)


def _counts_from_matches(session: Session, fields: list[str], predicate: Predicate,
                         full_text: str) -> FacetCounts:
    matches = (select(EntityRow.uid.label("uid"))
               .where(filter_clause(predicate), full_text_clause(full_text, []))
               .cte("matches").prefix_with("MATERIALIZED"))
    keys = {f.lower(): f for f in fields}
    statement = (select(SearchRow.key, func.min(SearchRow.original_value), func.count())
                 .select_from(matches)
                 .join(SearchRow, SearchRow.entity_uid == matches.c.uid)
                 .where(SearchRow.key.in_(list(keys)), SearchRow.value.is_not(None))
                 .group_by(SearchRow.key, SearchRow.value))
    counts: FacetCounts = {f: [] for f in fields}
    for key, value, count in session.execute(statement):
        counts[keys[key]].append({"value": value, "count": count})
    return counts


def matching_count(session: Session, predicate: Predicate, full_text: str) -> int:
    return session.scalar(select(func.count()).select_from(EntityRow).where(
        filter_clause(predicate), full_text_clause(full_text, []))) or 0


# -- entities without relations ------------------------------------------------------------

def entities_by_ref(session: Session, refs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Entity bodies (no relations) for the refs that exist, keyed by ref."""
    wanted = list(dict.fromkeys(refs))
    found: dict[str, dict[str, Any]] = {}
    for chunk in [wanted[i:i + 500] for i in range(0, len(wanted), 500)]:
        statement = select(EntityRow.entity_ref, EntityRow.body).where(
            EntityRow.entity_ref.in_(chunk))
        for ref, body in session.execute(statement):
            found[ref] = json.loads(body)
    return found


def recent_entities(session: Session, limit: int = 8) -> list[dict[str, Any]]:
    """The most recently written entities, newest first, with ``updatedAt``."""
    rows = session.execute(select(EntityRow.body, EntityRow.updated_at)
                           .order_by(EntityRow.updated_at.desc(), EntityRow.entity_ref)
                           .limit(limit))
    return [json.loads(body) | {"updatedAt": updated} for body, updated in rows]


def entity_total(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(EntityRow)) or 0


# -- relations -------------------------------------------------------------------------------

def relation_targets(session: Session, sources: Sequence[str], relation_type: str,
                     limit: int = 2000) -> list[tuple[str, str]]:
    """(source, target) pairs of one relation type leaving the given entities."""
    if not sources:
        return []
    rows = session.execute(
        select(RelationRow.source_ref, RelationRow.target_ref)
        .where(RelationRow.source_ref.in_(list(sources)), RelationRow.type == relation_type)
        .distinct().order_by(RelationRow.source_ref, RelationRow.target_ref).limit(limit))
    return [(source, target) for source, target in rows]


def relation_sources(session: Session, target: str, relation_type: str,
                     limit: int = 2000) -> list[str]:
    """Entities with a relation of that type pointing at ``target``."""
    return list(session.scalars(
        select(RelationRow.source_ref)
        .where(RelationRow.target_ref == target, RelationRow.type == relation_type)
        .distinct().order_by(RelationRow.source_ref).limit(limit)))


def location_entities(session: Session, location_id: str, limit: int = 200) -> list[dict[str, Any]]:
    rows = session.scalars(select(EntityRow.body).where(EntityRow.location_id == location_id)
                           .order_by(EntityRow.entity_ref).limit(limit))
    return [json.loads(body) for body in rows]


def ref_of(entity: dict[str, Any]) -> str:
    return EntityRef.of(entity).key
