"""Verdicts leave disturbed and invalid trials out: `farm compare` calls a side with none left invalid with the
reason (and judges them when asked), the nightly job re-runs cells short of clean trials and calls what stays
disturbed invalid, never regressed; baselines are made of clean trials only. Stored results, no inference."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.bench import summarize
from orchestrator.compare import compare_runs
from orchestrator.inventory import Host
from orchestrator.nightly.runner import Settings, judge, short_of_clean_trials
from orchestrator.results.baselines import baselines
from orchestrator.store import open_store, records
from orchestrator.store.db import Store
from tests.seed_data import _model, samples_around

DISTURBED = {"disturbed": True, "cpu_share": 0.45, "other_load": 0.9,
             "disturbed_reason": "cpu_share 0.45 < 0.80 (waited for a CPU 55% of the time it wanted one)"}
CLEAN = {"disturbed": False, "cpu_share": 0.99, "other_load": 0.01, "disturbed_reason": None}
CUT_SHORT = {"valid": False, "broken": [{"rule": "max_seconds"}], "reason": "timed loop cut short by max_seconds"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One SQLite store for the module (each test reads only its own runs): the reads are dialect-neutral,
    and v_results' new columns are checked on PostgreSQL in test_interference_run.py."""
    opened = open_store(f"sqlite:///{tmp_path_factory.mktemp('verdicts') / 'farm.db'}")
    try:
        yield opened
    finally:
        opened.close()


def trial(store: Store, ms: float, interference: dict | None = CLEAN, validity: dict | None = None) -> int:
    """One run holding one cell (h1, model m, cpu, 1 thread), its result at ``ms``; returns the run id."""
    host_id = records.upsert_host(store, Host(name="h1", transport="local"))
    facts_id = records.add_facts(store, host_id, {"cpu_count": 2})
    model = _model(store, "m", "conv_stack", 0.1, 1000, {"layers": 1})
    run_id = records.create_run(store, "m", "inv.yaml", [])
    [job_id] = records.add_jobs(store, run_id, [{
        "host_id": host_id, "model_id": model.id, "delegate": "cpu", "threads": 1, "power_mode": None,
        "usb_port": None, "usb_speed": None, "cell_key": f"h1|{model.sha256[:16]}|cpu|1|-|-", "timing": {}}])
    samples = samples_around(ms)
    doc = {"runtime": {"name": "tflite_runtime", "version": "2.14.0"},
           "timing": {"samples_ns": samples, "summary": summarize(samples), "init_ms": 1.0,
                      "first_inference_ms": ms, "warmup_runs": 1}}
    if interference is not None:
        doc["interference"] = interference
    if validity is not None:
        doc["validity"] = validity
    records.store_result(store, job_id, facts_id, "3.11", doc)
    records.finish_run(store, run_id, "finished")
    return run_id


def test_compare_leaves_disturbed_trials_out_and_says_why(store: Store) -> None:
    base = [trial(store, 10.0), trial(store, 10.05), trial(store, 9.95)]
    slow = [trial(store, 20.0, DISTURBED), trial(store, 20.1, DISTURBED), trial(store, 19.9, DISTURBED)]
    [row] = compare_runs(store, base, slow)
    assert row.state == "invalid" and row.detail.startswith("no result in B: disturbed: cpu_share 0.45"), row
    assert "(3 of 3 trials)" in row.detail
    [asked] = compare_runs(store, base, slow, include_disturbed=True)
    assert asked.state == "regressed" and asked.ratio == pytest.approx(2.0, rel=0.02), asked


def test_compare_leaves_invalid_results_out_unless_asked(store: Store) -> None:
    base = [trial(store, 10.0), trial(store, 10.05)]
    short = [trial(store, 5.0, validity=CUT_SHORT), trial(store, 5.02, validity=CUT_SHORT)]
    [row] = compare_runs(store, base, short)
    assert row.state == "invalid" and "invalid: timed loop cut short by max_seconds" in row.detail, row
    assert compare_runs(store, base, short, include_invalid=True)[0].state == "improved"


def test_the_nightly_judges_clean_trials_and_calls_too_few_invalid(store: Store) -> None:
    settings = Settings(trials=3)
    assert settings.clean_trials_needed == 2
    one_disturbed = [trial(store, 10.0), trial(store, 30.0, DISTURBED), trial(store, 10.1)]
    assert short_of_clean_trials(store, one_disturbed, 2) == set()
    [first] = judge(store, "m", one_disturbed, None, settings)
    assert first.verdict.state == "new" and first.verdict.current_ms == pytest.approx(10.05, rel=0.01)
    # The baseline is the clean trials only: the disturbed 30 ms run is not part of it.
    [row] = baselines(store).values()
    assert row.run_ids == [one_disturbed[0], one_disturbed[2]]
    two_disturbed = [trial(store, 30.0, DISTURBED), trial(store, 30.0, DISTURBED), trial(store, 10.0)]
    assert len(short_of_clean_trials(store, two_disturbed, 2)) == 1
    [second] = judge(store, "m", two_disturbed, None, settings)
    assert second.verdict.state == "invalid", second.verdict
    assert second.verdict.detail == f"disturbed: {DISTURBED['disturbed_reason']} (2 of 3 trials)"
    assert second.verdict.current_ms is None and second.verdict.ratio is None


def test_results_of_agents_that_did_not_measure_are_judged_as_before(store: Store) -> None:
    base = [trial(store, 10.0, None), trial(store, 10.05, None)]
    slow = [trial(store, 20.0, None), trial(store, 20.1, None)]
    assert compare_runs(store, base, slow)[0].state == "regressed"
