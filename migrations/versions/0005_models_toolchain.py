"""models: op counts per type, compiled-from links with compiler version and report; toolchain versions and events

Revision ID: 0005
Revises: 0007
Create Date: 2026-11-23 09:00:00
"""
import importlib

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, no table copy, so the v_results view over `models` stays untouched. SQLite
    # cannot add a constraint later but takes REFERENCES on a nullable new column.
    op.add_column("models", sa.Column("op_counts", sa.JSON(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE models ADD COLUMN source_model_id INTEGER REFERENCES models (id)")
    else:
        op.add_column("models", sa.Column("source_model_id", sa.Integer(), nullable=True))
        op.create_foreign_key("fk_models_source_model_id", "models", "models", ["source_model_id"], ["id"])
    op.add_column("models", sa.Column("compiler_version", sa.String(length=64), nullable=True))
    op.add_column("models", sa.Column("compile_report", sa.JSON(), nullable=True))
    op.create_table(
        "toolchain_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("host", sa.String(length=64), nullable=False),
        sa.Column("component", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=200), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("host", "component", name="uq_toolchain_versions_host_component"),
    )
    op.create_table(
        "toolchain_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("host", sa.String(length=64), nullable=False),
        sa.Column("component", sa.String(length=64), nullable=False),
        sa.Column("old_version", sa.String(length=200), nullable=True),
        sa.Column("new_version", sa.String(length=200), nullable=True),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_toolchain_events_host", "toolchain_events", ["host"])
    op.create_index("ix_toolchain_events_detected_at", "toolchain_events", ["detected_at"])


def downgrade() -> None:
    op.drop_index("ix_toolchain_events_detected_at", table_name="toolchain_events")
    op.drop_index("ix_toolchain_events_host", table_name="toolchain_events")
    op.drop_table("toolchain_events")
    op.drop_table("toolchain_versions")
    # SQLite copies the table to drop columns, which the view over `models` would block.
    op.execute("DROP VIEW v_results")
    with op.batch_alter_table("models") as batch:
        if op.get_bind().dialect.name != "sqlite":
            batch.drop_constraint("fk_models_source_model_id", type_="foreignkey")
        for column in ("compile_report", "compiler_version", "source_model_id", "op_counts"):
            batch.drop_column(column)
    op.execute(importlib.import_module("migrations.versions.0003_power_usb").V_RESULTS)
