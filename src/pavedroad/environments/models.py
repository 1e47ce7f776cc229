"""Environments state: releases, run-time environments (previews), deployments and their
timelines, what is live where, and approvals."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Text, UniqueConstraint
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


DEPLOYMENT_STEPS = (
    "resolve",  # read the release, the environment and the workload; resolve placeholders
    "provision",  # the workload's resources (routes, volumes, secrets, plugin types)
    "prepare",  # the release's files and virtualenv, once per release
    "start",  # new instances
    "ready",  # their readiness checks
    "switch",  # the route to the new instances
    "drain",  # the old instances finish their requests and stop
)
DEPLOYMENT_STATUSES = (
    "awaiting-approval",  # promotion waiting for an approval
    "queued",
    "running",  # at one of DEPLOYMENT_STEPS
    "live",  # serving; until another release replaces it
    "replaced",  # was live, another release replaced it
    "failed",  # the previous release kept serving
    "rejected",  # an approver refused it
    "expired",  # nobody approved it in time
    "cancelled",
    "removed",  # was live, its environment or the component's place in it was removed
)
DEPLOYMENT_ENDED = ("live", "replaced", "failed", "rejected", "expired", "cancelled", "removed")
DEPLOYMENT_KINDS = ("deploy", "auto", "promote", "rollback", "preview")


class EnvironmentRow(Base):
    """An environment made at run time: a branch's preview, or one made with
    ``pave env create``. (Environments declared in the catalog are entities.)"""

    __tablename__ = "environments"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict] = mapped_column(JSON)  # the Environment entity's spec, as written
    base: Mapped[str | None] = mapped_column(String(63), nullable=True)  # a preview's
    branch: Mapped[str | None] = mapped_column(String(400), nullable=True)  # a preview's
    source: Mapped[str] = mapped_column(String(16))  # preview, api
    created_by: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DeploymentRow(Base):
    """One release of one component going into one environment, step by step.

    ``active_key`` is ``component|environment|release`` while the deployment has not
    ended and NULL after: the unique constraint makes a second request for the same key
    join the one in progress."""

    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)  # 1, 2, ... on this platform
    component: Mapped[str] = mapped_column(String(400), index=True)
    environment: Mapped[str] = mapped_column(String(63), index=True)
    release_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(20), index=True)
    step: Mapped[str | None] = mapped_column(String(16), nullable=True)
    active_key: Mapped[str | None] = mapped_column(String(500), nullable=True, unique=True)
    requested_by: Mapped[str] = mapped_column(String(400))
    # what started an automatic deployment (a release event and the environment): once
    trigger_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it failed/was refused
    log_tail: Mapped[list] = mapped_column(JSON)  # the new instance's last lines on failure
    previous_release_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    rollback_of: Mapped[str | None] = mapped_column(String(36), nullable=True)  # deployment
    promoted_from: Mapped[str | None] = mapped_column(String(63), nullable=True)  # environment
    # what it ran with: non-secret configuration and the secret versions (never values)
    config: Mapped[dict] = mapped_column(JSON)
    secret_versions: Mapped[dict] = mapped_column(JSON)
    instances: Mapped[list] = mapped_column(JSON)  # ids of the instances it started
    url: Mapped[str | None] = mapped_column(String(400), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # running: its worker's last sign of life; queued: when a worker last saw it waiting
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    approval_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DeploymentEventRow(Base):
    """The timeline of a deployment: each step begun, ended or failed, with a message."""

    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(String(36), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    step: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16))  # started, succeeded, failed, info
    message: Mapped[str] = mapped_column(Text)


class LiveRow(Base):
    """What serves a component in an environment: exactly one release at a time, changed
    in the same transaction that records the switch."""

    __tablename__ = "live_releases"

    component: Mapped[str] = mapped_column(String(400), primary_key=True)
    environment: Mapped[str] = mapped_column(String(63), primary_key=True, index=True)
    release_id: Mapped[str] = mapped_column(String(36))
    deployment_id: Mapped[str] = mapped_column(String(36))
    instances: Mapped[list] = mapped_column(JSON)
    url: Mapped[str | None] = mapped_column(String(400), nullable=True)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApprovalRow(Base):
    """A decision on a deployment waiting for approval."""

    __tablename__ = "deployment_approvals"
    __table_args__ = (UniqueConstraint("deployment_id", "approver"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(String(36), index=True)
    approver: Mapped[str] = mapped_column(String(400))
    decision: Mapped[str] = mapped_column(String(16))  # approved, rejected
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
