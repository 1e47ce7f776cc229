"""Reading a source: bytes in, processed entities out, without touching the database.

This half of ingestion is pure CPU work (YAML, validation, relations, serialisation),
so a large ingestion can run it in worker processes while the main process writes
(see :mod:`ingestion`). Everything it takes and returns can be pickled.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pavedroad.catalog.processing import (
    EntityPipeline,
    EntityProvider,
    EntityValidationError,
    LocationReader,
    ProcessedEntity,
    ProcessingContext,
    build_pipeline,
    build_providers,
    build_readers,
)
from pavedroad.catalog.refs import EntityRef, document_ref
from pavedroad.catalog.search_index import full_text, search_rows
from pavedroad.core.errors import InputError, NotFoundError, ProblemError
from pavedroad.core.safeyaml import YamlError, YamlLimits, load_documents
from pavedroad.settings import Settings

ROOT_PREFIX = "root:"
PROVIDER_TYPE = "provider"
MANAGED_BY = "backstage.io/managed-by-location"
MANAGED_BY_ORIGIN = "backstage.io/managed-by-origin-location"
SOURCE_LOCATION = "backstage.io/source-location"
MAX_SOURCE_KEY = 2048  # the width of the stored source key columns


def generated_location_name(type_: str, target: str) -> str:
    """Backstage's name for the Location entity of a registered location."""
    return "generated-" + hashlib.sha1(f"{type_}:{target}".encode()).hexdigest()


@dataclass(frozen=True)
class SourceTask:
    """What a reader needs to know about a source: the source, its root location, and
    the chain of sources above it, root first (for cycle detection)."""

    key: str
    presence: str
    content_hash: str | None
    location_type: str
    location_target: str
    ancestors: tuple[str, ...] = ()

    @property
    def is_root(self) -> bool:
        return self.key.startswith(ROOT_PREFIX)

    @property
    def origin_key(self) -> str:
        return f"{self.location_type}:{self.location_target}"


@dataclass
class DocumentError:
    message: str
    line: int | None = None
    entity_ref: str | None = None

    def as_dict(self, source: str) -> dict[str, Any]:
        return {
            "message": self.message,
            "source": source,
            "line": self.line,
            "entityRef": self.entity_ref,
        }


@dataclass
class ChildSource:
    key: str
    presence: str
    parent_entity_ref: str


@dataclass
class PreparedEntity:
    """A processed entity, serialised and flattened, ready to be written.

    ``body`` is the entity's JSON without ``metadata.uid`` and ``metadata.etag``, which
    belong to the stored row and are added when the entity is read back.
    """

    ref: EntityRef
    body: str
    digest: str
    search: list[tuple[str, str | None, str | None]]
    text: str
    relations: list[tuple[str, str, str]]

    @property
    def key(self) -> str:
        return self.ref.key


@dataclass
class SourceOutcome:
    """What one pass over a source produced."""

    entities: list[PreparedEntity] = field(default_factory=list)
    errors: list[DocumentError] = field(default_factory=list)
    children: dict[str, ChildSource] = field(default_factory=dict)
    failed_refs: set[str] = field(default_factory=set)
    unreadable: bool = False
    unparseable: bool = False
    used_placeholders: bool = False
    content_hash: str | None = None
    same_bytes: bool = False  # the bytes were processed before, so nothing was parsed


def prepare(processed: ProcessedEntity) -> PreparedEntity:
    entity = processed.entity
    metadata = entity.get("metadata") or {}
    metadata.pop("uid", None)
    metadata.pop("etag", None)
    relations = [(r.source, r.type, r.target) for r in processed.relations]
    body = json.dumps(entity, separators=(",", ":"))
    # The same document always parses to the same key order, so the body itself is a
    # stable fingerprint of the entity.
    digest = hashlib.sha256((body + repr(relations)).encode()).hexdigest()
    return PreparedEntity(
        processed.ref, body, digest, search_rows(entity), full_text(entity), relations
    )


class SourceReader:
    """Turns a source into a :class:`SourceOutcome` with the registered plugins."""

    def __init__(
        self,
        settings: Settings,
        pipeline: EntityPipeline | None = None,
        readers: dict[str, LocationReader] | None = None,
        providers: dict[str, EntityProvider] | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline or build_pipeline(settings)
        self.readers = readers or build_readers(settings)
        self.providers = providers if providers is not None else build_providers(settings)
        self.limits = YamlLimits(**settings.yaml.model_dump())

    def read(self, task: SourceTask) -> SourceOutcome:
        outcome = SourceOutcome()
        if task.is_root and task.location_type == PROVIDER_TYPE:
            documents = self._provided(task, outcome)
            source_type, source_target = PROVIDER_TYPE, task.location_target
        elif task.is_root:
            documents = [(self.generated_location(task.location_type, task.location_target), 1)]
            source_type, source_target = task.location_type, task.location_target
        else:
            source_type, source_target = task.key.split(":", 1)
            documents = self._documents(task, source_type, source_target, outcome)
        if documents is None:
            return outcome
        context = self._context(source_type, source_target, outcome)
        for data, line in documents:
            self._process_document(data, line, context, task, outcome)
        return outcome

    def _provided(
        self, task: SourceTask, outcome: SourceOutcome
    ) -> list[tuple[Any, int | None]] | None:
        try:
            provided = self.providers[task.location_target].provide()
        except Exception as exc:  # a plugin's failure is its location's error, not ours
            outcome.unreadable = True
            outcome.errors.append(DocumentError(f"Provider {task.location_target} failed: {exc}"))
            return None
        return [(entity, None) for entity in provided]

    def _documents(
        self, task: SourceTask, source_type: str, source_target: str, outcome: SourceOutcome
    ) -> list[tuple[Any, int | None]] | None:
        try:
            content = self.readers[source_type].read(source_target)
        except NotFoundError as exc:
            if task.presence == "optional":
                outcome.content_hash = "absent"
                return None
            outcome.unreadable = True
            outcome.errors.append(DocumentError(f"Unable to read {task.key}: {exc.detail}"))
            return None
        except (ProblemError, OSError) as exc:
            outcome.unreadable = True
            outcome.errors.append(DocumentError(f"Unable to read {task.key}: {_message(exc)}"))
            return None
        outcome.content_hash = hashlib.sha256(content).hexdigest()
        if outcome.content_hash == task.content_hash:
            outcome.same_bytes = True
            return None
        try:
            parsed = load_documents(content, source_target, self.limits)
        except YamlError as exc:
            outcome.unparseable = True
            outcome.errors.append(DocumentError(exc.detail, exc.line))
            return None
        documents: list[tuple[Any, int | None]] = []
        for document in parsed:
            if document.error:
                outcome.unparseable = True
                error = document.error
                where = f" (column {error.column})" if error.column else ""
                outcome.errors.append(DocumentError(error.message + where, error.line))
            else:
                documents.append((document.data, document.line))
        return documents

    @staticmethod
    def generated_location(type_: str, target: str) -> dict[str, Any]:
        key = f"{type_}:{target}"
        return {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Location",
            "metadata": {
                "name": generated_location_name(type_, target),
                "namespace": "default",
                "annotations": {MANAGED_BY: key, MANAGED_BY_ORIGIN: key},
            },
            "spec": {"type": type_, "target": target, "presence": "required"},
        }

    def _context(
        self, source_type: str, source_target: str, outcome: SourceOutcome
    ) -> ProcessingContext:
        reader = self.readers.get(source_type) or self.readers["url"]

        def read_relative(relative: str) -> bytes:
            outcome.used_placeholders = True
            target = reader.resolve_placeholder(source_target, relative)
            chosen = self.readers["url"] if target.startswith(("http://", "https://")) else reader
            return chosen.read(target)

        return ProcessingContext(source_type, source_target, read_relative, self.settings)

    def _process_document(
        self,
        data: Any,
        line: int | None,
        context: ProcessingContext,
        task: SourceTask,
        outcome: SourceOutcome,
    ) -> None:
        generated = task.is_root and context.location_type != PROVIDER_TYPE
        if isinstance(data, dict) and isinstance(data.get("metadata"), dict) and not generated:
            annotations = data["metadata"].setdefault("annotations", {})
            if isinstance(annotations, dict):
                annotations[MANAGED_BY] = context.location_key
                annotations[MANAGED_BY_ORIGIN] = task.origin_key
                if context.location_type == "url":
                    annotations.setdefault(
                        SOURCE_LOCATION, "url:" + context.location_target.rsplit("/", 1)[0] + "/"
                    )
        try:
            processed = self.pipeline.process(data, context)
            if not generated:  # rules govern what files supply, not the registration itself
                self._check_rules(processed, context, task.origin_key)
            if processed.ref.kind.lower() == "location":
                self._add_children(processed.entity, context, task, outcome)
        except EntityValidationError as exc:
            if exc.ref:
                outcome.failed_refs.add(exc.ref)
            outcome.errors.append(DocumentError(exc.detail, line, exc.ref))
            return
        except ProblemError as exc:
            ref = document_ref(data)
            if ref:
                outcome.failed_refs.add(ref)
            outcome.errors.append(DocumentError(_message(exc), line, ref))
            return
        outcome.entities.append(prepare(processed))

    def _check_rules(
        self, processed: ProcessedEntity, context: ProcessingContext, origin_key: str
    ) -> None:
        """Backstage's catalog rules: a location configured with its own ``rules`` uses
        those; otherwise the global rules apply, each limited to the locations it names."""
        kind = processed.ref.kind.lower()
        rules = next(
            (
                loc.rules
                for loc in self.settings.catalog.locations
                if f"{loc.type}:{loc.target}" == origin_key and loc.rules
            ),
            self.settings.catalog.rules,
        )
        for rule in rules:
            if rule.locations and not any(
                fnmatch.fnmatchcase(context.location_type, pattern.get("type", "*"))
                and fnmatch.fnmatchcase(context.location_target, pattern.get("target", "*"))
                for pattern in rule.locations
            ):
                continue
            if "*" in rule.allow or kind in {k.lower() for k in rule.allow}:
                return
        raise InputError(
            f"{context.location_key} tried to supply an entity of kind "
            f"{processed.ref.kind!r}, which the catalog rules do not allow"
        )

    def _add_children(
        self,
        entity: dict[str, Any],
        context: ProcessingContext,
        task: SourceTask,
        outcome: SourceOutcome,
    ) -> None:
        spec = entity.get("spec") or {}
        child_type = spec.get("type") or context.location_type
        if child_type not in self.readers:
            raise InputError(f"Location {EntityRef.of(entity)} has unknown type {child_type!r}")
        if child_type not in self.settings.catalog.allowed_location_types:
            raise InputError(
                f"Location type {child_type!r} is not allowed (catalog.allowed_location_types)"
            )
        if child_type == "file" and context.location_type != "file":
            raise InputError(
                f"Location {EntityRef.of(entity)} was read from "
                f"{context.location_key} and cannot point at files on the server"
            )
        targets = [spec["target"]] if spec.get("target") else []
        targets += spec.get("targets") or []
        presence = spec.get("presence", "required")
        reader = self.readers[child_type]
        for raw_target in targets:
            target = (
                reader.resolve(context.location_target, raw_target)
                if child_type == context.location_type
                else raw_target
            )
            reader.check_target(target)
            expansion = reader.expand(target)
            globbed = expansion != [target]
            for expanded in expansion:
                key = f"{child_type}:{expanded}"
                if globbed and key == task.key:
                    continue  # a glob like ./*.yaml also matches the file that holds it
                if len(key) > MAX_SOURCE_KEY:
                    raise InputError(f"Location target is longer than {MAX_SOURCE_KEY} characters")
                if key == task.key or key in task.ancestors:
                    visible = [
                        k for k in (*task.ancestors, task.key) if not k.startswith(ROOT_PREFIX)
                    ]
                    chain = " → ".join([*visible, key])
                    raise InputError(f"Location cycle: {chain}")
                outcome.children[key] = ChildSource(key, presence, str(EntityRef.of(entity)))


def _message(exc: BaseException) -> str:
    return exc.detail if isinstance(exc, ProblemError) else str(exc)


# -- worker processes ---------------------------------------------------------------------

_worker_reader: SourceReader | None = None


def init_worker(settings: Settings) -> None:
    """Build the worker process's reader once, from the plugins installed there."""
    global _worker_reader
    _worker_reader = SourceReader(settings)


def read_in_worker(task: SourceTask) -> SourceOutcome:
    assert _worker_reader is not None, "init_worker was not called"
    return _worker_reader.read(task)
