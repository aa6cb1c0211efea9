"""crash safety: job lifecycle details, host health, idempotent results

Revision ID: 0010
Revises: 0005
Create Date: 2026-11-23 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("health", sa.String(length=16), nullable=False, server_default="ok"))
        batch.add_column(sa.Column("infra_failures", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("health_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("health_changed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("failure", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("spool_key", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("job_doc", sa.JSON(), nullable=True))
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("spool_key", sa.String(length=200), nullable=True))
    op.create_index("uq_results_job_attempt", "results", ["job_id", "attempt"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_results_job_attempt", table_name="results")
    with op.batch_alter_table("results") as batch:
        batch.drop_column("spool_key")
        batch.drop_column("attempt")
    with op.batch_alter_table("jobs") as batch:
        for name in ("job_doc", "spool_key", "dispatched_at", "failure"):
            batch.drop_column(name)
    with op.batch_alter_table("hosts") as batch:
        for name in ("health_changed_at", "health_reason", "infra_failures", "health"):
            batch.drop_column(name)
