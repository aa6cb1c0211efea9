"""The store at scale: farm's cell pivot agrees with v_results and reads the cell totals (migration 0024),
which each stored result is added to once and the migration back-fills,
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
from sqlalchemy import inspect, text

from agent.bench import summarize
from orchestrator.errors import FarmError
from orchestrator.inventory import Host
from orchestrator.own_packages import MIGRATIONS_DIR
from orchestrator.results.pivot import cell_pivot, cell_pivot_sql
from orchestrator.store import open_store, records
from orchestrator.store.db import Store, head_revision
from orchestrator.store.jobs import ingest_result
from orchestrator.store.revisions import head_from_files
from orchestrator.store.schema import ModelRow
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


def test_the_pivot_reads_the_cell_totals_not_the_results(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'farm.db'}"
    store = open_store(url)
    try:
        with store.engine.connect() as connection:
            plan = " | ".join(r[-1] for r in connection.execute(text("EXPLAIN QUERY PLAN " + cell_pivot_sql())))
    finally:
        store.close()
    assert "SCAN c" in plan and "results" not in plan and "jobs" not in plan, plan


def cell_totals(store: Store) -> dict[tuple[object, ...], tuple[int, float]]:
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT host_id, model_id, delegate, threads, power_mode, results, "
                                       "total_median_ms FROM cell_totals")).all()
    return {tuple(r[:5]): (r[5], r[6]) for r in rows}


def test_each_stored_result_is_counted_once_in_its_cell(db_url: str) -> None:
    """ingest_result adds to the cell in the result's own transaction: a second delivery adds nothing."""
    store = open_store(db_url)
    try:
        host_id = records.upsert_host(store, Host(name="nano-1", transport="ssh", address="127.0.0.1", board="jetson-nano"))
        with store.session() as session:
            model = ModelRow(sha256="a" * 64, name="m1", family="conv_stack", params={}, source="generated",
                             path="/m1.tflite", size_bytes=1, inputs=[], outputs=[])
            session.add(model)
            session.commit()
            model_id = model.id
        run_id = records.create_run(store, "m", "inv.yaml", [])
        cells = [{"host_id": host_id, "model_id": model_id, "cell_key": f"c{i}", "delegate": "cpu", "threads": t,
                  "timing": {}, "power_mode": mode} for i, (t, mode) in enumerate([(1, None), (1, None), (2, "5W")])]
        job_ids = records.add_jobs(store, run_id, cells)
        for job_id, median in zip(job_ids, (4.0, 6.0, 3.0), strict=True):
            values = [int(median * 1e6)] * 3
            result = {"job_id": str(job_id), "status": "succeeded", "runtime": {"name": "tflite_runtime"},
                      "timing": {"samples_ns": values, "summary": summarize(values), "init_ms": 1.0,
                                 "first_inference_ms": 1.0, "warmup_runs": 1}}
            assert ingest_result(store, job_id, 1, f"{job_id}.1", None, "3.11", result)
            assert not ingest_result(store, job_id, 1, f"{job_id}.1", None, "3.11", result)
        totals = cell_totals(store)
        pivot = cell_pivot(store, ("threads", "power_mode"))
    finally:
        store.close()
    assert totals == {(host_id, model_id, "cpu", 1, ""): (2, 10.0), (host_id, model_id, "cpu", 2, "5W"): (1, 3.0)}
    assert pivot == [{"threads": 1, "power_mode": None, "results": 2, "mean_median_ms": 5.0},
                     {"threads": 2, "power_mode": "5W", "results": 1, "mean_median_ms": 3.0}]


def test_migration_0024_back_fills_the_cell_totals_from_the_stored_results(db_url: str) -> None:
    from alembic import command

    from orchestrator.store.db import _alembic_config

    store = open_store(db_url)
    try:
        load_seed(store)
        load_seed_threads(store)
        written = cell_totals(store)
        config = _alembic_config(db_url)
        command.downgrade(config, "0023")
        with store.engine.connect() as connection:
            assert "cell_totals" not in inspect(connection).get_table_names()
        command.upgrade(config, "head")
        back_filled = cell_totals(store)
    finally:
        store.close()
    assert len(written) > 5 and back_filled.keys() == written.keys()
    for key, (count, total) in written.items():
        assert back_filled[key][0] == count and math.isclose(back_filled[key][1], total, rel_tol=1e-9)


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


def test_the_bench_keeps_its_database_and_reuses_it_without_the_last_ingest(tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    runs = []
    for _ in range(2):
        out = tmp_path / f"store{len(runs)}.json"
        done = subprocess.run([sys.executable, str(BENCH), "--scale", "0.0003", "--repeats", "1", "--databases",
                               "sqlite", "--keep", str(keep), "--json", str(out)], capture_output=True, text=True,
                              timeout=900, check=False, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        runs.append((done.stdout, json.loads(out.read_text())["sqlite"]))
    (first_out, first), (second_out, second) = runs
    assert "reusing" not in first_out and "reusing the database kept in" in second_out
    assert second["written"] == first["written"] and second["fill_s"] == first["fill_s"]  # not filled again
    # The first run's ingest run is gone: --latest finds the fill's newest run again, the pivots still agree.
    assert second["same_pivot"] is True and len(second["ingest_ms"]) == 200
    store = open_store(f"sqlite:///{keep / 'store-0_0003.db'}")
    try:
        with store.engine.connect() as connection:
            assert connection.execute(text("SELECT COUNT(*) FROM runs WHERE matrix = 'bench-ingest'")).scalar() == 1
            assert connection.execute(text("SELECT COUNT(*) FROM cell_totals WHERE results <= 0")).scalar() == 0
    finally:
        store.close()
