"""Pipeline state: runs, their jobs and steps, step logs, artifacts, test results, caches.

A run is one pipeline for one commit (a push, a manual start, a schedule, a re-run); it is
planned into jobs (one per job of the pipeline and matrix combination) whose steps run on
a worker. ``trigger_key`` makes a trigger start at most one run, however often it is seen.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from pavedroad.core.db import Base

RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
JOB_STATUSES = ("waiting", "queued", "running", "succeeded", "failed", "cancelled", "skipped")
STEP_STATUSES = ("waiting", "running", "succeeded", "failed", "cancelled", "skipped")
FINISHED = ("succeeded", "failed", "cancelled", "skipped")


class RunRow(Base):
    __tablename__ = "pipeline_runs"
    __table_args__ = (UniqueConstraint("repository", "number"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # owner/name of a hosted repository; host/owner/name of a mirrored one (git.mirrors)
    repository: Mapped[str] = mapped_column(String(400), index=True)
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per repository
    entity_ref: Mapped[str | None] = mapped_column(String(400), nullable=True, index=True)
    commit: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(400))  # refs/heads/main, refs/tags/v1
    branch: Mapped[str | None] = mapped_column(String(400), nullable=True, index=True)
    event: Mapped[str] = mapped_column(String(16))  # push, manual, schedule, rerun
    trigger_key: Mapped[str] = mapped_column(String(300), unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    name: Mapped[str] = mapped_column(String(200))
    pipeline: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # resolved, as run
    template_ref: Mapped[str | None] = mapped_column(String(400), nullable=True, index=True)
    template_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    inputs: Mapped[dict] = mapped_column(JSON)
    problems: Mapped[list] = mapped_column(JSON)  # an invalid pipeline file's, with lines
    created_by: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    rerun_of: Mapped[str | None] = mapped_column(String(36), nullable=True)


class JobRow(Base):
    __tablename__ = "pipeline_jobs"
    __table_args__ = (UniqueConstraint("run_id", "key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    run_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("pipeline_runs.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(300))  # job id, with the matrix: "test (3.12)"
    job_id: Mapped[str] = mapped_column(String(100))  # the pipeline's job id
    name: Mapped[str] = mapped_column(String(300))
    needs: Mapped[list] = mapped_column(JSON)  # job ids (every matrix job of each)
    status: Mapped[str] = mapped_column(String(16), index=True)
    labels: Mapped[list] = mapped_column(JSON)  # runs-on
    matrix: Mapped[dict] = mapped_column(JSON)
    spec: Mapped[dict] = mapped_column(JSON)  # the job as planned
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=1)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    outputs: Mapped[dict] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)


class StepRow(Base):
    __tablename__ = "pipeline_steps"
    __table_args__ = (UniqueConstraint("job_id", "index"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("pipeline_jobs.id", ondelete="CASCADE"), index=True
    )
    index: Mapped[int] = mapped_column(Integer)
    step_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    name: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    outputs: Mapped[dict] = mapped_column(JSON)
    log_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)


class LogChunkRow(Base):
    """A piece of a step's output, masked, in order (``id``); live logs resume after one."""

    __tablename__ = "pipeline_log_chunks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("pipeline_jobs.id", ondelete="CASCADE"), index=True
    )
    step_index: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    text: Mapped[str] = mapped_column(Text)


class ArtifactRow(Base):
    """A named file a job uploaded; its bytes live in the content-addressed store."""

    __tablename__ = "pipeline_artifacts"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    run_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("pipeline_runs.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    digest: Mapped[str] = mapped_column(String(80))  # sha256:<hex>
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TestCaseRow(Base):
    """One test case from a JUnit report a job produced."""

    __tablename__ = "pipeline_test_cases"
    __test__ = False  # a model, not a test class (pytest collects names starting "Test")

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("pipeline_jobs.id", ondelete="CASCADE"), index=True
    )
    suite: Mapped[str] = mapped_column(String(400))
    classname: Mapped[str] = mapped_column(String(400))
    name: Mapped[str] = mapped_column(String(400))
    outcome: Mapped[str] = mapped_column(String(16))  # passed, failed, error, skipped
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)


class CacheEntryRow(Base):
    """A cache saved under a key (a hash of chosen files); its archive is in the store."""

    __tablename__ = "pipeline_caches"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    repository: Mapped[str] = mapped_column(String(400), index=True)
    digest: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ScheduleRow(Base):
    """When a scheduled pipeline of a repository last fired (one row per cron line)."""

    __tablename__ = "pipeline_schedules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    repository: Mapped[str] = mapped_column(String(400), index=True)
    cron: Mapped[str] = mapped_column(String(200))
    branch: Mapped[str] = mapped_column(String(400))
    last_fired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (UniqueConstraint("repository", "cron", "branch"),)
