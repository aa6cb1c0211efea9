"""power mode and USB port as job dimensions; measured settings and conditions on results

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 16:00:00
"""
import importlib

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The view names every column, so it is rebuilt around the new ones.
V_RESULTS = """
CREATE VIEW v_results AS
SELECT
    r.id AS run_id, r.matrix AS matrix, r.started_at AS run_started_at,
    j.id AS job_id, j.status AS status, j.reason AS reason, j.error_kind AS error_kind,
    j.attempt AS attempt, j.started_at AS started_at, j.finished_at AS finished_at,
    h.name AS host, h.board AS board,
    m.name AS model, m.family AS model_family, m.sha256 AS model_sha256,
    m.ops_per_inference AS ops_per_inference, m.needs_edgetpu AS model_needs_edgetpu,
    j.delegate AS delegate, j.threads AS threads,
    j.power_mode AS power_mode, res.power_mode_measured AS power_mode_measured,
    j.usb_port AS usb_port, j.usb_speed AS usb_speed_planned, res.usb_speed_measured AS usb_speed_measured,
    res.throttled AS throttled, res.avg_power_w AS avg_power_w, res.energy_mj AS energy_mj,
    res.runtime_name AS runtime, res.runtime_version AS runtime_version, res.python_version AS python,
    res.count AS samples, res.mean_ms AS mean_ms, res.median_ms AS median_ms, res.p90_ms AS p90_ms,
    res.p99_ms AS p99_ms, res.min_ms AS min_ms, res.max_ms AS max_ms, res.std_ms AS std_ms,
    res.init_ms AS init_ms, res.first_inference_ms AS first_inference_ms, res.warmup_runs AS warmup_runs,
    CASE WHEN res.median_ms > 0 THEN m.ops_per_inference / (res.median_ms * 1000000.0) END AS gops,
    res.facts_id AS facts_id
FROM jobs j
JOIN runs r ON r.id = j.run_id
JOIN hosts h ON h.id = j.host_id
JOIN models m ON m.id = j.model_id
LEFT JOIN results res ON res.job_id = j.id
"""


def upgrade() -> None:
    op.execute("DROP VIEW v_results")
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("power_mode", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("usb_port", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("usb_speed", sa.Integer(), nullable=True))
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("power_mode_measured", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("usb_speed_measured", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("throttled", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("avg_power_w", sa.Float(), nullable=True))
        batch.add_column(sa.Column("energy_mj", sa.Float(), nullable=True))
    op.execute(V_RESULTS)


def downgrade() -> None:
    op.execute("DROP VIEW v_results")
    with op.batch_alter_table("results") as batch:
        for column in ("energy_mj", "avg_power_w", "throttled", "usb_speed_measured", "power_mode_measured"):
            batch.drop_column(column)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("usb_speed")
        batch.drop_column("usb_port")
        batch.drop_column("power_mode")
    op.execute(importlib.import_module("migrations.versions.0002_v_results").VIEW)
