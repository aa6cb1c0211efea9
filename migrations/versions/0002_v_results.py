"""v_results: one flat row per job with its context, for ad-hoc SQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 16:40:00
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Plain SQL that SQLite and PostgreSQL both accept; columns documented in README.md.
VIEW = """
CREATE VIEW v_results AS
SELECT
    r.id AS run_id, r.matrix AS matrix, r.started_at AS run_started_at,
    j.id AS job_id, j.status AS status, j.reason AS reason, j.error_kind AS error_kind,
    j.attempt AS attempt, j.started_at AS started_at, j.finished_at AS finished_at,
    h.name AS host, h.board AS board,
    m.name AS model, m.family AS model_family, m.sha256 AS model_sha256,
    m.ops_per_inference AS ops_per_inference, m.needs_edgetpu AS model_needs_edgetpu,
    j.delegate AS delegate, j.threads AS threads,
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
    op.execute(VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW v_results")
