"""Secrets: metadata and versions in the database; sealed values in a backend."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from pavedroad.core.db import Base


class SecretRow(Base):
    """One secret in one scope. ``entity_ref`` and ``environment`` are ``""`` when the
    secret is not scoped to one (an environment's secret, a global one)."""

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("entity_ref", "environment", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    entity_ref: Mapped[str] = mapped_column(String(400), index=True)
    environment: Mapped[str] = mapped_column(String(63), index=True)
    name: Mapped[str] = mapped_column(String(100))
    current_version: Mapped[int] = mapped_column(Integer)
    # The secret's data key, sealed by the master key with this id.
    key_id: Mapped[str] = mapped_column(String(16), index=True)
    wrapped_key_nonce: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    backend: Mapped[str] = mapped_column(String(40))
    # How to generate a new value (JSON), for generated secrets; rotation policy.
    generator: Mapped[str | None] = mapped_column(Text, nullable=True)
    rotate_every_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rotation_due_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, index=True
    )
    created_by: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str] = mapped_column(String(400))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SecretVersionRow(Base):
    __tablename__ = "secret_versions"

    secret_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("secrets.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    origin: Mapped[str] = mapped_column(String(16))  # set, generated, rotated, rollback
    created_by: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SecretValueRow(Base):
    """The built-in backend's storage: one sealed value (nonce + AES-GCM ciphertext)."""

    __tablename__ = "secret_values"

    address: Mapped[str] = mapped_column(String(80), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
