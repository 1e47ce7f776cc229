"""Scaffolder tasks and their events, template versions, projects made from templates.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _index(table: str, *columns: str) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        for column in columns:
            batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)


def upgrade() -> None:
    op.create_table(
        "scaffolder_projects",
        sa.Column("repository", sa.String(length=200), nullable=False),
        sa.Column("template_ref", sa.String(length=400), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("entity_ref", sa.String(length=400), nullable=True),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("repository", name=op.f("pk_scaffolder_projects")),
    )
    _index("scaffolder_projects", "entity_ref", "template_ref")
    op.create_table(
        "scaffolder_tasks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("template_ref", sa.String(length=400), nullable=False),
        sa.Column("template_version", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("sealed_secrets", sa.LargeBinary(), nullable=True),
        sa.Column("secret_names", sa.JSON(), nullable=False),
        sa.Column("actor", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=400), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("target", sa.String(length=400), nullable=True),
        sa.Column("retry_of", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scaffolder_tasks")),
    )
    _index("scaffolder_tasks", "created_at", "created_by", "status", "target", "template_ref")
    op.create_table(
        "scaffolder_template_versions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("template_ref", sa.String(length=400), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("entity", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=2000), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scaffolder_template_versions")),
        sa.UniqueConstraint(
            "template_ref",
            "version",
            name=op.f("uq_scaffolder_template_versions_template_ref"),
        ),
    )
    _index("scaffolder_template_versions", "template_ref")
    op.create_table(
        "scaffolder_task_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("step", sa.String(length=200), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["scaffolder_tasks.id"],
            name=op.f("fk_scaffolder_task_events_task_id_scaffolder_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scaffolder_task_events")),
    )
    _index("scaffolder_task_events", "task_id")


def downgrade() -> None:
    op.drop_table("scaffolder_task_events")
    op.drop_table("scaffolder_template_versions")
    op.drop_table("scaffolder_tasks")
    op.drop_table("scaffolder_projects")
