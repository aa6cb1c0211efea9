"""v_results: run tags and status, model lineage and compiler, toolchain versions and conditions

Revision ID: 0009
Revises: 0010
Create Date: 2026-11-23 10:00:00
"""
import importlib

from alembic import op

revision = "0009"
down_revision = "0010"
branch_labels = None
depends_on = None

# JSON fields the view lifts out of host_facts.facts (f) and results.detail (res): column -> (source, path, type).
# The agent writes them (agent/facts.py, agent/bench.py); a field an older agent did not write reads NULL.
JSON_COLUMNS = {
    "os": ("f.facts", ("os",), "text"),
    "kernel": ("f.facts", ("kernel",), "text"),
    "l4t": ("f.facts", ("l4t",), "text"),
    "jetpack": ("f.facts", ("jetpack",), "text"),
    "libedgetpu": ("f.facts", ("edgetpu", "library", "version"), "text"),
    "agent_version": ("f.facts", ("agent_version",), "text"),
    "cpu_count": ("f.facts", ("cpu_count",), "int"),
    "usb_port_measured": ("res.detail", ("edgetpu", "port"), "text"),
    "edgetpu_device": ("res.detail", ("edgetpu", "device"), "text"),
    "temp_before_c": ("res.detail", ("conditions", "before", "max_temperature_c"), "float"),
    "temp_after_c": ("res.detail", ("conditions", "after", "max_temperature_c"), "float"),
}
SQL_TYPES = {"text": "TEXT", "int": "INTEGER", "float": "FLOAT"}


def json_field(dialect: str, source: str, path: tuple, kind: str) -> str:
    if dialect == "postgresql":
        # The columns are json: walk with ->, take the last step as text with ->>.
        expr = source + "".join(f" -> '{step}'" for step in path[:-1]) + f" ->> '{path[-1]}'"
    else:
        expr = f"json_extract({source}, '$.{'.'.join(path)}')"
    return f"CAST({expr} AS {SQL_TYPES[kind]})"


def view_sql(dialect: str, columns: dict | None = None, extra_selects: tuple = (), jsonb_once: bool = False) -> str:
    """The view's CREATE statement; later migrations pass their own columns (a superset of JSON_COLUMNS,
    lifted from f.facts, res.detail, j.job_doc or r.plan) and whole select expressions ("r.labels AS x").

    ``jsonb_once`` (PostgreSQL, migration 0024 on): the result document and the facts are cast to jsonb once
    per row and the columns lifted from that; ``->`` on a json column parses the whole text at every step."""
    columns = JSON_COLUMNS if columns is None else columns
    lifted = ",\n    ".join(
        [f"{json_field(dialect, *spec)} AS {name}" for name, spec in columns.items()] + list(extra_selects)
    )
    once = ""
    if jsonb_once and dialect == "postgresql":
        lifted = lifted.replace("res.detail", "res_doc.d").replace("f.facts", "f_doc.d")
        once = ("LEFT JOIN LATERAL (SELECT CAST(res.detail AS jsonb) AS d) res_doc ON true\n"
                "LEFT JOIN LATERAL (SELECT CAST(f.facts AS jsonb) AS d) f_doc ON true\n")
    return f"""
CREATE VIEW v_results AS
SELECT
    r.id AS run_id, r.matrix AS matrix, r.started_at AS run_started_at, r.status AS run_status,
    CAST(r.tags AS TEXT) AS run_tags,
    j.id AS job_id, j.status AS status, j.reason AS reason, j.error_kind AS error_kind,
    j.attempt AS attempt, j.started_at AS started_at, j.finished_at AS finished_at,
    h.name AS host, h.board AS board,
    m.name AS model, m.family AS model_family, m.sha256 AS model_sha256,
    m.ops_per_inference AS ops_per_inference, m.needs_edgetpu AS model_needs_edgetpu,
    m.source AS model_source, m.size_bytes AS model_size_bytes,
    COALESCE(sm.name, m.name) AS source_model, COALESCE(sm.sha256, m.sha256) AS source_model_sha256,
    m.compiler_version AS compiler_version,
    j.delegate AS delegate, j.threads AS threads,
    j.power_mode AS power_mode, res.power_mode_measured AS power_mode_measured,
    j.usb_port AS usb_port, j.usb_speed AS usb_speed_planned, res.usb_speed_measured AS usb_speed_measured,
    res.throttled AS throttled, res.avg_power_w AS avg_power_w, res.energy_mj AS energy_mj,
    res.runtime_name AS runtime, res.runtime_version AS runtime_version, res.python_version AS python,
    {lifted},
    res.count AS samples, res.mean_ms AS mean_ms, res.median_ms AS median_ms, res.p90_ms AS p90_ms,
    res.p99_ms AS p99_ms, res.min_ms AS min_ms, res.max_ms AS max_ms, res.std_ms AS std_ms,
    res.init_ms AS init_ms, res.first_inference_ms AS first_inference_ms, res.warmup_runs AS warmup_runs,
    CASE WHEN res.median_ms > 0 THEN m.ops_per_inference / (res.median_ms * 1000000.0) END AS gops,
    res.facts_id AS facts_id
FROM jobs j
JOIN runs r ON r.id = j.run_id
JOIN hosts h ON h.id = j.host_id
JOIN models m ON m.id = j.model_id
LEFT JOIN models sm ON sm.id = m.source_model_id
LEFT JOIN results res ON res.job_id = j.id
LEFT JOIN host_facts f ON f.id = res.facts_id
{once}"""


def upgrade() -> None:
    op.execute("DROP VIEW v_results")
    op.execute(view_sql(op.get_bind().dialect.name))


def downgrade() -> None:
    op.execute("DROP VIEW v_results")
    op.execute(importlib.import_module("migrations.versions.0003_power_usb").V_RESULTS)
