"""reference_times: published times (pycoral's reference CSVs, the seeds' tables) to show beside results

Revision ID: 0020
Revises: 0012
Create Date: 2026-12-02 01:20:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reference_times",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("board", sa.String(128), nullable=False, index=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("delegate", sa.String(16), nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("setting_key", sa.String(400), nullable=False),
        sa.Column("metric", sa.String(16), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("stat", sa.String(16), nullable=False),
        sa.Column("value_ms", sa.Float, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("board", "model", "delegate", "setting_key", "metric", "dataset",
                            name="uq_reference_times_cell"),
    )


def downgrade() -> None:
    op.drop_table("reference_times")
