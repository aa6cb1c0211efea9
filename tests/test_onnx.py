"""ONNX: the generators (stacks, GoogLeNet), the ONNX op counter, the onnxruntime backend, backends × precisions
in the matrix, and `farm run` / `farm report` across TFLite and ONNX Runtime, on real onnxruntime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper
from sqlalchemy import text

from agent import backends
from agent.bench import run_job
from agent.schema import SchemaError, validate_job, validate_result
from orchestrator.deploy import build_agent
from orchestrator.inventory import Host
from orchestrator.matrix import MatrixSpec, expand
from orchestrator.models import googlenet, onnx_families, registry
from orchestrator.models.formats import count_any, inspect_any
from orchestrator.models.onnx_model import count_onnx_ops
from orchestrator.models.opcount import count_ops
from orchestrator.store import open_store
from orchestrator.store.schema import ModelRow
from tests.test_agent import job_for, python36
from tests.test_backends import python37_tflite  # noqa: F401 - the lab's Python 3.7 (tflite 2.11, onnxruntime 1.14.1)

QUICK = {"warmup_min_runs": 1, "warmup_min_seconds": 0, "min_runs": 2, "min_seconds": 0, "max_seconds": 60}
# Table 1 of the Inception v1 paper: each inception module's output depth.
PUBLISHED_DEPTHS = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528, "4e": 832, "5a": 832,
                    "5b": 1024}


@pytest.fixture(scope="session")
def googlenet_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """GoogLeNet built once per session, both formats (~7 M parameters: never committed)."""
    directory = tmp_path_factory.mktemp("googlenet")
    onnx_path, tflite_path = directory / "googlenet-s224-onnx.onnx", directory / "googlenet-s224.tflite"
    onnx_path.write_bytes(onnx_families.build_googlenet_onnx())
    tflite_path.write_bytes(googlenet.build_googlenet_tflite())
    return {"onnx": onnx_path, "tflite": tflite_path}


@pytest.fixture(scope="module")
def conv_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("conv") / "conv_stack-l1-onnx.onnx"
    path.write_bytes(onnx_families.build_conv_stack_onnx(1, size=32))
    return path


def test_googlenet_has_the_published_layer_shapes_and_multiply_adds(googlenet_files: dict[str, Path]) -> None:
    model = onnx.load(str(googlenet_files["onnx"]))
    assert model.ir_version == 7 and model.opset_import[0].version == 13  # what onnxruntime 1.10+ reads
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    for name, depth in PUBLISHED_DEPTHS.items():
        assert shapes[f"inception_{name}/output"][1] == depth, name
    assert shapes["conv1/7x7_s2"] == [1, 64, 112, 112] and shapes["inception_5b/output"][2:] == [7, 7]
    parameters = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert 6.5e6 < parameters < 7.1e6  # the paper's ≈6.8 M without its two auxiliary classifiers
    counted = count_onnx_ops(googlenet_files["onnx"].read_bytes())
    multiply_adds = (counted.by_op["Conv"] + counted.by_op["Gemm"]) / 2
    # "about 1.5 billion multiply-adds": the table's layers give 1.58 G (the paper rounds).
    assert multiply_adds == pytest.approx(googlenet.PUBLISHED_MULTIPLY_ADDS, rel=0.07)
    assert counted.operators["Concat"] == 9 and not counted.uncounted.get("Conv")
    # The int8 TFLite build is the same architecture: the same convolution and linear work.
    tflite = count_ops(googlenet_files["tflite"].read_bytes())
    assert tflite.by_op["CONV_2D"] == counted.by_op["Conv"] + counted.by_op["Gemm"]
    fmt, info = inspect_any(googlenet_files["tflite"].read_bytes())
    assert fmt == "tflite" and info.inputs[0]["dtype"] == "int8" and info.inputs[0]["shape"] == [1, 224, 224, 3]


def test_onnx_stacks_count_what_the_tflite_stacks_count() -> None:
    from orchestrator.models import synthetic

    for layers in (1, 2):
        onnx_count = count_any(onnx_families.build_conv_stack_onnx(layers))
        assert onnx_count.by_op["Conv"] == count_ops(synthetic.build_conv_stack(layers)).by_op["CONV_2D"]
    dense = count_any(onnx_families.build_dense_stack_onnx(3, units=20))
    assert dense.by_op["Gemm"] == 3 * 2 * 20 * 20
    # Same parameters, same bytes: the sha256 names the model.
    assert onnx_families.build_conv_stack_onnx(1) == onnx_families.build_conv_stack_onnx(1)
    assert onnx_families.build_conv_stack_onnx(1) != onnx_families.build_conv_stack_onnx(1, seed=1)


def test_a_users_onnx_model_counts_at_batch_one_and_garbage_is_refused() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])
    w = helper.make_tensor("w", TensorProto.FLOAT, [64, 10], np.zeros(640, np.float32))
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
                              "user", [x], [y], initializer=[w])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    counted = count_any(data)
    assert counted.by_op == {"MatMul": 2 * 64 * 10, "Relu": 10}
    fmt, info = inspect_any(data)
    assert fmt == "onnx" and info.inputs == [{"name": "x", "shape": [-1, 64], "dtype": "float32"}]
    with pytest.raises(ValueError, match="TFL3.*ONNX"):
        inspect_any(b"\x00" * 64)
    with pytest.raises(ValueError, match="ONNX protobuf is damaged"):
        inspect_any(data[: len(data) // 2])


def test_onnxruntime_backend_runs_and_records_the_provider_it_used(conv_onnx: Path) -> None:
    result = validate_result(run_job(job_for(conv_onnx, backend="onnxruntime", threads=2, timing=QUICK)))
    assert result["status"] == "succeeded", result.get("error")
    described = result["backend"]
    assert described["runtime"] == "onnxruntime" and described["version"] == onnxruntime.__version__
    assert (described["provider"], described["providers"]) == ("CPUExecutionProvider", ["CPUExecutionProvider"])
    assert (described["delegate"], described["accelerator"], described["precision"]) == ("cpu", "cpu", "fp32")
    assert len(result["timing"]["samples_ns"]) >= 2 and result["timing"]["init_ms"] > 0
    # The backend's bare call really computes: the pooled output has one value per filter.
    backend = backends.for_job(job_for(conv_onnx, backend="onnxruntime"))
    backend.load(str(conv_onnx))
    backend.prepare_inputs(seed=3)
    assert backend.session.run(None, backend.feeds)[0].shape == (1, 32, 1, 1)


def test_cells_onnxruntime_cannot_run_are_skipped_with_the_reason(conv_onnx: Path, shared_model: Path) -> None:
    cuda = run_job(job_for(conv_onnx, backend="onnxruntime", delegate="cuda", timing=QUICK))
    assert (cuda["status"], cuda["error"]["kind"]) == ("skipped", "unsupported")
    assert "no CUDAExecutionProvider" in cuda["error"]["message"] and "onnxruntime-gpu" in cuda["error"]["message"]
    fp16 = run_job(job_for(conv_onnx, backend="onnxruntime", precision="fp16", timing=QUICK))
    assert fp16["status"] == "skipped" and "trt_fp16_enable" in fp16["error"]["message"]
    wrong = run_job(job_for(shared_model, backend="onnxruntime", timing=QUICK))  # a .tflite file
    assert (wrong["status"], wrong["error"]["kind"]) == ("failed", "benchmark")
    with pytest.raises(SchemaError, match="precision' must be one of fp32, fp16, int8"):
        validate_job({**job_for(conv_onnx, backend="onnxruntime"), "precision": "bf16"})
    with pytest.raises(SchemaError, match="delegate' must be one of cpu, cuda, tensorrt"):
        validate_job({**job_for(conv_onnx), "backend": "onnxruntime", "delegate": "edgetpu"})


def _zipapp(python: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    bundle = build_agent()
    pyz = tmp_path / bundle.file_name
    pyz.write_bytes(bundle.data)
    done = subprocess.run([python, str(pyz), *args], capture_output=True, text=True, timeout=180, check=True)
    return json.loads(done.stdout)


def test_under_python_36_without_onnxruntime_the_job_and_facts_say_what_is_missing(tmp_path: Path,
                                                                                   conv_onnx: Path) -> None:
    python = python36()
    facts = _zipapp(python, tmp_path, "facts")
    missing = facts["backends"]["onnxruntime"]
    assert missing["name"] is None and "onnxruntime is not importable" in missing["error"]
    assert "Python 3.6" in missing["error"] and "1.10.0 is the last for 3.6" in missing["error"]
    (tmp_path / "job.json").write_text(json.dumps(job_for(conv_onnx, backend="onnxruntime", timing=QUICK)))
    result = validate_result(_zipapp(python, tmp_path, "run", str(tmp_path / "job.json")))
    assert (result["status"], result["error"]["kind"]) == ("skipped", "unsupported")
    assert "pip install onnxruntime" in result["error"]["message"]


def test_under_python_37_onnxruntime_1_14_1_runs_the_onnx_model(tmp_path: Path, conv_onnx: Path,
                                                                python37_tflite: str) -> None:  # noqa: F811
    (tmp_path / "job.json").write_text(json.dumps(job_for(conv_onnx, backend="onnxruntime", threads=2,
                                                          timing=QUICK)))
    result = validate_result(_zipapp(python37_tflite, tmp_path, "run", str(tmp_path / "job.json")))
    assert result["status"] == "succeeded", result.get("error")
    assert (result["backend"]["version"], result["backend"]["provider"]) == ("1.14.1", "CPUExecutionProvider")


def _model(name: str, path: str, dtype: str, model_id: int) -> ModelRow:
    return ModelRow(id=model_id, sha256=f"{model_id:064x}", name=name, family="conv_stack", path=path,
                    inputs=[{"name": "input", "shape": [1], "dtype": dtype}], needs_edgetpu=False)


def test_the_matrix_pairs_each_model_with_the_backends_of_its_format_and_skips_with_reasons() -> None:
    tflite, onnx_model = _model("conv_stack-l1", "/m/a.tflite", "int8", 1), _model("conv_stack-l1-onnx", "/m/b.onnx",
                                                                                  "float32", 2)
    host = Host(name="h", transport="local")
    ort = {"name": "onnxruntime", "version": "1.14.1", "error": None, "providers": ["CPUExecutionProvider"]}
    facts = {"cpu_count": 2, "runtime": {"name": "tflite_runtime", "version": "2.11.0"},
             "backends": {"onnxruntime": ort}}
    spec = MatrixSpec(name="x", backends=("tflite", "onnxruntime"), delegates=("cpu", "cuda"), threads=(1,),
                      precisions=("fp32", "int8"))
    cells = expand(spec, [host], [tflite, onnx_model], {"h": facts})
    got = {(c.model.name, c.backend, c.delegate, c.precision): c.skip_reason for c in cells}
    assert set(got) == {(m, b, d, p) for m, b, ds in (("conv_stack-l1", "tflite", ("cpu",)),
                                                      ("conv_stack-l1-onnx", "onnxruntime", ("cpu", "cuda")))
                        for d in ds for p in ("fp32", "int8")}
    assert got[("conv_stack-l1", "tflite", "cpu", "int8")] is None
    assert "own types (int8)" in got[("conv_stack-l1", "tflite", "cpu", "fp32")]
    assert got[("conv_stack-l1-onnx", "onnxruntime", "cpu", "fp32")] is None
    assert "no CUDAExecutionProvider" in got[("conv_stack-l1-onnx", "onnxruntime", "cuda", "fp32")]
    assert "int8 of an fp32 model needs the TensorRT provider" in got[("conv_stack-l1-onnx", "onnxruntime", "cpu",
                                                                      "int8")]
    assert len({c.key for c in cells}) == len(cells)
    # Without `backends` each model runs under its format's backend; TFLite keys are what they were.
    plain = expand(MatrixSpec(name="y", threads=(1,)), [host], [tflite, onnx_model], {"h": facts})
    assert [(c.backend, c.key.count("|")) for c in plain] == [("tflite", 5), ("onnxruntime", 6)]
    no_ort = {**facts, "backends": {"onnxruntime": {"name": None, "error": "onnxruntime is not importable"}}}
    [cell] = [c for c in expand(MatrixSpec(name="z", threads=(1,)), [host], [onnx_model], {"h": no_ort})]
    assert cell.skip_reason == "onnxruntime is not importable"


MATRIX = """
matrices:
  xrt:
    models: [conv_stack-l1, conv_stack-l1-onnx, googlenet-s224, googlenet-s224-onnx]
    backends: [tflite, onnxruntime]
    delegates: [cpu, cuda]
    threads: [1]
    timing: {warmup_min_runs: 1, warmup_min_seconds: 0, min_runs: 1, min_seconds: 0, max_seconds: 60}
"""


def farm(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          check=False, timeout=400, env={**os.environ, "COLUMNS": "250"})
    assert done.returncode == 0, f"farm {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def test_farm_run_stores_both_backends_and_the_report_compares_them(db_url: str, tmp_path: Path,
                                                                   googlenet_files: dict[str, Path]) -> None:
    # Registered in-process (the CLI's own functions; the machine is shared, and each farm process costs seconds).
    store = open_store(db_url)
    try:
        built = registry.build(store, "conv_stack", [1], ("tflite", "onnx"))
        assert [row.name for row, _ in built] == ["conv_stack-l1", "conv_stack-l1-onnx"]
        assert built[1][0].path.endswith(".onnx") and built[1][0].ops_per_inference == built[0][0].ops_per_inference
        for path in googlenet_files.values():
            registry.add_file(store, path, name=path.stem)
    finally:
        store.close()
    # GoogLeNet on one database only (a second run would time the same thing): PostgreSQL checks the view's columns.
    postgres = not db_url.startswith("sqlite")
    (tmp_path / "m.yaml").write_text(MATRIX.replace(", googlenet-s224, googlenet-s224-onnx", "") if postgres else MATRIX)
    farm("run", "--matrix", "xrt", "--matrix-file", str(tmp_path / "m.yaml"), "--db", db_url)
    store = open_store(db_url)
    try:
        with store.engine.connect() as connection:
            rows = [dict(r._mapping) for r in connection.execute(text(
                "SELECT model, backend, precision, delegate, accelerator, provider, status, reason, gops "
                "FROM v_results"))]
    finally:
        store.close()
    by = {(r["model"], r["delegate"]): r for r in rows}
    architectures = ("conv_stack-l1",) if postgres else ("conv_stack-l1", "googlenet-s224")
    # Per architecture: 1 TFLite cell, 2 ONNX Runtime cells (CPU and CUDA); no cross-format cell.
    assert len(rows) == 3 * len(architectures)
    for model in architectures:
        tflite, ort = by[(model, "cpu")], by[(model + "-onnx", "cpu")]
        assert (tflite["status"], tflite["backend"], tflite["precision"], tflite["accelerator"]) == \
            ("succeeded", "tflite", "int8", "cpu")
        assert (ort["status"], ort["backend"], ort["precision"], ort["provider"]) == \
            ("succeeded", "onnxruntime", "fp32", "CPUExecutionProvider")
        assert tflite["gops"] > 0 and ort["gops"] > 0
        cuda = by[(model + "-onnx", "cuda")]
        assert cuda["status"] == "skipped" and "CUDAExecutionProvider" in cuda["reason"] and cuda["accelerator"] is None
    report = farm("report", "--db", db_url).stdout
    section = report[report.index("Across runtimes"):]
    for label in ("TFLite CPU", "ONNX Runtime CPU"):
        assert label in section
    for model in architectures:
        assert section.count(f"{model} ") >= 2, section
