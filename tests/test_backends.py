"""The agent's inference backends: the interface the timing loop uses, run on real tflite-runtime."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy
import pytest
import tflite_runtime

from agent import backends
from agent.backends.base import JobFailed
from agent.backends.tflite import TfliteBackend
from agent.bench import run_job
from agent.schema import BACKEND_DELEGATES, RESULT_SCHEMA_VERSION, SchemaError, validate_job, validate_result
from orchestrator.deploy import build_agent
from orchestrator.errors import FarmError
from tests.conftest import SHARED_MODELS, missing_service
from tests.test_agent import job_for, python36
from tests.test_agent_job_settings import x86  # noqa: F401 - the simulated x86 host with two Edge TPUs

EDGETPU_TWIN = SHARED_MODELS / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"


@pytest.fixture(scope="module")
def python37_tflite() -> str:
    """The lab's Python 3.7 with tflite-runtime 2.11 (the Dev Board's and JetPack 4's), built as a lab builds it."""
    from farm_lab.account import lab_account
    from farm_lab.boards import TFLITE_2_11_ORT
    from farm_lab.pythons import PythonEnv, default_cache_dir, prepare

    account = lab_account()
    try:
        return str(prepare(PythonEnv("3.7", TFLITE_2_11_ORT), default_cache_dir(account), account, say=print))
    except FarmError as exc:
        missing_service(f"no Python 3.7 with tflite-runtime 2.11 for the lab: {exc}")
        raise


def loaded(model: Path, **job) -> backends.Backend:
    backend = backends.for_job(job_for(model, **job))
    assert backend.select_device() == {}
    backend.load(str(model))
    return backend


def test_tflite_backend_loads_feeds_invokes_and_says_what_ran(shared_model: Path) -> None:
    backend = backends.for_job(job_for(shared_model, threads=2))
    assert isinstance(backend, TfliteBackend) and backend.select_device() == {}
    assert backend.load(str(shared_model)) > 0
    backend.prepare_inputs(seed=7)
    invoke = backend.invoker()
    invoke()
    interpreter = backend.interpreter
    scores = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert scores.shape == (1, 1001) and scores.any()
    assert backend.describe() == {"runtime": "tflite_runtime", "version": tflite_runtime.__version__,
                                  "delegate": "cpu", "device": "cpu", "precision": None, "name": "tflite",
                                  "accelerator": "cpu"}
    backend.close()
    assert backend.interpreter is None


def test_inputs_follow_the_seed(shared_model: Path) -> None:
    def inputs(seed: int) -> numpy.ndarray:
        backend = loaded(shared_model)
        backend.prepare_inputs(seed)
        detail = backend.interpreter.get_input_details()[0]
        return backend.interpreter.get_tensor(detail["index"])

    first = inputs(11)
    assert first.dtype == numpy.uint8 and first.std() > 10  # random over the whole uint8 range, not zeros
    assert numpy.array_equal(first, inputs(11))
    assert not numpy.array_equal(first, inputs(12))


def test_the_edgetpu_twin_on_the_cpu_names_the_custom_op_it_lacks() -> None:
    with pytest.raises(JobFailed) as failed:
        loaded(EDGETPU_TWIN)
    assert failed.value.kind == "benchmark" and failed.value.status == "failed"
    assert "Encountered unresolved custom op: edgetpu-custom-op" in failed.value.message
    assert failed.value.message.startswith("model failed to load: ")


@pytest.mark.usefixtures("x86")
def test_the_edgetpu_twin_without_libedgetpu_is_skipped_naming_the_tpu_it_would_have_used() -> None:
    backend = backends.for_job(job_for(EDGETPU_TWIN, delegate="edgetpu", edgetpu={"port": "1-1.2"}))
    [(key, tpu)] = backend.select_device().items()
    assert key == "edgetpu" and (tpu["port"], tpu["speed"], tpu["device"]) == ("1-1.2", 480, "usb:1")
    with pytest.raises(JobFailed) as skipped:
        backend.load(str(EDGETPU_TWIN))
    assert (skipped.value.kind, skipped.value.status) == ("unsupported", "skipped")
    message = skipped.value.message
    assert message.startswith("libedgetpu.so.1 is not installed (looked in ") and "apt-get install" in message
    assert message.endswith("; the job would have used usb:1 (port 1-1.2 at 480 Mb/s)")


def test_a_precision_tflite_cannot_choose_skips_the_job(shared_model: Path) -> None:
    result = validate_result(run_job({**job_for(shared_model), "precision": "fp16"}))
    assert (result["status"], result["error"]["kind"]) == ("skipped", "unsupported")
    assert "cannot run at precision 'fp16'" in result["error"]["message"]
    with pytest.raises(SchemaError, match="job: field 'precision' must be a string"):
        validate_job({**job_for(shared_model), "precision": 16})


def test_a_model_whose_op_fails_is_a_benchmark_failure_at_load() -> None:
    with pytest.raises(JobFailed) as failed:
        loaded(SHARED_MODELS / "model_invoking_error.tflite")
    assert failed.value.kind == "benchmark" and "fake-op-double" in failed.value.message


def test_the_registry_finds_backends_by_name_and_agrees_with_the_job_schema(shared_model: Path) -> None:
    assert backends.get("tflite") is TfliteBackend
    for name in backends.BACKENDS:
        assert backends.get(name).delegates == BACKEND_DELEGATES[name]
    with pytest.raises(JobFailed, match="this agent has no backend 'nosuch'; it has onnxruntime, tensorrt, tflite") as failed:
        backends.get("nosuch")
    assert failed.value.kind == "infrastructure"
    assert backends.available()["tflite"] == {"name": "tflite_runtime", "version": tflite_runtime.__version__,
                                              "error": None}
    # A job names its backend or means tflite; an unknown one is refused before any runtime loads.
    assert validate_job({**job_for(shared_model), "backend": "tflite"})["backend"] == "tflite"
    assert "backend" not in job_for(shared_model)
    with pytest.raises(SchemaError, match="job: field 'backend' must be one of onnxruntime, tensorrt, tflite, got 'nosuch'"):
        validate_job({**job_for(shared_model), "backend": "nosuch"})
    with pytest.raises(SchemaError, match="job: field 'backend' must be a string"):
        validate_job({**job_for(shared_model), "backend": ["tflite"]})


def test_every_result_run_job_builds_validates_and_names_its_backend(shared_model: Path) -> None:
    result = validate_result(run_job(job_for(shared_model)))
    assert result["schema"] == RESULT_SCHEMA_VERSION
    assert result["backend"]["runtime"] == result["runtime"]["name"] == "tflite_runtime"
    assert result["backend"]["version"] == result["runtime"]["version"]
    failed = validate_result(run_job(job_for(EDGETPU_TWIN)))
    assert failed["status"] == "failed" and "backend" not in failed and "runtime" not in failed


def run_zipapp(python: str, tmp_path: Path, job: dict) -> dict:
    bundle = build_agent()
    pyz = tmp_path / bundle.file_name
    pyz.write_bytes(bundle.data)
    (tmp_path / "job.json").write_text(json.dumps(job))
    done = subprocess.run([python, str(pyz), "run", str(tmp_path / "job.json")], capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout)


def test_the_job_path_runs_its_backend_under_python_37_with_tflite_runtime_2_11(tmp_path: Path, shared_model: Path,
                                                                                python37_tflite: str) -> None:
    result = validate_result(run_zipapp(python37_tflite, tmp_path, job_for(shared_model, threads=2)))
    assert result["status"] == "succeeded", result.get("error")
    assert result["backend"] == {"runtime": "tflite_runtime", "version": "2.11.0", "delegate": "cpu",
                                 "device": "cpu", "precision": None, "name": "tflite", "accelerator": "cpu"}
    assert len(result["timing"]["samples_ns"]) >= 5


def test_under_python_36_without_a_runtime_the_result_still_validates(tmp_path: Path, shared_model: Path) -> None:
    result = validate_result(run_zipapp(python36(), tmp_path, job_for(shared_model)))
    assert result["schema"] == RESULT_SCHEMA_VERSION and result["status"] == "failed"
    assert result["error"]["kind"] == "infrastructure" and "no TFLite runtime found" in result["error"]["message"]
    assert "backend" not in result and result["conditions"]["after"] is not None
