"""Sites sharing a run: job claims with leases, shared runs, and the controllers that serve them

Revision ID: 0021
Revises: 0020 (planned on 0012; chained after the lead's 0020, merged first)
Create Date: 2026-12-02 01:20:00

A job of a shared run (``farm submit``) is claimed by one ``farm serve`` controller at a time:
``claim_owner`` names it, ``claim_site`` its site, ``lease_expires_at`` (database time) how long the
claim holds without a renewal. ``controllers`` keeps each serving controller's last heartbeat, for
``farm status``. No v_results column: claims say who ran a job, not what it measured.
"""
import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, no batch: SQLite would rebuild the tables under the v_results view, which breaks it.
    op.add_column("runs", sa.Column("shared", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("jobs", sa.Column("claim_owner", sa.String(200), nullable=True))
    op.add_column("jobs", sa.Column("claim_site", sa.String(64), nullable=True))
    op.add_column("jobs", sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_claim_owner", "jobs", ["claim_owner"])
    op.create_table(
        "controllers",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("controllers")
    op.drop_index("ix_jobs_claim_owner", "jobs")
    for column in ("lease_expires_at", "claimed_at", "claim_site", "claim_owner"):
        op.drop_column("jobs", column)
    op.drop_column("runs", "shared")
