"""MobileNet v1/v2 and SSD generators against tflite-runtime and the published models' figures;
the Edge TPU check on generated and real models."""

from __future__ import annotations

import time

import numpy as np
import pytest

from orchestrator.errors import FarmError
from orchestrator.models import architectures as arch
from orchestrator.models import registry
from orchestrator.models.edgetpu_check import MAPPED, MORE_THAN_ONE_SUBGRAPH, UNSUPPORTED_TYPE, check_model
from orchestrator.models.flatbuild import BuiltinOperator, BuiltinOptions, GraphBuilder, Padding, TensorType
from orchestrator.models.inspect import ModelFormatError, inspect_model
from orchestrator.models.opcount import count_ops
from orchestrator.store import open_store
from tests.conftest import SHARED_MODELS

MIB = 1024 * 1024
# Published figures (SEEDS §2 file sizes; multiply-adds from the MobileNet papers).
PUBLISHED = {"v1": {"mib": 4.08, "macs": 569e6}, "v2": {"mib": 3.41, "macs": 300e6}}


def macs(data: bytes) -> float:
    counted = count_ops(data)
    return sum(counted.by_op.get(op, 0) for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")) / 2


def run(data: bytes) -> tuple[object, list[np.ndarray]]:
    from tflite_runtime.interpreter import Interpreter

    it = Interpreter(model_content=data, num_threads=2)
    it.allocate_tensors()
    (inp,) = it.get_input_details()
    it.set_tensor(inp["index"], np.random.default_rng(3).integers(-128, 128, inp["shape"]).astype(np.int8))
    it.invoke()
    return it, [it.get_tensor(o["index"]) for o in it.get_output_details()]


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    return {"v1": arch.build_mobilenet_v1(), "v2": arch.build_mobilenet_v2(), "ssd": arch.build_ssd_mobilenet_v1()}


@pytest.mark.parametrize("name", ["v1", "v2"])
def test_mobilenets_match_the_published_size_and_multiply_adds(models: dict[str, bytes], name: str) -> None:
    data = models[name]
    assert len(data) / MIB == pytest.approx(PUBLISHED[name]["mib"], rel=0.02)
    assert macs(data) == pytest.approx(PUBLISHED[name]["macs"], rel=0.01)


def test_mobilenet_v1_has_the_published_graph_and_classifies(models: dict[str, bytes]) -> None:
    counted = count_ops(models["v1"])
    assert dict(counted.operators) == {"CONV_2D": 15, "DEPTHWISE_CONV_2D": 13, "AVERAGE_POOL_2D": 1,
                                       "RESHAPE": 1, "SOFTMAX": 1}
    it, (probabilities,) = run(models["v1"])
    assert probabilities.shape == (1, 1001) and probabilities.dtype == np.int8
    shapes = {d["name"]: tuple(d["shape"]) for d in it.get_tensor_details()}
    assert shapes["MobilenetV1/Conv2d_13_pointwise"] == (1, 7, 7, 1024)
    assert shapes["MobilenetV1/Conv2d_1_depthwise/weights"] == (1, 3, 3, 32)


def test_mobilenet_v2_has_residual_adds_and_relu6(models: dict[str, bytes]) -> None:
    counted = count_ops(models["v2"])
    # 17 bottlenecks; the 10 that keep their shape add their input back.
    assert counted.operators["DEPTHWISE_CONV_2D"] == 17 and counted.operators["ADD"] == 10
    assert counted.operators["CONV_2D"] == 36
    it, (probabilities,) = run(models["v2"])
    assert probabilities.shape == (1, 1001)
    shapes = {d["name"]: tuple(d["shape"]) for d in it.get_tensor_details()}
    assert shapes["MobilenetV2/Conv_1"] == (1, 7, 7, 1280)
    assert shapes["MobilenetV2/expanded_conv_16/project"] == (1, 7, 7, 320)


def test_width_and_resolution_reproduce_the_real_mobilenet_v1_025_128(shared_model) -> None:
    real = count_ops(shared_model.read_bytes())
    ours = count_ops(arch.build_mobilenet_v1(128, alpha=0.25))
    assert dict(ours.operators) == dict(real.operators)
    assert ours.by_op == real.by_op  # every layer's arithmetic, exactly


def test_ssd_ends_in_the_detection_postprocess_op_and_detects(models: dict[str, bytes]) -> None:
    data = models["ssd"]
    assert inspect_model(data).custom_ops == [arch.DETECTION_POSTPROCESS]
    counted = count_ops(data)
    # The counts SEEDS §2 shows from the compiler's log of the published SSD.
    assert counted.operators["CONV_2D"] == 34 and counted.operators["DEPTHWISE_CONV_2D"] == 13
    assert counted.operators["CONCATENATION"] == 2 and counted.operators["LOGISTIC"] == 1
    assert macs(data) == pytest.approx(1.2e9, rel=0.05)  # SSD300 on MobileNet: ~1.2 G multiply-adds
    _, (boxes, classes, scores, count) = run(data)
    assert boxes.shape == (1, 10, 4) and classes.shape == (1, 10) and scores.shape == (1, 10)
    assert count.tolist() == [10.0]
    assert ((scores > 0) & (scores <= 1)).all() and ((classes >= 0) & (classes < 90)).all()


def test_postprocess_options_are_a_flexbuffer_map_with_the_exporter_keys() -> None:
    from flatbuffers import flexbuffers

    options = flexbuffers.Loads(arch.postprocess_options(max_detections=7, num_classes=3))
    assert options["max_detections"] == 7 and options["num_classes"] == 3
    assert options["use_regular_nms"] is False and options["y_scale"] == 10.0


def test_ssd_honours_max_detections() -> None:
    _, (boxes, _, _, count) = run(arch.build_ssd_mobilenet_v1(160, num_classes=5, max_detections=3))
    assert boxes.shape == (1, 3, 4) and count.tolist() == [3.0]


def test_generation_is_fast_and_deterministic() -> None:
    for build in (arch.build_mobilenet_v1, arch.build_mobilenet_v2, arch.build_ssd_mobilenet_v1):
        started = time.perf_counter()
        first = build()
        assert time.perf_counter() - started < 2.0  # generous on a noisy 2-core machine; ~0.1 s normally
        assert build() == first
        assert build(seed=1) != first


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="size"):
        arch.build_mobilenet_v2(8)
    with pytest.raises(ValueError, match="alpha"):
        arch.build_mobilenet_v1(alpha=5)


def test_generated_models_map_wholly_to_the_edge_tpu_except_ssd_postprocessing(models: dict[str, bytes]) -> None:
    for name in ("v1", "v2"):
        report = check_model(models[name])
        assert report.compatible and report.cpu_ops == 0
    ssd = check_model(models["ssd"])
    assert not ssd.compatible
    assert [(v.op, v.status) for v in ssd.ops if not v.on_tpu] == [(arch.DETECTION_POSTPROCESS, UNSUPPORTED_TYPE)]
    assert ("CONV_2D", 34, MAPPED) in ssd.table()


def float_model() -> bytes:
    graph = GraphBuilder("float conv")
    x = graph.tensor("input", (1, 8, 8, 3), TensorType.FLOAT32)
    w = graph.tensor("w", (4, 3, 3, 3), TensorType.FLOAT32, data=np.ones((4, 3, 3, 3)))
    b = graph.tensor("b", (4,), TensorType.FLOAT32, data=np.zeros(4))
    y = graph.tensor("y", (1, 8, 8, 4), TensorType.FLOAT32)
    graph.op(BuiltinOperator.CONV_2D, [x, w, b], [y], BuiltinOptions.Conv2DOptions, Padding=Padding.SAME,
             StrideW=1, StrideH=1, DilationWFactor=1, DilationHFactor=1)
    return graph.finish([x], [y])


def test_a_float_model_is_explained_not_compiled() -> None:
    data = float_model()
    run_float = __import__("tflite_runtime.interpreter", fromlist=["Interpreter"]).Interpreter(model_content=data)
    run_float.allocate_tensors()  # a real, valid model: only its number format is wrong for the TPU
    report = check_model(data)
    assert not report.quantized and not report.compatible
    assert "not quantized" in report.problems[0] and "8-bit" in report.problems[0]
    assert report.fallbacks() == [("CONV_2D", 1, f"{UNSUPPORTED_TYPE} (tensor 'input' is float32, not int8/uint8)")]


def test_real_partially_supported_model_falls_back_after_the_lstm() -> None:
    report = check_model((SHARED_MODELS / "keras_lstm_mnist_ptq.tflite").read_bytes())
    statuses = [(v.op, v.status) for v in report.ops]
    assert statuses[0] == ("QUANTIZE", MAPPED)
    assert statuses[1][0] == "UNIDIRECTIONAL_SEQUENCE_LSTM" and statuses[1][1] == UNSUPPORTED_TYPE
    # Everything downstream of the CPU op stays on the CPU: one Edge TPU partition only.
    assert {status for _, status in statuses[2:]} == {MORE_THAN_ONE_SUBGRAPH}


def test_compiled_and_broken_files_are_reported() -> None:
    compiled = check_model((SHARED_MODELS / "mobilenet_v1_0.25_128_quant_edgetpu.tflite").read_bytes())
    assert compiled.already_compiled and "already compiled" in compiled.problems[0]
    with pytest.raises(ModelFormatError, match="TFL3"):
        check_model(b"not a model at all")
    real = (SHARED_MODELS / "mobilenet_v1_0.25_128_quant.tflite").read_bytes()
    with pytest.raises(ModelFormatError, match="damaged or truncated"):
        check_model(real[:2000])


def test_registry_builds_architectures_with_op_counts(db_url: str) -> None:
    store = open_store(db_url)
    try:
        [(row, created)] = registry.build(store, "mobilenet_v2", None)
        assert created and row.name == "mobilenet_v2-s224" and row.params == {"alpha": 1.0, "size": 224}
        assert row.ops_per_inference == row.op_counts["total"] > 600_000_000
        assert row.op_counts["operators"]["ADD"] == 10
        [(small, _)] = registry.build(store, "mobilenet_v1", [128], alpha=0.25)
        assert small.name == "mobilenet_v1-s128-alpha0.25"
        with pytest.raises(FarmError, match="takes no parameter layers"):
            registry.build(store, "mobilenet_v1", None, layers=3)
    finally:
        store.close()
