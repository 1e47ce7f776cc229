"""Catalog runtime state: locations, the sources read through them, entities,
relations and the search index that makes filtering and facets fast."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from pavedroad.core.db import Base
from pavedroad.core.timeutil import utcnow

ENTITY_REF_INDEX = "ix_catalog_entities_entity_ref"


class LocationRow(Base):
    """A root location: registered through the API or CLI, or read from settings."""

    __tablename__ = "catalog_locations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(16), default="api")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(255), nullable=True)

    __table_args__ = (Index("ix_catalog_locations_type_target", "type", "target", unique=True),)


class SourceRow(Base):
    """One file or URL the catalog reads, reached from a root location."""

    __tablename__ = "catalog_sources"

    key: Mapped[str] = mapped_column(String(2048), primary_key=True)
    location_id: Mapped[str] = mapped_column(
        ForeignKey("catalog_locations.id", ondelete="CASCADE"), index=True
    )
    parent_key: Mapped[str | None] = mapped_column(String(2048), nullable=True, index=True)
    parent_entity_ref: Mapped[str | None] = mapped_column(String(400), nullable=True)
    presence: Mapped[str] = mapped_column(String(16), default="required")
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    errors: Mapped[list[dict[str, object]]] = mapped_column(JSON, default=list)
    next_refresh_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EntityRow(Base):
    """The last good version of an entity, without its relations."""

    __tablename__ = "catalog_entities"

    uid: Mapped[str] = mapped_column(String(36), primary_key=True)
    entity_ref: Mapped[str] = mapped_column(String(400))
    kind: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    source_key: Mapped[str] = mapped_column(String(2048), index=True)
    location_id: Mapped[str | None] = mapped_column(
        ForeignKey("catalog_locations.id", ondelete="CASCADE"), nullable=True, index=True
    )
    body: Mapped[str] = mapped_column(Text)
    hash: Mapped[str] = mapped_column(String(64))
    search_text: Mapped[str] = mapped_column(Text, default="")
    errors: Mapped[list[dict[str, object]]] = mapped_column(JSON, default=list)
    orphan: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    # Named, so that a query can ask SQLite to walk it in order (see queries.py).
    __table_args__ = (Index(ENTITY_REF_INDEX, "entity_ref", unique=True),)


class RelationRow(Base):
    """One directed relation, kept with the entity whose processing emitted it."""

    __tablename__ = "catalog_relations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    originating_ref: Mapped[str] = mapped_column(String(400), index=True)
    source_ref: Mapped[str] = mapped_column(String(400))
    type: Mapped[str] = mapped_column(String(63))
    target_ref: Mapped[str] = mapped_column(String(400))

    __table_args__ = (
        Index("ix_catalog_relations_source", "source_ref", "type", "target_ref"),
        Index("ix_catalog_relations_target", "target_ref", "type"),
    )


class SearchRow(Base):
    """A flattened ``key = value`` of an entity, lower-cased, for filters and facets."""

    __tablename__ = "catalog_search"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entity_uid: Mapped[str] = mapped_column(ForeignKey("catalog_entities.uid", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    value: Mapped[str | None] = mapped_column(String(200), nullable=True)
    original_value: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The entity's kind, lower-cased: most filters and facets name one, and with it in
    # the index they are answered from one index range instead of two.
    kind: Mapped[str] = mapped_column(String(63), default="")

    __table_args__ = (
        Index(
            "ix_catalog_search_key_value", "key", "value", "kind", "original_value", "entity_uid"
        ),
        Index("ix_catalog_search_entity", "entity_uid"),
    )


class CatalogStateRow(Base):
    """A single counter bumped by every catalog write, so caches know when to drop."""

    __tablename__ = "catalog_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
