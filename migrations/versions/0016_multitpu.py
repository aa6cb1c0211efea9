"""v_results: several Edge TPUs at once, multi-model placements, pipelined segments

Lifted from the result document (agent/bench.py, agent/multimodel.py) and the job document:
the job's concurrency mode and how many other jobs held a lock on the host during its timed window,
that window's wall-clock start and end (concurrent jobs overlap there), every job's throughput
(inferences per second), a multi-model cell's placement, model count and each model's median, and
a pipeline's segment count. Views only; no table changes.

Revision ID: 0016
Revises: 0019
Create Date: 2026-12-02 01:30:00
"""
import importlib

from alembic import op

revision = "0016"
down_revision = "0019"
branch_labels = None
depends_on = None

views = importlib.import_module("migrations.versions.0009_v_results_context")  # view_sql lives there
prev = importlib.import_module("migrations.versions.0019_interference")  # the migration before this one

JSON_COLUMNS = {
    **prev.JSON_COLUMNS,
    "concurrency": ("res.detail", ("concurrency", "mode"), "text"),
    "jobs_beside": ("res.detail", ("concurrency", "beside"), "int"),
    "window_start": ("res.detail", ("concurrency", "window_start"), "float"),
    "window_end": ("res.detail", ("concurrency", "window_end"), "float"),
    "throughput_ips": ("res.detail", ("timing", "throughput_ips"), "float"),
    "placement": ("j.job_doc", ("placement",), "text"),
    "model_set": ("j.job_doc", ("model_set",), "text"),
    "models_in_cell": ("res.detail", ("multi_model", "count"), "int"),
    "model_0_ms": ("res.detail", ("multi_model", "medians_ms", "m0"), "float"),
    "model_1_ms": ("res.detail", ("multi_model", "medians_ms", "m1"), "float"),
    "model_2_ms": ("res.detail", ("multi_model", "medians_ms", "m2"), "float"),
    "num_segments": ("res.detail", ("pipeline", "num_segments"), "int"),
}
EXTRA_SELECTS = (*getattr(prev, "EXTRA_SELECTS", ()),)


def upgrade() -> None:
    op.execute("DROP VIEW v_results")
    op.execute(views.view_sql(op.get_bind().dialect.name, JSON_COLUMNS, EXTRA_SELECTS))


def downgrade() -> None:
    op.execute("DROP VIEW v_results")
    op.execute(views.view_sql(op.get_bind().dialect.name, prev.JSON_COLUMNS, getattr(prev, "EXTRA_SELECTS", ())))
