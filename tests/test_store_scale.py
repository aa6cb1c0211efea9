"""The store at scale: farm's cell pivot agrees with v_results, the migration's indexes exist and are used,
the fast revision check agrees with alembic's, and bench/store_scale.py runs end to end at a small scale.

Timings are the bench's business: this checks what it measures is measured, never how fast.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from orchestrator.errors import FarmError
from orchestrator.own_packages import MIGRATIONS_DIR
from orchestrator.results.pivot import cell_pivot, cell_pivot_sql
from orchestrator.store import open_store
from orchestrator.store.db import head_revision
from orchestrator.store.revisions import head_from_files
from tests.seed_data import load_seed, load_seed_threads

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "store_scale.py"


def test_the_migration_heads_read_from_the_files_are_alembics(tmp_path: Path) -> None:
    assert head_from_files(MIGRATIONS_DIR / "versions") == head_revision()
    # Two heads (a branch), or a merge revision: not clear-cut, so alembic is asked instead.
    for name, body in (("a.py", 'revision = "a"\ndown_revision = None\n'),
                       ("b.py", 'revision = "b"\ndown_revision = "a"\n'),
                       ("c.py", 'revision = "c"\ndown_revision = "a"\n')):
        (tmp_path / name).write_text(body)
    assert head_from_files(tmp_path) is None
    (tmp_path / "c.py").write_text('revision = "c"\ndown_revision = "b"\n')
    assert head_from_files(tmp_path) == "c"
    (tmp_path / "d.py").write_text('revision = "d"\ndown_revision = ("b", "c")\n')
    assert head_from_files(tmp_path) is None


def test_the_cell_pivot_matches_a_group_by_on_v_results(db_url: str) -> None:
    store = open_store(db_url)
    try:
        load_seed(store)
        load_seed_threads(store)
        with store.engine.connect() as connection:
            view = connection.execute(text(
                "SELECT board, model_family, delegate, threads, power_mode, COUNT(*), AVG(median_ms) FROM v_results "
                "WHERE status = 'succeeded' GROUP BY board, model_family, delegate, threads, power_mode")).all()
        ours = cell_pivot(store)
        by_host = cell_pivot(store, ("host", "threads"))
    finally:
        store.close()
    assert len(view) > 5 and len(ours) == len(view)
    expected = {tuple(r[:5]): (r[5], float(r[6])) for r in view}
    for row in ours:
        count, mean = expected[(row["board"], row["model_family"], row["delegate"], row["threads"],
                                row["power_mode"])]
        assert row["results"] == count and math.isclose(row["mean_median_ms"], mean, rel_tol=1e-9)
    # Another cut of the same results: the counts add up to every succeeded result.
    assert sum(r["results"] for r in by_host) == sum(c for c, _ in expected.values())
    assert {r["host"] for r in by_host} == {"nano-1", "rpi3b+", "jetson-nano"}


def test_a_pivot_by_an_unknown_dimension_is_refused() -> None:
    with pytest.raises(FarmError, match="cannot pivot by colour"):
        cell_pivot_sql(("board", "colour"))


def test_the_covering_indexes_exist_and_sqlite_answers_the_pivot_from_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'farm.db'}"
    store = open_store(url)
    try:
        with store.engine.connect() as connection:
            names = dict(connection.execute(text("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")).all())
            plan = " | ".join(r[-1] for r in connection.execute(text("EXPLAIN QUERY PLAN " + cell_pivot_sql())))
    finally:
        store.close()
    assert names["ix_jobs_status_cell"] == "jobs" and names["ix_results_job_median"] == "results"
    assert "COVERING INDEX ix_jobs_status_cell" in plan and "COVERING INDEX ix_results_job_median" in plan, plan


def bench_schemas(pg_server: str) -> int:
    from sqlalchemy import create_engine

    engine = create_engine(pg_server)
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM information_schema.schemata "
                                        "WHERE schema_name LIKE 'farm\\_bench\\_%'")).scalar_one()
    engine.dispose()
    return int(count)


def test_the_bench_runs_at_a_small_scale_on_both_databases(tmp_path: Path, pg_server: str) -> None:
    schemas_before = bench_schemas(pg_server)
    out = tmp_path / "store.json"
    done = subprocess.run([sys.executable, str(BENCH), "--scale", "0.0003", "--repeats", "1", "--pg", pg_server,
                           "--json", str(out)], capture_output=True, text=True, timeout=900, check=False,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = json.loads(out.read_text())
    assert set(found) == {"sqlite", "postgresql"}
    for database in found.values():
        written = database["written"]
        assert written["results"] >= 300 and written["samples"] == 10 * written["results"]
        assert len(database["ingest_ms"]) == 200 and all(v > 0 for v in database["ingest_ms"])
        assert database["same_pivot"] is True
        assert len(database["cli_s"]) == 3 and all(len(v) == 1 for v in database["cli_s"].values())
    assert "pivot, farm's shape" in done.stdout and "report --since" in done.stdout
    assert "at scale 0.0003, not the goals' 1" in done.stdout
    assert bench_schemas(pg_server) == schemas_before  # its PostgreSQL schema is gone
