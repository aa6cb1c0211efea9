"""The result document: built on the agent by one builder, validated once on arrival, read through one view."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from agent.result_builder import ResultBuilder, timing_document, with_spool_key
from agent.schema import (
    READABLE_RESULT_VERSIONS,
    RESULT_SCHEMA_VERSION,
    ResultView,
    SchemaError,
    backend_document,
    read_result,
    validate_result,
)
from orchestrator.store import jobs
from orchestrator.store.db import Store, open_store
from orchestrator.store.schema import ResultRow
from tests.test_lifecycle import make_jobs

SAMPLES = [900_000, 1_000_000, 1_300_000]
SUMMARY = {"count": 3, "mean_ms": 1.0667, "median_ms": 1.0, "p90_ms": 1.24, "p99_ms": 1.294, "min_ms": 0.9,
           "max_ms": 1.3, "std_ms": 0.17}
SNAPSHOT = {"max_temperature_c": 41.5, "throttled": False, "temperatures_c": {"cpu": 41.5}}
DURING = {"available": True, "average_w": 1.6, "energy_per_inference_mj": 0.35, "throttled": True}
TPU = {"type": "usb", "port": "1-1.2", "speed": 480, "device": "usb:1", "library": {"path": "/usr/lib/libedgetpu.so.1"}}
POWER = {"requested": {"name": "5W", "nvpmodel": 1}, "before": {"name": "MAXN", "nvpmodel": 0},
         "measured": {"name": "5W", "nvpmodel": 1, "ok": True, "mismatches": []}, "recovered": None,
         "restore": {"ok": True}, "switched": True}


def built(**changes: Any) -> dict[str, Any]:
    """A succeeded Edge TPU result, built the way bench.run_job builds one."""
    builder = ResultBuilder("?", 1_700_000_000.0)
    builder.power_restored([])
    builder.set_job_id("f123abc-run1-job1")
    builder.conditions_before(dict(SNAPSHOT))
    builder.power_requested(POWER["requested"])
    builder.power_applied(copy.deepcopy(POWER))
    builder.devices({"edgetpu": dict(TPU)})
    builder.backend(backend_document("tflite_runtime", "2.14.0", "edgetpu", "usb:1"))
    builder.conditions_during(dict(DURING))
    builder.timing(timing_document(list(SAMPLES), dict(SUMMARY), first_inference_ms=4.0, warmup_runs=2,
                                   warmup_seconds=0.01, timed_seconds=0.003), init_ns=12_500_000)
    builder.succeeded()
    builder.conditions_after(dict(SNAPSHOT))
    doc = with_spool_key(builder.finish(1_700_000_001.0), "f123abc-run1-job1.1")
    doc.update(changes)
    return json.loads(json.dumps(doc))  # as it arrives: through JSON


def test_a_built_result_validates_and_reads_back_typed() -> None:
    view = read_result(built())
    assert view.schema_version == RESULT_SCHEMA_VERSION == 2 and view.succeeded
    assert (view.job_id, view.spool_key, view.status) == ("f123abc-run1-job1", "f123abc-run1-job1.1", "succeeded")
    assert view.samples_ns == SAMPLES and view.summary == SUMMARY and view.median_ms == 1.0
    assert (view.init_ms, view.first_inference_ms, view.warmup_runs) == (12.5, 4.0, 2)
    assert view.backend == {"runtime": "tflite_runtime", "version": "2.14.0", "delegate": "edgetpu",
                            "device": "usb:1", "precision": None}
    assert (view.runtime_name, view.runtime_version) == ("tflite_runtime", "2.14.0")
    assert view.doc["runtime"] == {"name": "tflite_runtime", "version": "2.14.0"}  # still there for version-1 readers
    assert view.power_measured["nvpmodel"] == 1 and view.usb_speed == 480 and view.edgetpu_device == "usb:1"
    # Throttled during the run (the sampler saw it) though neither snapshot did.
    assert view.throttled is True
    assert (view.average_power_w, view.energy_per_inference_mj) == (1.6, 0.35)
    assert "samples_ns" not in view.detail()["timing"] and view.detail()["timing"]["init_ms"] == 12.5
    assert view.samples_ns == SAMPLES  # detail() leaves the document itself alone
    assert view.error_kind is None and view.error_message is None


def test_a_failed_and_a_skipped_result_read_back_their_error() -> None:
    builder = ResultBuilder("j", 1.0)
    builder.failed("unsupported", "libedgetpu.so.1 is not installed", status="skipped")
    skipped = read_result(builder.finish(2.0))
    assert (skipped.status, skipped.error_kind, skipped.error_message) == (
        "skipped", "unsupported", "libedgetpu.so.1 is not installed")
    assert not skipped.succeeded and skipped.throttled is None and skipped.samples_ns == []
    # Without a power monitor the energy columns stay empty, whatever numbers "during" carries.
    unmeasured = ResultView(built(conditions={"during": {**DURING, "available": False}}))
    assert unmeasured.average_power_w is None and unmeasured.energy_per_inference_mj is None


def version_1(doc: dict[str, Any]) -> dict[str, Any]:
    """What an agent before the backends sent: no backend sub-document."""
    old = dict(doc, schema=1)
    del old["backend"]
    return old


def test_a_version_1_result_from_an_agent_not_yet_redeployed_is_still_read() -> None:
    assert 1 in READABLE_RESULT_VERSIONS
    view = read_result(version_1(built()))
    assert view.backend == {"runtime": "tflite_runtime", "version": "2.14.0", "delegate": "edgetpu",
                            "device": "usb:1", "precision": None}
    cpu = read_result(version_1(built(edgetpu=None)))
    assert cpu.backend["delegate"] is None and cpu.backend["device"] is None and cpu.runtime_name == "tflite_runtime"


def without(doc: dict[str, Any], path: str) -> dict[str, Any]:
    *parents, last = path.split(".")
    part = doc
    for step in parents:
        part = part[step]
    del part[last]
    return doc


def replaced(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    part = doc
    for step in parents:
        part = part[step]
    part[last] = value
    return doc


@pytest.mark.parametrize("path, value, words", [
    ("schema", 3, "result: schema version 3 is not supported (this controller reads 1, 2)"),
    ("backend", None, "result: missing field 'backend' (a succeeded result of schema 2 says what ran)"),
    ("backend.runtime", 5, "result.backend: field 'runtime' must be a string, got 5"),
    ("backend.precision", 16, "result.backend: field 'precision' must be a string"),
    ("runtime.version", 2.14, "result.runtime: field 'version' must be a string"),
    ("edgetpu.speed", "fast", "result.edgetpu: field 'speed' must be an integer or a number"),
    ("edgetpu.device", 1, "result.edgetpu: field 'device' must be a string"),
    ("power.requested", {"nvpmodel": 1}, "result.power.requested: missing field 'name'"),
    ("power.measured.nvpmodel", "1", "result.power.measured: field 'nvpmodel' must be an integer"),
    ("power.restore.ok", "yes", "result.power.restore: field 'ok' must be a boolean"),
    ("conditions.before.throttled", 1, "result.conditions.before: field 'throttled' must be a boolean"),
    ("conditions.after.max_temperature_c", float("inf"),
     "result.conditions.after: field 'max_temperature_c' must be a finite number"),
    ("conditions.during.average_w", "1.6", "result.conditions.during: field 'average_w' must be"),
    ("conditions.during.energy_per_inference_mj", True, "result.conditions.during: field 'energy_per_inference_mj'"),
    ("conditions.during", [], "result.conditions: field 'during' must be an object"),
    ("throttled", "no", "result: field 'throttled' must be a boolean"),
    ("spool_key", 7, "result: field 'spool_key' must be a string"),
    ("power_restored", {}, "result: field 'power_restored' must be a list"),
    ("finished_at", "later", "result: field 'finished_at' must be an integer or a number"),
    ("timing.timed_seconds", float("nan"), "result.timing: field 'timed_seconds' must be a finite number"),
    ("timing.summary.p90_ms", None, "result.timing.summary: field 'p90_ms' must be an integer or a number"),
])
def test_a_malformed_result_is_refused_with_the_field_named(path: str, value: Any, words: str) -> None:
    doc = without(built(), path) if value is None and path == "backend" else replaced(built(), path, value)
    with pytest.raises(SchemaError) as refused:
        validate_result(doc)
    assert words in str(refused.value)


def test_optional_parts_may_be_absent_or_null() -> None:
    bare = built()
    for field in ("power", "edgetpu", "conditions", "throttled", "power_restored", "spool_key", "runtime"):
        bare.pop(field, None)
    assert validate_result(bare) is bare
    assert validate_result(built(power=None, edgetpu=None, conditions={"before": None}))


@pytest.fixture
def sqlite_store(tmp_path: Any) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    try:
        yield opened
    finally:
        opened.close()


def test_the_store_ingests_both_versions_through_the_reader(sqlite_store: Store) -> None:
    _, _, (new, old) = make_jobs(sqlite_store, 2)
    current = built()
    assert jobs.ingest_result(sqlite_store, new, 1, "k.1", None, "3.11", current)
    assert jobs.ingest_result(sqlite_store, old, 1, "k.2", None, "3.7", version_1(built(job_id="other")))
    with sqlite_store.session() as session:
        rows = {row.job_id: row for row in session.scalars(select(ResultRow))}
    for job_id in (new, old):
        row = rows[job_id]
        assert (row.runtime_name, row.runtime_version, row.median_ms, row.count) == ("tflite_runtime", "2.14.0",
                                                                                     1.0, 3)
        assert (row.power_mode_measured, row.usb_speed_measured, row.throttled) == ("5W (nvpmodel 1)", 480, True)
        assert (row.avg_power_w, row.energy_mj, row.init_ms) == (1.6, 0.35, 12.5)
        assert "samples_ns" not in row.detail["timing"]
    assert rows[new].detail["backend"]["delegate"] == "edgetpu" and "backend" not in rows[old].detail
    assert current["timing"]["samples_ns"] == SAMPLES  # ingest left the caller's document whole


def test_a_result_measured_on_the_lab_stand_in_says_so_and_the_mark_must_be_text() -> None:
    assert read_result(built()).simulated is None  # hardware: no mark
    marked = built(edgetpu={**TPU, "simulated": "stand-in"})
    assert read_result(marked).simulated == "stand-in"
    with pytest.raises(SchemaError, match="simulated"):
        validate_result(built(edgetpu={**TPU, "simulated": True}))
