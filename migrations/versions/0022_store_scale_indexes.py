"""Indexes for a store of a year of nightlies: the cell pivot reads indexes only, not result rows

A results row carries the agent's whole result document (``detail``), so an aggregate over every
result that reads ``median_ms`` from the table reads every document too. With these two covering
indexes the pivot's inner aggregate (``orchestrator/results/pivot.py``: jobs by status and cell,
joined to their results' medians) touches no table row; the dimensions (hosts, models) are joined
to the few hundred groups afterwards. bench/store_scale.py measures it (README, "A store that scales").

Revision ID: 0022
Revises: 0015
Create Date: 2026-12-02 01:40:00
"""
from alembic import op

revision = "0022"
down_revision = "0015"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_jobs_status_cell", "jobs", ["status", "host_id", "model_id", "delegate", "threads", "power_mode"]),
    ("ix_results_job_median", "results", ["job_id", "median_ms"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
