"""Releases: immutable, content-hashed bundles of a service at a commit, ready to deploy."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pavedroad.core.db import Base


class ReleaseRow(Base):
    """A bundle of a component's files at a commit with its Score workload. The same
    bytes are the same release: ``digest`` is the bundle's SHA-256, so building a commit
    twice finds the release made the first time."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("component", "digest"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    component: Mapped[str] = mapped_column(String(400), index=True)  # its entity ref
    digest: Mapped[str] = mapped_column(String(80))  # sha256:<hex> of the bundle
    size: Mapped[int] = mapped_column(BigInteger)
    repository: Mapped[str | None] = mapped_column(String(400), nullable=True)
    commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    branch: Mapped[str | None] = mapped_column(String(400), nullable=True, index=True)
    score: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # the workload, parsed
    score_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(String(16))  # pipeline, cli
    run_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    created_by: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
