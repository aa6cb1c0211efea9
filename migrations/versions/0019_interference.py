"""v_results: interference (cpu_share, other_load, disturbed, disturbed_reason) and validity (valid, invalid_reason)

The agent measures, around every timed loop, what else used the benchmark's CPUs
(agent/interference.py) and which validity rules the result broke (agent/validity.py),
and keeps both in the result document; the view lifts them. Booleans are lifted as
integers (1/0) on both dialects: ``->>`` gives 'true' on PostgreSQL and '1' on SQLite (3.38 and
later have the operator), so a CASE over that text reads the same everywhere. A result of an agent
that measured neither reads NULL.

Revision ID: 0019
Revises: 0022
Create Date: 2026-12-02 01:10:00
"""
import importlib

from alembic import op

revision = "0019"
down_revision = "0022"
branch_labels = None
depends_on = None

# The view's builder lives in 0009; the columns so far in the migration before this one.
view = importlib.import_module("migrations.versions.0009_v_results_context")
prev = importlib.import_module("migrations.versions.0015_edgetpu_simulated")

JSON_COLUMNS = {
    **prev.JSON_COLUMNS,
    "cpu_share": ("res.detail", ("interference", "cpu_share"), "float"),
    "other_load": ("res.detail", ("interference", "other_load"), "float"),
    "disturbed_reason": ("res.detail", ("interference", "disturbed_reason"), "text"),
    "invalid_reason": ("res.detail", ("validity", "reason"), "text"),
}


def _flag(part: str, field: str, name: str) -> str:
    text = f"CAST(res.detail -> '{part}' ->> '{field}' AS TEXT)"
    return f"CASE WHEN {text} IN ('true', '1') THEN 1 WHEN {text} IN ('false', '0') THEN 0 END AS {name}"


EXTRA_SELECTS = (*getattr(prev, "EXTRA_SELECTS", ()), _flag("interference", "disturbed", "disturbed"),
                 _flag("validity", "valid", "valid"))


def upgrade() -> None:
    op.execute("DROP VIEW v_results")
    op.execute(view.view_sql(op.get_bind().dialect.name, JSON_COLUMNS, EXTRA_SELECTS))


def downgrade() -> None:
    op.execute("DROP VIEW v_results")
    op.execute(view.view_sql(op.get_bind().dialect.name, prev.JSON_COLUMNS, getattr(prev, "EXTRA_SELECTS", ())))
