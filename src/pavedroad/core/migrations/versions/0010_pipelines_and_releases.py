"""Pipeline runs, jobs, steps, logs, artifacts, test results, caches, schedules; releases.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_caches",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("repository", sa.String(length=400), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_pipeline_caches")),
    )
    with op.batch_alter_table("pipeline_caches", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pipeline_caches_repository"), ["repository"], unique=False
        )

    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("repository", sa.String(length=400), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("entity_ref", sa.String(length=400), nullable=True),
        sa.Column("commit", sa.String(length=64), nullable=False),
        sa.Column("ref", sa.String(length=400), nullable=False),
        sa.Column("branch", sa.String(length=400), nullable=True),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("trigger_key", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("pipeline", sa.JSON(), nullable=True),
        sa.Column("template_ref", sa.String(length=400), nullable=True),
        sa.Column("template_version", sa.Integer(), nullable=True),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=400), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("rerun_of", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_runs")),
        sa.UniqueConstraint("repository", "number", name=op.f("uq_pipeline_runs_repository")),
        sa.UniqueConstraint("trigger_key", name=op.f("uq_pipeline_runs_trigger_key")),
    )
    with op.batch_alter_table("pipeline_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pipeline_runs_branch"), ["branch"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_pipeline_runs_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_pipeline_runs_entity_ref"), ["entity_ref"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_pipeline_runs_repository"), ["repository"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_pipeline_runs_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_pipeline_runs_template_ref"), ["template_ref"], unique=False
        )

    op.create_table(
        "pipeline_schedules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("repository", sa.String(length=400), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("branch", sa.String(length=400), nullable=False),
        sa.Column("last_fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_schedules")),
        sa.UniqueConstraint(
            "repository", "cron", "branch", name=op.f("uq_pipeline_schedules_repository")
        ),
    )
    with op.batch_alter_table("pipeline_schedules", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pipeline_schedules_repository"), ["repository"], unique=False
        )

    op.create_table(
        "releases",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("component", sa.String(length=400), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("repository", sa.String(length=400), nullable=True),
        sa.Column("commit", sa.String(length=64), nullable=True),
        sa.Column("branch", sa.String(length=400), nullable=True),
        sa.Column("score", sa.JSON(), nullable=True),
        sa.Column("score_text", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("created_by", sa.String(length=400), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
        sa.UniqueConstraint("component", "digest", name=op.f("uq_releases_component")),
    )
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_releases_branch"), ["branch"], unique=False)
        batch_op.create_index(batch_op.f("ix_releases_component"), ["component"], unique=False)
        batch_op.create_index(batch_op.f("ix_releases_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_releases_run_id"), ["run_id"], unique=False)

    op.create_table(
        "pipeline_artifacts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["pipeline_runs.id"],
            name=op.f("fk_pipeline_artifacts_run_id_pipeline_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_artifacts")),
        sa.UniqueConstraint("run_id", "name", name=op.f("uq_pipeline_artifacts_run_id")),
    )
    with op.batch_alter_table("pipeline_artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pipeline_artifacts_run_id"), ["run_id"], unique=False)

    op.create_table(
        "pipeline_jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("job_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("needs", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("matrix", sa.JSON(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["pipeline_runs.id"],
            name=op.f("fk_pipeline_jobs_run_id_pipeline_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_jobs")),
        sa.UniqueConstraint("run_id", "key", name=op.f("uq_pipeline_jobs_run_id")),
    )
    with op.batch_alter_table("pipeline_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pipeline_jobs_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_pipeline_jobs_status"), ["status"], unique=False)

    op.create_table(
        "pipeline_log_chunks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["pipeline_jobs.id"],
            name=op.f("fk_pipeline_log_chunks_job_id_pipeline_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_log_chunks")),
    )
    with op.batch_alter_table("pipeline_log_chunks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pipeline_log_chunks_job_id"), ["job_id"], unique=False)

    op.create_table(
        "pipeline_steps",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=100), nullable=True),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("log_bytes", sa.BigInteger(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["pipeline_jobs.id"],
            name=op.f("fk_pipeline_steps_job_id_pipeline_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_steps")),
        sa.UniqueConstraint("job_id", "index", name=op.f("uq_pipeline_steps_job_id")),
    )
    with op.batch_alter_table("pipeline_steps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pipeline_steps_job_id"), ["job_id"], unique=False)

    op.create_table(
        "pipeline_test_cases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("suite", sa.String(length=400), nullable=False),
        sa.Column("classname", sa.String(length=400), nullable=False),
        sa.Column("name", sa.String(length=400), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["pipeline_jobs.id"],
            name=op.f("fk_pipeline_test_cases_job_id_pipeline_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_test_cases")),
    )
    with op.batch_alter_table("pipeline_test_cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pipeline_test_cases_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pipeline_test_cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pipeline_test_cases_job_id"))

    op.drop_table("pipeline_test_cases")
    with op.batch_alter_table("pipeline_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pipeline_steps_job_id"))

    op.drop_table("pipeline_steps")
    with op.batch_alter_table("pipeline_log_chunks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pipeline_log_chunks_job_id"))

    op.drop_table("pipeline_log_chunks")
    with op.batch_alter_table("pipeline_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pipeline_jobs_status"))
        batch_op.drop_index(batch_op.f("ix_pipeline_jobs_run_id"))

    op.drop_table("pipeline_jobs")
    with op.batch_alter_table("pipeline_artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pipeline_artifacts_run_id"))

    op.drop_table("pipeline_artifacts")
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_releases_run_id"))
        batch_op.drop_index(batch_op.f("ix_releases_created_at"))
        batch_op.drop_index(batch_op.f("ix_releases_component"))
        batch_op.drop_index(batch_op.f("ix_releases_branch"))

    op.drop_table("releases")
    with op.batch_alter_table("pipeline_schedules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pipeline_schedules_repository"))

    op.drop_table("pipeline_schedules")
    with op.batch_alter_table("pipeline_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pipeline_runs_template_ref"))
        batch_op.drop_index(batch_op.f("ix_pipeline_runs_status"))
        batch_op.drop_index(batch_op.f("ix_pipeline_runs_repository"))
        batch_op.drop_index(batch_op.f("ix_pipeline_runs_entity_ref"))
        batch_op.drop_index(batch_op.f("ix_pipeline_runs_created_at"))
        batch_op.drop_index(batch_op.f("ix_pipeline_runs_branch"))

    op.drop_table("pipeline_runs")
    with op.batch_alter_table("pipeline_caches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pipeline_caches_repository"))

    op.drop_table("pipeline_caches")
