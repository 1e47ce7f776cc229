"""Portal sessions, one-time sign-in links, failed sign-ins, and group service tokens.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=63), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("source_ip", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_identity_sessions")),
    )
    with op.batch_alter_table("identity_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_identity_sessions_account"), ["account"], unique=False)

    op.create_table(
        "identity_sign_in_failures",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account", sa.String(length=400), nullable=False),
        sa.Column("source_ip", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_sign_in_failures")),
    )
    with op.batch_alter_table("identity_sign_in_failures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_identity_sign_in_failures_at"), ["at"], unique=False)

    op.create_table(
        "identity_sign_in_links",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_identity_sign_in_links")),
    )
    with op.batch_alter_table("identity_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_ref", sa.String(length=400), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_identity_tokens_group_ref"), ["group_ref"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("identity_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_tokens_group_ref"))
        batch_op.drop_column("group_ref")

    op.drop_table("identity_sign_in_links")
    with op.batch_alter_table("identity_sign_in_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_sign_in_failures_at"))

    op.drop_table("identity_sign_in_failures")
    with op.batch_alter_table("identity_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_sessions_account"))

    op.drop_table("identity_sessions")
