"""Pipelined segments and multi-model jobs on the CPU, with real tflite-runtime and real chained models."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from agent.bench import run_job
from agent.pipeline import PipelineRunner
from agent.result_schema import validate_result
from agent.schema import SchemaError, make_job
from orchestrator.models.segments import build_conv_stack_segments, segment_bounds
from orchestrator.models.synthetic import build_conv_stack

tflite = pytest.importorskip("tflite_runtime.interpreter")

# 3x3 tensors keep the pooled output sensitive to the input (on 128x128 a 1-pixel input averages away to 0);
# 24x24 gives the timed jobs a few ms of work per layer. Same generator, same code path as the seed's stacks.
SMALL = {"size": 3, "filters": 8, "kernel": 3}
TIMED = {"size": 24, "filters": 8, "kernel": 3}
QUICK = {"warmup_min_runs": 2, "warmup_min_seconds": 0.0, "min_runs": 12, "min_seconds": 0.0}


def interpreter(data: bytes):  # type: ignore[no-untyped-def]
    one = tflite.Interpreter(model_content=data, num_threads=1)
    one.allocate_tensors()
    return one


def run_whole(data: bytes, value: np.ndarray) -> np.ndarray:
    model = interpreter(data)
    model.set_tensor(model.get_input_details()[0]["index"], value)
    model.invoke()
    return model.get_tensor(model.get_output_details()[0]["index"])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("segments")
    paths = {}
    for label, params in (("", SMALL), ("timed-", TIMED)):
        paths[f"{label}whole"] = folder / f"{label}whole.tflite"
        paths[f"{label}whole"].write_bytes(build_conv_stack(5, **params))
        for count in (2, 3):
            for number, data in enumerate(build_conv_stack_segments(5, count, **params)):
                paths[f"{label}{number}of{count}"] = folder / f"{label}conv_stack-l5_segment_{number}_of_{count}.tflite"
                paths[f"{label}{number}of{count}"].write_bytes(data)
    return paths


def part(path: Path) -> dict[str, str]:
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def test_segment_bounds_cover_every_layer_once() -> None:
    assert segment_bounds(5, 2) == [(0, 2), (2, 5)]
    assert segment_bounds(300, 3) == [(0, 100), (100, 200), (200, 300)]
    with pytest.raises(ValueError, match="cannot cut 2 layer"):
        build_conv_stack_segments(2, 3, **SMALL)


@pytest.mark.parametrize("count", [2, 3])
def test_pipeline_output_equals_the_unsegmented_model(models: dict[str, Path], count: int) -> None:
    whole = models["whole"].read_bytes()
    runner = PipelineRunner([interpreter(models[f"{k}of{count}"].read_bytes()) for k in range(count)])
    rng = np.random.default_rng(7)
    inputs = [rng.integers(-128, 128, size=(1, 1, 1, 3), dtype=np.int64).astype(np.int8) for _ in range(6)]
    for value in inputs:  # all pushed before any is read: several inferences in flight at once
        assert runner.push([value])
    runner.push([])
    outputs = [runner.pop() for _ in inputs]
    assert runner.pop() is None  # drained after the empty push, as pycoral's pop() returns None
    expected = [run_whole(whole, value) for value in inputs]
    for got, want in zip(outputs, expected, strict=True):
        assert got[0].dtype == np.int8 and np.array_equal(got[0], want)
    # Different inputs give different outputs: the comparison above could have failed.
    assert len({e.tobytes() for e in expected}) > 1
    assert all(len(times) == len(inputs) for times in runner.invoke_ns)
    runner.close()


@pytest.mark.parametrize("count", [2, 3])
def test_each_cut_tensor_equals_the_unsegmented_models_tensor_of_that_name(models: dict[str, Path],
                                                                         count: int) -> None:
    """The tensors that cross a cut (24x24x8; the padded pixel spreads a corner of non-zero values) are the
    whole model's, bit for bit."""
    whole = tflite.Interpreter(model_content=models["timed-whole"].read_bytes(), experimental_preserve_all_tensors=True)
    whole.allocate_tensors()
    value = np.array([[[[90, -77, 33]]]], dtype=np.int8)
    whole.set_tensor(whole.get_input_details()[0]["index"], value)
    whole.invoke()
    by_name = {d["name"]: d["index"] for d in whole.get_tensor_details()}
    tensor = value
    for number in range(count):
        segment = interpreter(models[f"timed-{number}of{count}"].read_bytes())
        segment.set_tensor(segment.get_input_details()[0]["index"], tensor)
        segment.invoke()
        out = segment.get_output_details()[0]
        tensor = segment.get_tensor(out["index"])
        reference = whole.get_tensor(by_name[out["name"]])
        assert np.array_equal(tensor, reference)
        if number < count - 1:
            assert np.count_nonzero(tensor) >= 20  # a real signal crosses the cut, not zeros


def test_segments_that_do_not_chain_are_refused(models: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="segment 1 needs tensor"):
        PipelineRunner([interpreter(models["1of2"].read_bytes()), interpreter(models["0of2"].read_bytes())])


def test_a_pipeline_job_times_steady_state_throughput_and_latency(models: dict[str, Path]) -> None:
    segments = [part(models[f"timed-{k}of3"]) for k in range(3)]
    job = make_job("pipe-1", segments[0]["path"], segments[0]["sha256"], timing=QUICK, segments=segments)
    result = validate_result(run_job(job))
    assert result["status"] == "succeeded", result.get("error")
    pipeline = result["pipeline"]
    assert pipeline["num_segments"] == 3 and [s["sha256"] for s in pipeline["segments"]] == \
        [s["sha256"] for s in segments]
    assert all(s["device"] == "cpu" and s["invoke_median_ms"] > 0 for s in pipeline["segments"])
    latencies = result["timing"]["samples_ns"]
    assert len(latencies) >= QUICK["min_runs"]
    # With 3 in flight, an inference waits for the others: its latency is at least its own stages' work.
    stage_sum = sum(s["invoke_median_ms"] for s in pipeline["segments"])
    assert result["timing"]["summary"]["median_ms"] >= 0.5 * stage_sum
    assert pipeline["throughput_ips"] > 0
    assert result["concurrency"]["mode"] == "host" and result["concurrency"]["locks"] == ["host"]
    assert result["concurrency"]["window_start"] <= result["concurrency"]["window_end"]
    # The timed window's interference, measured as a one-model job's: three stages at once, each its own thread.
    measured = result["interference"]
    assert measured["threads"] == min(3, os.cpu_count() or 1) and 0 < measured["cpu_share"] <= 1
    assert abs(measured["wall_s"] - result["timing"]["timed_seconds"]) < 0.05 and "disturbed" in measured


def test_a_multi_model_job_records_each_models_latency_and_the_cells_throughput(models: dict[str, Path]) -> None:
    two = [part(models["timed-whole"]), part(models["timed-0of3"])]
    job = make_job("multi-1", two[0]["path"], two[0]["sha256"], timing=QUICK, models=two)
    result = validate_result(run_job(job))
    assert result["status"] == "succeeded", result.get("error")
    multi = result["multi_model"]
    rounds = multi["rounds"]
    assert rounds >= QUICK["min_runs"] and [len(m["samples_ns"]) for m in multi["models"]] == [rounds, rounds]
    # The whole stack (5 layers) does five times the work of its first layer alone.
    assert multi["models"][0]["summary"]["median_ms"] > multi["models"][1]["summary"]["median_ms"]
    assert multi["throughput_ips"] == pytest.approx(2 * rounds / result["timing"]["timed_seconds"])
    # A round is the models in turn: its time is the sum of theirs.
    first_round = result["timing"]["samples_ns"][0]
    assert first_round == sum(m["samples_ns"][0] for m in multi["models"])
    # In turn: one model at a time, so the job's one thread is what it wanted; measured around the timed rounds.
    measured = result["interference"]
    assert measured["threads"] == 1 and 0 < measured["cpu_share"] <= 1
    assert abs(measured["wall_s"] - result["timing"]["timed_seconds"]) < 0.05


def test_job_schema_refuses_bad_parts_and_placements(models: dict[str, Path]) -> None:
    one = part(models["whole"])
    with pytest.raises(SchemaError, match="at least 2 segment"):
        make_job("x", one["path"], one["sha256"], segments=[one])
    with pytest.raises(SchemaError, match="placement"):
        make_job("x", one["path"], one["sha256"], models=[one], placement="on-the-moon")
    with pytest.raises(SchemaError, match="names the devices"):
        make_job("x", one["path"], one["sha256"], concurrency={"mode": "per-accelerator"})
    with pytest.raises(SchemaError, match="sha256"):
        make_job("x", one["path"], one["sha256"], models=[{"path": one["path"], "sha256": "nope"}])
