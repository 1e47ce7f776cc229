"""The entity processing pipeline and the interfaces plugins implement for it.

Each document read from a location becomes an entity in four steps: *preprocess*
(placeholders, annotations), *validate* (envelope, field formats, the kind's schema,
each processor's own checks), *relations* (each processor emits them in both
directions), and the result is written by :mod:`ingestion`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pavedroad.catalog import validation
from pavedroad.catalog.kinds import KindSchema
from pavedroad.catalog.refs import (
    DEFAULT_NAMESPACE,
    EntityRef,
    EntityRefError,
    document_ref,
)
from pavedroad.core.errors import InputError
from pavedroad.settings import Settings

_T = TypeVar("_T")
GLOB_CHARS = frozenset("*?[")  # a target with one of these is a pattern, for readers that expand
MAX_REF_LENGTH = 400  # the width of the stored ref columns


class EntityValidationError(InputError):
    """An entity that breaks a rule; ``errors`` lists every broken rule."""

    title = "Invalid entity"
    type_slug = "invalid-entity"

    def __init__(self, errors: list[str], ref: str | None = None) -> None:
        subject = f"entity {ref}" if ref else "entity"
        super().__init__(f"{subject} is not valid: " + "; ".join(errors), errors=errors)
        self.errors = errors
        self.ref = ref


@dataclass(frozen=True)
class Relation:
    source: str
    type: str
    target: str

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "targetRef": self.target}


@dataclass
class ProcessingContext:
    """Where an entity came from and how to read files next to it."""

    location_type: str
    location_target: str
    read: Callable[[str], bytes]
    settings: Settings

    @property
    def location_key(self) -> str:
        return f"{self.location_type}:{self.location_target}"


class EntityProcessor:
    """A step of the pipeline. Override what you need; the defaults do nothing."""

    name = "processor"

    def preprocess(self, entity: dict[str, Any], context: ProcessingContext) -> dict[str, Any]:
        """Return the entity, changed if needed (e.g. placeholders resolved)."""
        return entity

    def validate(self, entity: dict[str, Any]) -> list[str]:
        """Return error messages; an empty list means this processor has no objection."""
        return []

    def relations(self, entity: dict[str, Any], ref: EntityRef) -> Iterable[Relation]:
        """Relations this entity implies, both directions."""
        return ()


class LocationReader:
    """Reads one location type. ``read`` returns the bytes at a target."""

    type = "file"

    def read(self, target: str) -> bytes:
        raise NotImplementedError

    def resolve(self, base_target: str, relative: str) -> str:
        """The target a relative reference in ``base_target`` points at."""
        raise NotImplementedError

    def resolve_placeholder(self, base_target: str, relative: str) -> str:
        """The target of a ``$text``/``$json``/``$yaml`` placeholder; readers refuse
        targets a descriptor must not reach (e.g. files outside its folder)."""
        return self.resolve(base_target, relative)

    def check_target(self, target: str) -> None:
        """Raise a ``ProblemError`` when this target must not be read at all (e.g. a URL
        off the allowlist); checked at registration and for every target a Location
        entity lists. The default accepts every target."""

    def expand(self, target: str) -> list[str]:
        """The targets a pattern in a Location entity stands for (``./*.yaml``); a
        reader without patterns returns ``[target]``."""
        return [target]


class EntityProvider:
    """Supplies a whole set of entities on each refresh (e.g. from an HR system)."""

    name = "provider"

    def provide(self) -> list[dict[str, Any]]:
        raise NotImplementedError


@dataclass
class ProcessedEntity:
    entity: dict[str, Any]
    ref: EntityRef
    relations: list[Relation] = field(default_factory=list)


class EntityPipeline:
    """Kinds and processors assembled from the plugins, ready to process entities."""

    def __init__(self, kinds: list[KindSchema], processors: list[EntityProcessor]) -> None:
        self.kinds = kinds
        self.processors = processors
        self._kind_checks = {id(k): validation.compile_schema_check(k.schema) for k in kinds}

    def kind_for(self, api_version: str, kind: str) -> KindSchema | None:
        return next((k for k in self.kinds if k.accepts(api_version, kind)), None)

    def validate(self, entity: Any) -> EntityRef:
        """Check an entity against every rule; raise :class:`EntityValidationError`."""
        errors = validation.validate_envelope(entity)
        if errors:
            raise EntityValidationError(errors, document_ref(entity))
        ref = EntityRef.of(entity)
        kind = self.kind_for(entity["apiVersion"], entity["kind"])
        if kind is None:
            raise EntityValidationError(
                [
                    f"Unsupported kind {entity['kind']!r} with apiVersion "
                    f"{entity['apiVersion']!r}; known kinds: {self.describe_kinds()}"
                ],
                str(ref),
            )
        errors = (
            []
            if self._kind_checks[id(kind)](entity)
            else validation.schema_errors(kind.validator, entity)
        )
        for processor in self.processors:
            errors.extend(processor.validate(entity))
        if errors:
            raise EntityValidationError(errors, str(ref))
        return ref

    def process(self, raw: dict[str, Any], context: ProcessingContext) -> ProcessedEntity:
        """Preprocess, validate and relate one entity read from a location.

        ``raw`` is the caller's own freshly parsed data; processors may change it."""
        entity = raw
        if isinstance(entity, dict) and isinstance(entity.get("metadata"), dict):
            entity["metadata"].setdefault("namespace", DEFAULT_NAMESPACE)
        for processor in self.processors:
            entity = processor.preprocess(entity, context)
        ref = self.validate(entity)
        relations: list[Relation] = []
        errors: list[str] = []
        for processor in self.processors:
            try:
                relations.extend(processor.relations(entity, ref))
            except EntityRefError as exc:
                errors.append(exc.detail)
        errors.extend(
            f"relation target {r.target[:80]}... is longer than {MAX_REF_LENGTH} characters"
            for r in relations
            if len(r.target) > MAX_REF_LENGTH
        )
        if errors:
            raise EntityValidationError(errors, str(ref))
        return ProcessedEntity(entity, ref, _unique(relations))

    def describe_kinds(self) -> str:
        return ", ".join(sorted({f"{k.kind} ({'/'.join(k.api_versions)})" for k in self.kinds}))


def _unique(relations: list[Relation]) -> list[Relation]:
    return list(dict.fromkeys(relations))


def _registered(results: list[list[_T]]) -> list[_T]:
    """Hook results flattened in plugin registration order (pluggy calls the last
    registered plugin first), so a later plugin overrides an earlier one by name."""
    return [item for group in reversed(results) for item in group]


def build_pipeline(settings: Settings) -> EntityPipeline:
    """The pipeline from every registered plugin's kinds and processors."""
    from pavedroad.core.plugins import plugin_manager

    hook = plugin_manager().hook
    return EntityPipeline(
        _registered(hook.pavedroad_catalog_kinds()),
        _registered(hook.pavedroad_catalog_processors(settings=settings)),
    )


def build_providers(settings: Settings) -> dict[str, EntityProvider]:
    from pavedroad.core.plugins import plugin_manager

    found = _registered(plugin_manager().hook.pavedroad_catalog_providers(settings=settings))
    return {provider.name: provider for provider in found}


def build_readers(settings: Settings) -> dict[str, LocationReader]:
    from pavedroad.core.plugins import plugin_manager

    found = _registered(plugin_manager().hook.pavedroad_catalog_readers(settings=settings))
    return {reader.type: reader for reader in found}
