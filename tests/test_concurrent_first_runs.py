"""Two and three `farm run --matrix all` started together on a new database (issue 19 item 2).

They used to race: on SQLite one refused and two quietly ran 8 and 6 of 10 cells with exit 0,
on PostgreSQL one died of a UniqueViolation. Every run must now plan the whole default suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from orchestrator.models.registry import DEFAULT_SUITE
from tests.quick_all import quick_all_matrix


def farm_run(db_url: str, cwd: Path, matrix: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", "run", "--matrix", "all",
                           "--matrix-file", str(matrix), "--db", db_url],
                          capture_output=True, text=True, timeout=600, cwd=cwd, check=False,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("runs", [2, 3])
def test_concurrent_first_runs_each_run_every_cell(db_url: str, tmp_path: Path, runs: int) -> None:
    # `all` at its shortest timing: the race is in building the suite and planning, before any benchmark.
    matrix = quick_all_matrix(tmp_path)
    with ThreadPoolExecutor(runs) as pool:
        done = list(pool.map(lambda _: farm_run(db_url, tmp_path, matrix), range(runs)))
    assert [d.returncode for d in done] == [0] * runs, [d.stdout[-1500:] + d.stderr[-1500:] for d in done]
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM models")).scalar() == len(DEFAULT_SUITE)
            per_run = connection.execute(text(
                "SELECT r.id, r.status, count(j.id), count(DISTINCT j.model_id), "
                "sum(CASE WHEN j.status = 'succeeded' THEN 1 ELSE 0 END) "
                "FROM runs r JOIN jobs j ON j.run_id = r.id GROUP BY r.id, r.status ORDER BY r.id")).all()
    finally:
        engine.dispose()
    assert len(per_run) == runs
    threads = len(range(1, (os.cpu_count() or 1) + 1))
    for run_id, status, jobs, models, succeeded in per_run:
        assert (status, models) == ("finished", len(DEFAULT_SUITE)), run_id
        assert jobs == succeeded == len(DEFAULT_SUITE) * threads, (run_id, jobs, succeeded)
