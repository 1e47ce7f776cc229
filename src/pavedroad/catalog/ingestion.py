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

import fnmatch
import glob
import hashlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from pavedroad.catalog.models import (
    CatalogStateRow,
    EntityRow,
    LocationRow,
    RelationRow,
    SearchRow,
    SourceRow,
)
from pavedroad.catalog.processing import (
    EntityPipeline,
    EntityValidationError,
    LocationReader,
    ProcessedEntity,
    ProcessingContext,
    build_pipeline,
    build_providers,
    build_readers,
)
from pavedroad.catalog.refs import EntityRef
from pavedroad.catalog.search_index import full_text, search_rows
from pavedroad.core.db import Database, bulk_insert
from pavedroad.core.errors import ConflictError, InputError, NotFoundError, ProblemError
from pavedroad.core.ids import new_id
from pavedroad.core.safeyaml import YamlError, YamlLimits, load_documents
from pavedroad.core.timeutil import utcnow
from pavedroad.settings import Settings

log = logging.getLogger(__name__)

ROOT_PREFIX = "root:"
ORPHAN_ANNOTATION = "backstage.io/orphan"
MANAGED_BY = "backstage.io/managed-by-location"
MANAGED_BY_ORIGIN = "backstage.io/managed-by-origin-location"
SOURCE_LOCATION = "backstage.io/source-location"
LEASE = timedelta(minutes=5)
GLOB_CHARS = set("*?[")
PROVIDER_TYPE = "provider"
MAX_SOURCE_KEY = 2048  # the width of the stored source key columns
WRITE_BATCH_ENTITIES = 2000


def generated_location_name(type_: str, target: str) -> str:
    return "generated-" + hashlib.sha1(f"{type_}:{target}".encode()).hexdigest()


def entity_hash(entity: dict[str, Any], relations: list[Any]) -> str:
    payload = json.dumps([entity, [(r.source, r.type, r.target) for r in relations]],
                         sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class DocumentError:
    message: str
    line: int | None = None
    entity_ref: str | None = None

    def as_dict(self, source: str) -> dict[str, Any]:
        return {"message": self.message, "source": source, "line": self.line,
                "entityRef": self.entity_ref}


@dataclass
class ChildSource:
    key: str
    presence: str
    parent_entity_ref: str


@dataclass
class SourceOutcome:
    """What one pass over a source produced."""

    entities: list[ProcessedEntity] = field(default_factory=list)
    errors: list[DocumentError] = field(default_factory=list)
    children: dict[str, ChildSource] = field(default_factory=dict)
    failed_refs: set[str] = field(default_factory=set)
    unreadable: bool = False
    unparseable: bool = False
    used_placeholders: bool = False
    content_hash: str | None = None


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

    def __init__(self, db: Database, settings: Settings,
                 pipeline: EntityPipeline | None = None,
                 readers: dict[str, LocationReader] | None = None) -> None:
        self.db = db
        self.settings = settings
        self.pipeline = pipeline or build_pipeline(settings)
        self.readers = readers or build_readers(settings)
        self.providers = build_providers(settings)
        self.limits = YamlLimits(**settings.yaml.model_dump())
        self.interval = settings.catalog.refresh_interval_seconds

    # -- locations ---------------------------------------------------------------

    def normalise_target(self, type_: str, target: str) -> str:
        if not isinstance(target, str) or not target.strip():
            raise InputError("a location needs a non-empty target")
        if len(target) > MAX_SOURCE_KEY - 10:
            raise InputError(f"a location target must be shorter than {MAX_SOURCE_KEY - 10} characters")
        if "\x00" in target or any(ord(c) < 32 for c in target):
            raise InputError("a location target cannot contain control characters")
        if type_ == PROVIDER_TYPE:
            if target not in self.providers:
                raise InputError(f"no entity provider named {target!r}")
            return target
        if type_ not in self.readers:
            raise InputError(f"unknown location type {type_!r}; known types: "
                             f"{', '.join(sorted(self.readers))}")
        if type_ == "file":
            import os

            if not os.path.isabs(target):
                raise InputError(f"file locations need an absolute path, got {target!r}")
            return os.path.normpath(target)
        if type_ == "url":
            from pavedroad.core.outbound import check_url

            check_url(target, self.settings.catalog.allowed_hosts,
                      self.settings.catalog.allow_private_network)
        return target

    def add_location(self, type_: str, target: str, origin: str = "api",
                     created_by: str | None = None) -> LocationRow:
        """Record a root location; its sources are read by the next refresh."""
        target = self.normalise_target(type_, target)
        with self.db.session() as session:
            existing = session.scalar(
                select(LocationRow).where(LocationRow.type == type_, LocationRow.target == target))
            if existing is not None:
                raise ConflictError(f"Location {type_}:{target} already exists",
                                    locationId=existing.id)
            row = LocationRow(id=new_id(), type=type_, target=target, origin=origin,
                              created_by=created_by, created_at=utcnow())
            session.add(row)
            session.flush()
            session.add(SourceRow(key=ROOT_PREFIX + row.id, location_id=row.id,
                                  presence="required", errors=[], next_refresh_at=utcnow()))
            _bump_generation(session)
        return row

    def ensure_location(self, type_: str, target: str, origin: str) -> LocationRow:
        """The location for this target, added if it does not exist yet."""
        target = self.normalise_target(type_, target)
        with self.db.read_session() as session:
            existing = session.scalar(
                select(LocationRow).where(LocationRow.type == type_, LocationRow.target == target))
        return existing or self.add_location(type_, target, origin=origin)

    def remove_location(self, location_id: str) -> None:
        """Delete a root location with every source and entity under it."""
        with self.db.session() as session:
            row = session.get(LocationRow, location_id)
            if row is None:
                raise NotFoundError(f"Found no location with ID {location_id}")
            refs = list(session.scalars(
                select(EntityRow.entity_ref).where(EntityRow.location_id == location_id)))
            for chunk in _chunks(refs, 500):
                session.execute(delete(RelationRow).where(RelationRow.originating_ref.in_(chunk)))
            uids = select(EntityRow.uid).where(EntityRow.location_id == location_id)
            session.execute(delete(SearchRow).where(SearchRow.entity_uid.in_(uids)))
            session.execute(delete(EntityRow).where(EntityRow.location_id == location_id))
            session.execute(delete(SourceRow).where(SourceRow.location_id == location_id))
            session.delete(row)
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

    def refresh_due(self, limit: int = 50, location_id: str | None = None) -> RefreshReport:
        """Process up to ``limit`` sources that are due, each claimed with a lease.

        Sources are read one by one and written in batches of about
        ``WRITE_BATCH_ENTITIES`` entities per transaction: fewer, larger commits write each
        index page once instead of once per source.
        """
        report = RefreshReport()
        batch: list[tuple[SourceRow, LocationRow, SourceOutcome]] = []
        size = 0
        for key in self._claim_due(limit, location_id):
            loaded = self._load(key)
            if loaded is None:
                continue
            outcome = self._read_and_process(*loaded)
            batch.append((*loaded, outcome))
            size += len(outcome.entities)
            if size >= WRITE_BATCH_ENTITIES:
                report.add(self._write(batch))
                batch, size = [], 0
        if batch:
            report.add(self._write(batch))
        return report

    def run_until_idle(self, max_rounds: int = 10_000, location_id: str | None = None,
                       progress: Callable[[RefreshReport], None] | None = None) -> RefreshReport:
        """Refresh until nothing is due (children found on the way included)."""
        total = RefreshReport()
        for _ in range(max_rounds):
            report = self.refresh_due(location_id=location_id)
            if report.sources == 0:
                break
            total.add(report)
            if progress:
                progress(total)
        return total

    def _claim_due(self, limit: int, location_id: str | None = None) -> list[str]:
        now = utcnow()
        with self.db.session() as session:
            statement = (select(SourceRow.key)
                         .where(SourceRow.next_refresh_at <= now)
                         .where(or_(SourceRow.lease_until.is_(None), SourceRow.lease_until < now))
                         .order_by(SourceRow.next_refresh_at)
                         .limit(limit))
            if location_id:
                statement = statement.where(SourceRow.location_id == location_id)
            keys = list(session.scalars(statement))
            claimed = []
            for key in keys:
                result = session.execute(
                    update(SourceRow)
                    .where(SourceRow.key == key)
                    .where(or_(SourceRow.lease_until.is_(None), SourceRow.lease_until < now))
                    .values(lease_until=now + LEASE))
                if result.rowcount:  # type: ignore[attr-defined]
                    claimed.append(key)
        return claimed

    def process_source(self, key: str) -> RefreshReport:
        """Read one source, process its documents and write what changed."""
        loaded = self._load(key)
        if loaded is None:
            return RefreshReport()
        return self._write([(*loaded, self._read_and_process(*loaded))])

    def _load(self, key: str) -> tuple[SourceRow, LocationRow] | None:
        with self.db.read_session() as session:
            source = session.get(SourceRow, key)
            location = session.get(LocationRow, source.location_id) if source else None
        return (source, location) if source is not None and location is not None else None

    # -- reading -----------------------------------------------------------------

    def _read_and_process(self, source: SourceRow, location: LocationRow) -> SourceOutcome:
        outcome = SourceOutcome()
        if source.key.startswith(ROOT_PREFIX) and location.type == PROVIDER_TYPE:
            try:
                provided = self.providers[location.target].provide()
            except Exception as exc:  # a plugin's failure is its location's error, not ours
                outcome.unreadable = True
                outcome.errors.append(DocumentError(f"Provider {location.target} failed: {exc}"))
                return outcome
            documents = [(entity, None) for entity in provided]
            source_type, source_target = PROVIDER_TYPE, location.target
        elif source.key.startswith(ROOT_PREFIX):
            documents = [(self._generated_location(location), 1)]
            source_type, source_target = location.type, location.target
        else:
            source_type, source_target = source.key.split(":", 1)
            try:
                content = self.readers[source_type].read(source_target)
            except NotFoundError as exc:
                if source.presence == "optional":
                    outcome.content_hash = "absent"
                    return outcome
                outcome.unreadable = True
                outcome.errors.append(DocumentError(f"Unable to read {source.key}: {exc.detail}"))
                return outcome
            except (ProblemError, OSError) as exc:
                outcome.unreadable = True
                outcome.errors.append(DocumentError(f"Unable to read {source.key}: {_message(exc)}"))
                return outcome
            outcome.content_hash = hashlib.sha256(content).hexdigest()
            if outcome.content_hash == source.content_hash:
                return outcome
            try:
                parsed = load_documents(content, source_target, self.limits)
            except YamlError as exc:
                outcome.unparseable = True
                outcome.errors.append(DocumentError(exc.detail, exc.line))
                return outcome
            documents = []
            for document in parsed:
                if document.error:
                    outcome.unparseable = True
                    outcome.errors.append(DocumentError(document.error.detail, document.error.line))
                else:
                    documents.append((document.data, document.line))
        context = self._context(source_type, source_target, outcome)
        origin_key = f"{location.type}:{location.target}"
        for data, line in documents:
            self._process_document(data, line, context, source, origin_key, outcome)
        return outcome

    def _generated_location(self, location: LocationRow) -> dict[str, Any]:
        key = f"{location.type}:{location.target}"
        return {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Location",
            "metadata": {
                "name": generated_location_name(location.type, location.target),
                "namespace": "default",
                "annotations": {MANAGED_BY: key, MANAGED_BY_ORIGIN: key},
            },
            "spec": {"type": location.type, "target": location.target, "presence": "required"},
        }

    def _context(self, source_type: str, source_target: str,
                 outcome: SourceOutcome) -> ProcessingContext:
        reader = self.readers.get(source_type) or self.readers["url"]

        def read_relative(relative: str) -> bytes:
            outcome.used_placeholders = True
            target = reader.resolve_placeholder(source_target, relative)
            chosen = self.readers["url"] if target.startswith(("http://", "https://")) else reader
            return chosen.read(target)

        return ProcessingContext(source_type, source_target, read_relative, self.settings)

    def _process_document(self, data: Any, line: int | None, context: ProcessingContext,
                          source: SourceRow, origin_key: str, outcome: SourceOutcome) -> None:
        is_root = source.key.startswith(ROOT_PREFIX) and context.location_type != PROVIDER_TYPE
        if isinstance(data, dict) and isinstance(data.get("metadata"), dict) and not is_root:
            annotations = data["metadata"].setdefault("annotations", {})
            if isinstance(annotations, dict):
                annotations[MANAGED_BY] = context.location_key
                annotations[MANAGED_BY_ORIGIN] = origin_key
                if context.location_type == "url":
                    annotations.setdefault(SOURCE_LOCATION,
                                           "url:" + context.location_target.rsplit("/", 1)[0] + "/")
        try:
            processed = self.pipeline.process(data, context)
            self._check_rules(processed, context, origin_key)
            if processed.ref.kind.lower() == "location":
                self._add_children(processed.entity, context, source, outcome)
        except EntityValidationError as exc:
            if exc.ref:
                outcome.failed_refs.add(exc.ref)
            outcome.errors.append(DocumentError(exc.detail, line, exc.ref))
            return
        except ProblemError as exc:
            ref = _ref_or_none(data)
            if ref:
                outcome.failed_refs.add(ref)
            outcome.errors.append(DocumentError(_message(exc), line, ref))
            return
        outcome.entities.append(processed)

    def _check_rules(self, processed: ProcessedEntity, context: ProcessingContext,
                     origin_key: str) -> None:
        """Backstage's catalog rules: a location configured with its own ``rules`` uses
        those; otherwise the global rules apply, each limited to the locations it names."""
        kind = processed.ref.kind.lower()
        rules = next((loc.rules for loc in self.settings.catalog.locations
                      if f"{loc.type}:{loc.target}" == origin_key and loc.rules),
                     self.settings.catalog.rules)
        for rule in rules:
            if rule.locations and not any(
                    fnmatch.fnmatchcase(context.location_type, pattern.get("type", "*"))
                    and fnmatch.fnmatchcase(context.location_target, pattern.get("target", "*"))
                    for pattern in rule.locations):
                continue
            if "*" in rule.allow or kind in {k.lower() for k in rule.allow}:
                return
        raise InputError(f"{context.location_key} tried to supply an entity of kind "
                         f"{processed.ref.kind!r}, which the catalog rules do not allow")

    def _add_children(self, entity: dict[str, Any], context: ProcessingContext,
                      source: SourceRow, outcome: SourceOutcome) -> None:
        spec = entity.get("spec") or {}
        child_type = spec.get("type") or context.location_type
        if child_type not in self.readers:
            raise InputError(f"Location {EntityRef.of(entity)} has unknown type {child_type!r}")
        if child_type not in self.settings.catalog.allowed_location_types:
            raise InputError(f"Location type {child_type!r} is not allowed "
                             "(catalog.allowed_location_types)")
        targets = [spec["target"]] if spec.get("target") else []
        targets += spec.get("targets") or []
        presence = spec.get("presence", "required")
        reader = self.readers[child_type]
        ancestors = self._ancestors(source)
        for raw_target in targets:
            target = (reader.resolve(context.location_target, raw_target)
                      if child_type == context.location_type else raw_target)
            if child_type == "url":
                from pavedroad.core.outbound import check_url

                check_url(target, self.settings.catalog.allowed_hosts,
                          self.settings.catalog.allow_private_network)
            for expanded in self._expand(child_type, target):
                key = f"{child_type}:{expanded}"
                if len(key) > MAX_SOURCE_KEY:
                    raise InputError(f"Location target is longer than {MAX_SOURCE_KEY} characters")
                if key in ancestors:
                    chain = " → ".join([*reversed(sorted(ancestors, key=ancestors.get)), key])  # type: ignore[arg-type]
                    raise InputError(f"Location cycle: {chain}")
                outcome.children[key] = ChildSource(key, presence, str(EntityRef.of(entity)))

    def _expand(self, type_: str, target: str) -> list[str]:
        if type_ != "file" or not GLOB_CHARS & set(target):
            return [target]
        return sorted(glob.glob(target, recursive=True))

    def _ancestors(self, source: SourceRow) -> dict[str, int]:
        """Keys from this source up to its root, with their distance."""
        chain = {source.key: 0}
        parent = source.parent_key
        with self.db.read_session() as session:
            while parent and parent not in chain:
                chain[parent] = len(chain)
                parent = session.scalar(select(SourceRow.parent_key).where(SourceRow.key == parent))
        return chain

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

    def _write_source(self, session: Session, source: SourceRow, location: LocationRow,
                      outcome: SourceOutcome, report: RefreshReport) -> bool:
        """Reconcile one source's outcome; True when anything visible changed."""
        before = (report.written, report.orphaned)
        report.sources += 1
        report.errors += len(outcome.errors)
        now = utcnow()
        jitter = self.interval * random.uniform(0.8, 1.2)
        source_values: dict[str, Any] = {
            "next_refresh_at": now + timedelta(seconds=jitter), "lease_until": None,
            "refreshed_at": now,
        }
        unchanged_content = (outcome.content_hash is not None
                             and outcome.content_hash == source.content_hash)
        if not outcome.unreadable and not unchanged_content:
            self._reconcile(session, source, location, outcome, report, now)
            source_values["content_hash"] = (
                None if outcome.used_placeholders or outcome.errors else outcome.content_hash)
        source_values["errors"] = [e.as_dict(source.key) for e in outcome.errors]
        session.execute(update(SourceRow).where(SourceRow.key == source.key).values(**source_values))
        return (report.written, report.orphaned) != before or bool(outcome.errors) \
            or not unchanged_content

    def _reconcile(self, session: Session, source: SourceRow, location: LocationRow,
                   outcome: SourceOutcome, report: RefreshReport, now: Any) -> None:
        existing = {row.entity_ref: row for row in session.scalars(
            select(EntityRow).where(EntityRow.source_key == source.key))}
        emitted: dict[str, ProcessedEntity] = {}
        for processed in outcome.entities:
            emitted.setdefault(processed.ref.key, processed)
        others = self._entities_elsewhere(session, source.key, [k for k in emitted if k not in existing])
        changed: list[tuple[ProcessedEntity, EntityRow | None, str]] = []
        for ref_key, processed in emitted.items():
            current = existing.get(ref_key) or others.get(ref_key)
            if current is not None and current.source_key != source.key and not current.orphan:
                outcome.errors.append(DocumentError(
                    f"Conflicting entity {ref_key}: it is already managed by {current.source_key}",
                    None, ref_key))
                report.errors += 1
                continue
            digest = entity_hash(processed.entity, processed.relations)
            if current is not None and current.hash == digest and not current.orphan and not current.errors:
                report.unchanged += 1
                continue
            changed.append((processed, current, digest))
        self._write_entities(session, source, location, changed, now)
        report.written += len(changed)
        self._record_entity_errors(session, outcome, existing)
        if not outcome.unparseable:
            gone = [row for ref, row in existing.items()
                    if ref not in emitted and ref not in outcome.failed_refs and not row.orphan]
            report.orphaned += self._orphan(session, gone, now)
        self._sync_children(session, source, outcome, now)

    def _entities_elsewhere(self, session: Session, source_key: str,
                            refs: list[str]) -> dict[str, EntityRow]:
        found: dict[str, EntityRow] = {}
        for chunk in _chunks(refs, 500):
            for row in session.scalars(select(EntityRow).where(EntityRow.entity_ref.in_(chunk))):
                found[row.entity_ref] = row
        return found

    def _write_entities(self, session: Session, source: SourceRow, location: LocationRow,
                        changed: list[tuple[ProcessedEntity, EntityRow | None, str]],
                        now: Any) -> None:
        if not changed:
            return
        refs = [p.ref.key for p, _, _ in changed]
        for chunk in _chunks(refs, 500):
            session.execute(delete(RelationRow).where(RelationRow.originating_ref.in_(chunk)))
        old_uids = [row.uid for _, row, _ in changed if row is not None]
        for chunk in _chunks(old_uids, 500):
            session.execute(delete(SearchRow).where(SearchRow.entity_uid.in_(chunk)))
        new_rows: list[dict[str, Any]] = []
        searches: list[dict[str, Any]] = []
        relations: list[dict[str, Any]] = []
        for processed, row, digest in changed:
            uid = row.uid if row is not None else new_id()
            entity = processed.entity
            entity["metadata"]["uid"] = uid
            entity["metadata"]["etag"] = hashlib.sha1(f"{uid}{digest}".encode()).hexdigest()
            values = {
                "entity_ref": processed.ref.key, "kind": processed.ref.kind,
                "namespace": processed.ref.namespace, "name": processed.ref.name,
                "source_key": source.key, "location_id": location.id,
                "body": json.dumps(entity, separators=(",", ":")), "hash": digest,
                "search_text": full_text(entity), "errors": [], "orphan": False,
                "updated_at": now,
            }
            if row is None:
                new_rows.append({"uid": uid, "created_at": now, **values})
            else:
                session.execute(update(EntityRow).where(EntityRow.uid == uid).values(**values))
            searches.extend({"entity_uid": uid, "key": k, "value": v, "original_value": o}
                            for k, v, o in search_rows(entity))
            relations.extend({"originating_ref": processed.ref.key, "source_ref": r.source,
                              "type": r.type, "target_ref": r.target}
                             for r in processed.relations)
        if new_rows:
            session.execute(insert(EntityRow.__table__), new_rows)
        bulk_insert(session, SearchRow.__table__, searches)
        bulk_insert(session, RelationRow.__table__, relations)

    def _record_entity_errors(self, session: Session, outcome: SourceOutcome,
                              existing: dict[str, EntityRow]) -> None:
        by_ref: dict[str, list[dict[str, Any]]] = {}
        for error in outcome.errors:
            if error.entity_ref and error.entity_ref in existing:
                by_ref.setdefault(error.entity_ref, []).append(error.as_dict(existing[error.entity_ref].source_key))
        for ref, errors in by_ref.items():
            session.execute(update(EntityRow).where(EntityRow.entity_ref == ref).values(errors=errors))

    def _orphan(self, session: Session, rows: list[EntityRow], now: Any) -> int:
        if not rows:
            return 0
        if self.settings.catalog.orphan_strategy == "delete":
            self._delete_entities(session, rows)
            return len(rows)
        for row in rows:
            entity = json.loads(row.body)
            entity["metadata"].setdefault("annotations", {})[ORPHAN_ANNOTATION] = "true"
            session.execute(update(EntityRow).where(EntityRow.uid == row.uid).values(
                body=json.dumps(entity, separators=(",", ":")), orphan=True, updated_at=now))
            session.add(SearchRow(entity_uid=row.uid, key=f"metadata.annotations.{ORPHAN_ANNOTATION}",
                                  value="true", original_value="true"))
        return len(rows)

    def _delete_entities(self, session: Session, rows: list[EntityRow]) -> None:
        for chunk in _chunks([r.entity_ref for r in rows], 500):
            session.execute(delete(RelationRow).where(RelationRow.originating_ref.in_(chunk)))
        for chunk in _chunks([r.uid for r in rows], 500):
            session.execute(delete(SearchRow).where(SearchRow.entity_uid.in_(chunk)))
            session.execute(delete(EntityRow).where(EntityRow.uid.in_(chunk)))

    def _sync_children(self, session: Session, source: SourceRow, outcome: SourceOutcome,
                       now: Any) -> None:
        current = set(session.scalars(select(SourceRow.key).where(SourceRow.parent_key == source.key)))
        for key, child in outcome.children.items():
            if key in current:
                continue
            owner = session.get(SourceRow, key)
            if owner is not None:
                continue  # already read through another location; one reader per source
            session.add(SourceRow(key=key, location_id=source.location_id, parent_key=source.key,
                                  parent_entity_ref=child.parent_entity_ref,
                                  presence=child.presence, errors=[], next_refresh_at=now))
        removed = current - set(outcome.children)
        if removed:
            self._drop_sources(session, removed, now)

    def _drop_sources(self, session: Session, keys: set[str], now: Any) -> None:
        """Forget sources no longer referenced (and their subtrees); orphan their entities."""
        pending = set(keys)
        while pending:
            key = pending.pop()
            pending.update(session.scalars(select(SourceRow.key).where(SourceRow.parent_key == key)))
            rows = list(session.scalars(select(EntityRow).where(
                EntityRow.source_key == key, EntityRow.orphan.is_(False))))
            self._orphan(session, rows, now)
            session.execute(delete(SourceRow).where(SourceRow.key == key))


def _bump_generation(session: Session) -> None:
    updated = session.execute(update(CatalogStateRow).where(CatalogStateRow.id == 1)
                              .values(generation=CatalogStateRow.generation + 1))
    if not updated.rowcount:  # type: ignore[attr-defined]
        session.add(CatalogStateRow(id=1, generation=1))


def catalog_generation(session: Session) -> int:
    return session.scalar(select(func.coalesce(func.max(CatalogStateRow.generation), 0))) or 0


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _message(exc: BaseException) -> str:
    return exc.detail if isinstance(exc, ProblemError) else str(exc)


def _ref_or_none(data: Any) -> str | None:
    try:
        if isinstance(data, dict) and isinstance(data.get("metadata"), dict):
            ref = EntityRef.of(data)
            if ref.kind and ref.name:
                return ref.key
    except Exception:  # a document too broken to name has no ref
        return None
    return None
