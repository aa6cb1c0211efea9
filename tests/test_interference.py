"""Interference measured by the agent on real inference: a CPU hog on the benchmark's core is seen, a quiet
core is not, thresholds are the job's to set, and the validity rules name the rule a result broke.

This machine is shared and loaded: "quiet" cannot mean "nothing else runs". The benchmark and the test's
hog run at the highest priority (tests/quiet_core.py: a session of their own at nice -20), so
ordinary-priority load from elsewhere gets a sliver of the benchmark's core while the hog gets half of it;
and a quiet attempt may be tried again (as `--retry-disturbed` would) before the test calls it disturbed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import validity
from agent.interference import DEFAULT_THRESHOLDS, judge
from agent.schema import SchemaError, make_job, validate_result
from tests.conftest import REPO, SHARED_MODELS
from tests.quiet_core import boosted

MODEL = SHARED_MODELS / "mobilenet_v1_0.25_128_quant.tflite"
TIMING = {"warmup_min_runs": 1, "warmup_min_seconds": 0.05, "min_runs": 20, "min_seconds": 0.4}
needs_two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 or shutil.which("taskset") is None,
                                    reason="needs 2 CPUs and taskset")


RUN_ONE = """
import json, sys
sys.path.insert(0, {repo!r})
from agent.bench import run_job
from agent.bench import file_sha256
from agent.schema import make_job
job = make_job("interference-test", {model!r}, file_sha256({model!r}), threads={threads},
               timing={timing!r}, **{extra!r})
print(json.dumps(run_job(job)))
"""


def run_on(cpu: int | None, threads: int = 1, **extra: object) -> dict:
    """One real job in its own process, pinned to ``cpu`` (None: any), at the test's priority."""
    code = RUN_ONE.format(repo=str(REPO), model=str(MODEL), threads=threads, timing=TIMING, extra=extra)
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    done = subprocess.run(boosted([*pin, sys.executable, "-c", code]), capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "succeeded", result
    return validate_result(result)


@pytest.fixture(scope="module")
def core() -> int:
    return max(os.sched_getaffinity(0))


@pytest.fixture(scope="module")
def hogged(core: int) -> Iterator[None]:
    """A busy loop pinned to ``core``, at the benchmark's priority, for the tests that ask for it."""
    hog = subprocess.Popen(boosted(["taskset", "-c", str(core), sys.executable, "-c", "while True: pass"]))
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


@pytest.fixture(scope="module")
def quiet_result(core: int) -> dict:
    """The job on the quiet core, measured before any hog exists; tried up to 4 times (retry-disturbed)."""
    attempts = []
    for _ in range(4):
        attempts.append(run_on(core))
        if not attempts[-1]["interference"]["disturbed"]:
            break
    return {"last": attempts[-1], "attempts": attempts}


@pytest.fixture(scope="module")
def hog_results(quiet_result: dict, hogged: None, core: int) -> dict:
    # quiet_result first: the quiet runs must not overlap the hog.
    return {"default": run_on(core), "lenient": run_on(core, interference={"min_cpu_share": 0.05,
                                                                            "max_other_load": None})}


@needs_two_cpus
def test_a_hog_on_the_benchmarks_core_is_seen_and_a_quiet_core_is_not(quiet_result: dict,
                                                                       hog_results: dict) -> None:
    quiet = quiet_result["last"]["interference"]
    loaded = hog_results["default"]["interference"]
    assert loaded["disturbed"] is True, loaded
    assert "cpu_share" in loaded["disturbed_reason"], loaded
    # One process of the same priority shares the core: the benchmark gets about half of it.
    assert loaded["cpu_share"] < 0.7, loaded
    assert loaded["cpus_allowed"] == quiet["cpus_allowed"] and len(loaded["cpus_allowed"]) == 1
    # The same job on the same core without the hog: not disturbed (within the attempts the fixture allows).
    assert quiet["disturbed"] is False, quiet_result["attempts"]
    assert quiet["cpu_share"] > loaded["cpu_share"] + 0.25, (quiet, loaded)
    # What the hog took shows as other load on the benchmark's one core.
    assert loaded["other_load"] > quiet["other_load"], (quiet, loaded)
    # The latency itself says the same: the hogged median is well above the quiet one.
    assert hog_results["default"]["timing"]["summary"]["median_ms"] > \
        1.3 * quiet_result["last"]["timing"]["summary"]["median_ms"]


@needs_two_cpus
def test_thresholds_are_the_jobs_to_set(hog_results: dict) -> None:
    lenient = hog_results["lenient"]["interference"]
    # The same hog, a job that tolerates it: measured the same way, judged by its own thresholds.
    assert lenient["cpu_share"] < 0.7 and lenient["disturbed"] is False, lenient
    assert lenient["thresholds"]["min_cpu_share"] == 0.05 and lenient["thresholds"]["max_other_load"] is None
    assert hog_results["default"]["interference"]["thresholds"] == DEFAULT_THRESHOLDS


def test_every_result_carries_interference_and_its_cost(quiet_result: dict) -> None:
    doc = quiet_result["last"]
    part = doc["interference"]
    for field in ("cpu_share", "other_load", "cpu_utilization", "involuntary_switches", "wall_s",
                  "process_cpu_s", "measure_cost_s"):
        assert field in part, field
    # Reading the counters happens outside the timed loop and costs CPU microseconds, not the loop's time.
    assert 0 < part["measure_cost_s"] < part["wall_s"]
    assert abs(part["wall_s"] - doc["timing"]["timed_seconds"]) < 0.05 + 0.1 * doc["timing"]["timed_seconds"]
    assert doc["validity"] == {"valid": True, "broken": [], "reason": None}


def test_each_rule_is_judged_and_off_when_none() -> None:
    doc = {"cpu_share": 0.5, "cpu_share_source": "schedstat", "other_load": 1.7, "free_cores": 1,
           "cpus_allowed": [0, 1], "steal": 0.2, "cpu_pressure": 0.9, "clock_ratio": 0.5, "involuntary_per_s": 900}
    everything = dict(DEFAULT_THRESHOLDS, max_cpu_pressure=0.5, max_involuntary_per_s=100)
    reasons = judge(doc, everything)
    assert [r.split()[0] for r in reasons] == ["cpu_share", "other", "steal", "cpu", "clock", "900"], reasons
    assert judge(doc, dict.fromkeys(DEFAULT_THRESHOLDS)) == []
    # Without schedstat the share is CPU time / wall: an Edge TPU job's CPU waits by design, so it is not judged.
    fallback = dict(doc, cpu_share_source="cpu time / (wall x threads)", other_load=0.0, steal=0.0, clock_ratio=1.0)
    assert judge(fallback, DEFAULT_THRESHOLDS, cpu_bound=False) == []
    assert judge(fallback, DEFAULT_THRESHOLDS, cpu_bound=True)[0].startswith("cpu_share 0.50")


def test_job_interference_settings_are_checked() -> None:
    with pytest.raises(SchemaError, match="job.interference: unknown field 'min_share'"):
        make_job("j", "/m.tflite", "0" * 64, interference={"min_share": 0.5})
    with pytest.raises(SchemaError, match="non-negative number or null"):
        make_job("j", "/m.tflite", "0" * 64, interference={"min_cpu_share": float("nan")})
    assert make_job("j", "/m.tflite", "0" * 64, interference={"min_cpu_share": None})["interference"] == \
        {"min_cpu_share": None}


def test_a_disturbed_result_must_say_why() -> None:
    from agent.result_schema import _check_interference

    with pytest.raises(SchemaError, match="disturbed_reason"):
        _check_interference({"disturbed": True, "cpu_share": 0.4}, "result.interference")
    with pytest.raises(SchemaError, match="'valid' must be true exactly when"):
        validate_result({"schema": 2, "job_id": "j", "status": "failed", "error": {"kind": "benchmark",
                         "message": "x"}, "validity": {"valid": True, "broken": [{"rule": "min_runs"}]}})


def test_a_loop_cut_short_by_max_seconds_is_invalid_with_both_rules() -> None:
    code = RUN_ONE.format(repo=str(REPO), model=str(MODEL), threads=1,
                          timing={"warmup_min_runs": 1, "warmup_min_seconds": 0.0, "min_runs": 100000,
                                  "min_seconds": 100.0, "max_seconds": 0.2}, extra={})
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    doc = validate_result(json.loads(done.stdout.strip().splitlines()[-1]))
    assert doc["status"] == "succeeded" and doc["timing"]["cut_short"] is True
    rules = [item["rule"] for item in doc["validity"]["broken"]]
    assert doc["validity"]["valid"] is False and rules == ["max_seconds", "min_runs"], doc["validity"]
    assert "cut short by max_seconds 0.2 s" in doc["validity"]["reason"]
    assert "< min_runs 100000" in doc["validity"]["reason"]


def test_a_job_on_a_throttling_board_is_invalid(tmp_path: Path) -> None:
    # A CPU cooling device engaged (Jetson and generic boards report throttling this way): a fake device root.
    device = tmp_path / "sys/class/thermal/cooling_device0"
    device.mkdir(parents=True)
    for name, text in (("type", "cpufreq-cpu0"), ("cur_state", "2"), ("max_state", "3")):
        (device / name).write_text(text + "\n")
    code = RUN_ONE.format(repo=str(REPO), model=str(MODEL), threads=1,
                          timing={"warmup_min_runs": 1, "warmup_min_seconds": 0.0, "min_runs": 5, "min_seconds": 0.0},
                          extra={})
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300,
                          env={**os.environ, "FARM_DEVICE_ROOT": str(tmp_path)})
    doc = validate_result(json.loads(done.stdout.strip().splitlines()[-1]))
    assert doc["throttled"] is True and doc["validity"]["valid"] is False
    assert [b["rule"] for b in doc["validity"]["broken"]] == ["throttled"]
    assert "cooling_device0" in doc["validity"]["reason"]


def test_throttling_breaks_the_throttled_rule() -> None:
    settings = {"max_seconds": 150.0, "min_runs": 5, "min_seconds": 0.0}
    doc = {"timing": {"samples_ns": [1] * 5, "cut_short": False}, "throttled": True,
           "conditions": {"during": {"throttle_reasons": ["cooling device cooling_device0 (cpufreq-cpu0) at state 2/3"]}}}
    checked = validity.check(settings, doc)
    assert checked["valid"] is False and [b["rule"] for b in checked["broken"]] == ["throttled"]
    assert "cooling_device0" in checked["reason"]
    assert validity.check(settings, dict(doc, throttled=False))["valid"] is True
