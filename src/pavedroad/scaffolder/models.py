"""Scaffolder state: tasks and their logs, template versions, projects made from templates."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
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


class TaskRow(Base):
    """One run of a template: creating a project, a dry run, or a template update.

    ``values`` never holds a secret answer: those travel sealed in ``sealed_secrets``,
    which is cleared the moment the task ends."""

    __tablename__ = "scaffolder_tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # create, dry-run, update
    template_ref: Mapped[str] = mapped_column(String(400), index=True)
    template_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    values: Mapped[dict] = mapped_column(JSON)
    sealed_secrets: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    secret_names: Mapped[list] = mapped_column(JSON)
    actor: Mapped[dict] = mapped_column(JSON)  # name, role, user_ref, group_ref
    created_by: Mapped[str] = mapped_column(String(400), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    output: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # for updates: the project brought up to date
    target: Mapped[str | None] = mapped_column(String(400), nullable=True, index=True)
    retry_of: Mapped[str | None] = mapped_column(String(36), nullable=True)


class TaskEventRow(Base):
    """A line of a task's log or a change of a step's status, in order (``id``)."""

    __tablename__ = "scaffolder_task_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("scaffolder_tasks.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    type: Mapped[str] = mapped_column(String(16))  # log, step, completion
    step: Mapped[str | None] = mapped_column(String(200), nullable=True)
    body: Mapped[dict] = mapped_column(JSON)


class TemplateVersionRow(Base):
    """A version of a template as it was run: the commit of its source (or, for a
    template read from plain files, the hash of its folder), with the entity as it was.
    ``ordinal`` counts the versions of one template, so "3 versions behind" is a
    subtraction."""

    __tablename__ = "scaffolder_template_versions"
    __table_args__ = (UniqueConstraint("template_ref", "version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    template_ref: Mapped[str] = mapped_column(String(400), index=True)
    version: Mapped[str] = mapped_column(String(64))
    ordinal: Mapped[int] = mapped_column(Integer)
    entity: Mapped[dict] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(2000))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProjectRow(Base):
    """A repository made from a template, and the template version it is at now
    (read from its ``.pavedroad/template.yaml`` on the default branch at each push)."""

    __tablename__ = "scaffolder_projects"

    repository: Mapped[str] = mapped_column(String(200), primary_key=True)  # owner/name
    template_ref: Mapped[str] = mapped_column(String(400), index=True)
    version: Mapped[str] = mapped_column(String(64))
    values: Mapped[dict] = mapped_column(JSON)
    entity_ref: Mapped[str | None] = mapped_column(String(400), nullable=True, index=True)
    task_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
