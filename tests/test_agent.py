"""The agent, run for real: under this Python and as a zipapp under Python 3.6."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agent.bench import run_job, summarize
from agent.schema import SchemaError, make_job, validate_job, validate_result
from orchestrator.deploy import build_agent
from tests.conftest import REPO, SHARED_MODELS, missing_service

PYENV = Path(os.environ.get("PYENV_ROOT", Path("~/.pyenv").expanduser())) if "PYENV_ROOT" in os.environ \
    else Path("/root/.pyenv")
QUICK = {"warmup_min_runs": 1, "warmup_min_seconds": 0.0, "min_runs": 5, "min_seconds": 0.0}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def job_for(path: Path, **kwargs) -> dict:
    timing = {**QUICK, **kwargs.pop("timing", {})}
    return make_job("test-job", str(path), sha(path), timing=timing, **kwargs)


def test_agent_meets_python_36_by_vermin() -> None:
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    done = subprocess.run([vermin, "--no-tips", "-t=3.6-", "--violations", "--eval-annotations",
                           str(REPO / "agent")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def python36() -> str:
    candidate = os.environ.get("FARM_LAB_PYTHON36") or str(PYENV / "versions" / "3.6.15" / "bin" / "python3.6")
    if not Path(candidate).exists():
        missing_service(f"Python 3.6 not found at {candidate} (set FARM_LAB_PYTHON36)")
    return candidate


def test_zipapp_runs_facts_and_a_job_under_real_python_36(tmp_path: Path, shared_model: Path) -> None:
    bundle = build_agent()
    pyz = tmp_path / bundle.file_name
    pyz.write_bytes(bundle.data)
    facts = json.loads(subprocess.run([python36(), str(pyz), "facts"], capture_output=True, text=True,
                                      check=True).stdout)
    assert facts["python"]["version"].startswith("3.6.")
    assert facts["runtime"]["name"] is None and "no TFLite runtime" in facts["runtime"]["error"]
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job_for(shared_model)))
    result = json.loads(subprocess.run([python36(), str(pyz), "run", str(job_file)], capture_output=True,
                                       text=True, check=True).stdout)
    assert result["status"] == "failed"
    assert result["error"]["kind"] == "infrastructure"
    assert "pip install tflite-runtime" in result["error"]["message"]


def test_zipapp_holds_every_agent_module_subpackages_included() -> None:
    bundle = build_agent()
    with zipfile.ZipFile(io.BytesIO(bundle.data)) as archive:
        names = archive.namelist()
        assert all(archive.getinfo(name).date_time == (2020, 1, 1, 0, 0, 0) for name in names)
    expected = sorted(f"agent/{p.relative_to(REPO / 'agent').as_posix()}" for p in (REPO / "agent").rglob("*.py")
                      if "__pycache__" not in p.parts)
    assert any("/" in name[len("agent/"):] for name in expected), "the agent has no subpackage to ship"
    assert names == ["__main__.py", *expected]


def test_a_subpackage_of_the_zipapp_runs_under_real_python_36(tmp_path: Path) -> None:
    """agent/boards/ ships inside the zipapp and works under 3.6, from `facts` and imported on its own."""
    bundle = build_agent()
    pyz = tmp_path / bundle.file_name
    pyz.write_bytes(bundle.data)
    root = tmp_path / "pi"
    for relative, text in (("proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\0"),
                           ("sys/devices/system/cpu/online", "0\n"),
                           ("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "ondemand\n"),
                           ("sys/devices/system/cpu/cpu0/cpufreq/scaling_available_governors", "ondemand powersave\n")):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    env = {**os.environ, "FARM_DEVICE_ROOT": str(root), "FARM_AGENT_DIR": str(tmp_path / "state")}
    facts = json.loads(subprocess.run([python36(), str(pyz), "facts"], capture_output=True, text=True, check=True,
                                      env=env).stdout)
    assert facts["board"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert facts["power"]["driver"] == "governor" and facts["power"]["current"]["governor"] == "ondemand"
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from agent.boards import raspberry_pi, family_for; "
              "print(raspberry_pi.__file__); print(family_for().name)")
    done = subprocess.run([python36(), "-c", script, str(pyz)], capture_output=True, text=True, check=True, env=env)
    module_file, family = done.stdout.split()
    assert module_file == f"{pyz}/agent/boards/raspberry_pi.py" and family == "raspberry_pi"


def test_agent_build_is_reproducible() -> None:
    build_agent.cache_clear()
    first = build_agent()
    build_agent.cache_clear()
    assert build_agent().sha256 == first.sha256


def test_real_inference_result_has_every_sample_and_a_consistent_summary(shared_model: Path) -> None:
    result = validate_result(run_job(job_for(shared_model, threads=2, timing={"min_runs": 12})))
    assert result["status"] == "succeeded", result
    timing = result["timing"]
    samples = timing["samples_ns"]
    assert len(samples) >= 12 and timing["summary"]["count"] == len(samples)
    median_ms = statistics.median(samples) / 1e6
    assert timing["summary"]["median_ms"] == pytest.approx(median_ms)
    assert timing["summary"]["min_ms"] == pytest.approx(min(samples) / 1e6)
    assert timing["summary"]["std_ms"] == pytest.approx(statistics.pstdev(samples) / 1e6)
    assert timing["init_ms"] > 0 and timing["first_inference_ms"] > 0 and timing["warmup_runs"] >= 1
    assert result["runtime"]["name"] == "tflite_runtime"


def test_timing_obeys_minimum_seconds_and_the_cap(shared_model: Path) -> None:
    long = run_job(job_for(shared_model, timing={"min_runs": 1, "min_seconds": 0.3}))
    assert long["timing"]["timed_seconds"] >= 0.3
    capped = run_job(job_for(shared_model, timing={"min_runs": 10 ** 6, "max_seconds": 0.2}))
    assert capped["status"] == "succeeded"
    assert 0.2 <= capped["timing"]["timed_seconds"] < 1.5
    assert len(capped["timing"]["samples_ns"]) < 10 ** 6


def test_warmup_lasts_its_minimum(shared_model: Path) -> None:
    result = run_job(job_for(shared_model, timing={"warmup_min_seconds": 0.25, "warmup_min_runs": 3}))
    assert result["timing"]["warmup_seconds"] >= 0.25 and result["timing"]["warmup_runs"] >= 3


def test_a_model_that_cannot_load_is_a_benchmark_failure() -> None:
    path = SHARED_MODELS / "model_invoking_error.tflite"
    result = run_job(job_for(path))
    assert result["status"] == "failed" and result["error"]["kind"] == "benchmark"
    assert "fake-op-double" in result["error"]["message"]


def test_wrong_hash_and_missing_file_are_infrastructure_failures(tmp_path: Path, shared_model: Path) -> None:
    job = job_for(shared_model)
    job["model"]["sha256"] = "0" * 64
    result = run_job(job)
    assert result["error"]["kind"] == "infrastructure" and "expected 000" in result["error"]["message"]
    job["model"]["path"] = str(tmp_path / "absent.tflite")
    assert "not found" in run_job(job)["error"]["message"]


def test_edgetpu_delegate_says_the_library_is_missing(shared_model: Path) -> None:
    path = SHARED_MODELS / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"
    result = run_job(job_for(path, delegate="edgetpu", options={"edgetpu_device": "usb:0"}))
    assert result["status"] == "failed"
    assert "libedgetpu.so.1" in result["error"]["message"]


@pytest.mark.parametrize("change, words", [
    ({"threads": 0}, "'threads' must be between 1 and 256"),
    ({"threads": True}, "'threads' must be an integer"),
    ({"delegate": "npu"}, "'delegate' must be one of cpu, edgetpu, gpu"),
    ({"schema": 99}, "schema version 99"),
    ({"timing": {"min_runs": -1}}, "'min_runs' must not be negative"),
    ({"timing": {"bogus": 1}}, "unknown field 'bogus'"),
])
def test_bad_jobs_are_refused_with_the_field_named(shared_model: Path, change: dict, words: str) -> None:
    job = {**job_for(shared_model), **change}
    with pytest.raises(SchemaError, match=words.replace("(", r"\(")):
        validate_job(job)
    assert run_job(job)["status"] == "failed"


def test_serve_mode_answers_line_by_line_and_survives_bad_requests(shared_model: Path) -> None:
    requests = [
        "not json",
        json.dumps({"id": 1, "op": "ping"}),
        json.dumps({"id": 2, "op": "nope"}),
        json.dumps({"id": 3, "op": "run", "job": job_for(shared_model)}),
        json.dumps({"id": 4, "op": "exit"}),
    ]
    done = subprocess.run([sys.executable, "-m", "agent", "serve"], input="\n".join(requests) + "\n",
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r.get("id") for r in replies] == [None, 1, 2, 3, 4]
    assert [r["ok"] for r in replies] == [False, True, False, True, True]
    assert replies[3]["result"]["status"] == "succeeded"


def test_summary_percentiles_match_numpy() -> None:
    import numpy

    samples = [5_000_000, 1_000_000, 3_000_000, 2_000_000, 9_000_000, 4_000_000]
    summary = summarize(samples)
    values = numpy.array(samples) / 1e6
    assert summary["p90_ms"] == pytest.approx(numpy.percentile(values, 90))
    assert summary["p99_ms"] == pytest.approx(numpy.percentile(values, 99))
    assert summary["mean_ms"] == pytest.approx(values.mean())

