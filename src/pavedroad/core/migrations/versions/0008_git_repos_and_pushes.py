"""Hosted git repositories and push events.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "git_repos",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("owner_ref", sa.String(length=400), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("default_branch", sa.String(length=100), nullable=False),
        sa.Column("created_by", sa.String(length=400), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_git_repos")),
        sa.UniqueConstraint("owner", "name", name=op.f("uq_git_repos_owner")),
    )
    with op.batch_alter_table("git_repos", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_git_repos_owner_ref"), ["owner_ref"], unique=False)

    op.create_table(
        "git_push_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("repo_id", sa.String(length=36), nullable=True),
        sa.Column("repository", sa.String(length=400), nullable=False),
        sa.Column("ref", sa.String(length=400), nullable=False),
        sa.Column("before", sa.String(length=64), nullable=False),
        sa.Column("after", sa.String(length=64), nullable=False),
        sa.Column("pusher", sa.String(length=400), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("delivery", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["repo_id"],
            ["git_repos.id"],
            name=op.f("fk_git_push_events_repo_id_git_repos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_git_push_events")),
        sa.UniqueConstraint("delivery", name=op.f("uq_git_push_events_delivery")),
    )
    with op.batch_alter_table("git_push_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_git_push_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_git_push_events_repo_id"), ["repo_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_git_push_events_repository"), ["repository"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("git_push_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_git_push_events_repository"))
        batch_op.drop_index(batch_op.f("ix_git_push_events_repo_id"))
        batch_op.drop_index(batch_op.f("ix_git_push_events_at"))

    op.drop_table("git_push_events")
    with op.batch_alter_table("git_repos", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_git_repos_owner_ref"))

    op.drop_table("git_repos")
