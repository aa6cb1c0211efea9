"""v_results: `simulated` (Edge TPU results measured on the simulated lab's stand-in libedgetpu)

The agent marks an Edge TPU result measured on the stand-in with ``edgetpu.simulated = "stand-in"``
in its document; the view lifts it as text ("stand-in", NULL on hardware and on CPU results), the
same on SQLite and PostgreSQL, so no simulated number is mistaken for a board's.

Revision ID: 0015
Revises: 0021 (the lead re-chains at merge)
Create Date: 2026-12-02 01:40:00
"""
import importlib

from alembic import op

revision = "0015"
down_revision = "0021"
branch_labels = None
depends_on = None

prev = importlib.import_module("migrations.versions.0009_v_results_context")

JSON_COLUMNS = {**prev.JSON_COLUMNS, "simulated": ("res.detail", ("edgetpu", "simulated"), "text")}
EXTRA_SELECTS = (*getattr(prev, "EXTRA_SELECTS", ()),)


def upgrade() -> None:
    op.execute("DROP VIEW v_results")
    op.execute(prev.view_sql(op.get_bind().dialect.name, JSON_COLUMNS, EXTRA_SELECTS))


def downgrade() -> None:
    op.execute("DROP VIEW v_results")
    op.execute(prev.view_sql(op.get_bind().dialect.name, prev.JSON_COLUMNS, getattr(prev, "EXTRA_SELECTS", ())))
