"""Hosted repositories and the pushes they receive."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pavedroad.core.db import Base


class RepoRow(Base):
    """A bare repository at ``$PAVEDROAD_HOME/git/<owner>/<name>.git``; ``owner`` is
    the name of the Group or User entity (``owner_ref``) that owns it."""

    __tablename__ = "git_repos"
    __table_args__ = (UniqueConstraint("owner", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(100))
    owner_ref: Mapped[str] = mapped_column(String(400), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    default_branch: Mapped[str] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PushEventRow(Base):
    """One ref updated by one push: to a hosted repository (through its hook) or to a
    repository elsewhere (through a GitHub or GitLab webhook)."""

    __tablename__ = "git_push_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # the hosted repository, when it is one of ours
    repo_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("git_repos.id", ondelete="CASCADE"), nullable=True, index=True
    )
    repository: Mapped[str] = mapped_column(String(400), index=True)  # owner/name or URL
    ref: Mapped[str] = mapped_column(String(400))
    before: Mapped[str] = mapped_column(String(64))
    after: Mapped[str] = mapped_column(String(64))
    pusher: Mapped[str] = mapped_column(String(400))
    source: Mapped[str] = mapped_column(String(16))  # hosted, github, gitlab
    # the hook's spool entry or the webhook's delivery id: the same push is never
    # recorded twice
    delivery: Mapped[str] = mapped_column(String(200), unique=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
