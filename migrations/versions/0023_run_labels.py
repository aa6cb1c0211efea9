"""runs.labels: what a run measured (commit=…, firmware=…, compiler=…), and v_results.run_labels

Revision ID: 0023
Revises: 0018
Create Date: 2026-12-02 01:15:00

`farm run --label key=value` stores a JSON object here; `--tag` stays the inventory's host selection.
v_results shows the labels as JSON object text, as it shows run_tags as JSON array text.
"""
import importlib

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0018"
branch_labels = None
depends_on = None

# The view's columns as the migration before this one left them (0015: `simulated`); its view_sql is 0009's.
prev = importlib.import_module("migrations.versions.0018_gpu")
view = importlib.import_module("migrations.versions.0009_v_results_context")
JSON_COLUMNS = dict(prev.JSON_COLUMNS)
EXTRA_SELECTS = (*getattr(prev, "EXTRA_SELECTS", ()), "CAST(r.labels AS TEXT) AS run_labels")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    # The view reads runs: drop it first, so that SQLite's batch mode may rebuild the table if it must.
    op.execute("DROP VIEW v_results")
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("labels", sa.JSON(), nullable=True))
    op.execute(view.view_sql(dialect, JSON_COLUMNS, EXTRA_SELECTS))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.execute("DROP VIEW v_results")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("labels")
    op.execute(view.view_sql(dialect, prev.JSON_COLUMNS, getattr(prev, "EXTRA_SELECTS", ())))
