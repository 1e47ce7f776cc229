"""Ingestion: reading locations, turning their documents into entities, and writing
only what changed.

The unit of work is a *source*: one file or URL, reached from a root location. A
source's documents become entities; its Location entities add child sources. A
source whose read fails keeps serving the entities it last produced; a document that
fails keeps serving that entity's last good version (with the error in its status);
a brand-new invalid document never becomes visible. Entities a source stops
producing become orphans (or are deleted, by the orphan strategy).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing import get_context
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pavedroad.catalog.models import (
    CatalogStateRow,
    EntityRow,
    LocationRow,
    RelationRow,
    SearchRow,
    SourceRow,
)
from pavedroad.catalog.processing import EntityPipeline, LocationReader
from pavedroad.catalog.reading import (  # the names other modules know ingestion by
    MAX_SOURCE_KEY,
    PROVIDER_TYPE,
    ROOT_PREFIX,
    DocumentError,
    PreparedEntity,
    SourceOutcome,
    SourceReader,
    SourceTask,
    init_worker,
    read_in_worker,
)
from pavedroad.core.db import Database, bulk_insert, in_chunks
from pavedroad.core.errors import ConflictError, InputError, NotFoundError
from pavedroad.core.ids import new_id
from pavedroad.core.timeutil import utcnow
from pavedroad.settings import Settings

log = logging.getLogger(__name__)


ORPHAN_ANNOTATION = "backstage.io/orphan"
LEASE = timedelta(minutes=5)
WRITE_BATCH_ENTITIES = 10_000
PARALLEL_MIN_SOURCES = 50  # below this, worker processes cost more than they save


@dataclass
class RefreshReport:
    sources: int = 0
    written: int = 0
    unchanged: int = 0
    orphaned: int = 0
    errors: int = 0

    def add(self, other: RefreshReport) -> None:
        self.sources += other.sources
        self.written += other.written
        self.unchanged += other.unchanged
        self.orphaned += other.orphaned
        self.errors += other.errors


class Ingester:
    """Runs ingestion for one database and one set of settings."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        pipeline: EntityPipeline | None = None,
        readers: dict[str, LocationReader] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.reader = SourceReader(settings, pipeline, readers)
        self.pipeline = self.reader.pipeline
        self.readers = self.reader.readers
        self.providers = self.reader.providers
        self.interval = settings.catalog.refresh_interval_seconds

    # -- locations ---------------------------------------------------------------

    def normalise_target(self, type_: str, target: str) -> str:
        if not isinstance(target, str) or not target.strip():
            raise InputError("a location needs a non-empty target")
        if len(target) > MAX_SOURCE_KEY - 10:
            raise InputError(
                f"a location target must be shorter than {MAX_SOURCE_KEY - 10} characters"
            )
        if "\x00" in target or any(ord(c) < 32 for c in target):
            raise InputError("a location target cannot contain control characters")
        if type_ == PROVIDER_TYPE:
            if target not in self.providers:
                raise InputError(f"no entity provider named {target!r}")
            return target
        if type_ not in self.readers:
            raise InputError(
                f"unknown location type {type_!r}; known types: {', '.join(sorted(self.readers))}"
            )
        if type_ == "file":
            import os

            if not os.path.isabs(target):
                raise InputError(f"file locations need an absolute path, got {target!r}")
            return os.path.normpath(target)
        self.readers[type_].check_target(target)
        return target

    def add_location(
        self, type_: str, target: str, origin: str = "api", created_by: str | None = None
    ) -> LocationRow:
        """Record a root location; its sources are read by the next refresh."""
        target = self.normalise_target(type_, target)
        with self.db.session() as session:
            existing = session.scalar(
                select(LocationRow).where(LocationRow.type == type_, LocationRow.target == target)
            )
            if existing is not None:
                raise ConflictError(
                    f"Location {type_}:{target} already exists", locationId=existing.id
                )
            row = LocationRow(
                id=new_id(),
                type=type_,
                target=target,
                origin=origin,
                created_by=created_by,
                created_at=utcnow(),
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError:  # registered at the same moment by another request
                raise ConflictError(f"Location {type_}:{target} already exists") from None
            session.add(
                SourceRow(
                    key=ROOT_PREFIX + row.id,
                    location_id=row.id,
                    presence="required",
                    errors=[],
                    next_refresh_at=utcnow(),
                )
            )
            _bump_generation(session)
        return row

    def ensure_location(self, type_: str, target: str, origin: str) -> LocationRow:
        """The location for this target, added if it does not exist yet."""
        target = self.normalise_target(type_, target)
        with self.db.read_session() as session:
            existing = session.scalar(
                select(LocationRow).where(LocationRow.type == type_, LocationRow.target == target)
            )
        return existing or self.add_location(type_, target, origin=origin)

    def remove_location(self, location_id: str) -> None:
        """Delete a root location with every source and entity under it."""
        with self.db.session() as session:
            row = session.get(LocationRow, location_id)
            if row is None:
                raise NotFoundError(f"Found no location with ID {location_id}")
            refs = list(
                session.scalars(
                    select(EntityRow.entity_ref).where(EntityRow.location_id == location_id)
                )
            )
            for chunk in in_chunks(refs):
                session.execute(delete(RelationRow).where(RelationRow.originating_ref.in_(chunk)))
            uids = select(EntityRow.uid).where(EntityRow.location_id == location_id)
            session.execute(delete(SearchRow).where(SearchRow.entity_uid.in_(uids)))
            session.execute(delete(EntityRow).where(EntityRow.location_id == location_id))
            session.execute(delete(SourceRow).where(SourceRow.location_id == location_id))
            session.delete(row)
            _bump_generation(session)

    def delete_entity(self, uid: str) -> None:
        with self.db.session() as session:
            row = session.get(EntityRow, uid)
            if row is None:
                raise NotFoundError(f"No entity with uid {uid}")
            self._delete_entities(session, [row])
            # Re-read its source at the next refresh, as the entity may still be there.
            session.execute(
                update(SourceRow).where(SourceRow.key == row.source_key).values(content_hash=None)
            )
            _bump_generation(session)

    # -- refresh -----------------------------------------------------------------

    def request_refresh(self, location_id: str | None = None, source_key: str | None = None) -> int:
        """Mark sources due now (all of a location's, or one); returns how many."""
        with self.db.session() as session:
            statement = update(SourceRow).values(next_refresh_at=utcnow(), content_hash=None)
            if location_id:
                statement = statement.where(SourceRow.location_id == location_id)
            if source_key:
                statement = statement.where(SourceRow.key == source_key)
            return session.execute(statement).rowcount  # type: ignore[attr-defined, no-any-return]

    def refresh_due(
        self, limit: int = 50, location_id: str | None = None, pool: Executor | None = None
    ) -> RefreshReport:
        """Process up to ``limit`` sources that are due, each claimed with a lease.

        Sources are read (in ``pool``'s worker processes when given, so reading overlaps
        writing) and written in batches of about ``WRITE_BATCH_ENTITIES`` entities per
        transaction: fewer, larger commits write each index page once, not once per source.
        """
        loaded = [item for item in map(self._load, self._claim_due(limit, location_id)) if item]
        tasks = [self._task(source, location) for source, location in loaded]
        outcomes: Iterable[SourceOutcome] = (
            pool.map(read_in_worker, tasks, chunksize=1) if pool else map(self.reader.read, tasks)
        )
        report = RefreshReport()
        batch: list[tuple[SourceRow, LocationRow, SourceOutcome]] = []
        size = 0
        for (source, location), outcome in zip(loaded, outcomes, strict=True):
            batch.append((source, location, outcome))
            size += len(outcome.entities)
            if size >= WRITE_BATCH_ENTITIES:
                report.add(self._write(batch))
                batch, size = [], 0
        if batch:
            report.add(self._write(batch))
        return report

    def run_until_idle(
        self,
        max_rounds: int = 10_000,
        location_id: str | None = None,
        progress: Callable[[RefreshReport], None] | None = None,
        processes: int | None = None,
    ) -> RefreshReport:
        """Refresh until nothing is due (children found on the way included).

        With many sources due, reading runs in ``processes`` worker processes (default:
        ``catalog.ingest_processes``); plugins are then loaded in each worker from their
        entry points.
        """
        processes = self.settings.catalog.ingest_processes if processes is None else processes
        total = RefreshReport()
        pool: ProcessPoolExecutor | None = None
        try:
            for _ in range(max_rounds):
                if (
                    pool is None
                    and processes > 0
                    and self._due_count(location_id) >= PARALLEL_MIN_SOURCES
                ):
                    pool = ProcessPoolExecutor(
                        processes,
                        mp_context=get_context("spawn"),
                        initializer=init_worker,
                        initargs=(self.settings,),
                    )
                report = self.refresh_due(
                    limit=200 if pool else 50, location_id=location_id, pool=pool
                )
                if report.sources == 0:
                    break
                total.add(report)
                if progress:
                    progress(total)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        return total

    def _due_count(self, location_id: str | None) -> int:
        with self.db.read_session() as session:
            statement = (
                select(func.count())
                .select_from(SourceRow)
                .where(SourceRow.next_refresh_at <= utcnow())
            )
            if location_id:
                statement = statement.where(SourceRow.location_id == location_id)
            return session.scalar(statement) or 0

    def _claim_due(self, limit: int, location_id: str | None = None) -> list[str]:
        now = utcnow()
        with self.db.session() as session:
            statement = (
                select(SourceRow.key)
                .where(SourceRow.next_refresh_at <= now)
                .where(or_(SourceRow.lease_until.is_(None), SourceRow.lease_until < now))
                .order_by(SourceRow.next_refresh_at)
                .limit(limit)
            )
            if location_id:
                statement = statement.where(SourceRow.location_id == location_id)
            keys = list(session.scalars(statement))
            claimed = []
            for key in keys:
                result = session.execute(
                    update(SourceRow)
                    .where(SourceRow.key == key)
                    .where(or_(SourceRow.lease_until.is_(None), SourceRow.lease_until < now))
                    .values(lease_until=now + LEASE)
                )
                if result.rowcount:  # type: ignore[attr-defined]
                    claimed.append(key)
        return claimed

    def process_source(self, key: str) -> RefreshReport:
        """Read one source, process its documents and write what changed."""
        loaded = self._load(key)
        if loaded is None:
            return RefreshReport()
        source, location = loaded
        return self._write([(source, location, self.reader.read(self._task(source, location)))])

    def _load(self, key: str) -> tuple[SourceRow, LocationRow] | None:
        with self.db.read_session() as session:
            source = session.get(SourceRow, key)
            location = session.get(LocationRow, source.location_id) if source else None
        return (source, location) if source is not None and location is not None else None

    def _task(self, source: SourceRow, location: LocationRow) -> SourceTask:
        return SourceTask(
            key=source.key,
            presence=source.presence,
            content_hash=source.content_hash,
            location_type=location.type,
            location_target=location.target,
            ancestors=self._ancestors(source),
        )

    def _ancestors(self, source: SourceRow) -> tuple[str, ...]:
        """Keys of the sources above this one, root first."""
        chain: list[str] = []
        parent = source.parent_key
        if parent is None:
            return ()
        with self.db.read_session() as session:
            while parent and parent not in chain and parent != source.key:
                chain.append(parent)
                parent = session.scalar(select(SourceRow.parent_key).where(SourceRow.key == parent))
        return tuple(reversed(chain))

    # -- writing -----------------------------------------------------------------

    def _write(self, batch: list[tuple[SourceRow, LocationRow, SourceOutcome]]) -> RefreshReport:
        """Write the outcomes of several sources in one transaction."""
        report = RefreshReport()
        with self.db.session() as session:
            changed = False
            for source, location, outcome in batch:
                changed |= self._write_source(session, source, location, outcome, report)
            if changed:
                _bump_generation(session)
        return report

    def _write_source(
        self,
        session: Session,
        source: SourceRow,
        location: LocationRow,
        outcome: SourceOutcome,
        report: RefreshReport,
    ) -> bool:
        """Reconcile one source's outcome; True when anything visible changed."""
        # Lock the source row: concurrent writers of one source (an on-demand refresh
        # beside the background one) take turns, and each sees what the other wrote.
        locked = session.scalar(
            select(SourceRow.key).where(SourceRow.key == source.key).with_for_update()
        )
        if locked is None:
            return False  # dropped by its parent earlier in this batch: its read is stale
        before = (report.written, report.orphaned)
        report.sources += 1
        report.errors += len(outcome.errors)
        now = utcnow()
        jitter = self.interval * random.uniform(0.8, 1.2)
        source_values: dict[str, Any] = {
            "next_refresh_at": now + timedelta(seconds=jitter),
            "lease_until": None,
            "refreshed_at": now,
        }
        unchanged_content = outcome.same_bytes
        if not outcome.unreadable and not unchanged_content:
            self._reconcile(session, source, location, outcome, report, now)
            source_values["content_hash"] = (
                None if outcome.used_placeholders or outcome.errors else outcome.content_hash
            )
        source_values["errors"] = [e.as_dict(source.key) for e in outcome.errors]
        session.execute(
            update(SourceRow).where(SourceRow.key == source.key).values(**source_values)
        )
        # Only what readers can see counts as a change (it resets cached counts).
        return (report.written, report.orphaned) != before or source_values[
            "errors"
        ] != source.errors

    def _reconcile(
        self,
        session: Session,
        source: SourceRow,
        location: LocationRow,
        outcome: SourceOutcome,
        report: RefreshReport,
        now: Any,
    ) -> None:
        existing = {
            row.entity_ref: row
            for row in session.scalars(select(EntityRow).where(EntityRow.source_key == source.key))
        }
        emitted: dict[str, PreparedEntity] = {}
        for prepared in outcome.entities:
            if prepared.key in emitted:
                outcome.errors.append(
                    DocumentError(
                        f"Duplicate entity {prepared.key}: the same file defines it twice; the "
                        "first definition is used",
                        None,
                        prepared.key,
                    )
                )
                report.errors += 1
                continue
            emitted[prepared.key] = prepared
        others = self._entities_elsewhere(
            session, source.key, [k for k in emitted if k not in existing]
        )
        changed: list[tuple[PreparedEntity, EntityRow | None]] = []
        for ref_key, prepared in emitted.items():
            current = existing.get(ref_key) or others.get(ref_key)
            if current is not None and current.source_key != source.key and not current.orphan:
                outcome.errors.append(
                    DocumentError(
                        f"Conflicting entity {ref_key}: it is already managed by "
                        f"{current.source_key}",
                        None,
                        ref_key,
                    )
                )
                report.errors += 1
                continue
            if (
                current is not None
                and current.hash == prepared.digest
                and not current.orphan
                and not current.errors
            ):
                report.unchanged += 1
                continue
            changed.append((prepared, current))
        self._write_entities(session, source, location, changed, now)
        report.written += len(changed)
        self._record_entity_errors(session, outcome, existing)
        if not outcome.unparseable:
            gone = [
                row
                for ref, row in existing.items()
                if ref not in emitted and ref not in outcome.failed_refs and not row.orphan
            ]
            report.orphaned += self._orphan(session, gone, now)
        report.orphaned += self._sync_children(session, source, outcome, now)

    def _entities_elsewhere(
        self, session: Session, source_key: str, refs: list[str]
    ) -> dict[str, EntityRow]:
        found: dict[str, EntityRow] = {}
        for chunk in in_chunks(refs):
            for row in session.scalars(select(EntityRow).where(EntityRow.entity_ref.in_(chunk))):
                found[row.entity_ref] = row
        return found

    def _write_entities(
        self,
        session: Session,
        source: SourceRow,
        location: LocationRow,
        changed: list[tuple[PreparedEntity, EntityRow | None]],
        now: Any,
    ) -> None:
        if not changed:
            return
        for chunk in in_chunks([p.key for p, _ in changed]):
            session.execute(delete(RelationRow).where(RelationRow.originating_ref.in_(chunk)))
        for chunk in in_chunks([row.uid for _, row in changed if row is not None]):
            session.execute(delete(SearchRow).where(SearchRow.entity_uid.in_(chunk)))
        new_rows: list[dict[str, Any]] = []
        searches: list[dict[str, Any]] = []
        relations: list[dict[str, Any]] = []
        for prepared, row in changed:
            uid = row.uid if row is not None else new_id()
            kind = prepared.ref.kind.lower()
            values = {
                "entity_ref": prepared.key,
                "kind": prepared.ref.kind,
                "namespace": prepared.ref.namespace,
                "name": prepared.ref.name,
                "source_key": source.key,
                "location_id": location.id,
                "body": prepared.body,
                "hash": prepared.digest,
                "search_text": prepared.text,
                "errors": [],
                "orphan": False,
                "updated_at": now,
            }
            if row is None:
                new_rows.append({"uid": uid, "created_at": now, **values})
            else:
                session.execute(update(EntityRow).where(EntityRow.uid == uid).values(**values))
            searches.extend(
                {"entity_uid": uid, "key": k, "value": v, "original_value": o, "kind": kind}
                for k, v, o in prepared.search
            )
            relations.extend(
                {
                    "originating_ref": prepared.key,
                    "source_ref": source_ref,
                    "type": type_,
                    "target_ref": target,
                }
                for source_ref, type_, target in prepared.relations
            )
        if new_rows:
            # Core insert: the ORM's bulk path costs more per row at catalog scale.
            session.execute(insert(EntityRow.__table__), new_rows)  # type: ignore[arg-type]
        bulk_insert(session, SearchRow.__table__, searches)
        bulk_insert(session, RelationRow.__table__, relations)

    def _record_entity_errors(
        self, session: Session, outcome: SourceOutcome, existing: dict[str, EntityRow]
    ) -> None:
        by_ref: dict[str, list[dict[str, Any]]] = {}
        for error in outcome.errors:
            if error.entity_ref and error.entity_ref in existing:
                by_ref.setdefault(error.entity_ref, []).append(
                    error.as_dict(existing[error.entity_ref].source_key)
                )
        for ref, errors in by_ref.items():
            session.execute(
                update(EntityRow).where(EntityRow.entity_ref == ref).values(errors=errors)
            )

    def _orphan(self, session: Session, rows: list[EntityRow], now: Any) -> int:
        if not rows:
            return 0
        if self.settings.catalog.orphan_strategy == "delete":
            self._delete_entities(session, rows)
            return len(rows)
        for row in rows:
            entity = json.loads(row.body)
            entity["metadata"].setdefault("annotations", {})[ORPHAN_ANNOTATION] = "true"
            session.execute(
                update(EntityRow)
                .where(EntityRow.uid == row.uid)
                .values(
                    body=json.dumps(entity, separators=(",", ":")),
                    orphan=True,
                    updated_at=now,
                    hash=hashlib.sha256(f"orphan:{row.hash}".encode()).hexdigest(),
                )
            )
            session.add(
                SearchRow(
                    entity_uid=row.uid,
                    key=f"metadata.annotations.{ORPHAN_ANNOTATION}",
                    value="true",
                    original_value="true",
                    kind=row.kind.lower(),
                )
            )
        return len(rows)

    def _delete_entities(self, session: Session, rows: list[EntityRow]) -> None:
        for chunk in in_chunks([r.entity_ref for r in rows]):
            session.execute(delete(RelationRow).where(RelationRow.originating_ref.in_(chunk)))
        for chunk in in_chunks([r.uid for r in rows]):
            session.execute(delete(SearchRow).where(SearchRow.entity_uid.in_(chunk)))
            session.execute(delete(EntityRow).where(EntityRow.uid.in_(chunk)))

    def _sync_children(
        self, session: Session, source: SourceRow, outcome: SourceOutcome, now: Any
    ) -> int:
        current = set(
            session.scalars(select(SourceRow.key).where(SourceRow.parent_key == source.key))
        )
        for key, child in outcome.children.items():
            if key in current:
                continue
            owner = session.get(SourceRow, key)
            if owner is not None:
                continue  # already read through another location; one reader per source
            session.add(
                SourceRow(
                    key=key,
                    location_id=source.location_id,
                    parent_key=source.key,
                    parent_entity_ref=child.parent_entity_ref,
                    presence=child.presence,
                    errors=[],
                    next_refresh_at=now,
                )
            )
        removed = current - set(outcome.children)
        return self._drop_sources(session, removed, now) if removed else 0

    def _drop_sources(self, session: Session, keys: set[str], now: Any) -> int:
        """Forget sources no longer referenced (and their subtrees); orphan their entities.
        Returns how many entities were orphaned."""
        orphaned = 0
        pending = set(keys)
        while pending:
            key = pending.pop()
            pending.update(
                session.scalars(select(SourceRow.key).where(SourceRow.parent_key == key))
            )
            rows = list(
                session.scalars(
                    select(EntityRow).where(
                        EntityRow.source_key == key, EntityRow.orphan.is_(False)
                    )
                )
            )
            orphaned += self._orphan(session, rows, now)
            session.execute(delete(SourceRow).where(SourceRow.key == key))
        return orphaned


def request_refresh_of_targets_containing(db: Database, type_: str, fragment: str) -> int:
    """Mark due now every source of location type ``type_`` whose target contains
    ``fragment`` (literally); returns how many. Unlike :meth:`Ingester.request_refresh`
    this keeps their content hashes: a source whose bytes did not change is not parsed
    again. For callers that know which sources changed but hold no Ingester (an event
    listener: a push to a hosted repository)."""
    with db.session() as session:
        statement = (
            update(SourceRow)
            .where(SourceRow.key.startswith(f"{type_}:", autoescape=True))
            .where(SourceRow.key.contains(fragment, autoescape=True))
            .values(next_refresh_at=utcnow())
        )
        return session.execute(statement).rowcount  # type: ignore[attr-defined, no-any-return]


def _bump_generation(session: Session) -> None:
    updated = session.execute(
        update(CatalogStateRow)
        .where(CatalogStateRow.id == 1)
        .values(generation=CatalogStateRow.generation + 1)
    )
    if not updated.rowcount:  # type: ignore[attr-defined]
        session.add(CatalogStateRow(id=1, generation=1))


def catalog_generation(session: Session) -> int:
    return session.scalar(select(func.coalesce(func.max(CatalogStateRow.generation), 0))) or 0
