"""`farm compare`: two runs, or a run against its baselines, cell by cell, with the nightly job's verdict."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from agent.bench import summarize
from orchestrator.cli import app
from orchestrator.compare import compare_runs, compare_to_baselines, parse_runs
from orchestrator.errors import FarmError
from orchestrator.inventory import Host
from orchestrator.results import collect_runs
from orchestrator.results.baselines import set_baselines
from orchestrator.store import open_store, records
from orchestrator.store.schema import ModelRow

MODELS = ("conv_stack-l1", "conv_stack-l2", "dense_stack-l100")


def _models(store) -> dict[str, ModelRow]:  # type: ignore[no-untyped-def]
    out = {}
    with store.session() as session:
        for k, name in enumerate(MODELS):
            row = ModelRow(sha256=f"{k:x}" * 64, name=name, family=name.split("-")[0], params={}, source="imported",
                           path="/x", size_bytes=1, inputs=[], outputs=[], ops_per_inference=10**9)
            session.add(row)
            session.commit()
            out[name] = row
    return out


def latencies(rng: random.Random, center_ms: float, n: int = 60) -> list[int]:
    """Skewed, long-tailed like real invokes: log-normal jitter and an occasional slow one."""
    return [int(center_ms * 1e6 * rng.lognormvariate(0, 0.03) * (1.5 if rng.random() < 0.02 else 1.0))
            for _ in range(n)]


def store_run(store, models, cells: dict[tuple[str, int], float | None], rng: random.Random) -> int:  # type: ignore[no-untyped-def]
    """One run on host h1; each cell (model, threads) gets samples around its centre, or fails (None)."""
    host_id = records.upsert_host(store, Host(name="h1", transport="local"))
    run_id = records.create_run(store, "cmp", "inv.yaml", [])
    keys = list(cells)
    job_ids = records.add_jobs(store, run_id, [
        {"host_id": host_id, "model_id": models[m].id, "delegate": "cpu", "threads": t, "timing": {},
         "cell_key": f"h1|{models[m].sha256[:16]}|cpu|{t}|-|-"} for m, t in keys])
    for job_id, key in zip(job_ids, keys, strict=True):
        centre = cells[key]
        if centre is None:
            records.mark_job(store, job_id, "failed", reason="invoke failed: boom", error_kind="benchmark")
            continue
        samples = latencies(rng, centre)
        records.store_result(store, job_id, None, "3.11", {
            "runtime": {"name": "tflite_runtime", "version": "2.14.0"},
            "timing": {"samples_ns": samples, "summary": summarize(samples), "init_ms": 1.0,
                       "first_inference_ms": centre, "warmup_runs": 1}})
    records.finish_run(store, run_id, "finished")
    return run_id


@pytest.fixture
def two_runs(db_url: str):  # type: ignore[no-untyped-def]
    store = open_store(db_url)
    models = _models(store)
    rng = random.Random(11)
    a = store_run(store, models, {("conv_stack-l1", 1): 10.0, ("conv_stack-l1", 2): 6.0,
                                  ("conv_stack-l2", 1): 20.0, ("dense_stack-l100", 1): 3.0}, rng)
    b = store_run(store, models, {("conv_stack-l1", 1): 10.0, ("conv_stack-l1", 2): 7.2,  # 20% slower
                                  ("conv_stack-l2", 1): 16.0,  # 20% faster
                                  ("dense_stack-l100", 1): None,  # failed
                                  ("dense_stack-l100", 2): 2.0}, rng)  # new cell
    yield store, models, a, b
    store.close()


def _by_label(rows) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {" · ".join(r.label.split(" · ")[1:4]): r for r in rows}


def test_each_cell_gets_medians_ratio_and_a_verdict(two_runs) -> None:  # type: ignore[no-untyped-def]
    store, _, a, b = two_runs
    rows = _by_label(compare_runs(store, [a], [b]))
    assert set(rows) == {"conv_stack-l1 · cpu · 1 thr", "conv_stack-l1 · cpu · 2 thr", "conv_stack-l2 · cpu · 1 thr",
                         "dense_stack-l100 · cpu · 1 thr", "dense_stack-l100 · cpu · 2 thr"}
    same, slower, faster = (rows["conv_stack-l1 · cpu · 1 thr"], rows["conv_stack-l1 · cpu · 2 thr"],
                            rows["conv_stack-l2 · cpu · 1 thr"])
    assert same.state == "unchanged" and 0.97 < same.ratio < 1.03 and same.p_value > 0.002
    assert slower.state == "regressed" and 1.15 < slower.ratio < 1.25 and slower.p_value < 0.002
    assert slower.a_ms == pytest.approx(6.0, rel=0.03) and slower.b_ms == pytest.approx(7.2, rel=0.03)
    assert faster.state == "improved" and 0.75 < faster.ratio < 0.85
    assert rows["dense_stack-l100 · cpu · 1 thr"].state == "invalid"
    assert "boom" in rows["dense_stack-l100 · cpu · 1 thr"].detail
    assert rows["dense_stack-l100 · cpu · 2 thr"].state == "new"
    # The other way round, the slowdown is an improvement and the new cell is missing.
    back = _by_label(compare_runs(store, [b], [a]))
    assert back["conv_stack-l1 · cpu · 2 thr"].state == "improved"
    assert back["dense_stack-l100 · cpu · 2 thr"].state == "missing"


def test_a_small_change_is_not_beyond_noise(two_runs) -> None:  # type: ignore[no-untyped-def]
    store, models, a, _ = two_runs
    c = store_run(store, models, {("conv_stack-l1", 1): 10.3}, random.Random(5))  # 3%: under the 5% minimum
    row = compare_runs(store, [a], [c])[0]
    assert row.state == "unchanged" and 1.0 < row.ratio < 1.06


def test_against_saved_baselines(two_runs) -> None:  # type: ignore[no-untyped-def]
    store, _, a, b = two_runs
    set_baselines(store, list(collect_runs(store, [a]).values()), "accepted")
    rows = _by_label(compare_to_baselines(store, [b]))
    assert rows["conv_stack-l1 · cpu · 2 thr"].state == "regressed"
    assert rows["conv_stack-l1 · cpu · 1 thr"].state == "unchanged"
    assert rows["dense_stack-l100 · cpu · 2 thr"].state == "new"  # no baseline yet


def test_cli(two_runs) -> None:  # type: ignore[no-untyped-def]
    store, _, a, b = two_runs
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(a), str(b), "--db", store.url])
    assert result.exit_code == 0, result.output
    assert "regressed" in result.output and "improved" in result.output
    result = runner.invoke(app, ["compare", str(a), str(b), "--db", store.url, "--fail-on-regression"])
    assert result.exit_code == 1
    result = runner.invoke(app, ["compare", str(a), str(b), "--db", store.url, "--format", "json"])
    states = sorted(row["state"] for row in json.loads(result.output))
    assert states == ["improved", "invalid", "new", "regressed", "unchanged"]
    set_baselines(store, list(collect_runs(store, [a]).values()), "accepted")
    result = runner.invoke(app, ["compare", str(b), "--baseline", "--db", store.url, "--format", "csv"])
    assert result.exit_code == 0 and result.output.count(",regressed,") == 1 and ",new," in result.output
    for argv, words in ((["compare", str(a)], "name a second run B"), (["compare", "x", "2"], "not a run id"),
                        (["compare", str(a), "999"], "B: no run 999"),
                        (["compare", str(a), str(b), "--baseline"], "either B or --baseline")):
        result = runner.invoke(app, [*argv, "--db", store.url])
        assert isinstance(result.exception, FarmError) and words in str(result.exception), argv


def test_parse_runs() -> None:
    assert parse_runs("12", "A") == [12] and parse_runs("12,13, 14", "A") == [12, 13, 14]
    with pytest.raises(FarmError, match="A: '0' names no run"):
        parse_runs("0", "A")


def test_a_model_recompiled_by_a_new_compiler_is_compared_with_its_previous_compile(db_url: str) -> None:
    """"Did anything change since the last compiler?": the same source model, compiled twice, is one cell."""
    store = open_store(db_url)
    try:
        source = _models(store)["conv_stack-l1"]
        compiled = {}
        with store.session() as session:
            for k, version in enumerate(("15.0.340273435", "16.0.384591198")):
                row = ModelRow(sha256=f"c{k}" * 32, name=f"conv_stack-l1+edgetpu-{version}", family="conv_stack",
                               params={}, source="compiled", path="/x", size_bytes=1, inputs=[], outputs=[],
                               ops_per_inference=10**9, needs_edgetpu=True, source_model_id=source.id,
                               compiler_version=version)
                session.add(row)
                session.commit()
                compiled[version] = row
        rng = random.Random(3)
        runs = []
        for version, centre in (("15.0.340273435", 5.0), ("16.0.384591198", 4.0)):
            run_id = store_run(store, {"conv_stack-l1": compiled[version]}, {("conv_stack-l1", 1): centre}, rng)
            runs.append(run_id)
        rows = compare_runs(store, [runs[0]], [runs[1]])
        assert len(rows) == 1 and rows[0].state == "improved" and rows[0].ratio == pytest.approx(0.8, rel=0.03)
        assert "16.0.384591198" in rows[0].label
    finally:
        store.close()
