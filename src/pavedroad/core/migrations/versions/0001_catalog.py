"""The catalog: locations, sources, entities, relations and the search index.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalog_locations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_locations")),
    )
    with op.batch_alter_table("catalog_locations", schema=None) as batch_op:
        batch_op.create_index("ix_catalog_locations_type_target", ["type", "target"], unique=True)

    op.create_table(
        "catalog_relations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("originating_ref", sa.String(length=400), nullable=False),
        sa.Column("source_ref", sa.String(length=400), nullable=False),
        sa.Column("type", sa.String(length=63), nullable=False),
        sa.Column("target_ref", sa.String(length=400), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_relations")),
    )
    with op.batch_alter_table("catalog_relations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_catalog_relations_originating_ref"), ["originating_ref"], unique=False
        )
        batch_op.create_index(
            "ix_catalog_relations_source", ["source_ref", "type", "target_ref"], unique=False
        )
        batch_op.create_index("ix_catalog_relations_target", ["target_ref", "type"], unique=False)

    op.create_table(
        "catalog_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_state")),
    )
    op.create_table(
        "catalog_entities",
        sa.Column("uid", sa.String(length=36), nullable=False),
        sa.Column("entity_ref", sa.String(length=400), nullable=False),
        sa.Column("kind", sa.String(length=63), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("source_key", sa.String(length=2048), nullable=False),
        sa.Column("location_id", sa.String(length=36), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("orphan", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["catalog_locations.id"],
            name=op.f("fk_catalog_entities_location_id_catalog_locations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_catalog_entities")),
    )
    with op.batch_alter_table("catalog_entities", schema=None) as batch_op:
        batch_op.create_index("ix_catalog_entities_entity_ref", ["entity_ref"], unique=True)
        batch_op.create_index(
            batch_op.f("ix_catalog_entities_location_id"), ["location_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_catalog_entities_source_key"), ["source_key"], unique=False
        )

    op.create_table(
        "catalog_sources",
        sa.Column("key", sa.String(length=2048), nullable=False),
        sa.Column("location_id", sa.String(length=36), nullable=False),
        sa.Column("parent_key", sa.String(length=2048), nullable=True),
        sa.Column("parent_entity_ref", sa.String(length=400), nullable=True),
        sa.Column("presence", sa.String(length=16), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("next_refresh_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["catalog_locations.id"],
            name=op.f("fk_catalog_sources_location_id_catalog_locations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_catalog_sources")),
    )
    with op.batch_alter_table("catalog_sources", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_catalog_sources_location_id"), ["location_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_catalog_sources_next_refresh_at"), ["next_refresh_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_catalog_sources_parent_key"), ["parent_key"], unique=False
        )

    op.create_table(
        "catalog_search",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entity_uid", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=True),
        sa.Column("original_value", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=63), nullable=False),
        sa.ForeignKeyConstraint(
            ["entity_uid"],
            ["catalog_entities.uid"],
            name=op.f("fk_catalog_search_entity_uid_catalog_entities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_search")),
    )
    with op.batch_alter_table("catalog_search", schema=None) as batch_op:
        batch_op.create_index("ix_catalog_search_entity", ["entity_uid"], unique=False)
        batch_op.create_index(
            "ix_catalog_search_key_value",
            ["key", "value", "kind", "original_value", "entity_uid"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("catalog_search", schema=None) as batch_op:
        batch_op.drop_index("ix_catalog_search_key_value")
        batch_op.drop_index("ix_catalog_search_entity")

    op.drop_table("catalog_search")
    with op.batch_alter_table("catalog_sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_sources_parent_key"))
        batch_op.drop_index(batch_op.f("ix_catalog_sources_next_refresh_at"))
        batch_op.drop_index(batch_op.f("ix_catalog_sources_location_id"))

    op.drop_table("catalog_sources")
    with op.batch_alter_table("catalog_entities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_entities_source_key"))
        batch_op.drop_index(batch_op.f("ix_catalog_entities_location_id"))
        batch_op.drop_index("ix_catalog_entities_entity_ref")

    op.drop_table("catalog_entities")
    op.drop_table("catalog_state")
    with op.batch_alter_table("catalog_relations", schema=None) as batch_op:
        batch_op.drop_index("ix_catalog_relations_target")
        batch_op.drop_index("ix_catalog_relations_source")
        batch_op.drop_index(batch_op.f("ix_catalog_relations_originating_ref"))

    op.drop_table("catalog_relations")
    with op.batch_alter_table("catalog_locations", schema=None) as batch_op:
        batch_op.drop_index("ix_catalog_locations_type_target")

    op.drop_table("catalog_locations")
