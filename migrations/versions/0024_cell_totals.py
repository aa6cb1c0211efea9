"""cell_totals: per cell, the count of succeeded results and the sum of their medians, for the cell pivot

The pivot over every result (orchestrator/results/pivot.py) grouped every succeeded job with its result:
a pass over a million rows at a year of nightlies, 0.5 s or more on SQLite even from covering indexes.
The store now adds each result to its cell's row here in the transaction that stores it
(orchestrator/store/cell_totals.py), so the pivot reads one row per cell (a few thousand). Cells are
keyed as the pivot groups them: host, model, delegate, threads and power mode ('' for none: a key
column cannot be NULL). This migration back-fills it from the results already stored.

On PostgreSQL, v_results (same columns) now casts each result document and facts snapshot to jsonb once
per row and lifts its columns from that: ``->`` on json parses the whole text again at every step, and
`farm report` on 1,000 nightlies lifts 35 columns from 55,000 documents (half its query time).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02 06:40:00
"""
import importlib

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

# The view's columns are 0023's; its builder is 0009's.
prev = importlib.import_module("migrations.versions.0023_run_labels")
view = importlib.import_module("migrations.versions.0009_v_results_context")
JSON_COLUMNS = dict(prev.JSON_COLUMNS)
EXTRA_SELECTS = tuple(prev.EXTRA_SELECTS)
JSONB_ONCE = True  # a later migration that rebuilds the view passes this on

BACKFILL = """
INSERT INTO cell_totals (host_id, model_id, delegate, threads, power_mode, results, total_median_ms)
SELECT j.host_id, j.model_id, j.delegate, j.threads, COALESCE(j.power_mode, ''), COUNT(*), SUM(res.median_ms)
FROM jobs j JOIN results res ON res.job_id = j.id
WHERE j.status = 'succeeded'
GROUP BY j.host_id, j.model_id, j.delegate, j.threads, COALESCE(j.power_mode, '')
"""


def upgrade() -> None:
    op.create_table(
        "cell_totals",
        sa.Column("host_id", sa.Integer(), sa.ForeignKey("hosts.id"), nullable=False),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("models.id"), nullable=False),
        sa.Column("delegate", sa.String(16), nullable=False),
        sa.Column("threads", sa.Integer(), nullable=False),
        sa.Column("power_mode", sa.String(64), nullable=False),
        sa.Column("results", sa.Integer(), nullable=False),
        sa.Column("total_median_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("host_id", "model_id", "delegate", "threads", "power_mode"),
    )
    op.execute(BACKFILL)
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP VIEW v_results")
        op.execute(view.view_sql(dialect, JSON_COLUMNS, EXTRA_SELECTS, jsonb_once=JSONB_ONCE))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP VIEW v_results")
        op.execute(view.view_sql(dialect, prev.JSON_COLUMNS, prev.EXTRA_SELECTS))
    op.drop_table("cell_totals")
