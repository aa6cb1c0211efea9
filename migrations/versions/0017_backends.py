"""Backends and precisions: jobs.backend / jobs.precision, and v_results' backend, precision, accelerator

A matrix names `backends: [tflite, onnxruntime]` and `precisions: [fp32, fp16, int8]`, so both are
dimensions of a cell, as the delegate is: real columns of the job, filled at planning (a skipped cell
has them too). Jobs from before this migration read backend 'tflite'. The accelerator (cpu, edgetpu,
gpu) is what the agent found the job ran on, lifted from the result's backend sub-document.

Revision ID: 0017
Revises: 0020 (planned on 0012; main merged the lead's 0020 first)
Create Date: 2026-12-02 01:30:00
"""
import importlib

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0020"
branch_labels = None
depends_on = None

prev = importlib.import_module("migrations.versions.0009_v_results_context")

JSON_COLUMNS = {
    **prev.JSON_COLUMNS,
    "accelerator": ("res.detail", ("backend", "accelerator"), "text"),
    "provider": ("res.detail", ("backend", "provider"), "text"),
}
EXTRA_SELECTS = (
    *getattr(prev, "EXTRA_SELECTS", ()),
    "COALESCE(j.backend, 'tflite') AS backend",
    "j.precision AS precision",
)


def upgrade() -> None:
    # The view reads jobs: dropped first so SQLite's table change cannot trip over it.
    op.execute("DROP VIEW v_results")
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("backend", sa.String(32), nullable=True))
        batch.add_column(sa.Column("precision", sa.String(8), nullable=True))
    op.execute(prev.view_sql(op.get_bind().dialect.name, JSON_COLUMNS, EXTRA_SELECTS))


def downgrade() -> None:
    op.execute("DROP VIEW v_results")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("precision")
        batch.drop_column("backend")
    op.execute(prev.view_sql(op.get_bind().dialect.name, prev.JSON_COLUMNS, getattr(prev, "EXTRA_SELECTS", ())))
