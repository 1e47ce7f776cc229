"""Run-time environments (previews), deployments with their timelines and approvals, and
what is live where.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployment_approvals",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("deployment_id", sa.String(length=36), nullable=False),
        sa.Column("approver", sa.String(length=400), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_approvals")),
        sa.UniqueConstraint(
            "deployment_id", "approver", name=op.f("uq_deployment_approvals_deployment_id")
        ),
    )
    with op.batch_alter_table("deployment_approvals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deployment_approvals_deployment_id"), ["deployment_id"], unique=False
        )

    op.create_table(
        "deployment_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("step", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_events")),
    )
    with op.batch_alter_table("deployment_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deployment_events_deployment_id"), ["deployment_id"], unique=False
        )

    op.create_table(
        "deployments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("component", sa.String(length=400), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.Column("release_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("step", sa.String(length=16), nullable=True),
        sa.Column("active_key", sa.String(length=500), nullable=True),
        sa.Column("requested_by", sa.String(length=400), nullable=False),
        sa.Column("trigger_key", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("log_tail", sa.JSON(), nullable=False),
        sa.Column("previous_release_id", sa.String(length=36), nullable=True),
        sa.Column("rollback_of", sa.String(length=36), nullable=True),
        sa.Column("promoted_from", sa.String(length=63), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secret_versions", sa.JSON(), nullable=False),
        sa.Column("instances", sa.JSON(), nullable=False),
        sa.Column("url", sa.String(length=400), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approval_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
        sa.UniqueConstraint("active_key", name=op.f("uq_deployments_active_key")),
        sa.UniqueConstraint("number", name=op.f("uq_deployments_number")),
        sa.UniqueConstraint("trigger_key", name=op.f("uq_deployments_trigger_key")),
    )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deployments_component"), ["component"], unique=False)
        batch_op.create_index(batch_op.f("ix_deployments_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_deployments_environment"), ["environment"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_deployments_release_id"), ["release_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_deployments_status"), ["status"], unique=False)

    op.create_table(
        "environments",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("base", sa.String(length=63), nullable=True),
        sa.Column("branch", sa.String(length=400), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=400), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_environments")),
    )
    op.create_table(
        "live_releases",
        sa.Column("component", sa.String(length=400), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.Column("release_id", sa.String(length=36), nullable=False),
        sa.Column("deployment_id", sa.String(length=36), nullable=False),
        sa.Column("instances", sa.JSON(), nullable=False),
        sa.Column("url", sa.String(length=400), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("component", "environment", name=op.f("pk_live_releases")),
    )
    with op.batch_alter_table("live_releases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_live_releases_environment"), ["environment"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("live_releases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_live_releases_environment"))

    op.drop_table("live_releases")
    op.drop_table("environments")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deployments_status"))
        batch_op.drop_index(batch_op.f("ix_deployments_release_id"))
        batch_op.drop_index(batch_op.f("ix_deployments_environment"))
        batch_op.drop_index(batch_op.f("ix_deployments_created_at"))
        batch_op.drop_index(batch_op.f("ix_deployments_component"))

    op.drop_table("deployments")
    with op.batch_alter_table("deployment_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deployment_events_deployment_id"))

    op.drop_table("deployment_events")
    with op.batch_alter_table("deployment_approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deployment_approvals_deployment_id"))

    op.drop_table("deployment_approvals")
