"""`farm report` reads each cell's newest result in SQL: it must choose the rows, in the order and with the
types, that pandas' ``newest_per_cell`` chooses from every row, on SQLite and PostgreSQL; and the report
built from those rows must read exactly as the one built from every row."""

from __future__ import annotations

import io
from dataclasses import replace

import pandas as pd
import pytest
from rich.console import Console

from orchestrator.report import Selection, build_report, inputs, tables
from orchestrator.report.columns import REPORT_COLUMNS
from orchestrator.report.render import to_terminal
from orchestrator.results import results_frame
from orchestrator.store import open_store, records
from orchestrator.store.schema import JobRow
from tests.seed_data import load_seed, samples_around, summarize


def _jobs_of(store, run_id: int) -> list[dict]:  # type: ignore[no-untyped-def]
    with store.session() as session:
        rows = session.query(JobRow).filter(JobRow.run_id == run_id).order_by(JobRow.id).all()
        return [{"host_id": r.host_id, "model_id": r.model_id, "delegate": r.delegate, "threads": r.threads,
                 "power_mode": r.power_mode, "usb_port": r.usb_port, "usb_speed": r.usb_speed, "timing": {},
                 "cell_key": r.cell_key} for r in rows]


def _result(ms: float, **extra: object) -> dict:
    samples = samples_around(ms)
    return {"runtime": {"name": "tflite_runtime", "version": "2.1.0"}, **extra,
            "timing": {"samples_ns": samples, "summary": summarize(samples), "init_ms": 50.0,
                       "first_inference_ms": ms * 1.5, "warmup_runs": 1}}


@pytest.fixture
def nightlies(db_url: str):  # type: ignore[no-untyped-def]
    """The seed's run, then two more of a few of its cells: run 2 measured three cells again with the
    interference figures the seed's results lack, run 3 measured the same three twice each (a tie within one
    run) without them, so cpu_share is NULL in every newest row but not in every row; run 3 also failed one
    cell and skipped another, and carries labels."""
    store = open_store(db_url)
    first = load_seed(store)
    cells = _jobs_of(store, first)
    second = records.create_run(store, "nightly", "lab.yaml", ["nightly"])
    again = cells[:6:2]
    for n, (job_id, job) in enumerate(zip(records.add_jobs(store, second, again), again, strict=True)):
        records.store_result(store, job_id, None, "3.6.9", _result(
            10.0 + n, interference={"cpu_share": 0.9 + n / 1000, "other_load": 0.25}))
    third = records.create_run(store, "nightly", "lab.yaml", ["nightly"], labels={"commit": "abc"})
    twice = cells[:6:2] + [{**job, "cell_key": job["cell_key"] + "|again"} for job in cells[:6:2]] + cells[7:9]
    job_ids = records.add_jobs(store, third, twice)
    for n, job_id in enumerate(job_ids[:6]):
        records.store_result(store, job_id, None, "3.6.9", _result(20.0 + n))
    records.mark_job(store, job_ids[6], "failed", reason="the board went away")
    records.mark_job(store, job_ids[7], "skipped", reason="no Edge TPU at that port")
    yield store, (first, second, third)
    store.close()


def test_the_newest_rows_are_pandas_choice_in_its_order_and_types(nightlies) -> None:  # type: ignore[no-untyped-def]
    store, runs = nightlies
    selection = Selection(runs=runs)
    every = results_frame(store, replace(selection, status="succeeded"), REPORT_COLUMNS, numeric_kinds=True)
    expected = tables.newest_per_cell(every)
    newest = results_frame(store, replace(selection, status="succeeded"), REPORT_COLUMNS,
                           newest_per=inputs.NEWEST_CELL, numeric_kinds=True)
    assert len(every) > len(newest) > 0 and set(newest["run_id"]) == {runs[0], runs[2]}
    pd.testing.assert_frame_equal(newest, expected)
    # The ties: run 3's second job of a cell is the one shown; the seed's NULL cpu_share is float, as in `every`.
    assert every["cpu_share"].notna().any() and newest["cpu_share"].isna().all()
    assert newest["cpu_share"].dtype == every["cpu_share"].dtype == "float64"
    tied = newest[newest["run_id"] == runs[2]]
    assert sorted(tied["median_ms"].round().tolist()) == [23.0, 24.0, 25.0]


def test_the_report_from_the_newest_rows_reads_as_the_one_from_every_row(  # type: ignore[no-untyped-def]
        nightlies, monkeypatch: pytest.MonkeyPatch) -> None:
    store, runs = nightlies
    reports = []
    for forced in (False, True):
        def read(store, selection, *, every_row, include_invalid, forced=forced):  # type: ignore[no-untyped-def]
            got = READ(store, selection, every_row=every_row or forced, include_invalid=include_invalid)
            assert (got.frame is not None) == forced  # the way it was meant to read
            return got

        monkeypatch.setattr(inputs, "read", read)
        out = io.StringIO()
        to_terminal(build_report(store, Selection(runs=runs), with_plots=False),
                    Console(file=out, width=200, color_system=None))
        reports.append(out.getvalue())
    assert reports[0] == reports[1]
    assert "1 failed, 1 skipped" in reports[0] and f"Run {runs[2]}: commit=abc" in reports[0]


READ = inputs.read
