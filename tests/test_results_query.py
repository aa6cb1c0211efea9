"""One way to read results: the filter every reader takes, and the column names every export writes."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.errors import FarmError
from orchestrator.results import ResultFilter, Selection, collect, grouped, results_frame
from orchestrator.store import open_store
from tests.seed_data import load_seed


@pytest.fixture
def two_seeded_runs(db_url: str):  # type: ignore[no-untyped-def]
    store = open_store(db_url)
    first = load_seed(store, host="nano-1")
    second = load_seed(store, host="nano-2")
    yield store, first, second
    store.close()


def farm(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def header(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return next(csv.reader(handle))


def test_results_csv_and_report_export_write_the_same_columns_and_rows(two_seeded_runs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, *_ = two_seeded_runs
    listed, exported = tmp_path / "results.csv", tmp_path / "report.csv"
    farm("results", "--db", store.url, "--format", "csv", "-o", str(listed))
    farm("report", "--db", store.url, "--all-runs", "--export", str(exported), "--quiet")
    assert header(listed) == header(exported)
    assert {"run_id", "job_id", "model_family", "model_sha256", "usb_speed", "gops"} <= set(header(listed))
    assert not {"run", "job", "family"} & set(header(listed)), "the short names are the table's only"
    assert listed.read_text() == exported.read_text(), "the same selection gives the same rows, in the same order"
    rows = list(csv.DictReader(listed.open(newline="")))
    assert len(rows) == 2 * 27 and {r["host"] for r in rows} == {"nano-1", "nano-2"}


def test_results_json_names_columns_as_the_view_does(two_seeded_runs) -> None:  # type: ignore[no-untyped-def]
    store, first, _ = two_seeded_runs
    rows = json.loads(farm("results", "--db", store.url, "--format", "json", "--run", str(first),
                           "--delegate", "edgetpu", "--usb-speed", "480"))
    assert rows and {(r["run_id"], r["host"], r["delegate"], r["usb_speed"]) for r in rows} == {
        (first, "nano-1", "edgetpu", 480)}
    assert {r["model_family"] for r in rows} >= {"conv_stack"}


def test_results_takes_the_run_criteria_report_does(two_seeded_runs) -> None:  # type: ignore[no-untyped-def]
    store, first, _ = two_seeded_runs
    hosts = lambda *args: {r["host"] for r in json.loads(farm("results", "--db", store.url, "--format", "json",
                                                                  *args))}
    assert hosts() == {"nano-1", "nano-2"}
    assert hosts("--latest") == {"nano-2"}
    assert hosts("--run", str(first), "--latest") == {"nano-1"}, "latest of the runs the other options leave"
    assert hosts("--tag", "seed", "--since", "2000-01-01") == {"nano-1", "nano-2"}
    assert hosts("--until", "2000-01-01") == set()


def jobs_in_cells(cells) -> int:  # type: ignore[no-untyped-def]
    return sum(len(c.trials) + len(c.failures) + c.skipped for c in cells.values())


@pytest.mark.parametrize("selected", [
    ResultFilter(), ResultFilter(hosts=("nano-2",)), ResultFilter(models=("conv_stack",)),
    ResultFilter(models=("conv_stack-l1",)), ResultFilter(delegates=("edgetpu",)), ResultFilter(threads=(1,)),
    ResultFilter(power_modes=("5W",)), ResultFilter(usb_speeds=(480,)), ResultFilter(latest=True),
    ResultFilter(tags=("seed",), delegates=("cpu",), power_modes=("5W",)),
], ids=repr)
def test_frames_and_trials_select_the_same_jobs(two_seeded_runs, selected: ResultFilter) -> None:  # type: ignore[no-untyped-def]
    store, *_ = two_seeded_runs
    every = replace(selected, status="all")
    frame = results_frame(store, every)
    cells = collect(store, every)
    assert jobs_in_cells(cells) == len(frame)
    assert {c.label.split(" · ")[0] for c in cells.values()} == set(frame["host"])
    assert sum(len(c.trials) for c in collect(store, selected).values()) == len(results_frame(store, selected))
    if selected != ResultFilter():
        assert len(frame) < 2 * 27, "each of these filters leaves some jobs out"


def test_one_type_under_every_documented_name(two_seeded_runs) -> None:  # type: ignore[no-untyped-def]
    from orchestrator.report import Selection as ReportSelection
    from orchestrator.report import load_results

    store, first, _ = two_seeded_runs
    assert Selection is ResultFilter is ReportSelection
    assert load_results(store, Selection(runs=(first,))).equals(results_frame(store, ResultFilter(runs=(first,))))
    with pytest.raises(FarmError, match="status must be one of"):
        ResultFilter(status="done")


def test_group_by_takes_the_short_family_name(two_seeded_runs) -> None:  # type: ignore[no-untyped-def]
    store, *_ = two_seeded_runs
    frame = results_frame(store)
    assert grouped(frame, ["family"])["model_family"].tolist() == grouped(frame, ["model_family"])[
        "model_family"].tolist() == sorted(set(frame["model_family"]))
