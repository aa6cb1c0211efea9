"""GPU results: v_results gains the GPU each result ran on, its clock, rail power and the GPU timings

Lifted from the result document (no new table columns): the ``gpu`` sub-document (module, CUDA
cores, mean and lowest sampled clock, maximum clock, load, GPU rail power), ``gpu_timing``
(launch mode, median host-to-device / compute / device-to-host copy times, engine build time);
the backend and precision are 0017's columns. Whether a result ran below the GPU's
maximum clock is ``gpu_clock_min_hz < gpu_max_clock_hz``: JSON booleans do not cast alike on
both dialects, so the flag is derived from the numbers.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 01:30:00
"""
import importlib

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

prev = importlib.import_module("migrations.versions.0017_backends")
view = importlib.import_module("migrations.versions.0009_v_results_context")

JSON_COLUMNS = {
    **prev.JSON_COLUMNS,
    "gpu_module": ("res.detail", ("gpu", "module"), "text"),
    "gpu_cuda_cores": ("res.detail", ("gpu", "cuda_cores"), "int"),
    "gpu_clock_hz": ("res.detail", ("gpu", "clock_hz"), "float"),
    "gpu_clock_min_hz": ("res.detail", ("gpu", "clock_min_hz"), "float"),
    "gpu_max_clock_hz": ("res.detail", ("gpu", "max_clock_hz"), "float"),
    "gpu_load_pct": ("res.detail", ("gpu", "load_mean_pct"), "float"),
    "gpu_rail_w": ("res.detail", ("gpu", "rail_w"), "float"),
    "gpu_launch": ("res.detail", ("gpu_timing", "launch"), "text"),
    "h2d_ms": ("res.detail", ("gpu_timing", "h2d", "median_ms"), "float"),
    "gpu_compute_ms": ("res.detail", ("gpu_timing", "compute", "median_ms"), "float"),
    "d2h_ms": ("res.detail", ("gpu_timing", "d2h", "median_ms"), "float"),
    "engine_build_ms": ("res.detail", ("gpu_timing", "engine", "build_ms"), "float"),
}
EXTRA_SELECTS = tuple(getattr(prev, "EXTRA_SELECTS", ()))


def upgrade() -> None:
    op.execute("DROP VIEW v_results")
    op.execute(view.view_sql(op.get_bind().dialect.name, JSON_COLUMNS, EXTRA_SELECTS))


def downgrade() -> None:
    op.execute("DROP VIEW v_results")
    op.execute(view.view_sql(op.get_bind().dialect.name, prev.JSON_COLUMNS, getattr(prev, "EXTRA_SELECTS", ())))
