"""nightly regression runs, per-cell baselines and verdicts

Revision ID: 0007
Revises: 0003
Create Date: 2026-11-23 08:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nightly_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("matrix", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("triggers", sa.JSON(), nullable=False),
        sa.Column("run_ids", sa.JSON(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
    )
    op.create_table(
        "baselines",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("lineage_key", sa.String(length=400), nullable=False),
        sa.Column("cell_key", sa.String(length=400), nullable=False),
        sa.Column("run_ids", sa.JSON(), nullable=False),
        sa.Column("median_ms", sa.Float(), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("how", sa.String(length=32), nullable=False),
        sa.UniqueConstraint("lineage_key", name="uq_baselines_lineage_key"),
    )
    op.create_table(
        "cell_verdicts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("nightly_id", sa.Integer(), sa.ForeignKey("nightly_runs.id"), nullable=False),
        sa.Column("lineage_key", sa.String(length=400), nullable=False),
        sa.Column("cell_key", sa.String(length=400), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("ratio", sa.Float(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("baseline_ms", sa.Float(), nullable=True),
        sa.Column("current_ms", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("drift", sa.JSON(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_cell_verdicts_nightly_id", "cell_verdicts", ["nightly_id"])


def downgrade() -> None:
    op.drop_index("ix_cell_verdicts_nightly_id", table_name="cell_verdicts")
    op.drop_table("cell_verdicts")
    op.drop_table("baselines")
    op.drop_table("nightly_runs")
